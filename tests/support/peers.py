"""Peers that are not Redis, or pretend to be: TCP servers whose answers a test scripts."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from tests.support.waiting import until


class Peer:
    """A TCP server on loopback (or `host`) that counts its connections and keeps every
    byte it receives. `greeting` goes out as soon as a client connects (an SSH server
    speaks first); `answer(data)` is what it sends back after each read (None: nothing,
    and the connection stays open; b"": it closes the connection)."""

    def __init__(
        self,
        answer: Callable[[bytes], bytes | None] = lambda data: None,
        *,
        greeting: bytes = b"",
        host: str = "127.0.0.1",
    ) -> None:
        self.answer = answer
        self.greeting = greeting
        self.received = b""
        self.accepted = 0
        self.ended = 0
        self.listener = socket.create_server((host, 0))
        self.host = host
        self.port = int(self.listener.getsockname()[1])
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.greeting:
                conn.sendall(self.greeting)
            while data := conn.recv(65536):
                self.received += data
                reply = self.reply(data)
                if reply == b"":
                    break
                if reply is not None:
                    conn.sendall(reply)
        conn.close()
        self.ended += 1

    def reply(self, data: bytes) -> bytes | None:
        return self.answer(data)

    def settled(self) -> bytes:
        """What it received, once every client that connected has left."""
        until(lambda: self.ended == self.accepted, "the clients to leave", 10)
        return self.received

    def close(self) -> None:
        self.listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()
