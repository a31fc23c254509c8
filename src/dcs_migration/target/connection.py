"""One raw connection to a Redis server: commands out as bytes, replies in through hiredis.

No client library sits in the hot path: the writer builds command bytes itself and this
class only moves them and parses replies. `call()` is for the few request/response
exchanges (AUTH, INFO, SELECT, CLUSTER SHARDS); `send()` / `read_reply()` are for
pipelining.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import hiredis

from dcs_migration.target.addresses import Resolved, resolve
from dcs_migration.target.endpoint import Endpoint, TargetError
from dcs_migration.target.resp import encode_command

RECV_SIZE = 1 << 20
# The errors a Redis answers PING with before a login (or while it cannot serve yet).
REDIS_PING_REFUSALS = frozenset({"NOAUTH", "LOADING", "BUSY", "MASTERDOWN"})


class ConnectionLost(Exception):
    """The connection dropped (or never came up); the caller may reconnect and resend."""


class Connection:
    def __init__(self, endpoint: Endpoint, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._carry = b""  # the start of a reply cut by a chunk's end (receive_if_only)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the socket to an address the endpoint's policy allows, check that Redis
        answers, log in and select the endpoint's db. AddressRefused (a TargetError)
        when the policy refuses the address: nothing is sent there."""
        self.close()
        ep = self.endpoint
        try:
            sock = _open(resolve(ep.host, ep.port, ep.policy), self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ep.tls:
                import ssl  # here: a plain connection does not pay for loading OpenSSL

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=ep.host)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {ep.host}:{ep.port}: {exc}") from exc
        self._sock = sock
        self._reader = hiredis.Reader()
        self._carry = b""
        self._log_in()
        if ep.db:
            self.select(ep.db)

    def _log_in(self) -> None:
        """PING first: the password goes only to a peer that answered as Redis does
        (PONG, or an error such as NOAUTH), never to whatever listens at the address."""
        ep = self.endpoint
        reply = self.call(b"PING")
        refusal = str(reply).partition(" ")[0] if isinstance(reply, hiredis.ReplyError) else None
        if reply != b"PONG" and refusal not in REDIS_PING_REFUSALS:
            self.close()
            raise TargetError(f"{ep.host}:{ep.port} does not answer PING as Redis")
        if ep.password is None:
            if refusal == "NOAUTH":
                self.close()
                raise TargetError(f"{ep.host}:{ep.port} asks for a password and none was given")
            return
        auth = [b"AUTH", ep.password.encode()]
        if ep.username:
            auth.insert(1, ep.username.encode())
        reply = self.call(*auth)
        if isinstance(reply, hiredis.ReplyError):
            self.close()
            raise TargetError(f"{ep.host}:{ep.port} refused the login: {reply}")

    def raw_socket(self) -> socket.socket:
        """The socket itself, for a protocol that leaves RESP (a replication stream)."""
        if self._sock is None:
            raise ConnectionLost("not connected")
        return self._sock

    def take_buffered(self) -> bytes:
        """Hand the connection over after `call()`s: every reply asked for was read, so
        nothing is buffered; a reply nobody asked for is an error."""
        if self._gets() is not False or self._reader.has_data():
            raise ConnectionLost("the server sent a reply that nobody asked for")
        self._reader = hiredis.Reader()
        return b""

    def select(self, db: int) -> None:
        reply = self.call(b"SELECT", b"%d" % db)
        if isinstance(reply, hiredis.ReplyError):
            raise TargetError(f"{self.endpoint.host}:{self.endpoint.port}: SELECT {db}: {reply}")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._sock is None:
            raise ConnectionLost("not connected")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise ConnectionLost(
                f"connection to {self.endpoint.host}:{self.endpoint.port} lost: {exc}"
            ) from exc

    def read_reply(self) -> Any:
        """The next reply (a hiredis.ReplyError for an error reply), waiting for it."""
        reply = self._gets()
        while reply is False:
            self._fill()
            reply = self._gets()
        return reply

    def receive_if_only(self, line: bytes, most: int) -> int:
        """Receive one chunk; when it holds nothing but copies of `line` (and no reply
        was half-read before it), return how many whole ones without parsing them: a
        copy cut by the chunk's end is kept for the next chunk. Otherwise hand the
        chunk to the reply parser and return 0."""
        if self._sock is None:
            raise ConnectionLost("not connected")
        if self._reader.has_data():
            return 0
        data = self._recv()
        if self._carry:
            data = self._carry + data
            self._carry = b""
        size = len(line)
        n = len(data) // size
        whole = n * size
        # Replies arrive in chunks of any size, so a run of them seldom ends on a line's
        # end: a chunk whose tail starts the line still counts, and the tail waits.
        if 0 < n <= most and data.startswith(line * n) and line.startswith(data[whole:]):
            self._carry = data[whole:]
            return n
        self._reader.feed(data)
        return 0

    def replies_ready(self) -> list[Any]:
        """The replies already received, without waiting for more."""
        out = []
        reply = self._gets()
        while reply is not False:
            out.append(reply)
            reply = self._gets()
        return out

    def _gets(self) -> Any:
        if self._carry:  # a reply's start, set aside by receive_if_only
            self._reader.feed(self._carry)
            self._carry = b""
        try:
            return self._reader.gets()
        except hiredis.ProtocolError as exc:
            # Not Redis on the other end (or a stream past saving): drop the connection.
            self.close()
            raise ConnectionLost(
                f"{self.endpoint.host}:{self.endpoint.port} does not speak the Redis "
                f"protocol ({exc})"
            ) from None

    def _fill(self) -> None:
        self._reader.feed(self._recv())

    def _recv(self) -> bytes:
        if self._sock is None:
            raise ConnectionLost("not connected")
        try:
            data = self._sock.recv(RECV_SIZE)
        except TimeoutError as exc:
            self.close()
            raise ConnectionLost(
                f"{self.endpoint.host}:{self.endpoint.port} did not answer within {self.timeout} s"
            ) from exc
        except OSError as exc:
            self.close()
            raise ConnectionLost(
                f"connection to {self.endpoint.host}:{self.endpoint.port} lost: {exc}"
            ) from exc
        if not data:
            self.close()
            raise ConnectionLost(f"{self.endpoint.host}:{self.endpoint.port} closed the connection")
        return data

    def call(self, *args: bytes | str | int) -> Any:
        """Send one command and wait for its reply (errors come back as hiredis.ReplyError)."""
        self.send(encode_command([_arg(a) for a in args]))
        return self.read_reply()

    def call_checked(self, *args: bytes | str | int) -> Any:
        """As `call`, raising TargetError on an error reply."""
        reply = self.call(*args)
        if isinstance(reply, hiredis.ReplyError):
            name = _arg(args[0]).decode(errors="replace")
            raise TargetError(f"{self.endpoint.host}:{self.endpoint.port}: {name}: {reply}")
        return reply


def _open(addresses: list[Resolved], timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that takes one."""
    last: OSError = OSError("the name resolves to no address")
    for address in addresses:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address.sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last


def _arg(a: bytes | str | int) -> bytes:
    if isinstance(a, bytes):
        return a
    return str(a).encode()


def info(conn: Connection, section: str = "server") -> dict[str, str]:
    """INFO as a dict of its `name:value` lines."""
    text = conn.call_checked(b"INFO", section.encode())
    if not isinstance(text, bytes):
        raise TargetError(
            f"{conn.endpoint.host}:{conn.endpoint.port} answered INFO with "
            f"{type(text).__name__}, not text: it does not answer as Redis"
        )
    out = {}
    for line in bytes(text).decode(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name] = value
    return out


def keyspace(section: dict[str, str]) -> dict[int, int]:
    """Keys per db, from INFO keyspace as `info()` gives it."""
    out = {}
    for name, value in section.items():
        if name.startswith("db"):
            fields = dict(p.split("=", 1) for p in value.split(","))
            out[int(name[2:])] = int(fields["keys"])
    return out


def as_args(values: Sequence[bytes | str | int]) -> list[bytes]:
    return [_arg(v) for v in values]
