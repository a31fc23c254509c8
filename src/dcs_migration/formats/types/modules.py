"""Module values (RDB_TYPE_MODULE_2, and the pre-GA RDB_TYPE_MODULE_PRE_GA): a module id,
then what the module wrote, framed in opcodes (module 2) or not (pre-GA).

Only the module can decode its value: a reader steps over a module 2 value by its
opcodes, names the module from its id, and refuses a pre-GA one (nothing but the module
knows where it ends). The same opcode framing carries MODULE_AUX data and, in RDB 13,
key metadata.
"""

from __future__ import annotations

from typing import NoReturn

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import (
    Cursor,
    Incomplete,
    read_length,
    skip_length,
    skip_string,
)
from dcs_migration.formats.types.encoding import Encoding

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
    try:
        module_id, _ = read_length(payload, 0, len(payload))
    except Exception:
        return "unknown"
    return module_id_name(module_id)


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


def _refuse_pre_ga(buf: bytes, pos: int, end: int) -> int:
    module_id, _ = read_length(buf, pos, end)
    raise FormatError(
        f"module value of type {module_id_name(module_id)!r} in the pre-GA module "
        "format: only that module can read it",
        offset=pos,
    )


def _refuse_decoding(c: Cursor) -> NoReturn:
    module = module_type_name(c.buf)
    raise FormatError(f"module value of type {module!r}: only that module can read it")


ENCODINGS = {
    T.RDB_TYPE_MODULE_PRE_GA: Encoding("module", _refuse_pre_ga, _refuse_decoding, None),
    T.RDB_TYPE_MODULE_2: Encoding("module", _skip_module_2, _refuse_decoding, None),
}
