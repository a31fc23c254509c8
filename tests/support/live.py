"""A live Redis server read back into the corpus oracle form (corpus/README.md).

`dump_oracle` reads every non-empty database of one server; `dump_cluster_oracle` reads
db 0 of every master of a cluster and merges them. Both give the same JSON document that
`inspect --json` prints for a backup, so an import can be checked against the oracle.

Collections are read in pages (LRANGE, SSCAN, ZSCAN, HSCAN, XRANGE, XPENDING) and long
strings with GETRANGE, so that no single reply holds a whole large value.

Server support: key expire times come from PEXPIRETIME (7.0+); on older servers they are
now + PTTL, which is approximate (off by the time between the two reads). Hash field
expire times come from HPEXPIRETIME (7.4+) and function libraries from FUNCTION LIST
(7.0+); servers without those commands cannot hold such data.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from dcs_migration.oracle import ORACLE_FORMAT, enc, score_text

Json = Any

DEFAULT_PAGE = 1000
STRING_CHUNK = 1 << 22  # strings longer than this are read with GETRANGE in pieces
_MAX64 = (1 << 64) - 1


class _Raw:
    """A private connection made like the client's own ones, giving raw RESP2 replies.

    It has its own SELECT state, so the client's pool is left as it was; byte strings come
    back undecoded whatever the client's `decode_responses`.
    """

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": False, "protocol": 2}
        self.conn: Any = pool.connection_class(**kwargs)

    def __call__(self, *args: Any) -> Any:
        self.conn.send_command(*args)
        return self.conn.read_response(disable_decoding=True)

    def many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one round trip, their replies in order."""
        if not commands:
            return []
        self.conn.send_packed_command(self.conn.pack_commands(commands))
        return [self.conn.read_response(disable_decoding=True) for _ in commands]

    def close(self) -> None:
        self.conn.disconnect()


def dump_oracle(
    client: redis.Redis,
    *,
    databases: Iterable[int] | None = None,
    page_size: int = DEFAULT_PAGE,
) -> dict[str, Json]:
    """The oracle document of what the server behind `client` holds now.

    `databases` limits the dump to those database numbers (default: every database that
    INFO keyspace lists). `page_size` is the element count asked for per paged command.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    r = _Raw(client)
    try:
        return _Dumper(r, page_size).dump(databases)
    finally:
        r.close()


def dump_cluster_oracle(
    nodes: Iterable[tuple[str, int]],
    *,
    password: str | None = None,
    username: str | None = None,
    page_size: int = DEFAULT_PAGE,
) -> dict[str, Json]:
    """The oracle document of a cluster: db 0 of every master among `nodes`, merged.

    Replicas in `nodes` are skipped. A key held by two masters is an error, as is a
    function library that two masters hold with different contents.
    """
    dumps: list[dict[str, Json]] = []
    for host, port in nodes:
        client = redis.Redis(host=host, port=port, password=password, username=username)
        try:
            if client.info("replication").get("role") != "master":
                continue
            dumps.append(dump_oracle(client, databases=(0,), page_size=page_size))
        finally:
            client.close()
    if not dumps:
        raise ValueError("no master among the cluster nodes")
    keys: dict[str, Json] = {}
    libraries: dict[str, Json] = {}
    for doc in dumps:
        for name, entry in doc["databases"].get("0", {}).items():
            if name in keys:
                raise ValueError(f"key {name!r} is held by more than one master")
            keys[name] = entry
        for lib in doc.get("functions", []):
            known = libraries.setdefault(lib["library_name"], lib)
            if known != lib:
                raise ValueError(f"masters differ on function library {lib['library_name']!r}")
    out = {
        "format": ORACLE_FORMAT,
        "redis_version": dumps[0]["redis_version"],
        "server": dumps[0]["server"],
        "databases": {"0": {n: keys[n] for n in sorted(keys, key=_raw_name)}} if keys else {},
    }
    if any("functions" in doc for doc in dumps):
        out["functions"] = [libraries[n] for n in sorted(libraries, key=_raw_name)]
    return out


def _raw_name(name: str) -> bytes:
    """The raw bytes behind an `enc` string, for ordering by raw bytes."""
    if name.startswith("b64:"):
        return base64.b64decode(name[4:])
    return name.encode("utf-8")


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A RESP2 flat [name, value, name, value, ...] reply as a dict with text names."""
    return {bytes(k).decode("ascii"): v for k, v in zip(flat[0::2], flat[1::2], strict=True)}


def _text(b: bytes) -> str:
    return b.decode("ascii")


def _next_id(stream_id: bytes) -> bytes | None:
    """The stream ID right after `stream_id`, or None after the greatest one."""
    ms_text, _, seq_text = stream_id.partition(b"-")
    ms, seq = int(ms_text), int(seq_text)
    if seq < _MAX64:
        return b"%d-%d" % (ms, seq + 1)
    if ms < _MAX64:
        return b"%d-0" % (ms + 1)
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


