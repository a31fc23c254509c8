"""Pipelining over one connection: commands sent in batches, replies checked in order.

What waits for replies is a queue of entries. An entry is one tagged command, or a batch
of plain key writes (`push_batch`) whose only good reply is +OK: those are counted in
`acknowledged` without a Python call per reply, and when a received chunk is nothing but
+OK lines they are counted in one step. Any other reply, and every reply to a tagged
command, goes to `on_reply(ack, reply, command)` (see client/acks.py); an error reply
inside a batch comes with the ack `BatchedWrite(key)` of the command that caused it.

At most `window_bytes` of commands wait for replies; past that, pushing reads replies
first, which bounds memory and keeps a copy of every unacknowledged command. When the
connection drops, the pipeline reconnects (up to `retries` times, with backoff: tenacity
drives the attempts, the connection's interruptible pause waits between them), selects
the db that the acknowledged commands left current, and resends exactly the commands not
yet acknowledged, in order.

A reconnect first waits while the server is loading its dataset (it answers -LOADING to
writes then), and checks that it is the same server process (INFO's run_id): a server
that restarted lost every write it acknowledged before, unless it persists each write
before answering (appendonly yes, appendfsync always). Resending the unacknowledged
commands cannot bring those back, so the import fails then, saying so, rather than end
SUCCESS with keys missing (unless no reply had been taken yet: every command sent is
then still held, and all are sent again).

A command too big to hold (the RESTORE of a big value) is sent as its pieces come and
never kept: its entry keeps the means to make the pieces again, and a reconnect sends it
again from its start.

A server that neither answers nor takes bytes for the reply timeout is hung: the import
fails then, naming it, without reconnecting (a reconnect to a hung server hangs as well).
A server busy with real work is not taken for hung: each chunk it sends or takes starts
the deadline again, a server answering -LOADING is waited for (up to its own bound), and
the deadline grows with the work the commands awaiting replies ask of it, one second
for every SLOW_BYTES_PER_SECOND of them (a 256 MB RESTORE has 8 s more; a FLUSHALL
counts the memory it frees).

Only commands that leave the same contents when they run twice are sent again: plain
key writes (RESTORE ... REPLACE, untagged or pushed as resendable) and SELECT. A command
that was sent but not answered may have run; any other tagged command (a part of a
rewritten key, an AOF command, a RESTORE without REPLACE) could then run twice (a list
pushed twice, a key renamed from a half-built temporary), so the import fails instead,
naming it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from dcs_migration.client.acks import Ack, BatchedWrite, Select
from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.resp import command_key, encode_command, skip_commands
from dcs_migration.config import REPLY_TIMEOUT

OK = b"OK"
_OK_LINE = b"+OK\r\n"

# A reply, with the ack its command was pushed with (None: a plain key write whose
# reply was not +OK) and the command's bytes (to send it again elsewhere).
ReplyHandler = Callable[[Ack | None, Any, bytes], None]
_ENTRY_BYTES = 200  # an entry's own memory (object, tag, the bytes object's header)
LOADING_POLL_SECONDS = 0.05
LOADING_SECONDS = 60.0  # the least a loading server is waited for (more if the timeout is)
# The slowest a server is taken to work through what it was sent: building the value of
# a RESTORE (a sorted set's skiplist, a hash's table) or freeing a FLUSHALL's dataset.
SLOW_BYTES_PER_SECOND = 32 << 20
BACKOFF_SECONDS = 0.2  # before the first new attempt at connecting, doubling up to
BACKOFF_MAX_SECONDS = 5.0


def _backoff(attempt: int) -> float:
    """The pause before attempt `attempt` (1 for the first after a failure)."""
    return min(BACKOFF_SECONDS * 2.0 ** (attempt - 1), BACKOFF_MAX_SECONDS)


class TargetRestarted(TargetError):
    """The target restarted during the import and may have lost what it acknowledged."""


class _Entry:
    """Commands awaiting replies: one acknowledged command, or a batch of plain key writes.

    A batch keeps only its bytes and its count: where each command ends, and its key,
    are read back from the bytes on the rare paths that need them (a refusal, a resend,
    a redirect). Replies come in order, so the last offset found is kept (`_at`, of the
    command at `_at_index`) and the next one is sought from there: a batch whose every
    command is redirected is walked once, not once per command.
    """

    __slots__ = (
        "_at",
        "_at_index",
        "acked",
        "batch",
        "count",
        "data",
        "pieces",
        "resendable",
        "tag",
        "work",
    )

    def __init__(self, tag: Ack | None, data: bytes, count: int | None, work: int = 0) -> None:
        self.tag = tag
        self.data = data
        self.batch = count is not None
        self.count = count if count is not None else 1
        self.acked = 0
        self.pieces: Callable[[], Iterator[bytes]] | None = None  # a command sent in pieces
        self.resendable = False  # a tagged command that may run twice
        # What the server works through to answer it, in bytes: its own, and any more the
        # caller knows of (what a FLUSHALL frees); it lengthens the reply deadline.
        self.work = len(data) + work
        self._at_index = self._at = 0

    @property
    def cost(self) -> int:
        """What the entry holds in memory while it waits, counted against the window:
        its bytes, and the entry itself (which outweighs a short command's bytes)."""
        return len(self.data) + _ENTRY_BYTES

    def _offset(self, index: int) -> int:
        """Where the command at `index` starts."""
        if index < self._at_index:
            self._at_index = self._at = 0
        self._at = skip_commands(self.data, index - self._at_index, self._at)
        self._at_index = index
        return self._at

    def unacknowledged(self) -> bytes:
        if not self.acked:
            return self.data
        return self.data[self._offset(self.acked) :]

    def drop_acknowledged(self) -> None:
        """Keep only what is not acknowledged (before it is sent again)."""
        if self.acked:
            self.data = self.unacknowledged()
            self.count -= self.acked
            self.acked = self._at_index = self._at = 0

    def command_at(self, index: int) -> bytes:
        """The batch's command at `index`, encoded (to send it elsewhere after a MOVED)."""
        start = self._offset(index)
        return self.data[start : skip_commands(self.data, 1, start)]

    def key_of(self, index: int) -> bytes:
        """The key of the batch's command at `index`."""
        return command_key(self.command_at(index))


class Pipeline:
    def __init__(
        self,
        endpoint: Endpoint,
        on_reply: ReplyHandler,
        *,
        window_bytes: int = 8 << 20,
        batch_bytes: int = 256 << 10,
        retries: int = 5,
        timeout: float = REPLY_TIMEOUT,
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
        self._server_id: str | None = None  # INFO run_id of the server written to
        self._answered = False  # a reply was taken: its command is no longer held
        self._inflight: deque[_Entry] = deque()
        self._inflight_bytes = 0
        self._inflight_work = 0  # the work of the commands awaiting replies (_Entry.work)
        self._unsent: list[bytes] = []
        self._unsent_bytes = 0
        self._db = endpoint.db  # the db of the next command pushed
        self._acked_db = endpoint.db  # the db after the last acknowledged command

    def open(self) -> None:
        """Connect, trying again `retries` times when the connection cannot be had."""
        try:
            for attempt in self._attempts(self.retries + 1, after=0):
                with attempt:
                    self.conn.connect()
                    self._wait_loaded()
                    self._server_id = self._run_id()
        except ConnectionLost as exc:
            raise TargetError(str(exc)) from exc

    def _attempts(self, most: int, *, after: int) -> Retrying:
        """At most `most` attempts at what only a dropped connection makes fail again,
        with backoff between them (`after`: attempts whose pause was taken before). The
        pauses are the connection's: a stopped import ends one at once."""

        def pause(state: RetryCallState) -> float:
            return _backoff(state.attempt_number + after)

        return Retrying(
            stop=stop_after_attempt(most),
            wait=pause,
            retry=retry_if_exception_type(ConnectionLost),
            sleep=self.conn.pause,
            reraise=True,
        )

    def push(
        self, command: bytes, tag: Ack | None = None, *, hold: bool = False, work: int = 0
    ) -> None:
        """Queue one command; its reply goes to `on_reply` unless it is a plain +OK write
        (tag None). With `hold`, nothing is sent or read now (for a command pushed while
        replies are being handled): it goes with the next batch or flush. `work`: bytes
        the server works through beyond the command's own (a FLUSHALL's dataset)."""
        self._queue(_Entry(tag, command, None, work), hold)

    def push_batch(self, data: bytes, count: int) -> None:
        """Queue `count` plain key writes (each answered +OK), encoded back to back."""
        self._queue(_Entry(None, data, count))

    def push_pieces(
        self, pieces: Callable[[], Iterator[bytes]], tag: Ack, *, resendable: bool
    ) -> None:
        """Send one command too big to hold, as `pieces()` yields it, after everything
        queued before it. Nothing of it is kept; `resendable` says whether it may run
        twice, in which case a reconnect sends it again by calling `pieces()` anew."""
        entry = _Entry(tag, b"", None)
        entry.pieces = pieces
        entry.resendable = resendable
        self._send()
        self._inflight.append(entry)
        self._inflight_bytes += entry.cost
        try:
            for piece in pieces():
                self.conn.send(piece)
                entry.work += len(piece)
                self._inflight_work += len(piece)
                self._allow()
        except ConnectionLost as exc:
            self._recover(exc)

    def _queue(self, entry: _Entry, hold: bool = False) -> None:
        self._inflight.append(entry)
        self._inflight_bytes += entry.cost
        self._inflight_work += entry.work
        self._unsent.append(entry.data)
        self._unsent_bytes += len(entry.data)
        if not hold and self._unsent_bytes >= self.batch_bytes:
            self._send()
            if self._inflight_bytes > self.window_bytes:
                self._drain(self.window_bytes // 2)

    def select(self, db: int) -> None:
        """Make `db` current for the commands pushed after this."""
        if db != self._db:
            self._db = db
            self.push(encode_command([b"SELECT", b"%d" % db]), Select(db))

    @property
    def db(self) -> int:
        return self._db

    @property
    def idle(self) -> bool:
        """Nothing pushed is waiting to be sent or answered."""
        return not self._inflight and not self._unsent

    def flush(self) -> None:
        """Send everything and wait for every reply."""
        self._send()
        self._drain(0)

    def close(self) -> None:
        self.conn.close()

    # -- internals ---------------------------------------------------------------------

    def _allow(self) -> None:
        """The reply deadline for what awaits replies now (see the module's docstring)."""
        self.conn.allow(self._inflight_work // SLOW_BYTES_PER_SECOND)

    def _send(self) -> None:
        if not self._unsent:
            return
        data = b"".join(self._unsent)
        self._unsent = []
        self._unsent_bytes = 0
        self._allow()
        try:
            self.conn.send(data)
        except ConnectionLost as exc:
            self._recover(exc)

    def _drain(self, until_bytes: int) -> None:
        while self._inflight and self._inflight_bytes > until_bytes:
            if self._unsent:  # pushed while replies were handled: its reply is awaited too
                self._send()
            self._allow()
            try:
                self._take_replies()
            except ConnectionLost as exc:
                self._recover(exc)

    def _take_replies(self) -> None:
        conn = self.conn
        # Fast path: a received chunk made only of +OK lines acknowledges that many commands.
        oks = conn.receive_if_only(_OK_LINE, 1 << 30)
        if oks:
            self._answered = True
            self._acknowledge_oks(oks)
            return
        replies = [conn.read_reply(), *conn.replies_ready()]
        self._answered = True
        failure: Exception | None = None
        for reply in replies:  # every reply is accounted for, even after a refusal
            try:
                self._acknowledge(reply)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _acknowledge_oks(self, n: int) -> None:
        inflight = self._inflight
        while n:
            entry = inflight[0]
            if entry.batch:  # a batch of plain writes
                take = min(n, entry.count - entry.acked)
                entry.acked += take
                self.acknowledged += take
                n -= take
                if entry.acked == entry.count:
                    inflight.popleft()
                    self._inflight_bytes -= entry.cost
                    self._inflight_work -= entry.work
            else:
                self._acknowledge(OK)
                n -= 1

    def _acknowledge(self, reply: Any) -> None:
        entry = self._inflight[0]
        tag = entry.tag
        if entry.batch:
            index = entry.acked
            entry.acked += 1
            if entry.acked == entry.count:
                self._inflight.popleft()
                self._inflight_bytes -= entry.cost
                self._inflight_work -= entry.work
            if reply == OK:
                self.acknowledged += 1
            else:
                command = entry.command_at(index)
                self.on_reply(BatchedWrite(command_key(command)), reply, command)
            return
        self._inflight.popleft()
        self._inflight_bytes -= entry.cost
        self._inflight_work -= entry.work
        if tag is None and reply == OK:
            self.acknowledged += 1
        elif type(tag) is Select:
            if reply != OK:
                raise TargetError(f"SELECT {tag.db} refused: {reply}")
            self._acked_db = tag.db
        else:
            self.on_reply(tag, reply, entry.data)

    def _recover(self, exc: ConnectionLost) -> None:
        """Reconnect and resend what was not acknowledged, or give up after `retries`."""
        self._unsent = []
        self._unsent_bytes = 0
        self._refuse_unsafe_resend(exc)
        attempts = 0
        try:
            if self.retries:
                self.conn.pause(_backoff(1))  # the server may be restarting: not at once
                for attempt in self._attempts(self.retries, after=1):
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        self._reconnect()
            else:
                raise exc
        except ConnectionLost as last:
            raise TargetError(
                f"lost the connection to {self.endpoint.host}:{self.endpoint.port} and could "
                f"not reconnect after {self.retries} attempts: {last}"
            ) from last
        for entry in self._inflight:  # what is resent is what is left of each
            entry.drop_acknowledged()
        self._inflight_bytes = sum(e.cost for e in self._inflight)
        self._inflight_work = sum(e.work for e in self._inflight)
        self.reconnects += 1
        if self.on_reconnect is not None:
            self.on_reconnect(attempts, str(exc))

    def _reconnect(self) -> None:
        """Connect again to the same server, in the db the acknowledged commands left
        current, and send again what awaits replies."""
        self.conn.connect()
        self._wait_loaded()
        self._check_same_server()
        if self._acked_db != self.endpoint.db:
            self.conn.select(self._acked_db)
        self._allow()
        self._resend()

    def _resend(self) -> None:
        """Send again what awaits a reply, in order (commands sent in pieces anew)."""
        held: list[bytes] = []
        for entry in self._inflight:
            if entry.pieces is None:
                held.append(entry.unacknowledged())
                continue
            if held:
                self.conn.send(b"".join(held))
                held = []
            for piece in entry.pieces():
                self.conn.send(piece)
        if held:
            self.conn.send(b"".join(held))

    def _refuse_unsafe_resend(self, exc: ConnectionLost) -> None:
        """Raise TargetError when a command awaiting its reply may not run twice."""
        unsafe = [
            e
            for e in self._inflight
            if not e.batch and e.tag is not None and type(e.tag) is not Select and not e.resendable
        ]
        if not unsafe:
            return
        first = unsafe[0]
        key = first.tag.named_key(first.data) if first.tag is not None else None
        where = f" (the first for key {key!r})" if key is not None else ""
        raise TargetError(
            f"{exc}; {len(unsafe)} command(s) awaiting replies{where} may or may not have "
            "run, and running them again could change the result (they are not plain key "
            "writes), so the import stops here: import again"
        ) from exc

    def _wait_loaded(self) -> None:
        """Wait while the server loads its dataset (a restarted server reading its AOF
        or RDB answers -LOADING to every write). It answers, so it is not hung: the wait
        has a bound of its own, the reply timeout or LOADING_SECONDS, whichever is more."""
        bound = max(self.conn.timeout, LOADING_SECONDS)
        deadline = time.monotonic() + bound
        while True:
            reply = self.conn.call(b"PING")
            if not (isinstance(reply, hiredis.ReplyError) and str(reply).startswith("LOADING")):
                return
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"{self.endpoint.host}:{self.endpoint.port} was still loading its dataset "
                    f"after {bound:g} s"
                )
            self.conn.pause(LOADING_POLL_SECONDS)

    def _run_id(self) -> str | None:
        """The server process' run_id (INFO server); None where INFO does not tell it
        (a proxy, a renamed command)."""
        reply = self.conn.call(b"INFO", b"server")
        if not isinstance(reply, bytes):
            return None
        for line in reply.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name == "run_id" and value.strip():
                return value.strip()
        return None

    def _check_same_server(self) -> None:
        """After a reconnect: a server that restarted since kept what it acknowledged only
        if it persists every write before answering; otherwise the import cannot be
        exact, and this raises TargetRestarted."""
        now = self._run_id()
        if self._server_id is None or now is None or now == self._server_id:
            return
        appendonly = self._config(b"appendonly")
        appendfsync = self._config(b"appendfsync")
        if (appendonly == "yes" and appendfsync == "always") or not self._answered:
            # Nothing acknowledged was lost, or every command sent is still held and is
            # sent again.
            self._server_id = now
            return
        persisted = (
            f"appendonly {appendonly}, appendfsync {appendfsync}"
            if appendonly is not None and appendfsync is not None
            else "its persistence settings cannot be read (CONFIG refused)"
        )
        raise TargetRestarted(
            f"{self.endpoint.host}:{self.endpoint.port} restarted during the import (its run_id "
            f"changed) and does not persist every write before answering ({persisted}): "
            "the keys it had acknowledged before the restart may be lost; import the whole "
            "backup again"
        )

    def _config(self, name: bytes) -> str | None:
        reply = self.conn.call(b"CONFIG", b"GET", name)
        if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
            return reply[1].decode(errors="replace")
        return None
