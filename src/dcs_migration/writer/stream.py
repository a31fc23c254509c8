"""A replication stream applied to a standalone target exactly once.

Each batch of commands goes as one transaction that also sets a marker key to the
source's replication id and the offset the batch ends at: `MULTI`, the commands (with
`SELECT` where their db changes), `SET <marker> "<replid> <offset>"`, `EXEC`. The target
applies a batch and its marker together or neither, so the marker always says exactly
how far the target holds the stream: a resume after any crash asks the source for the
byte after it, and no command is skipped or applied twice.

A batch never ends inside a source transaction (the caller cuts batches between them),
so a source's MULTI/EXEC stays atomic: its commands run inside the batch's transaction.

Replies are handled as Redis' own loader handles a replica's stream, and as the AOF
replay does: a command the target refuses while queuing (unknown to an older target, a
different arity) would abort the whole transaction (EXECABORT), so the batch is sent
again without it, and it is counted (an unknown command fails the sync unless told to
skip such commands); a command that fails when run (WRONGTYPE ...) is counted and
logged; an error saying the target cannot take writes (OOM, READONLY ...) fails the sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import hiredis

from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.resp import encode_command
from dcs_migration.formats.records import AofCommand
from dcs_migration.writer.writer import COMMAND_LOG_LINES, TARGET_STATE_ERRORS

MARKER_PREFIX = b"dcs-migration:sync:"
_MULTI = encode_command([b"MULTI"])
_EXEC = encode_command([b"EXEC"])


@dataclass(frozen=True)
class Marker:
    """How far the target holds a source's stream: its replication id, the offset, and
    the db current there (after a partial resync the source sends no SELECT until its
    commands change db, as a replica keeps its master's db)."""

    replication_id: str
    offset: int
    db: int = 0

    def encode(self) -> bytes:
        return b"%s %d %d" % (self.replication_id.encode(), self.offset, self.db)

    @classmethod
    def decode(cls, value: bytes) -> Marker | None:
        parts = value.split(b" ")
        if len(parts) != 3 or not all(p.isdigit() for p in parts[1:]) or not parts[0]:
            return None
        return cls(parts[0].decode(errors="replace"), int(parts[1]), int(parts[2]))


@dataclass
class StreamStats:
    commands_applied: int = 0
    commands_refused: int = 0
    commands_skipped_unknown: int = 0
    batches: int = 0
    # One line per skipped command (offset, name, the target's reply), at most
    # COMMAND_LOG_LINES; the counts say how many in all.
    skipped: list[str] = field(default_factory=list)

    def log_skipped(self, line: str) -> None:
        if len(self.skipped) < COMMAND_LOG_LINES:
            self.skipped.append(line)


class StreamRefused(TargetError):
    """The target refuses what the stream holds: linking again cannot mend it."""


class UnknownStreamCommand(StreamRefused):
    """The target does not know a command of the stream (it is older than the source)."""


class StreamTarget(Protocol):
    """Where a stream is applied: a standalone server here, a cluster in
    `stream_cluster.py`. Every method raises TargetError when the target cannot be
    reached (the sync connects again and goes on from the marker), StreamRefused when
    it refuses the stream itself."""

    stats: StreamStats

    def connect(self) -> None: ...

    def read_marker(self) -> Marker | None: ...

    def clear_marker(self) -> None: ...

    def write_marker(self, marker: Marker) -> None: ...

    def send(self, commands: Sequence[tuple[AofCommand, bytes]], marker: Marker) -> None: ...

    def settle(self) -> None: ...

    def close(self) -> None: ...


class StandaloneStream:
    """Applies batches to one standalone server, each with its marker, in one transaction."""

    def __init__(
        self,
        endpoint: Endpoint,
        marker_key: bytes,
        *,
        timeout: float,
        skip_unknown_commands: bool = False,
        where: str = "the replication stream",
    ) -> None:
        self.endpoint = endpoint
        self.marker_key = marker_key
        self.skip_unknown_commands = skip_unknown_commands
        self.where = where
        self.stats = StreamStats()
        self._conn = Connection(endpoint, timeout=timeout)
        self._db = -1  # the connection's db, as far as known
        # The transaction sent and not yet answered: its commands, marker and entries.
        self._inflight: tuple[list[tuple[AofCommand, bytes]], Marker, list[int | None]] | None = (
            None
        )

    def connect(self) -> None:
        """Connect (again); TargetError when the target cannot be reached."""
        try:
            self._conn.connect()
        except ConnectionLost as exc:
            raise TargetError(str(exc)) from None
        self._db = self.endpoint.db

    def read_marker(self) -> Marker | None:
        value = self._call(b"GET", self.marker_key, db=0)
        return Marker.decode(value) if isinstance(value, bytes) else None

    def clear_marker(self) -> None:
        self._call(b"DEL", self.marker_key, db=0)

    def write_marker(self, marker: Marker) -> None:
        self._call(b"SET", self.marker_key, marker.encode(), db=0)

    def send(self, commands: Sequence[tuple[AofCommand, bytes]], marker: Marker) -> None:
        """Send `commands` (each with its RESP bytes, as the stream framed it) and the
        marker set to `marker`, as one transaction; `settle` waits for it (meanwhile the
        caller reads on). TargetError when the target cannot be reached (the connection
        is then closed: nothing of the batch is known to be applied but what the marker
        says)."""
        self.settle()
        batch = list(commands)
        self._inflight = (batch, marker, self._transmit(batch, marker))

    def settle(self) -> None:
        """Wait until the transaction sent last ran; one the target refused while
        queuing (EXECABORT) is sent again without the commands it refused."""
        if self._inflight is None:
            return
        batch, marker, owners = self._inflight
        self._inflight = None
        refused = self._receive(batch, owners)
        while refused is not None:
            batch = [c for n, c in enumerate(batch) if n not in refused]
            refused = self._receive(batch, self._transmit(batch, marker))
        self.stats.batches += 1

    def close(self) -> None:
        self._inflight = None
        self._conn.close()

    # -- the transaction --------------------------------------------------------------------

    def _transmit(self, batch: list[tuple[AofCommand, bytes]], marker: Marker) -> list[int | None]:
        """Send one transaction; per queued entry, its command's index (None: ours)."""
        parts = [_MULTI]
        owners: list[int | None] = []
        db = self._db
        for n, (command, raw) in enumerate(batch):
            if command.db != db:
                db = command.db
                parts.append(encode_command([b"SELECT", b"%d" % db]))
                owners.append(None)
            parts.append(raw)
            owners.append(n)
        if db != 0:
            parts.append(encode_command([b"SELECT", b"0"]))
            owners.append(None)
        parts.append(encode_command([b"SET", self.marker_key, marker.encode()]))
        owners.append(None)
        parts.append(_EXEC)
        try:
            self._conn.send(b"".join(parts))
        except ConnectionLost as exc:
            raise self._lost(exc) from None
        return owners

    def _receive(
        self, batch: list[tuple[AofCommand, bytes]], owners: list[int | None]
    ) -> set[int] | None:
        """The transaction's replies: the indexes of the commands refused while queuing
        (then nothing was applied), or None once it ran."""
        conn = self._conn
        try:
            opened = conn.read_reply()
            queued = [conn.read_reply() for _ in owners]
            ran = conn.read_reply()
        except ConnectionLost as exc:
            raise self._lost(exc) from None
        if isinstance(opened, hiredis.ReplyError):
            conn.close()
            raise TargetError(f"the target {self._address} refused MULTI: {opened}")
        self._db = 0  # every transaction ends in db 0 (one refused ran no SELECT)
        if isinstance(ran, hiredis.ReplyError):
            refused = self._queue_refusals(batch, owners, queued)
            if not refused:
                conn.close()
                raise TargetError(f"the target {self._address} refused a transaction: {ran}")
            return refused
        if not isinstance(ran, list) or len(ran) != len(owners):
            conn.close()
            raise TargetError(
                f"the target {self._address} answered EXEC with {str(ran)[:200]}: the batch "
                "was not applied whole (a WATCH or a proxy?)"
            )
        for owner, reply in zip(owners, ran, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                if owner is None:
                    raise TargetError(f"the target {self._address} refused SELECT or SET: {reply}")
                self._refused_when_run(batch[owner][0], reply)
        self.stats.commands_applied += len(batch)
        return None

    def _lost(self, exc: ConnectionLost) -> TargetError:
        self._db = -1
        self._inflight = None
        self._conn.close()
        return TargetError(f"the target {self._address}: {exc}")

    def _queue_refusals(
        self, batch: list[tuple[AofCommand, bytes]], owners: list[int | None], queued: list[Any]
    ) -> set[int]:
        refused: set[int] = set()
        for owner, reply in zip(owners, queued, strict=True):
            if not isinstance(reply, hiredis.ReplyError):
                continue
            text = str(reply)
            if owner is None or text.split(" ", 1)[0] in TARGET_STATE_ERRORS:
                raise TargetError(f"the target {self._address} cannot take writes: {text}")
            command = batch[owner][0]
            name = command.name.decode(errors="replace")
            if text.startswith(("ERR unknown command", "ERR unknown subcommand")):
                if not self.skip_unknown_commands:
                    raise UnknownStreamCommand(
                        f"the target does not know command {name} of {self.where} at offset "
                        f"{command.offset}: {text} (the target is older than the source or "
                        "lacks its module)"
                    )
                self.stats.commands_skipped_unknown += 1
            else:
                self.stats.commands_refused += 1
            self.stats.log_skipped(
                f"command {name} of {self.where} at offset {command.offset} skipped, "
                f"refused: {text}"
            )
            refused.add(owner)
        return refused

    def _refused_when_run(self, command: AofCommand, reply: Any) -> None:
        text = str(reply)
        name = command.name.decode(errors="replace")
        if text.split(" ", 1)[0] in TARGET_STATE_ERRORS:
            raise TargetError(
                f"the target refused command {name} of {self.where} at offset "
                f"{command.offset}: {text}"
            )
        self.stats.commands_refused += 1
        self.stats.log_skipped(
            f"command {name} of {self.where} at offset {command.offset} skipped, refused: {text}"
        )

    def _call(self, *args: bytes, db: int) -> Any:
        conn = self._conn
        try:
            if self._db != db:
                conn.select(db)
                self._db = db
            reply = conn.call(*args)
        except ConnectionLost as exc:
            self._db = -1
            raise TargetError(f"the target {self._address}: {exc}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise TargetError(f"the target {self._address}: {args[0].decode()}: {reply}")
        return reply

    @property
    def _address(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"
