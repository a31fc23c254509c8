"""Where a value ends, found without decoding it: what passthrough reading costs.

One function per value layout, chosen by type through `SKIP_VALUE`; each takes the
buffer, the value's start and the end of the readable bytes, checks the structure's
framing (lengths, counts, node containers), and returns the position after the value.
Running out of bytes raises `Incomplete`, as everywhere in the readers.
"""

from __future__ import annotations

from collections.abc import Callable

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import (
    LENGTH_SIZE,
    Incomplete,
    read_length,
    read_string,
    skip_length,
    skip_string,
    skip_text_double,
)

Skipper = Callable[[bytes, int, int], int]


# The element loops below step over short strings (a length byte under 0x40, then the
# bytes) inline and call skip_string for the others: a big hash or set is millions of
# them. An inline step does not check `end`; the loop ends with that check, and reading
# past the buffer (IndexError) means the same thing: the value is not all there yet.


def _skip_strings(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def _skip_string_pairs(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def _skip_zset(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_text_double(buf, skip_string(buf, pos, end), end)
    return pos


def _skip_zset_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = (pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)) + 8  # the score
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


_QUICKLIST_CONTAINERS = (T.QUICKLIST_NODE_CONTAINER_PACKED, T.QUICKLIST_NODE_CONTAINER_PLAIN)


def _skip_quicklist_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            container = buf[pos]  # 1 or 2: a one-byte length
            if container not in _QUICKLIST_CONTAINERS:
                container, _ = read_length(buf, pos, end)
                raise FormatError(f"quicklist node has unknown container {container}")
            b = buf[pos + 1]
            pos = pos + 2 + b if b < 0x40 else skip_string(buf, pos + 1, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def _fixed(width: int, then: Skipper) -> Skipper:
    """A skipper for `width` raw bytes followed by what `then` skips."""

    def skip(buf: bytes, pos: int, end: int) -> int:
        pos += width
        if pos > end:
            raise Incomplete()
        return then(buf, pos, end)

    return skip


def _skip_hash_metadata_fields(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_length(buf, pos, end)  # the field's TTL
        pos = skip_string(buf, skip_string(buf, pos, end), end)
    return pos


def _skip_valkey_hash_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_string(buf, skip_string(buf, pos, end), end) + 8  # field, value, expiry
        if pos > end:
            raise Incomplete()
    return pos


def skip_module_opcodes(buf: bytes, pos: int, end: int) -> int:
    """The position after a module value's opcode stream and its EOF marker."""
    while True:
        opcode, pos = read_length(buf, pos, end)
        if opcode == T.RDB_MODULE_OPCODE_EOF:
            return pos
        if opcode == T.RDB_MODULE_OPCODE_SINT or opcode == T.RDB_MODULE_OPCODE_UINT:
            pos = skip_length(buf, pos, end)
        elif opcode == T.RDB_MODULE_OPCODE_FLOAT:
            pos += 4
        elif opcode == T.RDB_MODULE_OPCODE_DOUBLE:
            pos += 8
        elif opcode == T.RDB_MODULE_OPCODE_STRING:
            pos = skip_string(buf, pos, end)
        else:
            raise FormatError(f"unknown module value opcode {opcode}", offset=pos)
        if pos > end:
            raise Incomplete()


def _skip_module_2(buf: bytes, pos: int, end: int) -> int:
    return skip_module_opcodes(buf, skip_length(buf, pos, end), end)


def _refuse_module_pre_ga(buf: bytes, pos: int, end: int) -> int:
    module_id, _ = read_length(buf, pos, end)
    raise FormatError(
        f"module value of type {T.module_id_name(module_id)!r} in the pre-GA module "
        "format: only that module can read it",
        offset=pos,
    )


def _bad_length(buf: bytes, pos: int, end: int) -> int:
    """Raise skip_length's error for the byte at `pos`, which starts no length."""
    skip_length(buf, pos, end)
    raise AssertionError(f"byte 0x{buf[pos]:02x} was taken for no length")


def stream_tail_skipper(t: int) -> Skipper:
    """A skipper for what follows a stream's nodes: its metadata and consumer groups."""
    v2 = t >= T.RDB_TYPE_STREAM_LISTPACKS_2
    v3 = t >= T.RDB_TYPE_STREAM_LISTPACKS_3
    v4 = t >= T.RDB_TYPE_STREAM_LISTPACKS_4
    metadata_lengths = 8 if v2 else 3  # length, last id (and first id, max deleted, added)
    group_lengths = 3 if v2 else 2  # last delivered id (and entries read)
    consumer_times = 16 if v3 else 8  # seen time (and active time)

    def skip(buf: bytes, pos: int, end: int) -> int:
        # Inline steps as in the element loops above: most lengths and counts are short.
        try:
            for _ in range(metadata_lengths):
                pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
            b = buf[pos]
            groups, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
            for _ in range(groups):
                b = buf[pos]
                pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
                for _ in range(group_lengths):
                    pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
                b = buf[pos]
                pel, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
                for _ in range(pel):
                    pos += 24  # raw id, delivery time, then the delivery count
                    pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
                b = buf[pos]
                consumers, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
                for _ in range(consumers):
                    b = buf[pos]
                    pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
                    pos += consumer_times
                    owned, pos = read_length(buf, pos, end)
                    pos += 16 * owned
        except IndexError:
            raise Incomplete() from None
        if pos > end:
            raise Incomplete()
        if v4:  # idempotent producers: settings, then per producer its recent ids
            pos = skip_length(buf, skip_length(buf, pos, end), end)
            producers, pos = read_length(buf, pos, end)
            for _ in range(producers):
                pos = skip_string(buf, pos, end)
                iids, pos = read_length(buf, pos, end)
                for _ in range(iids):
                    pos = skip_string(buf, pos, end)
                    pos = skip_length(buf, skip_length(buf, pos, end), end)
            pos = skip_length(buf, skip_length(buf, pos, end), end)
        return pos

    return skip


def _stream_skipper(t: int) -> Skipper:
    tail = stream_tail_skipper(t)

    def skip(buf: bytes, pos: int, end: int) -> int:
        # The nodes: a master ID (16 bytes) and a listpack each, then the tail.
        return tail(buf, _skip_string_pairs(buf, pos, end), end)

    return skip


SKIP_VALUE: dict[int, Skipper] = {
    T.RDB_TYPE_STRING: skip_string,
    T.RDB_TYPE_LIST: _skip_strings,
    T.RDB_TYPE_SET: _skip_strings,
    T.RDB_TYPE_ZSET: _skip_zset,
    T.RDB_TYPE_HASH: _skip_string_pairs,
    T.RDB_TYPE_ZSET_2: _skip_zset_2,
    T.RDB_TYPE_MODULE_PRE_GA: _refuse_module_pre_ga,
    T.RDB_TYPE_MODULE_2: _skip_module_2,
    T.RDB_TYPE_HASH_ZIPMAP: skip_string,
    T.RDB_TYPE_LIST_ZIPLIST: skip_string,
    T.RDB_TYPE_SET_INTSET: skip_string,
    T.RDB_TYPE_ZSET_ZIPLIST: skip_string,
    T.RDB_TYPE_HASH_ZIPLIST: skip_string,
    T.RDB_TYPE_LIST_QUICKLIST: _skip_strings,
    T.RDB_TYPE_HASH_LISTPACK: skip_string,
    T.RDB_TYPE_ZSET_LISTPACK: skip_string,
    T.RDB_TYPE_LIST_QUICKLIST_2: _skip_quicklist_2,
    T.RDB_TYPE_SET_LISTPACK: skip_string,
    T.RDB_TYPE_HASH_METADATA_PRE_GA: _skip_hash_metadata_fields,
    T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: skip_string,
    T.RDB_TYPE_HASH_METADATA: _fixed(8, _skip_hash_metadata_fields),
    T.RDB_TYPE_HASH_LISTPACK_EX: _fixed(8, skip_string),
    **{t: _stream_skipper(t) for t in T.STREAM_TYPES},
}
VALKEY_SKIP_VALUE: dict[int, Skipper] = {
    **{t: f for t, f in SKIP_VALUE.items() if t in T.VALKEY_TYPES},
    T.VALKEY_RDB_TYPE_HASH_2: _skip_valkey_hash_2,
}


def skip_value(t: int, buf: bytes, pos: int, end: int, valkey: bool = False) -> int:
    """The position after a value of type `t` (an unknown type is a FormatError)."""
    skipper = (VALKEY_SKIP_VALUE if valkey else SKIP_VALUE).get(t)
    if skipper is None:
        raise FormatError(f"unknown RDB object type {t}", offset=pos)
    return skipper(buf, pos, end)


# -- empty values: Redis drops a key that holds no element when it loads a file ---------

# Types whose value starts with an element count (quicklists: a node count).
_COUNTED = frozenset(
    {
        T.RDB_TYPE_LIST,
        T.RDB_TYPE_SET,
        T.RDB_TYPE_ZSET,
        T.RDB_TYPE_HASH,
        T.RDB_TYPE_ZSET_2,
        T.RDB_TYPE_LIST_QUICKLIST,
        T.RDB_TYPE_LIST_QUICKLIST_2,
        T.RDB_TYPE_HASH_METADATA_PRE_GA,
    }
)
_EMPTY_ZIPLIST = b"\x0b\x00\x00\x00\x0a\x00\x00\x00\x00\x00\xff"
_EMPTY_LISTPACK = b"\x07\x00\x00\x00\x00\x00\xff"
_EMPTY_INTSETS = frozenset(
    w + b"\x00\x00\x00\x00" for w in (b"\x02\x00\x00\x00", b"\x04\x00\x00\x00", b"\x08\x00\x00\x00")
)
_EMPTY_ZIPMAP = b"\x00\xff"
# Blob types: the blobs that hold nothing, and where the blob starts in the value.
_EMPTY_BLOB: dict[int, tuple[frozenset[bytes], int]] = {
    T.RDB_TYPE_LIST_ZIPLIST: (frozenset({_EMPTY_ZIPLIST}), 0),
    T.RDB_TYPE_ZSET_ZIPLIST: (frozenset({_EMPTY_ZIPLIST}), 0),
    T.RDB_TYPE_HASH_ZIPLIST: (frozenset({_EMPTY_ZIPLIST}), 0),
    T.RDB_TYPE_SET_INTSET: (_EMPTY_INTSETS, 0),
    T.RDB_TYPE_HASH_LISTPACK: (frozenset({_EMPTY_LISTPACK}), 0),
    T.RDB_TYPE_ZSET_LISTPACK: (frozenset({_EMPTY_LISTPACK}), 0),
    T.RDB_TYPE_SET_LISTPACK: (frozenset({_EMPTY_LISTPACK}), 0),
    T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: (frozenset({_EMPTY_LISTPACK}), 0),
    T.RDB_TYPE_HASH_LISTPACK_EX: (frozenset({_EMPTY_LISTPACK}), 8),
    T.RDB_TYPE_HASH_ZIPMAP: (frozenset({_EMPTY_ZIPMAP}), 0),
}


def _is_empty_blob(buf: bytes, pos: int, end: int, empties: frozenset[bytes]) -> bool:
    """Whether the string at `pos` is one of `empties`, reading its header first so that
    only a blob of an empty one's size is ever decompressed."""
    b = buf[pos]
    if b < 0x40:
        return b <= 11 and buf[pos + 1 : pos + 1 + b] in empties
    if b == 0xC3:
        _, p = read_length(buf, pos + 1, end)
        size, _ = read_length(buf, p, end)
        if size <= 11:
            blob, _ = read_string(buf, pos, end)
            return blob in empties
    return False


def _quicklist_is_empty(t: int, buf: bytes, pos: int, end: int) -> bool:
    """Whether every node of a quicklist is an empty ziplist or listpack."""
    nodes, pos = read_length(buf, pos, end)
    empties = frozenset({_EMPTY_ZIPLIST})
    for _ in range(nodes):
        if t == T.RDB_TYPE_LIST_QUICKLIST_2:
            container, pos = read_length(buf, pos, end)
            if container == T.QUICKLIST_NODE_CONTAINER_PLAIN:
                return False
            empties = frozenset({_EMPTY_LISTPACK})
        if not _is_empty_blob(buf, pos, end, empties):
            return False
        pos = skip_string(buf, pos, end)
    return True


def is_empty(t: int, buf: bytes, vstart: int, vend: int) -> bool:
    """Whether the value in buf[vstart:vend] holds no element (decided from headers)."""
    if t in _COUNTED:
        if buf[vstart] == 0:  # a count of 0 is the single byte 0x00
            return True
        if t == T.RDB_TYPE_LIST_QUICKLIST or t == T.RDB_TYPE_LIST_QUICKLIST_2:
            return _quicklist_is_empty(t, buf, vstart, vend)
        return False
    if t == T.RDB_TYPE_HASH_METADATA:
        return buf[vstart + 8] == 0
    blob = _EMPTY_BLOB.get(t)
    return blob is not None and _is_empty_blob(buf, vstart + blob[1], vend, blob[0])


# What MAYBE_EMPTY says of a (type, first byte of the value) pair.
NOT_EMPTY = 0
ASK = 1  # is_empty decides
ASK_IF_TINY_LZF = 2  # an LZF blob: only one of at most 11 bytes could be empty
ASK_IF_ONE_TINY_NODE = 3  # a quicklist of one node: only a tiny listpack could be empty


def tiny_lzf(buf: bytes, at: int) -> bool:
    """For ASK_IF_ codes: whether the string at `at` is LZF-compressed from at most 11
    bytes (an empty container's size); its value was skipped whole, so the bytes are there."""
    return buf[at] == 0xC3 and buf[at + 1] < 0x40 and buf[at + 2] < 12


def _candidate_table() -> bytes:
    """For (type, first byte of the value): could the value be empty? One byte per pair,
    so that the reader rules out almost every value with one index, and most of the rest
    with a look at the next few bytes (the ASK_IF_ codes)."""
    table = bytearray(256 * 256)
    # Only these types can hold an empty value; every other row stays NOT_EMPTY (a loop
    # over all 65536 pairs would cost every command's start-up several milliseconds).
    candidates = {
        *_EMPTY_BLOB,
        *_COUNTED,
        T.RDB_TYPE_LIST_QUICKLIST,
        T.RDB_TYPE_LIST_QUICKLIST_2,
        T.RDB_TYPE_HASH_METADATA,
    }
    for t in sorted(candidates):
        blob = _EMPTY_BLOB.get(t)
        sizes = {len(e) for e in blob[0]} if blob is not None else set()
        for b in range(256):
            if t == T.RDB_TYPE_LIST_QUICKLIST_2:
                code = ASK_IF_ONE_TINY_NODE if b == 1 else ASK
            elif t == T.RDB_TYPE_LIST_QUICKLIST:
                code = ASK
            elif t in _COUNTED:
                code = ASK if b == 0 else NOT_EMPTY
            elif t == T.RDB_TYPE_HASH_METADATA or (blob is not None and blob[1]):
                code = ASK  # a prefix comes first
            elif blob is not None:
                code = ASK if b in sizes else ASK_IF_TINY_LZF if b == 0xC3 else NOT_EMPTY
            else:
                code = NOT_EMPTY
            table[t * 256 + b] = code
    return bytes(table)


MAYBE_EMPTY = _candidate_table()
