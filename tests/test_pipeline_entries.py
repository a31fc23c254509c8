"""A batch of plain key writes keeps only its bytes and its count: the key of a refused
command, and what is left to resend after a partial acknowledgement, are read back from
the bytes. Binary values (CRLF inside, empty strings) must not confuse that reading."""

from __future__ import annotations

from dcs_migration.client.pipeline import _Entry
from dcs_migration.client.resp import command_key, encode_command

COMMANDS = [
    [b"SET", b"first", b"plain"],
    [b"RESTORE", b"bin\r\nkey", b"0", b"\x00\r\n*3\r\n$1\r\n\xff" * 50, b"REPLACE"],
    [b"SET", b"", b""],
    [b"SET", b"last", b"x" * 70_000, b"PXAT", b"4102444800000"],
]


def batch() -> _Entry:
    return _Entry(None, b"".join(encode_command(c) for c in COMMANDS), len(COMMANDS))


def test_the_key_of_each_command_is_read_back() -> None:
    entry = batch()
    assert [entry.key_of(i) for i in range(len(COMMANDS))] == [c[1] for c in COMMANDS]


def test_what_is_left_after_a_partial_acknowledgement() -> None:
    for acked in range(len(COMMANDS) + 1):
        entry = batch()
        entry.acked = acked
        assert entry.unacknowledged() == b"".join(encode_command(c) for c in COMMANDS[acked:])


def test_a_command_without_a_key_reads_back_as_a_question_mark() -> None:
    assert command_key(encode_command([b"FLUSHALL"])) == b"?"
    assert command_key(encode_command([b"GET", b"a\r\n$1\r\nb"])) == b"a\r\n$1\r\nb"


def test_commands_read_back_in_any_order_and_after_a_resend() -> None:
    """The entry remembers where it last looked: reading forwards, backwards, and after
    dropping what was acknowledged (a reconnect) must all find the right command."""
    entry = batch()
    order = [0, 1, 2, 3, 3, 1, 0, 2]
    assert [entry.command_at(i) for i in order] == [encode_command(COMMANDS[i]) for i in order]
    entry.acked = 2
    entry.drop_acknowledged()
    assert (entry.count, entry.acked) == (2, 0)
    assert [entry.key_of(i) for i in (1, 0)] == [COMMANDS[3][1], COMMANDS[2][1]]
    assert entry.unacknowledged() == b"".join(encode_command(c) for c in COMMANDS[2:])
