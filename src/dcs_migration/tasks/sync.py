"""One online migration, run: a live source copied into a target, then kept in sync.

The loop, as a Redis replica runs it: read the target's marker (how far it holds the
source's stream, `writer.stream`), ask the source to continue after it (`PSYNC <replid>
<offset + 1>`), or for a full copy when there is no marker or the source no longer holds
that offset. A full copy streams the snapshot through the RDB reader into the target
(RESTORE ... REPLACE: the target is live, nothing is flushed), then sets the marker. The
stream is then read by the RESP reader and applied in batches, each with its marker in
one transaction, so that every resume (a dropped link, a restarted source or target, a
restarted service) continues exactly where the target stands.

The applied offset, acknowledged by the target, is what the source hears in `REPLCONF
ACK` (every second, and at once when it asks with `REPLCONF GETACK`). PING and sentinel
hellos are dropped, FLUSHALL/FLUSHDB are not forwarded (the managed service does not
forward them either) and are logged; everything else is forwarded in order.

Lag: a thread reads the source's `master_repl_offset` every second, with the time;
`lag_ms` is how long ago the source stood at the applied offset (nothing is written
into the source to measure it).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from dcs_migration.client.cluster import slot_masters
from dcs_migration.client.connection import Connection, ConnectionLost, info, keyspace
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.replica import Continue
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand
from dcs_migration.formats.resp import RespReader, encode_command
from dcs_migration.importer import ImportHooks, Progress, run_import
from dcs_migration.sources.live import LinkLost, LiveSource
from dcs_migration.sources.spool import Spool
from dcs_migration.statuses import TaskStatus
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.stream import Marker, StandaloneStream, StreamRefused, StreamTarget
from dcs_migration.writer.stream_cluster import ClusterStream

log = logging.getLogger(__name__)

RETRY_SECONDS = 300.0  # a link (source or target) that stays down this long fails the sync
FIRST_CONNECT_ATTEMPTS = 3  # a source never reached fails sooner: a wrong address, a password
SAMPLE_SECONDS = 1.0
HISTORY_SECONDS = 600.0  # of the source's offsets, for the lag
TAKE_SECONDS = 0.2
_DROPPED = frozenset((b"PING", b"REPLCONF", b"SELECT", b"MULTI", b"EXEC"))
_NOT_FORWARDED = frozenset((b"FLUSHALL", b"FLUSHDB"))
_SENTINEL_HELLO = b"__sentinel__:hello"


class Phase(StrEnum):
    FULL = TaskStatus.FULLMIGRATING.value
    INCREMENTAL = TaskStatus.INCRMIGEATING.value


class Ending(StrEnum):
    COPIED = "copied"  # a full-only migration copied its snapshot
    SYNC_STOPPED = "sync_stopped"  # caught up with the source at the sync-stop, then stopped
    STOPPED = "stopped"  # the user stopped it
    LEFT = "left"  # the service is stopping: it goes on at the next start
    FAILED = "failed"


@dataclass
class SyncState:
    """What the job reports of a running sync (about once a second)."""

    replication_id: str | None = None
    applied_offset: int | None = None
    source_offset: int | None = None
    lag_ms: int | None = None
    resyncs_partial: int = 0
    resyncs_full: int = 0
    full_progress: float = 0.0
    snapshot_bytes: int = 0
    snapshot_total: int = 0
    keys_written: int = 0
    commands_applied: int = 0
    commands_refused: int = 0
    commands_skipped_unknown: int = 0
    flushes_skipped: int = 0
    migrations_ordered: int = 0  # a cluster source's migrated keys applied after the others
    ops_per_second: float = 0.0
    input_kbps: float = 0.0
    source_dbsize: int | None = None
    target_dbsize: int | None = None
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncPlan:
    """Everything a sync needs to know, plain data."""

    source: Endpoint
    target: Endpoint
    marker_key: bytes
    incremental: bool
    target_cluster: bool = False  # the target's address is one master of a Redis Cluster
    bytes_per_second: int | None = None
    spool_max_bytes: int = 1 << 30
    reply_timeout: float = 60.0
    source_timeout: float = 60.0  # the source pings every 10 s: silence past this is a hang
    sync_stop_seconds: float = 60.0
    skip_unknown_commands: bool = False
    spool_dir: str | None = None
    sample_seconds: float = 0.1  # how often the source's offset is read (lag, ordering)


@dataclass(frozen=True)
class SyncHooks:
    """How the job hears of the sync and steers it. Every hook runs on the sync's thread."""

    on_phase: Callable[[Phase], None] = lambda phase: None
    on_state: Callable[[SyncState], None] = lambda state: None
    on_log: Callable[[str, str], None] = lambda level, message: None  # (INFO|WARNING, text)
    should_stop: Callable[[], bool] = lambda: False
    leaving: Callable[[], bool] = lambda: False
    sync_stop_asked: Callable[[], bool] = lambda: False
    sync_stop_refused: Callable[[str], None] = lambda message: None


