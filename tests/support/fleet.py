"""The multi-machine setup of the README ("Running at scale") on one machine: PostgreSQL, a
redis-server as the Celery broker (its AOF on, as a production broker's should be),
moto's S3 server, and `api` and `worker` processes started from the project's Procfile
lines, exactly as a Procfile runner would start them, each on its own port or name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Any

import boto3
from cryptography.fernet import Fernet

from tests.support.postgres import create_database
from tests.support.s3server import MotoServer
from tests.support.servers import RedisServer, end_process, restart
from tests.support.service import Service

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
ACCESS_KEY, SECRET_KEY = "fleet-access", "fleet-secret"
BUCKET = "fleet-bucket"


def procfile_lines(path: Path = PROCFILE) -> dict[str, str]:
    """The process types of a Procfile and their command lines (comments left out)."""
    lines: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#") and name.strip().isidentifier():
            lines[name.strip()] = command.strip()
    return lines


def procfile_command(kind: str, env: dict[str, str]) -> list[str]:
    """A Procfile line as argv, its variables filled from `env` as a shell would, the
    `dcs-migration` script this interpreter's own."""
    argv = shlex.split(Template(procfile_lines()[kind]).substitute(env))
    assert argv[0] == "dcs-migration", argv
    script = Path(sys.executable).parent / "dcs-migration"
    return (
        [str(script), *argv[1:]]
        if script.exists()
        else [sys.executable, "-m", "dcs_migration", *argv[1:]]
    )


class Worker:
    """One `worker` process of the Procfile; its log kept in a file."""

    def __init__(self, name: str, env: dict[str, str], concurrency: int, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        self.env = dict(env, WORKER_CONCURRENCY=str(concurrency), WORKER_NAME=name)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                procfile_command("worker", self.env),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while "ready." not in self.log():
            assert self.process.poll() is None, f"worker {self.name} ended:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"worker {self.name} not ready:\n{self.log()[-3000:]}"
            )
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the worker's main process only, as a machine's power cut ends it
        (its pool's processes die with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def retire(self) -> None:
        """SIGTERM to its main process, as an operator retires a worker."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def leave(self) -> None:
        """Ask it to leave at once (SIGQUIT: Celery's cold shutdown)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGQUIT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.leave()
        end_process(self.process, timeout=10)
        with contextlib.suppress(ProcessLookupError):  # whatever of its pool is left
            os.killpg(self.process.pid, signal.SIGKILL)


class Fleet:
    """PostgreSQL (a database of its own), a broker, S3, and the Procfile's processes."""

    def __init__(self, postgres_url: str, lease_seconds: float = 3.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dcs-fleet-"))
        self.database_url = create_database(postgres_url)
        self.broker = RedisServer("--appendonly", "yes", "--appendfsync", "always")
        self.moto = MotoServer()
        self.lease_seconds = lease_seconds
        self.apis: list[Service] = []
        self.workers: list[Worker] = []
        self.env: dict[str, str] = {}

    def start(self) -> Fleet:
        self.broker.start()
        self.moto.start()
        self.env = dict(
            os.environ,
            HOST="127.0.0.1",
            DCS_MIGRATION_EXECUTOR="celery",
            DCS_MIGRATION_BROKER_URL=f"redis://127.0.0.1:{self.broker.port}/0",
            DCS_MIGRATION_DATABASE_URL=self.database_url,
            DCS_MIGRATION_OBS_ENDPOINT=self.moto.endpoint,
            DCS_MIGRATION_OBS_ACCESS_KEY=ACCESS_KEY,
            DCS_MIGRATION_OBS_SECRET_KEY=SECRET_KEY,
            DCS_MIGRATION_SECRET_KEY=Fernet.generate_key().decode(),
            DCS_MIGRATION_LEASE_SECONDS=str(self.lease_seconds),
            DCS_MIGRATION_DATA_DIR=str(self.dir / "data"),
        )
        self.s3().create_bucket(Bucket=BUCKET)
        return self

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.moto.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def upload(self, key: str, path: Path) -> None:
        self.s3().upload_file(str(path), BUCKET, key)

    def start_api(self) -> Service:
        n = len(self.apis)
        api = Service(
            data_dir=self.dir / f"api-{n}",
            env={k: v for k, v in self.env.items() if k != "DCS_MIGRATION_DATA_DIR"},
            log_path=self.dir / f"api-{n}.log",
            command=lambda port: procfile_command("api", dict(self.env, PORT=str(port))),
        )
        api.env.update(DCS_MIGRATION_DATA_DIR=str(self.dir / f"api-{n}"))
        self.apis.append(api.start())
        return api

    def start_worker(self, concurrency: int = 1) -> Worker:
        name = f"w{len(self.workers) + 1}@fleet"
        worker = Worker(name, self.env, concurrency, self.dir).start()
        self.workers.append(worker)
        return worker

    def stop_broker(self) -> None:
        """Stop the broker, as an operator's restart does (what it holds is in its AOF)."""
        end_process(self.broker.process)

    def start_broker(self) -> None:
        """Start the stopped broker again, on its port and folder."""
        restart(self.broker)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.broker.cli("PING") == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            assert time.monotonic() < deadline, "the broker did not start again"
            time.sleep(0.05)

    def logs(self) -> str:
        """Every process's log, for a failing test's message."""
        parts = [f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers]
        for n, api in enumerate(self.apis):
            if api.log_path is not None and api.log_path.exists():
                parts.append(f"--- api {n}\n{api.log_path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop_workers(self) -> None:
        """Every worker asked to leave at once, then waited for."""
        for worker in self.workers:
            worker.leave()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        for api in self.apis:
            api.stop()
        self.moto.stop()
        self.moto.log_path.unlink(missing_ok=True)
        self.broker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
