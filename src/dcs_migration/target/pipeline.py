"""Pipelining over one connection: commands sent in batches, replies checked in order.

Every command carries a tag. A tag of None marks a plain key write whose only good reply
is +OK: those are counted in `acknowledged` without a call per reply (when a received
chunk is nothing but +OK replies, they are counted in one step). Any other tag, and any
reply other than +OK, goes to `on_reply(tag, reply, command)`.

At most `window_bytes` of commands wait for replies; past that, `push` reads replies
before queueing more, which bounds memory and keeps a copy of every unacknowledged
command. When the connection drops, the pipeline reconnects (up to `retries` times, with
backoff), selects the db that the acknowledged commands left current, and resends every
unacknowledged command in order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dcs_migration.target.connection import Connection, ConnectionLost
from dcs_migration.target.endpoint import Endpoint, TargetError

OK = b"OK"
_OK_LINE = b"+OK\r\n"
SELECT_TAG = ("select",)

ReplyHandler = Callable[[Any, Any, bytes], None]


class Pipeline:
    def __init__(
        self,
        endpoint: Endpoint,
        on_reply: ReplyHandler,
        *,
        window_bytes: int = 8 << 20,
        batch_bytes: int = 256 << 10,
        retries: int = 5,
        timeout: float = 60.0,
        on_reconnect: Callable[[int, str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_reply = on_reply
        self.window_bytes = window_bytes
        self.batch_bytes = batch_bytes
        self.retries = retries
        self.on_reconnect = on_reconnect
        self.conn = Connection(endpoint, timeout=timeout)
        self.acknowledged = 0  # plain key writes answered +OK
        self.reconnects = 0
        self._inflight: deque[tuple[Any, bytes]] = deque()
        self._inflight_bytes = 0
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._db = endpoint.db  # the db of the next command pushed
        self._acked_db = endpoint.db  # the db after the last acknowledged command

    def open(self) -> None:
        self._with_retries(self.conn.connect)

    def push(self, command: bytes, tag: Any = None) -> None:
        self._inflight.append((tag, command))
        self._inflight_bytes += len(command)
        self._out.append(command)
        self._out_bytes += len(command)
        if self._out_bytes >= self.batch_bytes:
            self._send()
            if self._inflight_bytes > self.window_bytes:
                self._drain(self.window_bytes // 2)

    def select(self, db: int) -> None:
        """Make `db` current for the commands pushed after this."""
        if db != self._db:
            self._db = db
            self.push(
                b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n" % (len(str(db)), db), (*SELECT_TAG, db)
            )

    @property
    def db(self) -> int:
        return self._db

    @property
    def idle(self) -> bool:
        """Nothing pushed is waiting to be sent or answered."""
        return not self._inflight and not self._out

    def flush(self) -> None:
        """Send everything and wait for every reply."""
        self._send()
        self._drain(0)

    def close(self) -> None:
        self.conn.close()

    # -- internals ---------------------------------------------------------------------

    def _send(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out = []
        self._out_bytes = 0
        try:
            self.conn.send(data)
        except ConnectionLost as exc:
            self._recover(exc)

    def _drain(self, until_bytes: int) -> None:
        while self._inflight and self._inflight_bytes > until_bytes:
            try:
                self._take_replies()
            except ConnectionLost as exc:
                self._recover(exc)

    def _take_replies(self) -> None:
        conn = self.conn
        inflight = self._inflight
        # Fast path: a received chunk made only of +OK lines acknowledges that many commands.
        data = conn.receive_if_only(_OK_LINE, len(inflight))
        if data:
            for _ in range(data):
                self._acknowledge(inflight.popleft(), OK)
            return
        replies = [conn.read_reply(), *conn.replies_ready()]
        failure: Exception | None = None
        for reply in replies:  # every reply is accounted for, even after a refusal
            try:
                self._acknowledge(inflight.popleft(), reply)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _acknowledge(self, entry: tuple[Any, bytes], reply: Any) -> None:
        tag, command = entry
        self._inflight_bytes -= len(command)
        if tag is None and reply == OK:
            self.acknowledged += 1
        elif tag is not None and tag[:1] == SELECT_TAG:
            if reply != OK:
                raise TargetError(f"SELECT {tag[1]} refused: {reply}")
            self._acked_db = tag[1]
        else:
            self.on_reply(tag, reply, command)

    def _recover(self, exc: ConnectionLost) -> None:
        """Reconnect and resend what was not acknowledged, or give up after `retries`."""
        last: Exception = exc
        for attempt in range(1, self.retries + 1):
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
            try:
                self.conn.connect()
                if self._acked_db != self.endpoint.db:
                    self.conn.select(self._acked_db)
                self._out = [cmd for _, cmd in self._inflight]
                self._out_bytes = self._inflight_bytes
                data = b"".join(self._out)
                self._out = []
                self._out_bytes = 0
                self.conn.send(data)
            except ConnectionLost as again:
                last = again
                continue
            self.reconnects += 1
            if self.on_reconnect is not None:
                self.on_reconnect(attempt, str(exc))
            return
        raise TargetError(
            f"lost the connection to {self.endpoint.host}:{self.endpoint.port} and could not "
            f"reconnect after {self.retries} attempts: {last}"
        ) from last

    def _with_retries(self, action: Callable[[], None]) -> None:
        for attempt in range(self.retries + 1):
            try:
                action()
                return
            except ConnectionLost as exc:
                if attempt == self.retries:
                    raise TargetError(str(exc)) from exc
                time.sleep(min(0.2 * 2**attempt, 5.0))
