"""A throwaway PostgreSQL cluster for tests, from the Debian binaries (package `postgresql`).

`PostgresCluster()` as a context manager runs initdb in a new temporary folder, starts the
server on 127.0.0.1 and a free port (its unix socket in that folder too), and yields a
SQLAlchemy URL `postgresql+psycopg://...`; on exit the server is stopped and the folder
removed. PostgreSQL refuses to run as root, so under root the binaries run as the
`postgres` OS user (which the Debian package creates) through `runuser`.

`stop_server()` stops the server (a fast shutdown: every session ended) and keeps its
data; `start_server()` brings it back on the same port, for tests of a database restart.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

SUPERUSER = "dcs"
DATABASE = "dcs_migration"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else PATH."""
    found: list[tuple[int, Path]] = []
    for bin_dir in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(bin_dir).parent.name
        if version.isdigit() and all(Path(bin_dir, t).exists() for t in ("initdb", "pg_ctl")):
            found.append((int(version), Path(bin_dir)))
    if found:
        return max(found)[1]
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin or on PATH "
                "(install Debian's `postgresql` package)"
            )
        self.bin_dir = bin_dir
        self.as_user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.as_user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no `postgres` OS user to run the server as"
                ) from None
        self.dir = Path(tempfile.mkdtemp(prefix="dcs-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.url = ""

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user.pw_name, "--", *command]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:1])} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}{log}"
            )

    def start(self) -> str:
        if self.as_user is not None:
            os.chown(self.dir, self.as_user.pw_uid, self.as_user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-locale",
            "--encoding=UTF8",
            "--no-sync",
        )
        # The port is free when picked; another process could take it before the server
        # binds, so a failed start is tried again on another port.
        for attempt in range(3):
            self.port = _free_port()
            try:
                self.start_server()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        base = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}"
        create_database(f"{base}/postgres", DATABASE)
        self.url = f"{base}/{DATABASE}"
        return self.url

    def start_server(self) -> None:
        """Start the server of the cluster on `self.port` and wait until it accepts."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop_server(self) -> None:
        """Stop the server, keeping its data: a fast shutdown, which ends every session at
        once (as a restart does) and keeps what was committed (the cluster runs with
        synchronous_commit off, so an immediate stop could lose the last commits)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_database(url: str, name: str | None = None) -> str:
    """A new empty database on the server of `url`; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = name or f"t_{uuid.uuid4().hex[:16]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
