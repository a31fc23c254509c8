"""Real redis-server processes for tests and the benchmark, on free loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def end_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate a process the tests started, killing it if it does not go in time."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server in its own temporary folder; stopped (and the folder removed) on exit."""

    def __init__(self, *args: str, dbfilename: str = "dump.rdb", rdb: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dcs-redis-"))
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        if rdb is not None:
            shutil.copyfile(rdb, self.dir / dbfilename)
        self.port = free_port()
        self.args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--dbfilename",
            dbfilename,
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> RedisServer:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
            try:
                if self.cli("PING") == "PONG":
                    return self
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in time")

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *auth, *args],
            input=stdin,
            capture_output=True,
            check=True,
        )
        return out.stdout.decode().strip()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        end_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
