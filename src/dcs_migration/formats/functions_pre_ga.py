"""Function libraries as Redis 7.0 release candidates wrote them, turned into the GA form.

Before 7.0 GA a library kept its name, engine and description beside its code: the RDB
opcode 246 (`RDB_OPCODE_FUNCTION_PRE_GA`: name, engine, a description flag and maybe a
description, code), the same opcode inside `FUNCTION DUMP` payloads, and
`FUNCTION LOAD <engine> <name> [REPLACE] [DESCRIPTION <text>] <code>` in AOFs. Redis
7.0.x loads the first two by putting the name and engine into a first line of the code
(`#!<engine> name=<name>`) and dropping the description; 7.2 and later refuse them. A
pre-release `FUNCTION LOAD` in an AOF fails on every GA server (7.0.x logs the error
and loads on without the library), so it is translated the same way here.

Kept apart from `functions` (which runs Lua) so the RDB reader stays light.
"""

from __future__ import annotations

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import Incomplete, read_length, read_string
from dcs_migration.formats.rdb_writer import encode_string

_DUMP_TRAILER = 10  # a DUMP payload ends with a 2-byte RDB version and a CRC64


def ga_library_code(engine: bytes, name: bytes, code: bytes) -> bytes:
    """The code 7.0.x makes of a pre-release library: `#!<engine> name=<name>`, a
    newline, the code. It formats them as C strings, so each stops at a NUL byte."""
    engine, name, code = (part.split(b"\0", 1)[0] for part in (engine, name, code))
    return b"#!" + engine + b" name=" + name + b"\n" + code


def read_pre_ga_library(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The operands of opcode 246 at `pos`: the library's GA code and the position after."""
    name, pos = read_string(buf, pos, end)
    engine, pos = read_string(buf, pos, end)
    has_description, pos = read_length(buf, pos, end)
    if has_description:
        _, pos = read_string(buf, pos, end)
    code, pos = read_string(buf, pos, end)
    return ga_library_code(engine, name, code), pos


def ga_function_command(args: list[bytes]) -> list[bytes] | None:
    """A pre-release `FUNCTION LOAD` or `FUNCTION RESTORE` (of a payload holding opcode
    246) in its GA form; None for any other command, which goes as it stands."""
    if len(args) < 3 or args[0].upper() != b"FUNCTION":
        return None
    sub = args[1].upper()
    if sub == b"LOAD":
        return _ga_load(args)
    if sub == b"RESTORE" and len(args) in (3, 4):
        payload = ga_dump_payload(args[2])
        return None if payload is None else [*args[:2], payload, *args[3:]]
    return None


def _ga_load(args: list[bytes]) -> list[bytes] | None:
    """`FUNCTION LOAD <engine> <name> [REPLACE] [DESCRIPTION <text>] <code>` as
    `FUNCTION LOAD [REPLACE] <ga code>`. The GA form (`FUNCTION LOAD [REPLACE] <code>`)
    has nothing but REPLACE before its code; a pre-release one malformed for its own
    syntax is left alone, for the target to refuse."""
    options = args[2:-1]
    if all(o.upper() == b"REPLACE" for o in options) or len(args) < 5:
        return None
    engine, name = args[2], args[3]
    replace = False
    at = 4
    last = len(args) - 1
    while at < last:
        option = args[at].upper()
        if option == b"REPLACE":
            replace = True
            at += 1
        elif option in (b"DESCRIPTION", b"DESC") and at + 1 < last:
            at += 2
        else:
            return None
    code = ga_library_code(engine, name, args[last])
    return [args[0], args[1], *([b"REPLACE"] if replace else []), code]


def ga_dump_payload(payload: bytes) -> bytes | None:
    """A `FUNCTION DUMP` payload with its pre-release libraries in the GA layout (opcode
    245 and the GA code), under the same RDB version and a new CRC64; None when it holds
    none, or is not a payload that 7.0.x would take (bad checksum, other content)."""
    if len(payload) <= _DUMP_TRAILER:
        return None
    body_end = len(payload) - _DUMP_TRAILER
    if crc64(payload[:-8]) != int.from_bytes(payload[-8:], "little"):
        return None
    parts: list[bytes] = []
    pos = 0
    changed = False
    try:
        while pos < body_end:
            op = payload[pos]
            if op == T.RDB_OPCODE_FUNCTION2:
                code, pos = read_string(payload, pos + 1, body_end)
            elif op == T.RDB_OPCODE_FUNCTION_PRE_GA:
                code, pos = read_pre_ga_library(payload, pos + 1, body_end)
                changed = True
            else:
                return None
            parts.append(bytes((T.RDB_OPCODE_FUNCTION2,)) + encode_string(code))
    except (Incomplete, FormatError):
        return None
    if not changed:
        return None
    body = b"".join(parts) + payload[body_end:-8]
    return body + crc64(body).to_bytes(8, "little")
