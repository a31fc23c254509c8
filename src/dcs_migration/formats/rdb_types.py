"""RDB opcodes and object types, under the names rdb.h gives them."""

from __future__ import annotations

# Opcodes (rdb.h).
RDB_OPCODE_KEY_META = 243  # Redis 8.6+ (RDB 13): key metadata before the type byte
RDB_OPCODE_SLOT_INFO = 244
RDB_OPCODE_FUNCTION2 = 245
RDB_OPCODE_FUNCTION_PRE_GA = 246
RDB_OPCODE_MODULE_AUX = 247
RDB_OPCODE_IDLE = 248
RDB_OPCODE_FREQ = 249
RDB_OPCODE_AUX = 250
RDB_OPCODE_RESIZEDB = 251
RDB_OPCODE_EXPIRETIME_MS = 252
RDB_OPCODE_EXPIRETIME = 253
RDB_OPCODE_SELECTDB = 254
RDB_OPCODE_EOF = 255

# Object types (rdb.h).
RDB_TYPE_STRING = 0
RDB_TYPE_LIST = 1
RDB_TYPE_SET = 2
RDB_TYPE_ZSET = 3
RDB_TYPE_HASH = 4
RDB_TYPE_ZSET_2 = 5  # ZSET version 2 with doubles stored in binary
RDB_TYPE_MODULE_PRE_GA = 6  # module value without the opcode framing: only the module can skip it
RDB_TYPE_MODULE_2 = 7  # module value in opcode framing
RDB_TYPE_HASH_ZIPMAP = 9
RDB_TYPE_LIST_ZIPLIST = 10
RDB_TYPE_SET_INTSET = 11
RDB_TYPE_ZSET_ZIPLIST = 12
RDB_TYPE_HASH_ZIPLIST = 13
RDB_TYPE_LIST_QUICKLIST = 14
RDB_TYPE_STREAM_LISTPACKS = 15
RDB_TYPE_HASH_LISTPACK = 16
RDB_TYPE_ZSET_LISTPACK = 17
RDB_TYPE_LIST_QUICKLIST_2 = 18
RDB_TYPE_STREAM_LISTPACKS_2 = 19
RDB_TYPE_SET_LISTPACK = 20
RDB_TYPE_STREAM_LISTPACKS_3 = 21
RDB_TYPE_HASH_METADATA_PRE_GA = 22  # 7.4 release candidates: hash with field TTLs
RDB_TYPE_HASH_LISTPACK_EX_PRE_GA = 23
RDB_TYPE_HASH_METADATA = 24  # 7.4+: hash with field TTLs
RDB_TYPE_HASH_LISTPACK_EX = 25
RDB_TYPE_STREAM_LISTPACKS_4 = 26  # RDB 13: stream with idempotent-producer state

STREAM_TYPES = frozenset(
    {
        RDB_TYPE_STREAM_LISTPACKS,
        RDB_TYPE_STREAM_LISTPACKS_2,
        RDB_TYPE_STREAM_LISTPACKS_3,
        RDB_TYPE_STREAM_LISTPACKS_4,
    }
)

# Valkey (files starting VALKEY) gives 22 and up other meanings.
VALKEY_RDB_TYPE_HASH_2 = 22  # hash whose fields may carry a TTL
VALKEY_RDB_OPCODE_SLOT_IMPORT = 243  # a slot migration in progress: job name and slot ranges

# Quicklist 2 node containers.
QUICKLIST_NODE_CONTAINER_PLAIN = 1
QUICKLIST_NODE_CONTAINER_PACKED = 2

# Module value framing (RDB_MODULE_OPCODE_*).
RDB_MODULE_OPCODE_EOF = 0
RDB_MODULE_OPCODE_SINT = 1
RDB_MODULE_OPCODE_UINT = 2
RDB_MODULE_OPCODE_FLOAT = 3
RDB_MODULE_OPCODE_DOUBLE = 4
RDB_MODULE_OPCODE_STRING = 5

_REDIS_TYPES = {
    RDB_TYPE_STRING: "string",
    RDB_TYPE_LIST: "list",
    RDB_TYPE_SET: "set",
    RDB_TYPE_ZSET: "zset",
    RDB_TYPE_HASH: "hash",
    RDB_TYPE_ZSET_2: "zset",
    RDB_TYPE_MODULE_PRE_GA: "module",
    RDB_TYPE_MODULE_2: "module",
    RDB_TYPE_HASH_ZIPMAP: "hash",
    RDB_TYPE_LIST_ZIPLIST: "list",
    RDB_TYPE_SET_INTSET: "set",
    RDB_TYPE_ZSET_ZIPLIST: "zset",
    RDB_TYPE_HASH_ZIPLIST: "hash",
    RDB_TYPE_LIST_QUICKLIST: "list",
    RDB_TYPE_STREAM_LISTPACKS: "stream",
    RDB_TYPE_HASH_LISTPACK: "hash",
    RDB_TYPE_ZSET_LISTPACK: "zset",
    RDB_TYPE_LIST_QUICKLIST_2: "list",
    RDB_TYPE_STREAM_LISTPACKS_2: "stream",
    RDB_TYPE_SET_LISTPACK: "set",
    RDB_TYPE_STREAM_LISTPACKS_3: "stream",
    RDB_TYPE_HASH_METADATA_PRE_GA: "hash",
    RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: "hash",
    RDB_TYPE_HASH_METADATA: "hash",
    RDB_TYPE_HASH_LISTPACK_EX: "hash",
    RDB_TYPE_STREAM_LISTPACKS_4: "stream",
}

# (is the file Valkey's, rdb type) -> TYPE name
TYPE_NAMES: dict[tuple[bool, int], str] = {(False, t): n for t, n in _REDIS_TYPES.items()}
TYPE_NAMES[(True, VALKEY_RDB_TYPE_HASH_2)] = "hash"

# Types a Valkey file may hold: Redis's up to 21, and its own.
VALKEY_TYPES = frozenset(t for t in _REDIS_TYPES if t <= RDB_TYPE_STREAM_LISTPACKS_3) | {
    VALKEY_RDB_TYPE_HASH_2
}
REDIS_TYPES = frozenset(_REDIS_TYPES)

_MODULE_NAME_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def module_id_name(module_id: int) -> str:
    """The 9-character module type name packed in a 64-bit module id (the low 10 bits are
    the encoding version)."""
    chars = []
    rest = module_id >> 10
    for _ in range(9):
        chars.append(_MODULE_NAME_CHARSET[rest & 63])
        rest >>= 6
    return "".join(reversed(chars))


def module_type_name(payload: bytes) -> str:
    """The module type name of a module value (the payload starts with its module id)."""
    from dcs_migration.formats.primitives import read_length

    try:
        module_id, _ = read_length(payload, 0, len(payload))
    except Exception:
        return "unknown"
    return module_id_name(module_id)
