"""The oracle form of a Redis dataset (corpus/README.md): what `inspect --json` prints,
and what a live server is read back into, so that both can be compared as JSON.

The contents are those a server holds after loading the backup: keys already expired
at `now_ms` are left out, as a master loading the file drops them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.functions import LibraryInfo, describe_library
from dcs_migration.formats.records import (
    AuxField,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    Record,
)
from dcs_migration.formats.types.hashes import HashValue
from dcs_migration.formats.types.streams import StreamGroup, StreamId, StreamValue, format_id
from dcs_migration.formats.values import decode_value

ORACLE_FORMAT = "redis-corpus-oracle/1"
SCG_INVALID_ENTRIES_READ = (1 << 64) - 1
_MAX_ID = ((1 << 64) - 1, (1 << 64) - 1)

Json = Any


def enc(b: bytes) -> str:
    """A byte string as one JSON string: its UTF-8 text, or b64: and its base64."""
    try:
        s = b.decode("utf-8")
        if not s.startswith("b64:"):
            return s
    except UnicodeDecodeError:
        pass
    return "b64:" + base64.b64encode(b).decode("ascii")


def score_text(score: float) -> str:
    """A score as the shortest text that reads back as the same double."""
    if score == 0:
        return "0.0"
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    return repr(score)


def value_json(type_name: str, value: Any) -> Json:
    """The oracle `value` of a decoded value."""
    if type_name == "string":
        return enc(value)
    if type_name == "list":
        return [enc(e) for e in value]
    if type_name == "set":
        return [enc(e) for e in sorted(value)]
    if type_name == "zset":
        ordered = sorted(value, key=lambda ms: (ms[1], ms[0]))
        return [[enc(m), score_text(s)] for m, s in ordered]
    if type_name == "hash":
        return {enc(f): enc(v) for f, v in value.fields.items()}
    if type_name == "stream":
        return stream_json(value)
    raise FormatError(f"no oracle form for type {type_name!r}")


def stream_json(s: StreamValue) -> Json:
    first_id = s.first_id
    max_deleted = s.max_deleted_id
    entries_added = s.entries_added
    if first_id is None:  # stream listpacks v1: the fields a 7.0+ server derives on load
        max_deleted = (0, 0)
        entries_added = s.length
        first_id = s.entries[0][0] if s.entries else _MAX_ID
        derived = _StreamFacts(s, first_id, max_deleted, entries_added)
        for g in s.groups:
            g.entries_read = derived.estimate_distance(g.last_delivered_id)
    assert max_deleted is not None and entries_added is not None
    facts = _StreamFacts(s, first_id, max_deleted, entries_added)
    groups = []
    for g in sorted(s.groups, key=lambda g: g.name):
        entries_read = g.entries_read
        if entries_read == SCG_INVALID_ENTRIES_READ:
            entries_read = None
        groups.append(
            {
                "name": enc(g.name),
                "last_delivered_id": format_id(g.last_delivered_id),
                "entries_read": entries_read,
                "lag": facts.lag(g, entries_read),
                "pel": [
                    [format_id(p.entry_id), enc(p.consumer), p.delivery_count]
                    for p in sorted(g.pending, key=lambda p: p.entry_id)
                ],
                "consumers": [
                    {"name": enc(c.name), "pel_count": len(c.pending)}
                    for c in sorted(g.consumers, key=lambda c: c.name)
                ],
            }
        )
    return {
        "entries": [
            [format_id(eid), [[enc(f), enc(v)] for f, v in fields]] for eid, fields in s.entries
        ],
        "length": s.length,
        "last_generated_id": format_id(s.last_id),
        "max_deleted_entry_id": format_id(max_deleted),
        "entries_added": entries_added,
        "recorded_first_entry_id": format_id(first_id),
        "groups": groups,
    }


class _StreamFacts:
    """The consumer-group lag as Redis 7.x computes it for XINFO."""

    def __init__(
        self, s: StreamValue, first_id: StreamId, max_deleted: StreamId, entries_added: int
    ) -> None:
        self.s = s
        self.first_id = first_id
        self.max_deleted = max_deleted
        self.entries_added = entries_added

    def has_tombstones_from(self, start: StreamId) -> bool:
        if not self.s.length or self.max_deleted == (0, 0):
            return False
        if self.first_id > self.max_deleted:
            return False
        return start <= self.max_deleted

    def estimate_distance(self, stream_id: StreamId) -> int | None:
        s = self.s
        if not self.entries_added:
            return 0
        if not s.length and stream_id <= s.last_id:
            return self.entries_added
        if stream_id == s.last_id:
            return self.entries_added
        if stream_id > s.last_id:
            return None
        if self.max_deleted == (0, 0) or self.max_deleted < self.first_id:
            if stream_id < self.first_id:
                return self.entries_added - s.length
            if stream_id == self.first_id:
                return self.entries_added - s.length + 1
        return None

    def lag(self, g: StreamGroup, entries_read: int | None) -> int | None:
        if not self.entries_added:
            return 0
        if entries_read is not None and not self.has_tombstones_from(g.last_delivered_id):
            return self.entries_added - entries_read
        estimate = self.estimate_distance(g.last_delivered_id)
        return None if estimate is None else self.entries_added - estimate


def key_json(record: KeyRecord | BigKeyRecord, now_ms: int) -> Json | None:
    """The oracle entry of a key, or None when it has expired (or all its fields have)."""
    if record.expire_at_ms is not None and record.expire_at_ms <= now_ms:
        return None
    type_name = record.type_name
    value = decode_value(record)
    out: dict[str, Json] = {"type": type_name}
    if isinstance(value, HashValue) and value.field_expire_at_ms:
        live = {f: t for f, t in value.field_expire_at_ms.items() if t > now_ms}
        fields = {
            f: v for f, v in value.fields.items() if f not in value.field_expire_at_ms or f in live
        }
        if not fields:
            return None
        value = HashValue(fields, live)
        if live:
            out["field_expire_at_ms"] = {enc(f): t for f, t in live.items()}
    out["value"] = value_json(type_name, value)
    out["expire_at_ms"] = record.expire_at_ms
    return out


def oracle_from_records(
    records: Iterable[Record], now_ms: int, *, skip_modules: bool = False
) -> Json:
    """The oracle document of a backup's records.

    Module keys and module AUX data have no oracle form: they are an error naming the
    module, unless `skip_modules` leaves them out.
    """
    databases: dict[str, dict[str, Json]] = {}
    libraries: dict[bytes, LibraryInfo] = {}
    redis_version = None
    for record in records:
        if isinstance(record, (KeyRecord, BigKeyRecord)):
            if record.type_name == "module" and skip_modules:
                continue
            entry = key_json(record, now_ms)
            if entry is None:
                continue
            db = databases.setdefault(str(record.db), {})
            name = enc(record.key)
            if name in db:
                raise FormatError(
                    f"duplicated key in db {record.db}", offset=record.offset, key=record.key
                )
            db[name] = entry
        elif isinstance(record, FunctionLibrary):
            try:
                lib = describe_library(record.code)
            except FormatError as exc:
                exc.offset = record.offset
                raise
            if lib.name in libraries:
                raise FormatError(
                    f"function library {lib.name!r} appears twice", offset=record.offset
                )
            libraries[lib.name] = lib
        elif isinstance(record, ModuleAux) and not skip_modules:
            raise FormatError(
                f"module AUX data of module {record.module_name!r}: only that module can read it",
                offset=record.offset,
            )
        elif isinstance(record, AuxField) and record.name == b"redis-ver":
            redis_version = record.value.decode("ascii", "replace")
    return {
        "format": ORACLE_FORMAT,
        "redis_version": redis_version,
        "server": f"redis {redis_version}" if redis_version else None,
        "databases": {
            db: keys for db, keys in sorted(databases.items(), key=lambda i: int(i[0])) if keys
        },
        "functions": [library_json(libraries[n]) for n in sorted(libraries)],
    }


def library_json(lib: LibraryInfo) -> Json:
    return {
        "library_name": enc(lib.name),
        "engine": lib.engine,
        "functions": [
            {
                "name": enc(f.name),
                "description": None if f.description is None else enc(f.description),
                "flags": list(f.flags),
            }
            for f in lib.functions
        ],
        "code": enc(lib.code),
    }
