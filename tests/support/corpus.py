"""The shared corpus of real RDB and AOF files (beside the project's root, read-only)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import FLAVOUR_IDS

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


@cache
def manifest() -> dict[str, Any]:
    path = CORPUS / "manifest.json"
    if not path.exists():
        return {"cases": []}
    return json.loads(path.read_text())


def cases(*formats: str) -> list[dict[str, Any]]:
    return [c for c in manifest()["cases"] if not formats or c["format"] in formats]


def case_params(*formats: str, where: Callable[[dict[str, Any]], bool] | None = None) -> list[Any]:
    found = [c for c in cases(*formats) if where is None or where(c)]
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpus not found"))]
    return [pytest.param(c, id=c["id"]) for c in found]


def readable_by_target(case: dict[str, Any]) -> bool:
    """Cases with an oracle in an RDB layout Redis 7.0 reads (RDB 10 at most, no Valkey magic)."""
    return (
        bool(case["oracle"]) and (case.get("rdb_version") or 99) <= 10 and not case.get("rdb_magic")
    )


def loadable_by_target(case: dict[str, Any]) -> bool:
    """Cases the local redis-server (7.0) loads itself (the corpus records its refusals)."""
    refused = any(s.endswith(" 7.0.15") for s in case.get("load_errors") or {})
    return readable_by_target(case) and not refused


def flavour_case_params(
    *formats: str,
    where: Callable[[dict[str, Any]], bool] | None = None,
    flavours: Sequence[str] = FLAVOUR_IDS,
    known_failures: Mapping[tuple[str, str], str] | None = None,
) -> list[Any]:
    """(flavour id, case) parameters for every flavour and case, with ids like
    `redis-6.2:native/redis-7.0.15/rdb`. A pair in `known_failures` is a strict xfail
    with that reason: it turns into a failure the day it passes."""
    found = [c for c in cases(*formats) if where is None or where(c)]
    if not found:
        return [
            pytest.param(f, None, marks=pytest.mark.skip(reason="corpus not found"))
            for f in flavours
        ]
    known = known_failures or {}
    params = []
    for f in flavours:
        for c in found:
            reason = known.get((f, c["id"]))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(f, c, id=f"{f}:{c['id']}", marks=marks))
    return params


def load_oracle(case: dict[str, Any]) -> dict[str, Any]:
    return json.loads((CORPUS / case["oracle"]).read_text())


def version_tuple(version: str | None) -> tuple[int, ...]:
    if not version:
        return (0,)
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def comparable(
    got: dict[str, Any],
    oracle: dict[str, Any],
    *,
    got_version: tuple[int, ...] = (7, 4),
    now_ms: int | None = None,
) -> tuple[Any, Any]:
    """Both documents reduced to what the corpus README says to compare.

    `got` was read from a server of `got_version` (inspect reads as a 7.x server holds
    data). What one side cannot hold is dropped from the other: stream counters and
    group offsets when either side predates 7.0, functions when `got` does, hash field
    TTLs when `got` predates 7.4. A consumer group's lag is compared only when both sides
    compute it the same way (7.0 to 7.4). With `now_ms`, keys and hash fields of the
    oracle that have expired since are dropped. A server before 7.0 has no PEXPIRETIME:
    its expire times are read as now + PTTL, so they match within `EXPIRE_READ_SLACK_MS`.
    """
    oracle_version = version_tuple(oracle.get("redis_version"))
    g = copy.deepcopy({k: v for k, v in got.items() if k not in _IGNORED})
    o = copy.deepcopy({k: v for k, v in oracle.items() if k not in _IGNORED})
    oldest = min(oracle_version, got_version)
    if "functions" not in o or got_version < (7,):
        g.pop("functions", None)
        o.pop("functions", None)
    if now_ms is not None:
        _drop_expired(o, now_ms)
    lag_comparable = all((7,) <= v < (7, 9) for v in (oracle_version, got_version))
    for doc in (g, o):
        for keys in doc.get("databases", {}).values():
            for entry in keys.values():
                if got_version < (7, 4):
                    entry.pop("field_expire_at_ms", None)
                if entry.get("type") != "stream":
                    continue
                value = entry["value"]
                if oldest < (7,):
                    for name in (
                        "max_deleted_entry_id",
                        "entries_added",
                        "recorded_first_entry_id",
                    ):
                        value.pop(name, None)
                for group in value.get("groups", []):
                    if oldest < (7,):
                        group.pop("entries_read", None)
                    if oldest < (7,) or not lag_comparable:
                        group.pop("lag", None)
    if got_version < (7,):
        _align_read_expiries(g, o)
    return g, o


EXPIRE_READ_SLACK_MS = 2000


def _align_read_expiries(got: dict[str, Any], oracle: dict[str, Any]) -> None:
    """Take the oracle's expire time where `got`'s, read as now + PTTL, is that close."""
    for db, keys in got.get("databases", {}).items():
        want = oracle.get("databases", {}).get(db, {})
        for name, entry in keys.items():
            mine, theirs = entry.get("expire_at_ms"), want.get(name, {}).get("expire_at_ms")
            if None not in (mine, theirs) and abs(mine - theirs) <= EXPIRE_READ_SLACK_MS:
                entry["expire_at_ms"] = theirs


_IGNORED = ("format", "redis_version", "server")


def _drop_expired(doc: dict[str, Any], now_ms: int) -> None:
    for db, keys in list(doc.get("databases", {}).items()):
        for name, entry in list(keys.items()):
            expire = entry.get("expire_at_ms")
            if expire is not None and expire <= now_ms:
                del keys[name]
                continue
            fields = entry.get("field_expire_at_ms")
            if fields:
                for f, t in list(fields.items()):
                    if t <= now_ms:
                        del fields[f]
                        entry["value"].pop(f, None)
                if not fields:
                    del entry["field_expire_at_ms"]
                if not entry["value"]:
                    del keys[name]
        if not keys:
            del doc["databases"][db]
