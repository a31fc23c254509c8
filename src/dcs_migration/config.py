"""The service's settings, from the command line and the environment (DESIGN §7)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dcs_migration.target.options import REPLY_TIMEOUT

DATA_DIR_ENV = "DCS_MIGRATION_DATA_DIR"
DATABASE_URL_ENV = "DCS_MIGRATION_DATABASE_URL"
WORKERS_ENV = "DCS_MIGRATION_WORKERS"
MAX_TASKS_ENV = "DCS_MIGRATION_MAX_TASKS_PER_PROJECT"
REPLY_TIMEOUT_ENV = "DCS_MIGRATION_REPLY_TIMEOUT"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None  # None: SQLite in the data dir
    workers: int = 4  # tasks that run at once; more wait, in order
    max_tasks_per_project: int = 100  # running or waiting; one project cannot crowd out others
    # Seconds a target may keep a task's connection without answering (or taking bytes)
    # before the task fails, naming it: a hung target frees its worker this soon.
    reply_timeout: float = REPLY_TIMEOUT

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "./dcs-data"
        return cls(
            data_dir=Path(chosen).resolve(),
            database_url=os.environ.get(DATABASE_URL_ENV) or None,
            workers=int(os.environ.get(WORKERS_ENV, "4")),
            max_tasks_per_project=int(os.environ.get(MAX_TASKS_ENV, "100")),
            reply_timeout=_seconds(REPLY_TIMEOUT_ENV, REPLY_TIMEOUT),
        )


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable `name`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={raw!r}: give a number of seconds above 0")
    return value
