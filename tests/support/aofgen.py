"""AOF files made in tests: commands in the RESP form Redis appends them in."""

from __future__ import annotations

Command = tuple[bytes, ...]


def resp(args: Command) -> bytes:
    return b"".join([b"*%d\r\n" % len(args), *(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)])


def aof(*commands: Command) -> tuple[bytes, list[int]]:
    """The bytes of an AOF of these commands, and the offset of each."""
    offsets, data = [], b""
    for c in commands:
        offsets.append(len(data))
        data += resp(c)
    return data, offsets
