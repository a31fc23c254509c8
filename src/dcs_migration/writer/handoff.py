"""The hand-off: the target loads the backup with its own RDB loader, as our replica.

This process opens a one-shot listener, tells the target `REPLICAOF <listener>`,
answers the replica handshake (PING, AUTH, REPLCONF, PSYNC -> FULLRESYNC) and streams an
RDB image in the EOF-marked form (`$EOF:<40 random bytes>`), which lets the stream start
before its length is known. Once the target reports the link up and holds the expected
number of keys, `REPLICAOF NO ONE` makes it a master again. Every failure path ends with
the target a master: a `finally` here, and a separate guard process for when this
process itself dies.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import hiredis

from dcs_migration.client.addresses import AddressRefused, check_host
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.connection import Connection, ConnectionLost, info, keyspace
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.config import HANDOFF_ADDR_ENV

CONNECT_BACK_SECONDS = 5.0
HANDSHAKE_SECONDS = 10.0
LOAD_CHECK_SECONDS = 600.0
# A server that meets an image it takes for corrupt while loading it exits, so the hand-off
# only carries images whose encodings current servers load without a conversion: RDB 7
# (Redis 3.2) and later. Older files (zipmaps, linked lists) go through RESTORE.
MIN_RDB_VERSION = 7


class HandoffUnavailable(TargetError):
    """The hand-off cannot run against this target; an import can fall back to RESTORE."""


class TargetLoadFailed(HandoffUnavailable):
    """The target received the stream but its loader refused it (it is left empty, a
    master again): an import that may replace the dataset can start over with RESTORE."""


@dataclass(frozen=True)
class Preconditions:
    caps: Capabilities
    listen_host: str


def listen_host_for(target: Endpoint, configured: str | None = None) -> str | None:
    """Where the target connects back to: `configured` (the hand-off address of the
    settings), else loopback for a loopback target, else None (nowhere known)."""
    if configured:
        return configured
    try:
        if ipaddress.ip_address(socket.gethostbyname(target.host)).is_loopback:
            return "127.0.0.1"
    except (OSError, ValueError):
        pass
    return None


def check(
    conn: Connection, target: Endpoint, rdb_version: int, handoff_addr: str | None = None
) -> Preconditions:
    """Why the hand-off cannot run (HandoffUnavailable), or what it needs to run;
    `handoff_addr` is the address of this host the target is to connect back to."""
    server = info(conn, "server")
    caps = Capabilities.from_info(server)
    if caps.cluster:
        raise HandoffUnavailable("the target is a Redis Cluster node")
    replication = info(conn, "replication")
    if replication.get("role") != "master":
        raise TargetError(
            f"the target replicates from {replication.get('master_host')}:"
            f"{replication.get('master_port')}: it cannot be imported into"
        )
    if caps.rdb_version < rdb_version:
        raise HandoffUnavailable(
            f"the target reads RDB up to version {caps.rdb_version}, the backup is {rdb_version}"
        )
    reply = conn.call(b"COMMAND", b"INFO", b"REPLICAOF")
    if not isinstance(reply, list) or not reply or reply[0] is None:
        raise HandoffUnavailable("REPLICAOF is not available on the target (renamed or disabled)")
    host = listen_host_for(target, handoff_addr)
    if host is None:
        raise HandoffUnavailable(
            f"the target is not on this host: set {HANDOFF_ADDR_ENV} to an address of this "
            "host that the target can connect to"
        )
    try:
        check_host(host, target.policy.networks)  # the target connects there
    except (AddressRefused, OSError):
        raise HandoffUnavailable(
            f"the hand-off address {host} does not lie in the allowed networks "
            "(DCS_MIGRATION_ALLOWED_NETWORKS)"
        ) from None
    return Preconditions(caps, host)


class Handoff:
    """One hand-off to one target: `start()`, `send()` chunks of RDB, `finish()`."""

    def __init__(
        self, target: Endpoint, conn: Connection, listen_host: str, bind_host: str | None = None
    ) -> None:
        self.target = target
        self.conn = conn
        self.listen_host = listen_host  # the address the target is told to connect to
        self.bind_host = bind_host or listen_host  # where to listen (behind NAT: another)
        self._listener: socket.socket | None = None
        self._replica: socket.socket | None = None
        self._guard: subprocess.Popen[bytes] | None = None
        self._mark = secrets.token_hex(20).encode()  # 40 bytes
        self._replicating = False
        self._diskless_load: bytes | None = None  # the target's setting, to put back

    # -- the steps ---------------------------------------------------------------------

    def start(self) -> None:
        """Listen, guard, REPLICAOF, accept the target and answer its handshake."""
        bind_host = self.bind_host
        listener = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET)
        listener.bind((bind_host, 0))
        listener.listen(1)
        listener.settimeout(CONNECT_BACK_SECONDS)
        self._listener = listener
        port = listener.getsockname()[1]
        self._load_from_socket()
        self._start_guard()
        reply = self.conn.call(b"REPLICAOF", self.listen_host.encode(), b"%d" % port)
        if isinstance(reply, hiredis.ReplyError):
            self._stop_guard()
            raise HandoffUnavailable(f"the target refused REPLICAOF: {reply}")
        self._replicating = True
        self._replica = self._accept(listener)
        listener.close()
        self._listener = None
        self._handshake(self._replica)

    def send(self, data: bytes) -> None:
        assert self._replica is not None
        if data:
            try:
                self._replica.sendall(data)
            except OSError as exc:
                raise TargetError(f"the target dropped the hand-off stream: {exc}") from exc

    def finish(self, expected: dict[int, int]) -> None:
        """End the stream, wait until the target loaded it and holds `expected` keys per
        db, then make it a master again."""
        self.send(self._mark)
        deadline = time.monotonic() + LOAD_CHECK_SECONDS
        pause = 0.002  # the target is often nearly done: look again soon, then less often
        while True:
            replication = info(self.conn, "replication")
            if replication.get("master_link_status") == "up":
                break
            if replication.get("master_sync_in_progress") == "0":
                raise TargetLoadFailed(
                    "the target could not load the hand-off stream (its log says why)"
                )
            if time.monotonic() > deadline:
                raise TargetError("the target did not finish loading the hand-off stream")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        held = keyspace(info(self.conn, "keyspace"))
        wanted = {db: n for db, n in expected.items() if n}
        self.release()
        if held != wanted:
            raise TargetError(
                f"the target holds {held or 'no keys'} after the hand-off, "
                f"{wanted or 'no keys'} were sent"
            )

    def release(self) -> None:
        """Make the target a master again and close everything (safe to call twice)."""
        try:
            if self._replicating:
                self._make_master()
        finally:
            for sock in (self._listener, self._replica):
                if sock is not None:
                    sock.close()
            self._listener = self._replica = None
            self._stop_guard()

    # -- internals ---------------------------------------------------------------------

    def _load_from_socket(self) -> None:
        """Empty the target and let it load while the stream arrives, instead of after it
        is saved to disk (repl-diskless-load on-empty-db); its setting is put back after.
        A target that refuses CONFIG loads from disk, which only takes longer."""
        reply = self.conn.call(b"CONFIG", b"GET", b"repl-diskless-load")
        if not isinstance(reply, list) or len(reply) != 2:
            return
        self.conn.call_checked(b"FLUSHALL")
        answer = self.conn.call(b"CONFIG", b"SET", b"repl-diskless-load", b"on-empty-db")
        if not isinstance(answer, hiredis.ReplyError):
            self._diskless_load = bytes(reply[1])

    def _restore_settings(self) -> None:
        if self._diskless_load is not None:
            self.conn.call(b"CONFIG", b"SET", b"repl-diskless-load", self._diskless_load)
            self._diskless_load = None

    def _make_master(self) -> None:
        last: Exception | None = None
        for _ in range(5):
            try:
                if not self.conn.connected:
                    self.conn.connect()
                self.conn.call_checked(b"REPLICAOF", b"NO", b"ONE")
                self._replicating = False
                self._restore_settings()
                return
            except (ConnectionLost, TargetError) as exc:
                last = exc
                time.sleep(0.2)
        raise TargetError(f"could not make the target a master again: {last}")

    def _accept(self, listener: socket.socket) -> socket.socket:
        allowed = {str(ai[4][0]) for ai in socket.getaddrinfo(self.target.host, None)}
        deadline = time.monotonic() + CONNECT_BACK_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HandoffUnavailable(
                    f"the target did not connect back to {self.listen_host} within "
                    f"{CONNECT_BACK_SECONDS:.0f} s (is the address reachable from it?)"
                )
            listener.settimeout(remaining)
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            if peer[0] in allowed or _same_loopback(peer[0], allowed):
                sock.settimeout(HANDSHAKE_SECONDS)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            sock.close()  # only the target may take the stream

    def _handshake(self, sock: socket.socket) -> None:
        reader = hiredis.Reader()
        eof_capable = False
        while True:
            command = _read_command(sock, reader)
            name = command[0].upper() if command else b""
            if name == b"PING":
                sock.sendall(b"+PONG\r\n")
            elif name in (b"AUTH", b"REPLCONF"):
                if name == b"REPLCONF" and b"eof" in [a.lower() for a in command[1:]]:
                    eof_capable = True
                sock.sendall(b"+OK\r\n")
            elif name == b"PSYNC":
                if not eof_capable:
                    raise HandoffUnavailable("the target cannot take an EOF-marked stream")
                replid = secrets.token_hex(20).encode()
                sock.sendall(b"+FULLRESYNC %s 0\r\n$EOF:%s\r\n" % (replid, self._mark))
                sock.settimeout(LOAD_CHECK_SECONDS)
                return
            elif name == b"SYNC":
                raise HandoffUnavailable("the target asked for SYNC, which needs the length first")
            else:
                sock.sendall(b"-ERR unexpected command in the replica handshake\r\n")

    def _start_guard(self) -> None:
        ep = self.target
        config = {
            "host": ep.host,
            "port": ep.port,
            "username": ep.username,
            "password": ep.password,
            "tls": ep.tls,
            "networks": str(ep.policy.networks),
            "held_elsewhere": sorted(ep.policy.held_elsewhere),
        }
        self._guard = subprocess.Popen(
            [sys.executable, "-m", "dcs_migration.writer.watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._guard.stdin is not None
        # Not waited for: the guard holds its end of the pipe from its first instruction,
        # and the address waits in the pipe, so it acts even if this process dies while
        # the guard is still starting.
        self._guard.stdin.write(json.dumps(config).encode() + b"\n")
        self._guard.stdin.flush()

    def _stop_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is None or guard.stdin is None:
            return
        try:
            guard.stdin.write(b"done\n")
            guard.stdin.close()
        except OSError:
            pass
        # Reaped in the background: a guard may still be starting when a quick hand-off
        # ends, and it exits by itself once it reads "done".
        threading.Thread(target=_reap, args=(guard,), daemon=True).start()


def _reap(guard: subprocess.Popen[bytes]) -> None:
    try:
        guard.wait(30)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def _read_command(sock: socket.socket, reader: Any) -> list[bytes]:
    while True:
        reply = reader.gets()
        if reply is not False:
            return [bytes(a) for a in reply] if isinstance(reply, list) else [bytes(reply)]
        try:
            data = sock.recv(65536)
        except TimeoutError as exc:
            raise HandoffUnavailable("the target stopped in the middle of the handshake") from exc
        if not data:
            raise HandoffUnavailable("the target closed the connection during the handshake")
        reader.feed(data)


def _same_loopback(peer: str, allowed: set[str]) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback and any(
            ipaddress.ip_address(a).is_loopback for a in allowed
        )
    except ValueError:
        return False
