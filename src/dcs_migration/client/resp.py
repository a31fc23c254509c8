"""The one RESP encoder, and the reading back of what it encoded: a command as the bytes
a Redis server reads, where a command ends in a run of them, and its key.

The encoder itself lives with the RESP reader in `formats.resp` (the AOF writer, which
is pure, encodes with it too); it is offered here under its usual name.
"""

from __future__ import annotations

from dcs_migration.formats.resp import encode_command as encode_command


def skip_commands(data: bytes, n: int, pos: int = 0) -> int:
    """The offset after `n` encoded commands of `data` from `pos`."""
    for _ in range(n):
        line = data.index(b"\r\n", pos)
        args = int(data[pos + 1 : line])
        pos = line + 2
        for _ in range(args):
            pos = _skip_bulk(data, pos)
    return pos


def command_key(command: bytes) -> bytes:
    """The second argument of an encoded command (its key), for error messages; `?`
    when it has none."""
    try:
        pos = _skip_bulk(command, command.index(b"\r\n") + 2)  # past the count, the name
        line = command.index(b"\r\n", pos)
        return command[line + 2 : line + 2 + int(command[pos + 1 : line])]
    except ValueError:
        return b"?"


def _skip_bulk(data: bytes, pos: int) -> int:
    line = data.index(b"\r\n", pos)
    return line + 2 + int(data[pos + 1 : line]) + 2
