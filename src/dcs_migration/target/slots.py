"""Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384."""

from __future__ import annotations

import itertools
from functools import cache

import anycrc

SLOTS = 16384
_CRC16 = anycrc.Model("CRC16-XMODEM")


def hashed_part(key: bytes) -> bytes:
    """The part of a key that decides its slot: the first non-empty {...}, else the key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    return int(_CRC16.calc(hashed_part(key))) % SLOTS


@cache
def _tags_by_slot() -> tuple[bytes, ...]:
    """For every slot, a short string that hashes to it (found once, by enumeration)."""
    found: dict[int, bytes] = {}
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
    for length in itertools.count(1):
        for chars in itertools.product(alphabet, repeat=length):
            tag = bytes(chars)
            found.setdefault(int(_CRC16.calc(tag)) % SLOTS, tag)
            if len(found) == SLOTS:
                return tuple(found[s] for s in range(SLOTS))
    raise AssertionError("unreachable")


def slot_tag(key: bytes) -> bytes:
    """A hash tag (without braces) that puts a key in the same slot as `key`."""
    part = hashed_part(key)
    if part and b"}" not in part:
        return part
    return _tags_by_slot()[key_slot(key)]
