"""Property tests: any bytes end in records or FormatError; any split reads the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dcs_migration.formats import FormatError, KeyRecord, RdbReader, Record
from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.values import decode_value
from dcs_migration.oracle import oracle_from_records
from tests.support import rdbgen as g


def read_split(data: bytes, cuts: list[int]) -> list[Record]:
    reader = RdbReader()
    out: list[Record] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += reader.feed(data[last:cut])
        last = cut
    out += reader.feed(data[last:])
    return out + reader.close()


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400), version=st.integers(1, 13))
def test_random_bytes_end_in_records_or_format_error(body: bytes, version: int) -> None:
    try:
        records = read_split(b"REDIS%04d" % version + body, [])
        oracle_from_records(records, 0, skip_modules=True)
    except FormatError:
        pass


names = st.binary(min_size=0, max_size=40)
elements = st.lists(st.binary(max_size=80), min_size=1, max_size=20)


@st.composite
def images(draw: st.DrawFn) -> tuple[bytes, dict[bytes, object]]:
    contents: dict[bytes, object] = {}
    body = []
    for name in draw(st.lists(names, max_size=8, unique=True)):
        kind = draw(st.sampled_from(["string", "list", "set", "zset"]))
        if kind == "string":
            value = draw(st.binary(max_size=300))
            body.append(g.key(name, g.string(value)))
            contents[name] = value
        elif kind == "list":
            items = draw(elements)
            body.append(
                g.key(name, g.length(len(items)) + b"".join(map(g.string, items)), rdb_type=1)
            )
            contents[name] = items
        elif kind == "set":
            items = list(dict.fromkeys(draw(elements)))
            body.append(
                g.key(name, g.length(len(items)) + b"".join(map(g.string, items)), rdb_type=2)
            )
            contents[name] = items
        else:
            members = list(dict.fromkeys(draw(elements)))
            scores = [draw(st.floats(allow_nan=False)) for _ in members]
            payload = g.length(len(members)) + b"".join(
                g.string(m) + g.binary_double(s) for m, s in zip(members, scores, strict=True)
            )
            body.append(g.key(name, payload, rdb_type=T.RDB_TYPE_ZSET_2))
            contents[name] = list(zip(members, scores, strict=True))
    return g.rdb(*body), contents


@settings(max_examples=150, deadline=None)
@given(image=images(), cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_any_split_reads_the_keys_that_were_written(
    image: tuple[bytes, dict[bytes, object]], cuts: list[int]
) -> None:
    data, contents = image
    records = read_split(data, [c % (len(data) + 1) for c in cuts])
    got = {r.key: decode_value(r) for r in records if isinstance(r, KeyRecord)}
    assert got == contents
