"""The service's settings, from the command line and the environment (DESIGN §7)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dcs_migration.client.addresses import AllowedNetworks
from dcs_migration.writer.options import REPLY_TIMEOUT

DATA_DIR_ENV = "DCS_MIGRATION_DATA_DIR"
DATABASE_URL_ENV = "DCS_MIGRATION_DATABASE_URL"
WORKERS_ENV = "DCS_MIGRATION_WORKERS"
MAX_TASKS_ENV = "DCS_MIGRATION_MAX_TASKS_PER_PROJECT"
ALLOWED_NETWORKS_ENV = "DCS_MIGRATION_ALLOWED_NETWORKS"
OBS_ENDPOINT_ENV = "DCS_MIGRATION_OBS_ENDPOINT"
PUBLIC_URL_ENV = "DCS_MIGRATION_PUBLIC_URL"
HEADER_TIMEOUT_ENV = "DCS_MIGRATION_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "DCS_MIGRATION_BODY_TIMEOUT"
BODY_BUDGET_ENV = "DCS_MIGRATION_BODY_BUDGET_MB"

MAX_BODY_BYTES = 12 << 20  # one request's body
REPLY_TIMEOUT_ENV = "DCS_MIGRATION_REPLY_TIMEOUT"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None  # None: SQLite in the data dir
    workers: int = 4  # tasks that run at once; more wait, in order
    max_tasks_per_project: int = 100  # running or waiting; one project cannot crowd out others
    # Where the service may connect (client/addresses.py): loopback and private ranges.
    allowed_networks: AllowedNetworks = field(default_factory=AllowedNetworks.default)
    # Set: buckets are those of this S3-compatible store (signed in with the other
    # DCS_MIGRATION_OBS_* variables); unset: folders of <data dir>/buckets.
    obs_endpoint: str | None = None
    # The base URL of download links and redirects (scheme, host, maybe a path); None:
    # the request's own, as its Host header and the proxy's X-Forwarded-Proto say.
    public_url: str | None = None
    header_timeout: float = 20.0  # for a request's line and headers, from its first byte
    body_timeout: float = 30.0  # for a request's whole body, from the end of its headers
    # What the bodies being read at once may hold, all requests together: beyond it a new
    # body is refused (503) rather than read.
    body_budget: int = 32 << 20
    # Seconds a target may keep a task's connection without answering (or taking bytes)
    # before the task fails, naming it: a hung target frees its worker this soon.
    reply_timeout: float = REPLY_TIMEOUT

    @classmethod
    def from_env(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        chosen = data_dir or env.get(DATA_DIR_ENV) or "./dcs-data"
        return cls(
            data_dir=Path(chosen).resolve(),
            database_url=env.get(DATABASE_URL_ENV) or None,
            workers=int(env.get(WORKERS_ENV, "4")),
            max_tasks_per_project=int(env.get(MAX_TASKS_ENV, "100")),
            allowed_networks=allowed_networks_from_env(env),
            obs_endpoint=env.get(OBS_ENDPOINT_ENV) or None,
            public_url=public_url(env.get(PUBLIC_URL_ENV)),
            header_timeout=_seconds(env.get(HEADER_TIMEOUT_ENV), cls.header_timeout),
            body_timeout=_seconds(env.get(BODY_TIMEOUT_ENV), cls.body_timeout),
            body_budget=_budget(env.get(BODY_BUDGET_ENV), cls.body_budget),
            reply_timeout=_reply_timeout(env.get(REPLY_TIMEOUT_ENV)),
        )


def allowed_networks_from_env(env: Mapping[str, str] | None = None) -> AllowedNetworks:
    """DCS_MIGRATION_ALLOWED_NETWORKS (empty counts as unset); ValueError naming the
    variable and the entry that is not a network."""
    text = (os.environ if env is None else env).get(ALLOWED_NETWORKS_ENV, "").strip()
    if not text:
        return AllowedNetworks.default()
    return AllowedNetworks.parse(text, name=ALLOWED_NETWORKS_ENV)


def public_url(raw: str | None) -> str | None:
    """`DCS_MIGRATION_PUBLIC_URL` without its trailing ``/``; ValueError unless it is an
    http(s) URL with a host and no query, fragment or credentials."""
    if not raw or not raw.strip():
        return None
    url = raw.strip()
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username is not None
        or any(ch.isspace() for ch in url)
    ):
        raise ValueError(
            f"{PUBLIC_URL_ENV} must be an http(s) URL with a host and no query, such as "
            f"https://dcs.example.com, not {raw!r}"
        )
    return url.rstrip("/")


def _seconds(raw: str | None, default: float) -> float:
    """A timeout in seconds; the default when unset, not a number or not positive."""
    try:
        seconds = float(raw or default)
    except ValueError:
        return default
    return seconds if 0 < seconds < float("inf") else default


def _budget(raw: str | None, default: int) -> int:
    if not raw:
        return default
    try:
        megabytes = int(raw)
    except ValueError:
        raise ValueError(f"{BODY_BUDGET_ENV} must be a whole number of MiB, not {raw!r}") from None
    if megabytes < MAX_BODY_BYTES >> 20:
        raise ValueError(
            f"{BODY_BUDGET_ENV} must be at least {MAX_BODY_BYTES >> 20} (one whole request body)"
        )
    return megabytes << 20


def _reply_timeout(raw: str | None) -> float:
    """DCS_MIGRATION_REPLY_TIMEOUT: a positive number of seconds (a task's own deadline
    for a target that does not answer, so a wrong value stops the service, named)."""
    if not raw:
        return REPLY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{REPLY_TIMEOUT_ENV}={raw!r}: give a number of seconds above 0")
    return value
