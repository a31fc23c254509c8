"""`dcs-migration inspect`: what a backup holds, for a person or as oracle JSON."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dcs_migration.formats.records import (
    AofCommand,
    AofTruncated,
    AuxField,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    RdbEnd,
    RdbHeader,
    Record,
)

BIGGEST_KEYS = 10


@dataclass
class Summary:
    """Counts gathered in one pass over the records, in bounded memory."""

    rdb_headers: list[RdbHeader] = field(default_factory=list)
    aux: dict[str, str] = field(default_factory=dict)
    keys: Counter[tuple[int, str]] = field(default_factory=Counter)
    expired_keys: int = 0
    module_keys: Counter[str] = field(default_factory=Counter)
    module_aux: list[str] = field(default_factory=list)
    functions: list[bytes] = field(default_factory=list)
    biggest: list[tuple[int, int, bytes, str]] = field(default_factory=list)
    checksum: str | None = None
    commands: Counter[tuple[int, str]] = field(default_factory=Counter)
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    truncated: list[AofTruncated] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "rdb": [{"magic": h.magic, "rdb_version": h.rdb_version} for h in self.rdb_headers],
            "aux": self.aux,
            "keys": [{"db": db, "type": t, "count": n} for (db, t), n in sorted(self.keys.items())],
            "expired_keys": self.expired_keys,
            "module_keys": dict(self.module_keys),
            "module_aux": self.module_aux,
            "function_libraries": len(self.functions),
            "biggest_keys": [
                {"db": db, "key": key.decode("utf-8", "backslashreplace"), "type": t, "bytes": n}
                for n, db, key, t in sorted(self.biggest, reverse=True)
            ],
            "checksum": self.checksum,
            "commands": [
                {"db": db, "command": c, "count": n} for (db, c), n in sorted(self.commands.items())
            ],
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "truncated": [
                {"file": t.source, "offset": t.offset, "bytes_left_out": t.dropped}
                for t in self.truncated
            ],
        }


def summarize(records: Iterable[Record], now_ms: int) -> Summary:
    s = Summary()
    for r in records:
        if isinstance(r, (KeyRecord, BigKeyRecord)):
            if r.expire_at_ms is not None and r.expire_at_ms <= now_ms:
                s.expired_keys += 1
                continue
            name = r.type_name
            if name == "module":
                s.module_keys[r.module_name or "unknown"] += 1
            s.keys[(r.db, name)] += 1
            item = (r.size, r.db, r.key, name)
            if len(s.biggest) < BIGGEST_KEYS:
                heapq.heappush(s.biggest, item)
            elif item > s.biggest[0]:
                heapq.heapreplace(s.biggest, item)
        elif isinstance(r, AofCommand):
            s.commands[(r.db, r.name.decode("utf-8", "backslashreplace"))] += 1
            if r.timestamp is not None:
                if s.first_timestamp is None:
                    s.first_timestamp = r.timestamp
                s.last_timestamp = r.timestamp
        elif isinstance(r, RdbHeader):
            s.rdb_headers.append(r)
        elif isinstance(r, AuxField):
            s.aux[r.name.decode("utf-8", "backslashreplace")] = r.value.decode(
                "utf-8", "backslashreplace"
            )
        elif isinstance(r, FunctionLibrary):
            s.functions.append(r.code.split(b"\n", 1)[0])
        elif isinstance(r, ModuleAux):
            s.module_aux.append(r.module_name)
        elif isinstance(r, AofTruncated):
            s.truncated.append(r)
        elif isinstance(r, RdbEnd):
            s.checksum = f"{r.checksum:#018x}" if r.checksum else "not computed"
    return s
