"""A replication stream applied to a Redis Cluster target.

The commands go through the cluster writer (routed by slot, MOVED and ASK followed, a
slot that moves during the sync followed too), then the marker is set once the masters
acknowledged the batch. A cluster runs a transaction only within one slot, so the batch
and its marker cannot be applied together as on a standalone target: a resume after a
crash may apply again the commands of the batch that was in flight when the sync died
(at most one batch; writes that set a value come out the same, counters may count it
twice). A source's MULTI/EXEC runs command after command, as the cluster writer runs an
AOF's. Commands of a db other than 0 fail the sync: a cluster has only db 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from dcs_migration.client.connection import ConnectionLost, Interrupted
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.formats.records import AofCommand
from dcs_migration.writer.facade import TargetWriter, open_writer
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.stream import Marker, StreamRefused, StreamStats
from dcs_migration.writer.writer import CrossSlotCommand, UnknownCommand

T = TypeVar("T")


class ClusterStream:
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
        self.where = where
        self.stats = StreamStats()
        self._options = WriteOptions(
            conflict=Conflict.REPLACE,
            strategy=Strategy.RESTORE,
            skip_unknown_commands=skip_unknown_commands,
            reply_timeout=timeout,
        )
        self._writer: TargetWriter | None = None

    def connect(self) -> None:
        self.close()
        writer = open_writer(self.endpoint, self._options, cluster=True)
        try:
            writer.connect()
            writer.start()
        except ConnectionLost as exc:
            writer.close()
            raise TargetError(str(exc)) from None
        except TargetError:
            writer.close()
            raise
        self._writer = writer

    def read_marker(self) -> Marker | None:
        value = self._call(lambda w: w.read_key(self.marker_key))
        return Marker.decode(value) if isinstance(value, bytes) else None

    def clear_marker(self) -> None:
        self._send([AofCommand([b"DEL", self.marker_key], 0)])

    def write_marker(self, marker: Marker) -> None:
        self._send([AofCommand([b"SET", self.marker_key, marker.encode()], 0)])

    def settle(self) -> None:
        """Nothing waits: `send` returns once the masters acknowledged the batch."""

    def send(self, commands: Sequence[tuple[AofCommand, bytes]], marker: Marker) -> None:
        batch = [command for command, _ in commands]
        for command in batch:
            if command.db != 0:
                raise StreamRefused(
                    f"{self.where} writes db {command.db} at offset {command.offset}: a "
                    "Redis Cluster target has only db 0"
                )
        self._send(batch)
        self.write_marker(marker)
        stats = self._writer.stats if self._writer is not None else None
        if stats is not None:
            self.stats.commands_applied = stats.commands_replayed
            self.stats.commands_refused = stats.commands_refused
            self.stats.commands_skipped_unknown = stats.commands_skipped_unknown
            self.stats.skipped = stats.skipped_commands
        self.stats.batches += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _send(self, batch: list[AofCommand]) -> None:
        def send(writer: TargetWriter) -> None:
            writer.write(batch, self.where)
            writer.acknowledge()

        self._call(send)

    def _call(self, step: Callable[[TargetWriter], T]) -> T:
        writer = self._writer
        if writer is None:
            raise TargetError("the target is not connected")
        try:
            return step(writer)
        except (UnknownCommand, CrossSlotCommand) as exc:
            raise StreamRefused(str(exc)) from None
        except (ConnectionLost, Interrupted, OSError) as exc:
            self.close()
            raise TargetError(f"the cluster target: {exc}") from None
        except TargetError:
            self.close()
            raise