@dataclass
class SyncResult:
    ending: Ending
    error: str = ""
    state: SyncState = field(default_factory=SyncState)


class _Retry(Exception):
    """A link is down: continue from the target's marker, after a pause."""


class _Ended(Exception):
    def __init__(self, ending: Ending, error: str = "") -> None:
        super().__init__(error)
        self.ending = ending
        self.error = error


class OnlineSync:
    def __init__(
        self,
        plan: SyncPlan,
        hooks: SyncHooks,
        state: SyncState | None = None,
    ) -> None:
        self.plan = plan
        self.hooks = hooks
        self.state = state or SyncState()
        # Runs before a RESTORE-ASKING (a key a slot migration brought) is applied, with
        # the offset where it ends: a cluster source's link waits for the others there.
        self.before_migrated: Callable[[int], None] | None = None
        self.ended = False  # its run returned
        kind = ClusterStream if plan.target_cluster else StandaloneStream
        self._stream: StreamTarget = kind(
            plan.target,
            plan.marker_key,
            timeout=plan.reply_timeout,
            skip_unknown_commands=plan.skip_unknown_commands,
            where=f"the stream of {self.where}",
        )
        self._gauges = _Gauges(plan, self.state)
        self._sync_stop_at: int | None = None  # the source offset a sync-stop waits for
        self._sync_stop_deadline = 0.0
        self._last_report = 0.0
        self._reported_commands = 0
        self._reported_bytes = 0
        self._received = 0
        self._sessions = 0  # links made
        self._inflight: Marker | None = None  # the batch sent, not yet known to have run
        self._marked: Marker | None = None  # the marker the target was last sent

    @property
    def where(self) -> str:
        """The source's address."""
        return f"{self.plan.source.host}:{self.plan.source.port}"

    @property
    def _applied(self) -> int:
        """The offset the target acknowledged: what the source hears in ACKs."""
        return self.state.applied_offset or 0

    def offset_time(self, offset: int) -> float | None:
        """When the source's offset was first seen at or past `offset` (None: not yet)."""
        return self._gauges.time_of(offset)

    def offset_after(self, moment: float) -> int | None:
        """The source's offset first seen at or after `moment` (None: not yet)."""
        return self._gauges.offset_after(moment)

    def run(self) -> SyncResult:
        """Run until stopped, sync-stopped, copied (full only) or failed."""
        self._gauges.start()
        try:
            self._loop()
        except _Ended as end:
            return SyncResult(end.ending, end.error, self.state)
        finally:
            self._gauges.close()
            self._stream.close()
            self.ended = True
        raise AssertionError("the loop ends by _Ended")

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        down_since: float | None = None
        attempts = 0
        sessions = 0
        while True:
            self._check_stop()
            if self._sessions != sessions:  # the last one linked: a new outage starts now
                sessions, attempts, down_since = self._sessions, 0, None
            try:
                self._stream.connect()
                marker = self._stream.read_marker() if self.plan.incremental else None
                self._session(marker)
            except StreamRefused as exc:
                raise _Ended(Ending.FAILED, str(exc)) from None
            except (_Retry, TargetError) as exc:  # a link down, a source not ready: again
                attempts += 1
                now = time.monotonic()
                down_since = down_since or now
                reached = self.state.replication_id is not None
                if (not reached and attempts >= FIRST_CONNECT_ATTEMPTS) or (
                    now - down_since > RETRY_SECONDS
                ):
                    raise _Ended(Ending.FAILED, str(exc)) from None
                self.hooks.on_log("WARNING", f"{exc}; trying again")
                self._pause(min(0.5 * 2 ** min(attempts, 4), 5.0))
                continue
            raise AssertionError("a session ends by an exception")

    def _session(self, marker: Marker | None) -> None:
        plan = self.plan
        spool = Spool(plan.spool_max_bytes, directory=plan.spool_dir)
        source = LiveSource(
            plan.source,
            spool,
            timeout=plan.source_timeout,
            bytes_per_second=plan.bytes_per_second,
            applied=lambda: self._applied,
        )
        try:
            if marker is None:
                answer = source.start(None, None)
            else:
                answer = source.start(marker.replication_id, marker.offset)
            self._sessions += 1
            if isinstance(answer, Continue):
                assert marker is not None
                marker = Marker(answer.replication_id, marker.offset, marker.db)
                self.state.resyncs_partial += 1
                self.hooks.on_log(
                    "INFO",
                    f"continuing by partial resync from offset {marker.offset} of "
                    f"{answer.replication_id}",
                )
            else:
                if marker is not None:
                    self.state.resyncs_full += 1
                    self.hooks.on_log(
                        "WARNING",
                        f"the source no longer holds offset {marker.offset} of "
                        f"{marker.replication_id}: full resync (keys the source deleted "
                        "since then stay in the target: the target is not flushed)",
                    )
                elif self.state.replication_id is not None:
                    self.state.resyncs_full += 1
                marker = self._full(source, Marker(answer.replication_id, answer.offset))
            self.state.replication_id = marker.replication_id
            self._inflight = None  # a batch of a link lost: the marker says if it ran
            self._marked = marker
            self._applied_to(marker)
            self._incremental(source, marker)
        finally:
            source.close()

    def _full(self, source: LiveSource, marker: Marker) -> Marker:
        self.hooks.on_phase(Phase.FULL)
        self._stream.clear_marker()  # a copy half made holds no offset
        self.state.replication_id = marker.replication_id
        state = self.state
        state.snapshot_bytes = 0
        state.full_progress = 0.0
        written_before = state.keys_written

        def on_progress(p: Progress) -> None:
            state.snapshot_bytes = p.bytes_read
            state.snapshot_total = p.bytes_total
            state.keys_written = written_before + p.keys_written
            if p.bytes_total:
                state.full_progress = min(99.0, 100.0 * p.bytes_read / p.bytes_total)
            elif state.source_dbsize:
                state.full_progress = min(99.0, 100.0 * p.keys_written / state.source_dbsize)
            self._report()

        self.hooks.on_log(
            "INFO", f"full copy of {marker.replication_id} at offset {marker.offset} started"
        )
        result = run_import(
            [source.snapshot_input()],
            self.plan.target,
            WriteOptions(
                conflict=Conflict.REPLACE,
                strategy=Strategy.RESTORE,
                reply_timeout=self.plan.reply_timeout,
                skip_unknown_commands=self.plan.skip_unknown_commands,
            ),
            ImportHooks(on_progress=on_progress, should_stop=self._stop_asked),
            cluster=self.plan.target_cluster,
        )
        state.keys_written = written_before + result.stats.keys_written
        if result.status is TaskStatus.TERMINATED:
            self._check_stop()
        if result.status is not TaskStatus.SUCCESS:
            if source.failed:
                raise _Retry(f"the full copy was cut: {result.error}")
            raise _Ended(Ending.FAILED, f"the full copy failed: {result.error}")
        state.full_progress = 100.0
        self.hooks.on_log(
            "INFO",
            f"full copy done: {result.stats.keys_written} keys written in {result.seconds:.1f} s",
        )
        for warning in result.stats.warnings:
            self.hooks.on_log("WARNING", warning)
        if not self.plan.incremental:
            self._report(force=True)
            raise _Ended(Ending.COPIED)
        self._stream.write_marker(marker)
        return marker

    def _incremental(self, source: LiveSource, marker: Marker) -> None:
        self.hooks.on_phase(Phase.INCREMENTAL)
        self._report(force=True)
        reader = RespReader(offset=marker.offset, db=marker.db)
        replid = marker.replication_id
        pending: list[tuple[AofCommand, bytes]] = []
        in_transaction = False
        done = marker.offset  # the end of the last command taken, outside a transaction
        done_db = marker.db  # the db current there
        rest = b""  # bytes the reader holds (a command's start), from offset `rest_at`
        rest_at = marker.offset
        while True:
            self._check_stop()
            self._check_sync_stop()
            try:
                data = source.take(TAKE_SECONDS)
            except LinkLost as lost:
                if lost.final:
                    raise _Ended(Ending.FAILED, f"{lost} (DCS_MIGRATION_SPOOL_MAX_BYTES)") from None
                # A transaction cut by the link is sent again after the marker.
                raise _Retry(f"the link to the source was lost: {lost}") from None
            if data is None:
                self._settle()
                self._report()
                continue
            self._received += len(data)
            try:
                commands = reader.feed(data)
            except FormatError as exc:
                raise _Ended(Ending.FAILED, f"the source's stream cannot be read: {exc}") from None
            # The stream's own bytes are forwarded: each command as the source framed it.
            raw = rest + data if rest else data
            ack_asked = False
            for n, command in enumerate(commands):
                end = commands[n + 1].offset if n + 1 < len(commands) else reader.offset
                name = command.name
                if name in _DROPPED:
                    if name == b"MULTI":
                        in_transaction = True
                    elif name == b"EXEC":
                        in_transaction = False
                    elif name == b"REPLCONF" and len(command.args) > 1:
                        ack_asked = ack_asked or command.args[1].upper() == b"GETACK"
                elif self._forwarded(command, name):
                    framed = raw[command.offset - rest_at : end - rest_at]
                    if name == b"RESTORE-ASKING":  # a slot migration's: a RESTORE for the target
                        if self.before_migrated is not None:
                            if not in_transaction:  # what came before it first
                                self._apply(pending, Marker(replid, done, done_db))
                                pending = []
                                self._settle()
                            self.before_migrated(end)
                        command = AofCommand(
                            [b"RESTORE", *command.args[1:]], command.db, command.offset
                        )
                        framed = encode_command(command.args)
                    pending.append((command, framed))
                if not in_transaction:
                    done, done_db = end, command.db
            rest = raw[reader.offset - rest_at :]
            rest_at = reader.offset
            if not in_transaction:
                self._apply(pending, Marker(replid, done, done_db))
                pending = []
            if ack_asked:
                self._settle()
                source.link.send_ack(self._applied)
            self._report()

    def _forwarded(self, command: AofCommand, name: bytes) -> bool:
        """Does the command go to the target? FLUSHALL and FLUSHDB do not (logged),
        nor sentinel hellos."""
        if name in _NOT_FORWARDED:
            self.state.flushes_skipped += 1
            self.hooks.on_log(
                "WARNING",
                f"{name.decode()} at offset {command.offset} (db {command.db}) not "
                "forwarded: the target keeps its data",
            )
            return False
        return not (name == b"PUBLISH" and command.args[1:2] == [_SENTINEL_HELLO])

    def _apply(self, commands: list[tuple[AofCommand, bytes]], marker: Marker) -> None:
        """Send a batch once the one before it ran: the stream after it is read while
        the target runs it. A batch of nothing but pings and the like (dropped) still
        moves the marker: a resume must not ask for bytes the source may no longer hold
        (a source restarted after its final GETACK holds none before it)."""
        self._settle()
        if commands or marker != self._marked:
            self._stream.send(commands, marker)  # TargetError: retried from the marker
            self._inflight = self._marked = marker

    def _settle(self) -> None:
        """Wait for the batch sent last; the applied offset moves on to its marker."""
        marker, self._inflight = self._inflight, None
        if marker is None:
            return
        self._stream.settle()
        stats = self._stream.stats
        self.state.commands_applied = stats.commands_applied
        self.state.commands_refused = stats.commands_refused
        self.state.commands_skipped_unknown = stats.commands_skipped_unknown
        self.state.skipped = stats.skipped
        self._applied_to(marker)

    def _applied_to(self, marker: Marker) -> None:
        self.state.applied_offset = marker.offset

    # -- stops -----------------------------------------------------------------------------

    def _stop_asked(self) -> bool:
        return self.hooks.should_stop() or self.hooks.leaving()

    def _check_stop(self) -> None:
        if self.hooks.should_stop():
            raise _Ended(Ending.STOPPED)
        if self.hooks.leaving():
            raise _Ended(Ending.LEFT)

    def _check_sync_stop(self) -> None:
        if self._sync_stop_at is None:
            if not self.hooks.sync_stop_asked():
                return
            self._sync_stop_at = self._gauges.source_offset_now()
            self._sync_stop_deadline = time.monotonic() + self.plan.sync_stop_seconds
            self.hooks.on_log(
                "INFO",
                f"sync-stop asked: waiting until offset {self._sync_stop_at} is applied",
            )
        if self._applied >= self._sync_stop_at:
            self._report(force=True)
            state = self.state
            state.source_offset = self._gauges.source_offset_now()  # not a second old
            if self._applied >= state.source_offset:
                state.lag_ms = 0
            # The target is the primary from now on: the marker has nothing more to say.
            self._stream.clear_marker()
            self.hooks.on_log(
                "INFO", f"caught up at offset {self._applied}: stopped for the cut-over"
            )
            raise _Ended(Ending.SYNC_STOPPED)
        if time.monotonic() > self._sync_stop_deadline:
            behind = self._sync_stop_at - self._applied
            message = (
                f"the target did not catch up within {self.plan.sync_stop_seconds:g} s: it is "
                f"{behind} bytes of the stream behind the offset asked for; the sync goes on"
            )
            self._sync_stop_at = None
            self.hooks.sync_stop_refused(message)
            self.hooks.on_log("WARNING", "sync-stop refused: " + message)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._check_stop()
            time.sleep(0.1)

    # -- reports ---------------------------------------------------------------------------

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._last_report
        if not force and elapsed < SAMPLE_SECONDS:
            return
        state = self.state
        if self._last_report and elapsed > 0:
            commands = state.commands_applied
            state.ops_per_second = round((commands - self._reported_commands) / elapsed, 1)
            state.input_kbps = round((self._received - self._reported_bytes) / 1024 / elapsed, 1)
            self._reported_commands = commands
            self._reported_bytes = self._received
        self._last_report = now
        self._gauges.lag(state)
        self.hooks.on_state(state)


