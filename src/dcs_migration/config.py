"""The service's settings: every `DCS_MIGRATION_*` variable, its default and what it is for.

`Settings.from_env()` is the one reader of the environment. Each process builds its
settings once where it starts (the `serve` command, each CLI command; a task's worker
process receives the service's as JSON) and passes them, or the typed pieces a layer
needs (`S3Settings`, `AllowedNetworks`, a timeout), down: nothing below reads the
environment, so what a module depends on is in its signature, and a test sets settings
instead of variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dcs_migration.networks import AllowedNetworks

# Seconds a server may leave a connection without an answer, and without taking bytes,
# before it is taken for hung and the import fails. Long enough for the pauses of a
# healthy server (a fork for a snapshot, an fsync, a failover's client pause: seconds),
# short enough that a stopped server costs a task half a minute, not minutes. The work
# of a big command in flight adds to it (see client/pipeline.py).
REPLY_TIMEOUT = 30.0


DATA_DIR_ENV = "DCS_MIGRATION_DATA_DIR"
DATABASE_URL_ENV = "DCS_MIGRATION_DATABASE_URL"
SQLITE_BUSY_ENV = "DCS_MIGRATION_SQLITE_BUSY_TIMEOUT"
SECRET_KEY_ENV = "DCS_MIGRATION_SECRET_KEY"
WORKERS_ENV = "DCS_MIGRATION_WORKERS"
MAX_TASKS_ENV = "DCS_MIGRATION_MAX_TASKS_PER_PROJECT"
ALLOWED_NETWORKS_ENV = "DCS_MIGRATION_ALLOWED_NETWORKS"
OBS_ENDPOINT_ENV = "DCS_MIGRATION_OBS_ENDPOINT"
OBS_ACCESS_KEY_ENV = "DCS_MIGRATION_OBS_ACCESS_KEY"
OBS_SECRET_KEY_ENV = "DCS_MIGRATION_OBS_SECRET_KEY"
OBS_REGION_ENV = "DCS_MIGRATION_OBS_REGION"
BACKUP_BUCKET_ENV = "DCS_MIGRATION_BACKUP_BUCKET"
PUBLIC_URL_ENV = "DCS_MIGRATION_PUBLIC_URL"
HEADER_TIMEOUT_ENV = "DCS_MIGRATION_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "DCS_MIGRATION_BODY_TIMEOUT"
BODY_BUDGET_ENV = "DCS_MIGRATION_BODY_BUDGET_MB"
REPLY_TIMEOUT_ENV = "DCS_MIGRATION_REPLY_TIMEOUT"
HANDOFF_ADDR_ENV = "DCS_MIGRATION_HANDOFF_ADDR"
HANDOFF_BIND_ENV = "DCS_MIGRATION_HANDOFF_BIND"
EXECUTOR_ENV = "DCS_MIGRATION_EXECUTOR"
BROKER_URL_ENV = "DCS_MIGRATION_BROKER_URL"
LEASE_SECONDS_ENV = "DCS_MIGRATION_LEASE_SECONDS"
SPOOL_MAX_BYTES_ENV = "DCS_MIGRATION_SPOOL_MAX_BYTES"
SYNC_STOP_SECONDS_ENV = "DCS_MIGRATION_SYNC_STOP_SECONDS"
# Not a setting: the service tells each task process its pid this way, for the process
# to end with it (tasks/worker.py); the worker's entry reads it, as the runner sets it.
SERVICE_PID_ENV = "DCS_MIGRATION_SERVICE_PID"

DEFAULT_DATA_DIR = "./dcs-data"
DEFAULT_REGION = "us-east-1"
DEFAULT_BACKUP_BUCKET = "dcs-backups"
SQLITE_BUSY_SECONDS = 30.0
MAX_BODY_BYTES = 12 << 20  # one request's body
# How long a unit of work a distributed worker runs is held for it without a heartbeat
# (three a lease): a worker that died lets its units go after this, to another worker.
LEASE_SECONDS = 15.0
# An online migration's replication stream held on disk while its target catches up.
SPOOL_MAX_BYTES = 1 << 30
MIN_SPOOL_BYTES = 1 << 20
# How long a sync-stop (the cut-over) waits for the target to catch up with the source.
SYNC_STOP_SECONDS = 60.0


class ExecutorKind(StrEnum):
    """Where units of work run."""

    INLINE = "inline"  # processes of the service itself (the embedded default)
    CELERY = "celery"  # Celery workers on any machine, through a broker


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where an S3-compatible object store is and how to sign in to it. An access key
    without its secret (or the reverse) is refused when a client is made, not here:
    only an import that reads S3 needs them."""

    endpoint: str | None = None  # the endpoint URL; None: AWS
    access_key: str | None = None  # None (with secret_key): boto3's own credential chain
    secret_key: str | None = field(default=None, repr=False)
    region: str = DEFAULT_REGION

    def credentials_problem(self) -> str | None:
        """Why the credentials cannot be used (one given without the other), or None."""
        if (self.access_key is None) == (self.secret_key is None):
            return None
        given, missing = (
            (OBS_ACCESS_KEY_ENV, OBS_SECRET_KEY_ENV)
            if self.secret_key is None
            else (OBS_SECRET_KEY_ENV, OBS_ACCESS_KEY_ENV)
        )
        return f"{given} is set but {missing} is not: set both or neither"


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, each with its default; one per process, passed down."""

    data_dir: Path  # the embedded default's home: SQLite, buckets/, backups/, secret.key
    database_url: str | None = None  # None: SQLite in the data dir
    # How long a SQLite statement waits for a lock another connection holds (store/db.py).
    sqlite_busy_timeout: float = SQLITE_BUSY_SECONDS
    # Fernet keys that encrypt stored secrets: the first encrypts, all decrypt (rotation);
    # empty: the data dir's secret.key file (store/crypto.py).
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    workers: int = 4  # tasks that run at once; more wait, in order
    max_tasks_per_project: int = 100  # running or waiting; one project cannot crowd out others
    # Where the service may connect (client/addresses.py): loopback and private ranges.
    allowed_networks: AllowedNetworks = field(default_factory=AllowedNetworks.default)
    # The S3-compatible store: of `s3://` sources always; of buckets and backups only
    # when its endpoint is set (see `object_store`).
    s3: S3Settings = field(default_factory=S3Settings)
    # The bucket of the backups this service makes, in the object store (or the name
    # users see for the backups folder of the data dir).
    backup_bucket: str = DEFAULT_BACKUP_BUCKET
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
    # The hand-off (writer/handoff.py): the address of this host the target connects
    # back to (None: loopback, for a target on this host only), and where to listen
    # when that differs (behind NAT; None: the same address).
    handoff_addr: str | None = None
    handoff_bind: str | None = None
    executor: ExecutorKind = ExecutorKind.INLINE
    # The Celery broker (`redis://...`, `amqp://...`), for the `celery` executor.
    broker_url: str | None = field(default=None, repr=False)
    # A distributed unit's lease: a worker silent this long is taken for dead.
    lease_seconds: float = LEASE_SECONDS
    # Bytes of the replication stream an online migration may hold on disk while its
    # target catches up (beyond it, the source is read no further until it drains).
    spool_max_bytes: int = SPOOL_MAX_BYTES
    # Seconds a sync-stop waits for the target to catch up before it is refused.
    sync_stop_seconds: float = SYNC_STOP_SECONDS

    @property
    def object_store(self) -> S3Settings | None:
        """The store that buckets and backups live in: the S3-compatible one when its
        endpoint is set, else None (folders of the data dir). Decided here only."""
        return self.s3 if self.s3.endpoint is not None else None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """The settings from `environ` (default: this process's environment); `data_dir`
        (the command line's) wins over the variable. Empty variables count as unset.
        ValueError naming the variable for a value that cannot be used."""
        env = os.environ if environ is None else environ
        chosen = data_dir or env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
        return cls(
            data_dir=Path(chosen).resolve(),
            database_url=env.get(DATABASE_URL_ENV) or None,
            sqlite_busy_timeout=_busy_timeout(env.get(SQLITE_BUSY_ENV)),
            secret_keys=_secret_keys(env.get(SECRET_KEY_ENV)),
            workers=int(env.get(WORKERS_ENV, "4")),
            max_tasks_per_project=int(env.get(MAX_TASKS_ENV, "100")),
            allowed_networks=_allowed_networks(env.get(ALLOWED_NETWORKS_ENV)),
            s3=S3Settings(
                endpoint=env.get(OBS_ENDPOINT_ENV) or None,
                access_key=env.get(OBS_ACCESS_KEY_ENV) or None,
                secret_key=env.get(OBS_SECRET_KEY_ENV) or None,
                region=env.get(OBS_REGION_ENV) or DEFAULT_REGION,
            ),
            backup_bucket=env.get(BACKUP_BUCKET_ENV) or DEFAULT_BACKUP_BUCKET,
            public_url=public_url(env.get(PUBLIC_URL_ENV)),
            header_timeout=_seconds(env.get(HEADER_TIMEOUT_ENV), cls.header_timeout),
            body_timeout=_seconds(env.get(BODY_TIMEOUT_ENV), cls.body_timeout),
            body_budget=_budget(env.get(BODY_BUDGET_ENV), cls.body_budget),
            reply_timeout=_reply_timeout(env.get(REPLY_TIMEOUT_ENV)),
            handoff_addr=env.get(HANDOFF_ADDR_ENV) or None,
            handoff_bind=env.get(HANDOFF_BIND_ENV) or None,
            executor=_executor(env.get(EXECUTOR_ENV)),
            broker_url=env.get(BROKER_URL_ENV) or None,
            lease_seconds=_lease_seconds(env.get(LEASE_SECONDS_ENV)),
            spool_max_bytes=_spool_max_bytes(env.get(SPOOL_MAX_BYTES_ENV)),
            sync_stop_seconds=_sync_stop_seconds(env.get(SYNC_STOP_SECONDS_ENV)),
        )

    def distribution_problem(self) -> str | None:
        """Why these settings cannot run the `celery` executor (None: they can, or the
        executor is `inline`). Workers on other machines must see the same database,
        buckets and backups: nothing of this machine's own."""
        if self.executor is not ExecutorKind.CELERY:
            return None
        if not self.broker_url:
            return f"{EXECUTOR_ENV}=celery needs {BROKER_URL_ENV} (a redis:// or amqp:// URL)"
        scheme = urlsplit(self.broker_url).scheme
        if scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
            return f"{BROKER_URL_ENV} must be a redis:// or amqp:// URL, not a {scheme!r} one"
        if self.database_url is None or not self.database_url.startswith("postgresql"):
            return (
                f"{EXECUTOR_ENV}=celery needs a database every machine shares: set "
                f"{DATABASE_URL_ENV} to a PostgreSQL URL (SQLite is a file of this machine)"
            )
        if self.object_store is None:
            return (
                f"{EXECUTOR_ENV}=celery needs buckets and backups every machine sees: set "
                f"{OBS_ENDPOINT_ENV} to an S3/OBS endpoint (folders of the data dir are "
                "this machine's own)"
            )
        return None

    def to_json(self) -> str:
        """The settings as JSON text, secrets included: for a process of this service
        (never to a log or a client)."""
        doc: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "database_url": self.database_url,
            "sqlite_busy_timeout": self.sqlite_busy_timeout,
            "secret_keys": list(self.secret_keys),
            "workers": self.workers,
            "max_tasks_per_project": self.max_tasks_per_project,
            "allowed_networks": str(self.allowed_networks),
            "s3": {
                "endpoint": self.s3.endpoint,
                "access_key": self.s3.access_key,
                "secret_key": self.s3.secret_key,
                "region": self.s3.region,
            },
            "backup_bucket": self.backup_bucket,
            "public_url": self.public_url,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "body_budget": self.body_budget,
            "reply_timeout": self.reply_timeout,
            "handoff_addr": self.handoff_addr,
            "handoff_bind": self.handoff_bind,
            "executor": self.executor.value,
            "broker_url": self.broker_url,
            "lease_seconds": self.lease_seconds,
            "spool_max_bytes": self.spool_max_bytes,
            "sync_stop_seconds": self.sync_stop_seconds,
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings `to_json` wrote."""
        doc = json.loads(text)
        return cls(
            **{
                **doc,
                "data_dir": Path(doc["data_dir"]),
                "secret_keys": tuple(doc["secret_keys"]),
                "allowed_networks": AllowedNetworks.parse(doc["allowed_networks"]),
                "s3": S3Settings(**doc["s3"]),
                "executor": ExecutorKind(doc["executor"]),
            }
        )


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


def _allowed_networks(raw: str | None) -> AllowedNetworks:
    """DCS_MIGRATION_ALLOWED_NETWORKS (empty counts as unset); ValueError naming the
    variable and the entry that is not a network."""
    text = (raw or "").strip()
    if not text:
        return AllowedNetworks.default()
    return AllowedNetworks.parse(text, name=ALLOWED_NETWORKS_ENV)


def _secret_keys(raw: str | None) -> tuple[str, ...]:
    """DCS_MIGRATION_SECRET_KEY: keys separated by commas, the first one encrypting."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _busy_timeout(raw: str | None) -> float:
    """DCS_MIGRATION_SQLITE_BUSY_TIMEOUT: seconds, more than 0 and less than a day."""
    if not raw:
        return SQLITE_BUSY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SQLITE_BUSY_ENV} must be a number of seconds, not {raw!r}") from None
    if not 0 < value < 24 * 3600:
        raise ValueError(f"{SQLITE_BUSY_ENV} must be more than 0 seconds and less than a day")
    return value


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


def _executor(raw: str | None) -> ExecutorKind:
    try:
        return ExecutorKind((raw or ExecutorKind.INLINE.value).strip().lower())
    except ValueError:
        kinds = " or ".join(k.value for k in ExecutorKind)
        raise ValueError(f"{EXECUTOR_ENV} must be {kinds}, not {raw!r}") from None


def _lease_seconds(raw: str | None) -> float:
    """DCS_MIGRATION_LEASE_SECONDS: from 3 s (a heartbeat a second) to an hour."""
    if not raw:
        return LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 3 <= value <= 3600:
        raise ValueError(f"{LEASE_SECONDS_ENV}={raw!r}: give a number of seconds from 3 to 3600")
    return value


def _spool_max_bytes(raw: str | None) -> int:
    """DCS_MIGRATION_SPOOL_MAX_BYTES: a whole number of bytes, 1 MiB at least."""
    if not raw:
        return SPOOL_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < MIN_SPOOL_BYTES:
        raise ValueError(
            f"{SPOOL_MAX_BYTES_ENV}={raw!r}: give a number of bytes, {MIN_SPOOL_BYTES} (1 MiB) "
            "at least"
        )
    return value


def _sync_stop_seconds(raw: str | None) -> float:
    """DCS_MIGRATION_SYNC_STOP_SECONDS: from 1 s to an hour."""
    if not raw:
        return SYNC_STOP_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 3600:
        raise ValueError(
            f"{SYNC_STOP_SECONDS_ENV}={raw!r}: give a number of seconds from 1 to 3600"
        )
    return value


def environ_with(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` on top: what a child process of the
    service starts with (the interpreter's own variables pass through unread)."""
    return {**os.environ, **extra}
