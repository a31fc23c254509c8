"""Redis' CRC-64 (Jones polynomial, reflected, init 0, no xor-out), at C speed.

The `anycrc` package computes exactly this variant as its CRC64-REDIS model, at several
GB/s: the project's CRC64 for files and big values. Its calls cost about 0.4 µs each,
though, which is most of the price of a small key's RESTORE; `crcmod` (the maintained
`crcmod-plus` build) costs about 0.15 µs a call but runs at about 400 MB/s, so it
serves the short inputs (`crc64_short`). Both are checked against Redis' test vector.
"""

from __future__ import annotations

from collections.abc import Callable

import anycrc
import crcmod

_MODEL = anycrc.Model("CRC64-REDIS")


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC64 of `data`, continuing from `crc` (the value over the bytes before it)."""
    return int(_MODEL.calc(data, crc))


# The model's own method, for hot loops: CRC64_CONTINUE(data, crc) -> crc.
CRC64_CONTINUE = _MODEL.calc

# The CRC64 of a short input, in hot loops: crc64_short(data) -> crc.
crc64_short: Callable[[bytes], int] = crcmod.mkCrcFun(
    0x1AD93D23594C935A9, initCrc=0, rev=True, xorOut=0
)
# Inputs shorter than this cost less through crc64_short (measured: the two cross at
# about 100 bytes).
SHORT_CRC_BYTES = 96