class _Gauges:
    """Reads the source's replication offset (with the time) and both sides' key counts
    every second, on a thread of its own, over ordinary connections."""

    def __init__(self, plan: SyncPlan, state: SyncState) -> None:
        self.source = plan.source
        self.target = plan.target
        self.state = state
        self.target_cluster = plan.target_cluster
        self.every = plan.sample_seconds
        self._masters: dict[tuple[str, int], Connection] = {}
        keep = int(HISTORY_SECONDS / plan.sample_seconds)
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-gauges", daemon=True)
        self._source_conn = Connection(self.source, timeout=10.0)
        self._target_conn = Connection(self.target, timeout=10.0)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5.0)
        self._source_conn.close()
        self._target_conn.close()
        for conn in self._masters.values():
            conn.close()

    def source_offset_now(self) -> int:
        """The source's offset now (read afresh); the last one read when it cannot be."""
        conn = Connection(self.source, timeout=10.0)
        try:
            conn.connect()
            return int(info(conn, "replication").get("master_repl_offset", "0"))
        except (ConnectionLost, TargetError, ValueError):
            with self._lock:
                return self._samples[-1][1] if self._samples else 0
        finally:
            conn.close()

    def lag(self, state: SyncState) -> None:
        """Set the source offset and the lag behind it, as of the last sample (at most
        `sample_seconds` old)."""
        applied = state.applied_offset
        with self._lock:
            if not self._samples or applied is None:
                return
            newest = self._samples[-1]
            # The source passed the applied offset between two samples: interpolated.
            at = self._samples[0][0]
            later = newest
            for sample in reversed(self._samples):
                if sample[1] <= applied:
                    (t0, o0), (t1, o1) = sample, later
                    at = t0 if o1 == o0 else t0 + (t1 - t0) * (applied - o0) / (o1 - o0)
                    break
                later = sample
        state.source_offset = newest[1]
        if applied >= newest[1]:
            state.lag_ms = 0
        else:
            state.lag_ms = max(0, int((time.monotonic() - at) * 1000))

    # The two below look from the newest sample back: what they are asked about is recent.

    def time_of(self, offset: int) -> float | None:
        """When the source's offset was first seen at or past `offset`."""
        found = None
        with self._lock:
            for at, seen in reversed(self._samples):
                if seen < offset:
                    break
                found = at
        return found

    def offset_after(self, moment: float) -> int | None:
        """The source's offset first seen at or after `moment`."""
        found = None
        with self._lock:
            for at, seen in reversed(self._samples):
                if at < moment:
                    break
                found = seen
        return found

    def _run(self) -> None:
        last_counts = 0.0
        while not self._closing.is_set():
            now = time.monotonic()
            counts = now - last_counts >= SAMPLE_SECONDS  # key counts: once a second
            if counts:
                last_counts = now
            self._sample(counts)
            self._closing.wait(self.every)

    def _sample(self, counts: bool) -> None:
        for conn, is_source in ((self._source_conn, True), (self._target_conn, False)):
            if not is_source and not counts:
                continue
            try:
                if not conn.connected:
                    conn.connect()
                if is_source:
                    reply = info(conn, "replication")
                    offset = int(reply.get("master_repl_offset", "0"))
                    with self._lock:
                        self._samples.append((time.monotonic(), offset))
                    if counts:
                        self.state.source_dbsize = sum(keyspace(info(conn, "keyspace")).values())
                elif self.target_cluster:
                    self.state.target_dbsize = self._cluster_keys(conn)
                else:
                    self.state.target_dbsize = sum(keyspace(info(conn, "keyspace")).values())
            except (ConnectionLost, TargetError, ValueError, OSError):
                conn.close()

    def _cluster_keys(self, seed: Connection) -> int:
        """The keys of every master of the target cluster."""
        total = 0
        for node in sorted(set(slot_masters(seed, self.target))):
            conn = self._masters.get(node)
            if conn is None or not conn.connected:
                conn = self._masters[node] = Connection(self.target.at(*node), timeout=10.0)
                conn.connect()
            total += sum(keyspace(info(conn, "keyspace")).values())
        return total
