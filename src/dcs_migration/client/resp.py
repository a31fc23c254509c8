"""The one RESP encoder, and the reading back of what it encoded: a command as the bytes
a Redis server reads, where a command ends in a run of them, and its key.

`encode_command` frames any command (it lives with the RESP reader in `formats.resp`,
where the AOF writer, which is pure, encodes with it too; it is offered here under its
usual name). The key writes of the hot path (SET and RESTORE,
millions of them) are framed from the constant pieces below instead, joined once per
batch by the writer, so that no command is built on its own; `restore_frame` gives what
goes around one RESTORE's payload.
"""

from __future__ import annotations

from dcs_migration.formats.resp import encode_command as encode_command

CRLF = b"\r\n"
# `$<n>\r\n` for the lengths met most, looked up instead of formatted.
BULK_LENGTHS = [b"$%d\r\n" % n for n in range(4096)]
SET_HEAD = b"*3\r\n$3\r\nSET\r\n"  # SET key value
SET_PXAT_HEAD = b"*5\r\n$3\r\nSET\r\n"  # SET key value PXAT ms
PXAT_TAIL = b"\r\n$4\r\nPXAT\r\n$%d\r\n%b\r\n"  # % (len(ms), ms), after the value
RESTORE_HEAD = b"*5\r\n$7\r\nRESTORE\r\n"  # RESTORE key 0 payload REPLACE
RESTORE_TTL_HEAD = b"*6\r\n$7\r\nRESTORE\r\n"  # RESTORE key ms payload REPLACE ABSTTL
NO_TTL = b"\r\n$1\r\n0\r\n"  # RESTORE's TTL argument 0, between the key and the payload
TTL = b"\r\n$%d\r\n%b\r\n"  # % (len(ms), ms): RESTORE's TTL argument
REPLACE_TAIL = b"\r\n$7\r\nREPLACE\r\n"
REPLACE_ABSTTL_TAIL = b"\r\n$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n"


def restore_frame(
    key: bytes,
    expire_at_ms: int | None,
    payload_len: int,
    *,
    replace: bool,
    idle: int | None = None,
    freq: int | None = None,
) -> tuple[bytes, bytes]:
    """What goes before and after a RESTORE's payload: RESTORE key ttl payload [REPLACE]
    [ABSTTL] [IDLETIME s | FREQ n], the TTL absolute when there is one."""
    ttl = b"0" if expire_at_ms is None else b"%d" % expire_at_ms
    n = 4 + replace + (expire_at_ms is not None)
    tail = CRLF
    if replace:
        tail += b"$7\r\nREPLACE\r\n"
    if expire_at_ms is not None:
        tail += b"$6\r\nABSTTL\r\n"
    if idle is not None:
        n += 2
        seconds = b"%d" % idle
        tail += b"$8\r\nIDLETIME\r\n$%d\r\n%s\r\n" % (len(seconds), seconds)
    elif freq is not None:
        n += 2
        count = b"%d" % freq
        tail += b"$4\r\nFREQ\r\n$%d\r\n%s\r\n" % (len(count), count)
    head = b"".join(
        (
            b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n" % (n, len(key)),
            key,
            b"\r\n$%d\r\n%s\r\n$%d\r\n" % (len(ttl), ttl, payload_len),
        )
    )
    return head, tail


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