class _Dumper:
    def __init__(self, r: _Raw, page_size: int) -> None:
        self.r = r
        self.page = page_size
        server = self.info("server")
        self.redis_version = server["redis_version"]
        if "valkey_version" in server:
            self.server = f"valkey {server['valkey_version']}"
        else:
            self.server = f"redis {self.redis_version}"
        known = r("COMMAND", "INFO", "PEXPIRETIME", "HPEXPIRETIME", "FUNCTION")
        self.has_pexpiretime, self.has_hpexpiretime, self.has_functions = (
            entry is not None for entry in known
        )
        self.has_xinfo_full = _version(self.redis_version) >= (6, 0)

    def info(self, section: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.r("INFO", section).decode("utf-8", "replace").splitlines():
            if line and not line.startswith("#") and ":" in line:
                name, _, value = line.partition(":")
                out[name] = value
        return out

    def dump(self, databases: Iterable[int] | None) -> dict[str, Json]:
        if databases is None:
            keyspace = self.info("keyspace")
            numbers = sorted(int(name[2:]) for name in keyspace if name.startswith("db"))
        else:
            numbers = sorted(set(databases))
        out: dict[str, Json] = {
            "format": ORACLE_FORMAT,
            "redis_version": self.redis_version,
            "server": self.server,
            "databases": {},
        }
        for db in numbers:
            self.r("SELECT", db)
            keys = self.database()
            if keys:
                out["databases"][str(db)] = keys
        if self.has_functions:
            out["functions"] = self.functions()
        return out

    def database(self) -> dict[str, Json]:
        found: dict[bytes, Json] = {}
        cursor = b"0"
        while True:
            cursor, names = self.r("SCAN", cursor, "COUNT", self.page)
            fresh = [k for k in dict.fromkeys(names) if k not in found]
            expire_cmd = "PEXPIRETIME" if self.has_pexpiretime else "PTTL"
            replies = self.r.many([("TYPE", k) for k in fresh] + [(expire_cmd, k) for k in fresh])
            now_ms = int(time.time() * 1000)
            for key, type_reply, expire in zip(
                fresh, replies[: len(fresh)], replies[len(fresh) :], strict=True
            ):
                type_name = _text(type_reply)
                if type_name == "none" or expire == -2:  # gone since SCAN saw it
                    continue
                entry = self.key(key, type_name)
                if entry is None:
                    continue
                if expire < 0:
                    entry["expire_at_ms"] = None
                elif self.has_pexpiretime:
                    entry["expire_at_ms"] = expire
                else:
                    entry["expire_at_ms"] = now_ms + expire
                found[key] = entry
            if cursor == b"0":
                break
        return {enc(k): found[k] for k in sorted(found)}

    def key(self, key: bytes, type_name: str) -> Json | None:
        """The oracle entry of one key, without its expire time; None if it vanished."""
        entry: dict[str, Json] = {"type": type_name}
        if type_name == "string":
            value = self.string(key)
            if value is None:
                return None
            entry["value"] = enc(value)
        elif type_name == "list":
            entry["value"] = [enc(e) for e in self.list_elements(key)]
        elif type_name == "set":
            entry["value"] = [enc(m) for m in sorted(self.scan_flat("SSCAN", key))]
        elif type_name == "zset":
            flat = self.scan_flat("ZSCAN", key)
            scores = {m: float(s) for m, s in zip(flat[0::2], flat[1::2], strict=True)}
            ordered = sorted(scores.items(), key=lambda ms: (ms[1], ms[0]))
            entry["value"] = [[enc(m), score_text(s)] for m, s in ordered]
        elif type_name == "hash":
            flat = self.scan_flat("HSCAN", key)
            fields = dict(zip(flat[0::2], flat[1::2], strict=True))
            entry["value"] = {enc(f): enc(v) for f, v in fields.items()}
            if self.has_hpexpiretime:
                ttls = self.field_expire_times(key, list(fields))
                if ttls:
                    entry["field_expire_at_ms"] = {enc(f): t for f, t in ttls.items()}
        elif type_name == "stream":
            entry["value"] = self.stream(key)
        else:
            raise ValueError(f"key {key!r} is of type {type_name!r}, which has no oracle form")
        return entry

    def string(self, key: bytes) -> bytes | None:
        size = self.r("STRLEN", key)
        if size <= STRING_CHUNK:
            value: bytes | None = self.r("GET", key)
            return value
        parts = []
        for start in range(0, size, STRING_CHUNK):
            parts.append(self.r("GETRANGE", key, start, start + STRING_CHUNK - 1))
        return b"".join(parts)

    def list_elements(self, key: bytes) -> list[bytes]:
        out: list[bytes] = []
        while True:
            part = self.r("LRANGE", key, len(out), len(out) + self.page - 1)
            out += part
            if len(part) < self.page:
                return out

    def scan_flat(self, command: str, key: bytes) -> list[bytes]:
        """Every element an xSCAN command yields, duplicates removed (set) or merged by
        member/field (zset, hash: the flat [member, score-or-value, ...] form)."""
        pairs = command != "SSCAN"
        seen: dict[bytes, bytes | None] = {}
        cursor = b"0"
        while True:
            cursor, flat = self.r(command, key, cursor, "COUNT", self.page)
            if pairs:
                seen.update(zip(flat[0::2], flat[1::2], strict=True))
            else:
                seen.update(dict.fromkeys(flat))
            if cursor == b"0":
                break
        if not pairs:
            return list(seen)
        out: list[bytes] = []
        for name, value in seen.items():
            assert value is not None
            out += (name, value)
        return out

    def field_expire_times(self, key: bytes, fields: list[bytes]) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for i in range(0, len(fields), self.page):
            part = fields[i : i + self.page]
            times = self.r("HPEXPIRETIME", key, "FIELDS", len(part), *part)
            out.update((f, t) for f, t in zip(part, times, strict=True) if t >= 0)
        return out

    def stream(self, key: bytes) -> Json:
        if self.has_xinfo_full:
            info = _pairs(self.r("XINFO", "STREAM", key, "FULL", "COUNT", 1))
            groups = [_pairs(g) for g in info["groups"]]
            for g in groups:
                g["consumers"] = [_pairs(c) for c in g["consumers"]]
        else:
            info = _pairs(self.r("XINFO", "STREAM", key))
            groups = [_pairs(g) for g in self.r("XINFO", "GROUPS", key)]
            for g in groups:
                consumers = [_pairs(c) for c in self.r("XINFO", "CONSUMERS", key, g["name"])]
                for c in consumers:
                    c["pel-count"] = c["pending"]
                g["consumers"] = consumers
                g["pel-count"] = g["pending"]
        value: dict[str, Json] = {
            "entries": self.stream_entries(key),
            "length": info["length"],
            "last_generated_id": _text(info["last-generated-id"]),
        }
        if "max-deleted-entry-id" in info:
            value["max_deleted_entry_id"] = _text(info["max-deleted-entry-id"])
        if "entries-added" in info:
            value["entries_added"] = info["entries-added"]
        if "recorded-first-entry-id" in info:
            value["recorded_first_entry_id"] = _text(info["recorded-first-entry-id"])
        value["groups"] = [self.group(key, g) for g in sorted(groups, key=lambda g: g["name"])]
        return value

    def stream_entries(self, key: bytes) -> list[Json]:
        out: list[Json] = []
        start: bytes | None = b"-"
        while start is not None:
            part = self.r("XRANGE", key, start, "+", "COUNT", self.page)
            for entry_id, flat in part:
                fields = [[enc(f), enc(v)] for f, v in zip(flat[0::2], flat[1::2], strict=True)]
                out.append([_text(entry_id), fields])
            if len(part) < self.page:
                break
            start = _next_id(part[-1][0])
        return out

    def group(self, key: bytes, g: dict[str, Any]) -> Json:
        out: dict[str, Json] = {
            "name": enc(g["name"]),
            "last_delivered_id": _text(g["last-delivered-id"]),
        }
        if "entries-read" in g:
            out["entries_read"] = g["entries-read"]
        if "lag" in g:
            out["lag"] = g["lag"]
        out["pel"] = self.pending(key, g["name"]) if g["pel-count"] else []
        out["consumers"] = [
            {"name": enc(c["name"]), "pel_count": c["pel-count"]}
            for c in sorted(g["consumers"], key=lambda c: c["name"])
        ]
        return out

    def pending(self, key: bytes, group: bytes) -> list[Json]:
        out: list[Json] = []
        start: bytes | None = b"-"
        while start is not None:
            part = self.r("XPENDING", key, group, start, "+", self.page)
            out += [[_text(eid), enc(consumer), count] for eid, consumer, _idle, count in part]
            if len(part) < self.page:
                break
            start = _next_id(part[-1][0])
        return out

    def functions(self) -> list[Json]:
        libraries = [_pairs(lib) for lib in self.r("FUNCTION", "LIST", "WITHCODE")]
        out = []
        for lib in sorted(libraries, key=lambda lib: lib["library_name"]):
            functions = [_pairs(f) for f in lib["functions"]]
            out.append(
                {
                    "library_name": enc(lib["library_name"]),
                    "engine": lib["engine"].decode("utf-8"),
                    "functions": [
                        {
                            "name": enc(f["name"]),
                            "description": (
                                None if f["description"] is None else enc(f["description"])
                            ),
                            "flags": sorted(flag.decode("utf-8") for flag in f["flags"]),
                        }
                        for f in sorted(functions, key=lambda f: f["name"])
                    ],
                    "code": enc(lib["library_code"]),
                }
            )
        return out


def assert_holds_oracle(client: redis.Redis, case: dict[str, Any]) -> None:
    """The server behind `client` holds exactly a corpus case's oracle, as far as its
    version can hold it (the rules of `tests.support.corpus.comparable`)."""
    from dcs_migration.client.capabilities import parse_version
    from tests.support.corpus import comparable, load_oracle

    got, oracle = comparable(
        dump_oracle(client),
        load_oracle(case),
        got_version=parse_version(client.info("server")["redis_version"]),
        now_ms=int(time.time() * 1000),
    )
    assert got == oracle
