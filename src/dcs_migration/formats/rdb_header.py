"""The first bytes of an RDB image: a magic (`REDIS`, or Valkey's `VALKEY`) and the format
version in ASCII digits, nine bytes in all. Read here and nowhere else: by the reader, by
format detection, by the AOF reader telling a preamble from RESP, by the hand-off.
"""

from __future__ import annotations

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import RdbHeader

REDIS_MAGIC = b"REDIS"
VALKEY_MAGIC = b"VALKEY"
RDB_MAGICS = (REDIS_MAGIC, VALKEY_MAGIC)
HEADER_BYTES = 9
HIGHEST_REDIS_RDB_VERSION = 13
VALKEY_RDB_VERSIONS = range(80, 82)


def rdb_magic(head: bytes) -> bytes | None:
    """The magic `head` starts with, or None."""
    for magic in RDB_MAGICS:
        if head.startswith(magic):
            return magic
    return None


def may_start_rdb(head: bytes) -> bool:
    """Whether `head`, shorter than a magic, could still be the start of one."""
    return any(magic.startswith(head) for magic in RDB_MAGICS)


def looks_like_rdb(head: bytes) -> bool:
    """Whether a file starting with `head` is meant as an RDB image: a magic, then
    digits or nothing yet (a cut-short header is still an RDB, a bad one)."""
    magic = rdb_magic(head)
    if magic is None:
        return False
    digits = head[len(magic) : HEADER_BYTES]
    return digits.isdigit() or not digits


def parse_rdb_header(head: bytes) -> RdbHeader:
    """The header in the first HEADER_BYTES bytes of `head`; FormatError when it is not
    one this reader knows."""
    magic = rdb_magic(head)
    if magic is None:
        raise FormatError(f"not an RDB image: it starts with {head[:HEADER_BYTES]!r}", offset=0)
    digits = head[len(magic) : HEADER_BYTES]
    if not digits.isdigit():
        raise FormatError(f"RDB version {digits!r} is not a number", offset=len(magic))
    version = int(digits)
    if magic == REDIS_MAGIC and not 1 <= version <= HIGHEST_REDIS_RDB_VERSION:
        raise FormatError(
            f"RDB version {version} is not one this reader knows "
            f"(REDIS 1 to {HIGHEST_REDIS_RDB_VERSION})",
            offset=len(magic),
        )
    if magic == VALKEY_MAGIC and version not in VALKEY_RDB_VERSIONS:
        raise FormatError(
            f"Valkey RDB version {version} is not one this reader knows "
            f"({VALKEY_RDB_VERSIONS[0]} to {VALKEY_RDB_VERSIONS[-1]})",
            offset=len(magic),
        )
    return RdbHeader(magic.decode("ascii"), version, 0)


def redis_rdb_version(head: bytes) -> int | None:
    """The RDB version of an image of Redis's own that starts with `head` (None for
    anything else, Valkey's included)."""
    if head.startswith(REDIS_MAGIC) and head[len(REDIS_MAGIC) : HEADER_BYTES].isdigit():
        return int(head[len(REDIS_MAGIC) : HEADER_BYTES])
    return None
