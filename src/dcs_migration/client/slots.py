"""Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384.

XMODEM is the CRC that the standard library's binascii.crc_hqx computes from 0 (check
value 0x31C3), in C and at a fraction of a general CRC package's cost per call.
"""

from __future__ import annotations

import binascii
import itertools
from functools import cache

SLOTS = 16384


def hashed_part(key: bytes) -> bytes:
    """The part of a key that decides its slot: the first non-empty {...}, else the key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    if b"{" not in key:
        return binascii.crc_hqx(key, 0) % SLOTS
    return binascii.crc_hqx(hashed_part(key), 0) % SLOTS


@cache
def _tags_by_slot() -> tuple[bytes, ...]:
    """For every slot, a short string that hashes to it (found once, by enumeration)."""
    found: dict[int, bytes] = {}
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
    for length in itertools.count(1):
        for chars in itertools.product(alphabet, repeat=length):
            tag = bytes(chars)
            found.setdefault(binascii.crc_hqx(tag, 0) % SLOTS, tag)
            if len(found) == SLOTS:
                return tuple(found[s] for s in range(SLOTS))
    raise AssertionError("unreachable")


def slot_tag(key: bytes) -> bytes:
    """A hash tag (without braces) that puts a key in the same slot as `key`."""
    part = hashed_part(key)
    if part and b"}" not in part:
        return part
    return _tags_by_slot()[key_slot(key)]
