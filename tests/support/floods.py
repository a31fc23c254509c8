"""A flood of unsigned request bodies against a running service, with the service's memory
read from /proc meanwhile (tests/test_api_edges.py, and `make soak`'s attack table).

Each client sends a request head with no signature and a Content-Length of 12 MiB, then
all but the last byte of the body as fast as the server takes it, reads the answer, and
keeps its socket open until every client is done: what the service holds for such
requests shows in its RSS while they are all open.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FULL_BODY = 12 << 20  # the largest body a request may have
PIECE = 256 << 10


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (its peak) of a process, in KiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


@dataclass
class Client:
    """What one client got: the answer's status (None: no answer) and bytes."""

    status: int | None = None
    sent: int = 0
    answer: bytes = b""


@dataclass
class BodyFlood:
    """The outcome of `unsigned_body_flood`; memory in KiB."""

    clients: list[Client]
    rss_before: int
    rss_peak: int  # the most seen while the clients were open
    rss_after: int  # once they have all closed
    hwm_before: int
    hwm_after: int
    meanwhile_seconds: list[float] = field(default_factory=list)  # each call made meanwhile
    seconds: float = 0.0

    @property
    def statuses(self) -> Counter[int | None]:
        return Counter(c.status for c in self.clients)

    @property
    def grew_mb(self) -> float:
        """How far the RSS rose above where it was, at its highest (the larger of the
        sampled RSS and the kernel's own peak, VmHWM)."""
        peak = max(self.rss_peak, self.hwm_after if self.hwm_after > self.hwm_before else 0)
        return (peak - self.rss_before) / 1024


def _client(port: int, head: bytes, size: int, out: Client, hold: threading.Event) -> None:
    piece = b"x" * PIECE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            while out.sent < size:
                n = min(PIECE, size - out.sent)
                sock.sendall(piece[:n])
                out.sent += n
        except OSError:
            pass  # the server closed: it would not read the rest
        with contextlib.suppress(OSError):
            while not out.answer.endswith(b"}") and (data := sock.recv(65536)):
                out.answer += data
        if out.answer.startswith(b"HTTP/1.1 "):
            out.status = int(out.answer.split(b" ", 2)[1])
        hold.wait(60)


def unsigned_body_flood(
    port: int,
    pid: int,
    path: str,
    *,
    connections: int = 100,
    meanwhile: Callable[[], object] | None = None,
    calls: int = 3,
    linger: float = 2.5,
) -> BodyFlood:
    """Open `connections` clients at once, each POSTing `path` unsigned with all but the
    last byte of a 12 MiB body; call `meanwhile` `calls` times while they are open (each
    call timed); measure `pid`'s memory before, while they are open, and `linger`
    seconds after they closed."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {FULL_BODY}\r\n\r\n"
    ).encode()
    before = memory_kb(pid)
    clients = [Client() for _ in range(connections)]
    hold, sampled = threading.Event(), threading.Event()
    samples: list[int] = []

    def sample() -> None:
        while not sampled.is_set():
            samples.append(memory_kb(pid)["VmRSS"])
            time.sleep(0.05)

    threads = [
        threading.Thread(target=_client, args=(port, head, FULL_BODY - 1, c, hold), daemon=True)
        for c in clients
    ]
    sampler = threading.Thread(target=sample, daemon=True)
    flood = BodyFlood(clients, before["VmRSS"], before["VmRSS"], 0, before["VmHWM"], 0)
    started = time.monotonic()
    sampler.start()
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        for _ in range(calls if meanwhile is not None else 0):
            begun = time.monotonic()
            assert meanwhile is not None
            meanwhile()
            flood.meanwhile_seconds.append(time.monotonic() - begun)
        deadline = time.monotonic() + 40
        while any(c.status is None for c in clients) and time.monotonic() < deadline:
            time.sleep(0.1)
        samples.append(memory_kb(pid)["VmRSS"])
    finally:
        hold.set()
        sampled.set()
        for thread in threads:
            thread.join(15)
        sampler.join(5)
    flood.seconds = time.monotonic() - started
    flood.rss_peak = max(samples)
    time.sleep(linger)
    after = memory_kb(pid)
    flood.rss_after, flood.hwm_after = after["VmRSS"], after["VmHWM"]
    return flood
