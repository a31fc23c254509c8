"""An S3-compatible server for tests (moto's, on a free loopback port), and a loopback
proxy in front of it that can drop connections in the middle of a response."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from tests.support.servers import end_process, free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


class MotoServer:
    """`python -m moto.server` on 127.0.0.1 and a free port; stopped on exit."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="dcs-moto-", suffix=".log")[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, tries: int = 3) -> MotoServer:
        for _ in range(tries):
            self.port = free_port()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait(timeout):
                return self
            self.stop()  # most likely the port was taken in between: try another
        raise RuntimeError(f"moto server did not start: {self.log()[-2000:]}")

    def _wait(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
                return True
            except OSError:
                time.sleep(0.05)
            finally:
                conn.close()
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        end_process(self.process)
        self.process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 to `target_port` that, once armed, drops the client's
    connection after `drop_after` bytes of response on it, `drops` times in all: with a
    TCP reset (the client sees ECONNRESET), or with an early end of stream."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._drop_after = 0
        self._drops_left = 0
        self._reset = True
        self._armed_at = 0  # counts the calls to arm(): bytes count from the latest
        self.dropped = 0  # connections reset so far
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, *, drop_after: int, drops: int, reset: bool = True) -> None:
        """From now on, drop each connection once `drop_after` response bytes (counted
        from now) have gone through it, until `drops` connections have been dropped."""
        with self._lock:
            self._armed_at += 1
            self._drop_after = drop_after
            self._drops_left = drops
            self._reset = reset

    def disarm(self) -> None:
        with self._lock:
            self._drops_left = 0

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions of one connection, in one thread (so that a reset closes a socket
        no other thread is blocked on): requests as they are, responses cut short when the
        proxy is armed."""
        sent = 0
        armed_at = 0
        try:
            while not self._closed:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                if client in ready:
                    data = client.recv(1 << 16)
                    if not data:
                        return
                    upstream.sendall(data)
                if upstream in ready:
                    data = upstream.recv(1 << 16)
                    if not data:
                        return
                    with self._lock:
                        if armed_at != self._armed_at:
                            armed_at, sent = self._armed_at, 0
                        room = self._drop_after - sent if self._drops_left > 0 else None
                        cut = room is not None and len(data) > room
                        reset = self._reset
                        if cut:
                            self._drops_left -= 1
                            self.dropped += 1
                    if cut:
                        assert room is not None
                        client.sendall(data[:room])
                        if reset:
                            # A reset discards what the client has not read yet: give it
                            # a moment to read the bytes sent.
                            time.sleep(0.05)
                            _reset(client)
                        return
                    client.sendall(data)
                    sent += len(data)
        except OSError:
            return
        finally:
            _close(client, upstream)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> DroppingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset rather than an orderly end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()
