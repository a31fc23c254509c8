"""The RESP command-log reader: commands, databases, annotations, limits, bad input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand
from dcs_migration.formats.resp import RespReader


def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def parse(data: bytes, chunk: int | None = None, **limits: int) -> list[AofCommand]:
    reader = RespReader(**limits)
    out: list[AofCommand] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    out += reader.close()
    return out


def error_of(data: bytes, **limits: int) -> FormatError:
    with pytest.raises(FormatError) as info:
        parse(data, **limits)
    assert info.value.offset is not None
    return info.value


LOG = (
    resp(b"SELECT", b"0")
    + resp(b"SET", b"k", b"v")
    + b"#TS:1700000000\r\n"
    + resp(b"MULTI")
    + resp(b"SELECT", b"5")
    + resp(b"HSET", b"h", b"f\r\n", b"")
    + resp(b"EXEC")
    + b"#some other annotation\r\n"
    + resp(b"select", b"15")
    + b"#TS:1700000009\n"
    + resp(b"DEL", b"k")
)


def test_commands_come_out_with_their_arguments() -> None:
    cmds = parse(LOG)
    assert [c.args for c in cmds] == [
        [b"SELECT", b"0"],
        [b"SET", b"k", b"v"],
        [b"MULTI"],
        [b"SELECT", b"5"],
        [b"HSET", b"h", b"f\r\n", b""],
        [b"EXEC"],
        [b"select", b"15"],
        [b"DEL", b"k"],
    ]


def test_select_sets_the_db_of_itself_and_of_what_follows() -> None:
    assert [c.db for c in parse(LOG)] == [0, 0, 0, 5, 5, 5, 15, 15]


def test_the_db_starts_at_the_given_one() -> None:
    reader = RespReader(db=3)
    assert [c.db for c in reader.feed(resp(b"SET", b"a", b"b"))] == [3]


def test_timestamps_apply_to_the_commands_after_them() -> None:
    assert [c.timestamp for c in parse(LOG)] == [None, None] + [1700000000] * 5 + [1700000009]


def test_offsets_are_where_each_command_starts() -> None:
    for cmd in parse(LOG):
        assert LOG[cmd.offset : cmd.offset + 1] == b"*"
        assert LOG[cmd.offset :].startswith(resp(*cmd.args))


def test_offsets_count_from_the_given_start() -> None:
    reader = RespReader(offset=1000)
    cmds = reader.feed(LOG) + reader.close()
    assert [c.offset - 1000 for c in cmds] == [c.offset for c in parse(LOG)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_chunk_boundaries_anywhere_give_the_same_commands(chunk: int) -> None:
    assert parse(LOG, chunk) == parse(LOG)


def test_an_empty_input_has_no_commands() -> None:
    assert parse(b"") == []


def test_an_annotation_without_newline_may_end_the_file() -> None:
    assert parse(resp(b"PING") + b"#TS:5") == parse(resp(b"PING"))


def test_a_large_argument_is_read_whole() -> None:
    big = bytes(range(256)) * 4096
    assert parse(resp(b"SET", b"k", big), 1000)[0].args[2] == big


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"x", 0, "expected '*'"),
        (resp(b"PING") + b"+OK\r\n", 14, "expected '*'"),
        (b"*\r\n", 0, "argument count"),
        (b"*0\r\n", 0, "out of range"),
        (b"*-1\r\n", 0, "argument count"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", 13, "expected '$'"),
        (b"*1\r\n$-1\r\n", 4, "argument length"),
        (b"*1\r\n$x\r\n", 4, "argument length"),
        (b"*1\r\n$4\r\nPINGxx", 12, "CRLF"),
        (b"*1\r\n$4\r\nPING\n\r", 12, "CRLF"),
        (b"*1x\r\n", 0, "argument count"),
        (b"*1\r\n$99999999999999999999999999\r\n", 4, "CRLF"),
        (b"*" + b"1" * 40 + b"\r\n", 0, "CRLF"),
        (b"*2\r\n$6\r\nSELECT\r\n$2\r\nxx\r\n", 0, "SELECT"),
        (b"*1\r\n$6\r\nSELECT\r\n", 0, "SELECT"),
        (b"#" + b"a" * 2000 + b"\r\n", 0, "annotation"),
    ],
)
def test_bad_input_names_the_offset_and_what_was_expected(
    data: bytes, offset: int, words: str
) -> None:
    err = error_of(data)
    assert err.offset == offset
    assert words in err.message


def test_a_bulk_over_the_limit_fails_before_its_bytes_arrive() -> None:
    reader = RespReader(max_bulk_bytes=1000)
    with pytest.raises(FormatError, match="over the 1000-byte limit") as info:
        reader.feed(b"*1\r\n$1001\r\n")
    assert info.value.offset == 4


def test_an_argument_count_over_the_limit_fails_at_once() -> None:
    assert "out of range" in error_of(b"*1048577\r\n").message
    assert "out of range" in error_of(b"*11\r\n", max_args=10).message


def test_a_command_over_the_size_limit_fails_while_it_grows() -> None:
    reader = RespReader(max_command_bytes=100)
    reader.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500\r\n")
    with pytest.raises(FormatError, match="larger than the 100-byte limit") as info:
        for _ in range(10):
            reader.feed(b"v" * 50)
    assert info.value.offset == 0


def test_a_lying_length_waits_for_bytes_then_says_truncated() -> None:
    reader = RespReader()
    assert reader.feed(resp(b"PING") + b"*1\r\n$536870912\r\nabc") == [
        AofCommand([b"PING"], 0, 0, None)
    ]
    with pytest.raises(FormatError, match="truncated") as info:
        reader.close()
    assert info.value.offset == 14


@pytest.mark.parametrize("cut", [1, 3, 5, 9, 12, 13])
def test_a_file_cut_inside_a_command_is_truncated(cut: int) -> None:
    data = resp(b"PING") + resp(b"SET", b"key", b"value")
    with pytest.raises(FormatError, match="truncated") as info:
        parse(data[: 14 + cut])
    assert info.value.offset == 14


def test_feeding_after_close_is_refused() -> None:
    reader = RespReader()
    reader.close()
    with pytest.raises(FormatError):
        reader.feed(resp(b"PING"))


def test_long_inputs_in_small_chunks_take_linear_work() -> None:
    # Many arguments in one command, fed a byte at a time: the reader must not re-parse
    # the command from its start on every byte (that would take minutes, not a moment).
    data = resp(b"RPUSH", b"list", *[b"%d" % i for i in range(20000)])
    reader = RespReader()
    out: list[AofCommand] = []
    view = memoryview(data)
    for i in range(len(data)):
        out += reader.feed(view[i : i + 1])
    out += reader.close()
    assert len(out[0].args) == 20002


# -- properties -------------------------------------------------------------------------

args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6).filter(
    lambda a: a[0].upper() != b"SELECT"
)
item_st = st.one_of(
    args_st.map(lambda a: resp(*a)),
    st.integers(0, 15).map(lambda db: resp(b"SELECT", b"%d" % db)),
    st.integers(0, 2**40).map(lambda t: b"#TS:%d\r\n" % t),
    st.just(b"#note\r\n"),
)
log_st = st.lists(item_st, max_size=25).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def parse_pieces(pieces: list[bytes]) -> list[AofCommand]:
    reader = RespReader(max_bulk_bytes=1 << 16, max_command_bytes=1 << 20)
    out: list[AofCommand] = []
    for piece in pieces:
        out += reader.feed(piece)
    out += reader.close()
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(log=log_st, cuts=st.lists(st.integers(0, 4000), max_size=30))
def test_a_valid_log_split_anywhere_parses_identically(log: bytes, cuts: list[int]) -> None:
    assert parse_pieces(split(log, cuts)) == parse_pieces([log])


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for at, value in edits:
        if not buf:
            buf.append(value)
            continue
        i = at % len(buf)
        if value % 3 == 0:
            del buf[i]
        elif value % 3 == 1:
            buf.insert(i, value)
        else:
            buf[i] = value
    return bytes(buf)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.tuples(log_st, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)))).map(
            lambda t: mutate(*t)
        ),
    ),
    cuts=st.lists(st.integers(0, 4000), max_size=20),
)
def test_any_bytes_split_anyhow_raise_nothing_but_format_error(
    data: bytes, cuts: list[int]
) -> None:
    try:
        whole = parse_pieces([data])
    except FormatError as exc:
        assert exc.offset is not None
        whole = None
    try:
        pieces = parse_pieces(split(data, cuts))
    except FormatError:
        pieces = None
    assert pieces == whole
