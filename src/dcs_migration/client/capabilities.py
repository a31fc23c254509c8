"""What a target server can take: the RDB version of its RESTORE, functions, field TTLs.

Redis accepts a DUMP payload whose RDB version is at most its own, so each value is
stamped with the lowest version its type needs (`TYPE_MIN_RDB_VERSION`): a file from a
newer Redis then restores into an older one wherever the encodings allow, and the types
the target cannot load are rewritten as commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcs_migration.formats import rdb_types as T

# The first RDB version that has each type (rdb.h's history).
TYPE_MIN_RDB_VERSION = {
    T.RDB_TYPE_STRING: 1,
    T.RDB_TYPE_LIST: 1,
    T.RDB_TYPE_SET: 1,
    T.RDB_TYPE_ZSET: 1,
    T.RDB_TYPE_HASH: 2,
    T.RDB_TYPE_HASH_ZIPMAP: 2,
    T.RDB_TYPE_LIST_ZIPLIST: 2,
    T.RDB_TYPE_SET_INTSET: 2,
    T.RDB_TYPE_ZSET_ZIPLIST: 2,
    T.RDB_TYPE_HASH_ZIPLIST: 4,
    T.RDB_TYPE_LIST_QUICKLIST: 7,
    T.RDB_TYPE_ZSET_2: 8,
    T.RDB_TYPE_MODULE_PRE_GA: 8,
    T.RDB_TYPE_MODULE_2: 8,
    T.RDB_TYPE_STREAM_LISTPACKS: 9,
    T.RDB_TYPE_HASH_LISTPACK: 10,
    T.RDB_TYPE_ZSET_LISTPACK: 10,
    T.RDB_TYPE_LIST_QUICKLIST_2: 10,
    T.RDB_TYPE_STREAM_LISTPACKS_2: 10,
    T.RDB_TYPE_SET_LISTPACK: 11,
    T.RDB_TYPE_STREAM_LISTPACKS_3: 11,
    T.RDB_TYPE_HASH_METADATA_PRE_GA: 12,
    T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: 12,
    T.RDB_TYPE_HASH_METADATA: 12,
    T.RDB_TYPE_HASH_LISTPACK_EX: 12,
    T.RDB_TYPE_STREAM_LISTPACKS_4: 13,
}

# Redis release -> the RDB version it writes and reads.
_RDB_VERSION_BY_RELEASE = [
    ((8, 6), 13),
    ((7, 4), 12),
    ((7, 2), 11),
    ((7, 0), 10),
    ((5, 0), 9),
    ((4, 0), 8),
    ((3, 2), 7),
    ((2, 6), 6),
    ((0, 0), 5),
]


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.strip().split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Capabilities:
    """What one target server supports, from its INFO."""

    version: tuple[int, ...]
    rdb_version: int
    cluster: bool = False

    @classmethod
    def from_info(cls, info: dict[str, str]) -> Capabilities:
        version = parse_version(info.get("redis_version", "0"))
        if "valkey_version" in info:  # Valkey reports redis_version 7.2.x and reads RDB 11
            rdb = 11
        else:
            rdb = next(v for release, v in _RDB_VERSION_BY_RELEASE if version[:2] >= release)
        # Valkey says server_mode where Redis says redis_mode.
        mode = info.get("redis_mode") or info.get("server_mode")
        return cls(version, rdb, mode == "cluster")

    @property
    def functions(self) -> bool:
        return self.version >= (7, 0)

    @property
    def set_pxat(self) -> bool:
        """SET ... PXAT (6.2+)."""
        return self.version >= (6, 2)

    @property
    def field_ttls(self) -> bool:
        return self.version >= (7, 4)

    @property
    def stream_metadata(self) -> bool:
        """XSETID ENTRIESADDED/MAXDELETEDID and XGROUP ENTRIESREAD (7.0+)."""
        return self.version >= (7, 0)

    def can_restore(self, rdb_type: int) -> bool:
        needed = TYPE_MIN_RDB_VERSION.get(rdb_type)
        return needed is not None and needed <= self.rdb_version


def restore_version(rdb_type: int) -> int:
    """The RDB version to stamp on a DUMP payload of this type."""
    return TYPE_MIN_RDB_VERSION.get(rdb_type, 9)
