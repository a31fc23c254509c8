"""The shared corpus of real RDB and AOF files (beside the project's root, read-only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


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


def load_oracle(case: dict[str, Any]) -> dict[str, Any]:
    return json.loads((CORPUS / case["oracle"]).read_text())


def version_tuple(version: str | None) -> tuple[int, ...]:
    if not version:
        return (0,)
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def comparable(got: dict[str, Any], oracle: dict[str, Any]) -> tuple[Any, Any]:
    """Both documents reduced to what the corpus README says to compare.

    `got` is read as a Redis 7.x server holds data (inspect's view, or a live 7.x target);
    fields the oracle server could not hold are dropped from `got`, and a consumer group's
    lag is compared only when the oracle server is a 7.0-7.4 one.
    """
    oracle_version = version_tuple(oracle.get("redis_version"))
    g = {k: v for k, v in got.items() if k not in ("format", "redis_version", "server")}
    o = {k: v for k, v in oracle.items() if k not in ("format", "redis_version", "server")}
    if "functions" not in o:
        g.pop("functions", None)
    drop_lag = not (7,) <= oracle_version < (7, 9)  # 7.9.x is 8.0's preview, which differs
    for doc in (g, o):
        for keys in doc.get("databases", {}).values():
            for entry in keys.values():
                if entry.get("type") != "stream":
                    continue
                value = entry["value"]
                if oracle_version < (7,):
                    for name in (
                        "max_deleted_entry_id",
                        "entries_added",
                        "recorded_first_entry_id",
                    ):
                        value.pop(name, None)
                for group in value.get("groups", []):
                    if oracle_version < (7,):
                        group.pop("entries_read", None)
                        group.pop("lag", None)
                    if drop_lag:
                        group.pop("lag", None)
    return g, o
