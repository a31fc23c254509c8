"""Redis' CRC-64 (Jones polynomial, reflected, init 0, no xor-out), at C speed.

The `anycrc` package computes exactly this variant as its CRC64-REDIS model; this is the
project's one CRC64.
"""

from __future__ import annotations

import anycrc

_MODEL = anycrc.Model("CRC64-REDIS")


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC64 of `data`, continuing from `crc` (the value over the bytes before it)."""
    return int(_MODEL.calc(data, crc))


# The model's own method, for hot loops: CRC64_CONTINUE(data, crc) -> crc.
CRC64_CONTINUE = _MODEL.calc
