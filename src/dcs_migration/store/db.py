"""Opening the store: the engine, its connection settings, and the schema migrations.

`open_store(url, data_dir)` connects to `url` (None: the SQLite file in the data dir),
brings the schema to the newest Alembic revision, and returns a `Store`. No alembic.ini is
needed: the migration scripts are found inside this package.

SQLite is set up for several threads writing at once: WAL journal (readers never wait for a
writer), a busy timeout (a writer waits its turn instead of failing), and write transactions
that take the write lock when they begin (BEGIN IMMEDIATE), so two writers never deadlock
upgrading a read lock. The busy timeout (`DCS_MIGRATION_SQLITE_BUSY_TIMEOUT` seconds, default
30, given to `open_store`) also bounds how long a request waits for a database that another
process keeps locked: it then fails ("database is locked"), and the API answers 503. It is
not made shorter by default: with many imports running, the service's own write
transactions can queue for seconds (each one waits for the interpreter lock between its
statements), and a worker's write must not fail for that.

PostgreSQL connections are checked before use (`pool_pre_ping`), so a server that restarted
costs the requests made while it was down, not the ones after; a connection attempt gives up
after `connect_timeout` (5 s unless the URL says otherwise) rather than hang on a server that
does not answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from dcs_migration.config import SQLITE_BUSY_SECONDS, Settings
from dcs_migration.store.crypto import load_secret_box
from dcs_migration.store.repository import WRITE_OPTION, Store

__all__ = [
    "MIGRATIONS_DIR",
    "SQLITE_FILE_NAME",
    "Store",
    "alembic_config",
    "create_store_engine",
    "open_store",
    "upgrade_schema",
]

SQLITE_FILE_NAME = "dcs-migration.sqlite3"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
POSTGRES_CONNECT_TIMEOUT = 5
# Any constant: PostgreSQL processes that open the store at once migrate one after another.
_MIGRATION_LOCK_ID = 0x44435301


def open_settings_store(settings: Settings) -> Store:
    """The store that a process with these settings keeps its data in (the database
    they name, their secret keys, their SQLite lock wait)."""
    return open_store(
        settings.database_url,
        settings.data_dir,
        secret_keys=settings.secret_keys,
        sqlite_busy_seconds=settings.sqlite_busy_timeout,
    )


def open_store(
    url: str | None,
    data_dir: Path,
    *,
    secret_keys: Sequence[str] = (),
    sqlite_busy_seconds: float = SQLITE_BUSY_SECONDS,
) -> Store:
    """The store at `url` (None: `<data_dir>/dcs-migration.sqlite3`), migrated to the newest schema.

    Secrets are encrypted with `secret_keys` (the first encrypts) or else the key of
    `<data_dir>/secret.key`. Opening the same database again is harmless: migrations
    already applied are skipped.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_store_engine(
        url if url else _sqlite_url(data_dir), sqlite_busy_seconds=sqlite_busy_seconds
    )
    try:
        upgrade_schema(engine)
        box = load_secret_box(data_dir, secret_keys)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, box)


def create_store_engine(
    url: str | URL, *, sqlite_busy_seconds: float = SQLITE_BUSY_SECONDS
) -> Engine:
    """An engine for the store's URL: `postgresql://` means psycopg 3; SQLite set up for threads."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
        raise ValueError("the store needs a SQLite file, not an in-memory database")
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": sqlite_busy_seconds},
    )
    busy_ms = int(sqlite_busy_seconds * 1000)

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_connect(dbapi_connection, record, busy_ms)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_url(data_dir: Path) -> URL:
    return URL.create("sqlite+pysqlite", database=str(data_dir.resolve() / SQLITE_FILE_NAME))


def _sqlite_connect(dbapi_connection: Any, _record: Any, busy_ms: int) -> None:
    # The driver's own transaction handling is turned off; `_sqlite_begin` opens them.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    writing = bool(connection.get_execution_options().get(WRITE_OPTION))
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for this package's migrations, without any alembic.ini.

    With `connection`, migrations run on it; else Alembic connects to `url`. A developer adds a
    revision with `alembic.command.revision(alembic_config(url=...), "message", autogenerate=True)`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations not yet applied, in one transaction."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:id)")
            connection.execute(lock, {"id": _MIGRATION_LOCK_ID})
        command.upgrade(alembic_config(connection), revision)
