"""What every repository of the store shares: the engine, the secret box, and short
read and write transactions.

Each aggregate (keys, instances, tasks, backups, grants) is a repository class of its own
module, built on `Repository`; `Store` (repository.py) is all of them over one engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dcs_migration.store.crypto import SecretBox

# An execution option marking a write transaction (SQLite opens it with BEGIN IMMEDIATE).
WRITE_OPTION = "dcs_migration_write"

MAX_PAGE = 1000


class Repository:
    """Sessions over the store's engine: `_read()` and `_write()` each one transaction."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self._box = box
        self._reads = sessionmaker(engine, expire_on_commit=False)
        self._writes = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads.begin() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writes.begin() as session:
            yield session


def require(value: str, name: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")


def page_offset(offset: int) -> int:
    return max(0, offset)


def page_limit(limit: int) -> int:
    return max(0, min(limit, MAX_PAGE))


def rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
