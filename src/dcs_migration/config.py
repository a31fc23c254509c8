"""The service's settings, from the command line and the environment (DESIGN §7)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dcs_migration.target.addresses import AllowedNetworks

DATA_DIR_ENV = "DCS_MIGRATION_DATA_DIR"
DATABASE_URL_ENV = "DCS_MIGRATION_DATABASE_URL"
WORKERS_ENV = "DCS_MIGRATION_WORKERS"
MAX_TASKS_ENV = "DCS_MIGRATION_MAX_TASKS_PER_PROJECT"
ALLOWED_NETWORKS_ENV = "DCS_MIGRATION_ALLOWED_NETWORKS"
OBS_ENDPOINT_ENV = "DCS_MIGRATION_OBS_ENDPOINT"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None  # None: SQLite in the data dir
    workers: int = 4  # tasks that run at once; more wait, in order
    max_tasks_per_project: int = 100  # running or waiting; one project cannot crowd out others
    # Where the service may connect (target/addresses.py): loopback and private ranges.
    allowed_networks: AllowedNetworks = field(default_factory=AllowedNetworks.default)
    # Set: buckets are those of this S3-compatible store (signed in with the other
    # DCS_MIGRATION_OBS_* variables); unset: folders of <data dir>/buckets.
    obs_endpoint: str | None = None

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "./dcs-data"
        return cls(
            data_dir=Path(chosen).resolve(),
            database_url=os.environ.get(DATABASE_URL_ENV) or None,
            workers=int(os.environ.get(WORKERS_ENV, "4")),
            max_tasks_per_project=int(os.environ.get(MAX_TASKS_ENV, "100")),
            allowed_networks=allowed_networks_from_env(),
            obs_endpoint=os.environ.get(OBS_ENDPOINT_ENV) or None,
        )


def allowed_networks_from_env() -> AllowedNetworks:
    """DCS_MIGRATION_ALLOWED_NETWORKS (empty counts as unset); ValueError naming the
    variable and the entry that is not a network."""
    text = os.environ.get(ALLOWED_NETWORKS_ENV, "").strip()
    if not text:
        return AllowedNetworks.default()
    return AllowedNetworks.parse(text, name=ALLOWED_NETWORKS_ENV)
