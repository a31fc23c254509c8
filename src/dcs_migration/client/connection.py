"""One raw connection to a Redis server: commands out as bytes, replies in through hiredis.

No client library sits in the hot path: the writer builds command bytes itself and this
class only moves them and parses replies. `call()` is for the few request/response
exchanges (AUTH, INFO, SELECT, CLUSTER SHARDS); `send()` / `read_reply()` are for
pipelining.

Every wait on the server has a deadline, `timeout`: a server that neither answers nor
takes more bytes for that long is hung (stopped, or blocked by a command that never
ends), and the connection raises TargetHung, which is not retried: a reconnect to a hung
server hangs again. A server that is slow at real work still shows it is alive: every
chunk it sends or takes starts the deadline afresh, and `allow()` gives a command that
takes long to answer (a big RESTORE, a FLUSHALL of a big dataset) its extra time.

A stop must not wait for a hung server either: `Interrupter.fire()` (from any thread)
shuts down every connection opened under it, which wakes a blocked send or receive at
once, and each raises Interrupted from then on.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import hiredis

from dcs_migration.client.addresses import Resolved, resolve
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.resp import encode_command
from dcs_migration.config import REPLY_TIMEOUT

RECV_SIZE = 1 << 20
# The errors a Redis answers PING with before a login (or while it cannot serve yet).
REDIS_PING_REFUSALS = frozenset({"NOAUTH", "LOADING", "BUSY", "MASTERDOWN"})


class ConnectionLost(Exception):
    """The connection dropped (or never came up); the caller may reconnect and resend."""


class TargetHung(TargetError):
    """The server kept the connection open but neither answered nor took bytes within
    the reply timeout: it is hung, and a reconnect would hang too."""


class Interrupted(Exception):
    """The connection was shut down on purpose (the import was stopped): no reply that
    was still due is waited for."""


class Interrupter:
    """Shuts down, from any thread, every connection opened while it is current (see
    `interruptible`), at once, and any opened after: a stop that a hung server cannot
    hold up. A shut-down socket wakes whatever waits on it (send, recv), and a pause
    (`Connection.pause`) ends early."""

    def __init__(self) -> None:
        self._fired = threading.Event()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    def fire(self) -> None:
        with self._lock:
            self._fired.set()
            connections = list(self._connections)
        for conn in connections:
            conn.shut_down()

    def watch(self, conn: Connection) -> None:
        with self._lock:
            self._connections.add(conn)

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when fired (True then)."""
        return self._fired.wait(seconds)


_interrupter: contextvars.ContextVar[Interrupter | None] = contextvars.ContextVar(
    "interrupter", default=None
)


@contextlib.contextmanager
def interruptible(interrupter: Interrupter | None) -> Iterator[None]:
    """Connections opened in the block (in this thread) are shut down when `interrupter`
    fires."""
    token = _interrupter.set(interrupter)
    try:
        yield
    finally:
        _interrupter.reset(token)


class Connection:
    def __init__(self, endpoint: Endpoint, *, timeout: float = REPLY_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout  # the reply deadline: see the module's docstring
        self._allowance = 0.0  # extra seconds for the reply now awaited (`allow`)
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._carry = b""  # the start of a reply cut by a chunk's end (receive_if_only)
        self._interrupter = _interrupter.get()
        if self._interrupter is not None:
            self._interrupter.watch(self)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def interrupted(self) -> bool:
        return self._interrupter is not None and self._interrupter.fired

    def connect(self) -> None:
        """Open the socket to an address the endpoint's policy allows, check that Redis
        answers, log in and select the endpoint's db. AddressRefused (a TargetError)
        when the policy refuses the address: nothing is sent there."""
        self.close()
        self._check_interrupted()
        ep = self.endpoint
        self._allowance = 0.0
        try:
            # A connect that times out is the network's doing (no route, a dropped SYN),
            # not a hung server's: the kernel accepts for a stopped one. It is retried.
            sock = _open(resolve(ep.host, ep.port, ep.policy), self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self._check_interrupted()
            raise ConnectionLost(f"cannot connect to {ep.host}:{ep.port}: {exc}") from exc
        if ep.tls:
            import ssl  # here: a plain connection does not pay for loading OpenSSL

            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=ep.host)
            except TimeoutError as exc:
                sock.close()
                self._check_interrupted()
                raise self._hung("answer the TLS handshake") from exc
            except OSError as exc:
                sock.close()
                self._check_interrupted()
                raise ConnectionLost(f"cannot connect to {ep.host}:{ep.port}: {exc}") from exc
        self._sock = sock
        if self.interrupted:  # fired while this connected: it found no socket to shut down
            self.close()
            self._check_interrupted()
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

    def shut_down(self) -> None:
        """End the connection now, from any thread: a send or receive blocked on it
        returns at once (the socket itself is closed by its own thread, later)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def pause(self, seconds: float) -> None:
        """Sleep between attempts; Interrupted, at once, when the import is stopped."""
        if self._interrupter is None:
            time.sleep(seconds)
        elif self._interrupter.wait(seconds):
            self._check_interrupted()

    def allow(self, seconds: float) -> None:
        """Give the reply awaited next `seconds` more than the reply timeout (a command
        the server takes long to run); 0 goes back to the timeout alone."""
        if seconds != self._allowance:
            self._allowance = seconds
            if self._sock is not None:
                self._sock.settimeout(self.timeout + seconds)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._sock is None:
            self._check_interrupted()
            raise ConnectionLost("not connected")
        sock = self._sock
        try:
            # Not sendall(): its timeout bounds the whole send, and a server taking a
            # big command at its own pace is alive. Each chunk it takes starts it again.
            view = memoryview(data)
            while view:
                view = view[sock.send(view) :]
        except OSError as exc:
            raise self._broken(exc, "take more bytes") from exc

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
            self._check_interrupted()
            raise ConnectionLost("not connected")
        try:
            data = self._sock.recv(RECV_SIZE)
        except OSError as exc:
            raise self._broken(exc, "answer") from exc
        if not data:
            self.close()
            self._check_interrupted()
            raise ConnectionLost(f"{self.endpoint.host}:{self.endpoint.port} closed the connection")
        return data

    def _broken(self, exc: OSError, waiting_to: str) -> Exception:
        """What a send or a receive that failed with `exc` raises, the connection closed:
        Interrupted when a stop shut it, TargetHung when the server did not `waiting_to`
        in time, else ConnectionLost."""
        self.close()
        self._check_interrupted()
        if isinstance(exc, TimeoutError):
            return self._hung(waiting_to)
        return ConnectionLost(
            f"connection to {self.endpoint.host}:{self.endpoint.port} lost: {exc}"
        )

    def _check_interrupted(self) -> None:
        if self.interrupted:
            raise Interrupted(
                f"the connection to {self.endpoint.host}:{self.endpoint.port} was closed: "
                "the import was stopped"
            )

    def _hung(self, what: str) -> TargetHung:
        waited = self.timeout + self._allowance
        return TargetHung(
            f"{self.endpoint.host}:{self.endpoint.port} did not {what} within {waited:g} s "
            "with the connection open: the server is hung (stopped, or blocked by a long "
            "command); the reply timeout is --reply-timeout (DCS_MIGRATION_REPLY_TIMEOUT "
            "for the service)"
        )

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
