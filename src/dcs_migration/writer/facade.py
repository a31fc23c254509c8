"""One import's writing into one target: the native hand-off when it applies, then the
key-by-key writer through the router the target needs (a standalone server or a
cluster's masters). `open_writer` is what an import holds; it reads nothing itself but
the bytes a hand-off forwards as they are.

The steps, in order: `hand_off()` (the records it did not stream come back), `connect()`
(then `dbs` tells how many databases the target has), `start()` (FLUSHALL when asked),
`write()` per batch, `finish()`; `close()` whatever happened. `settle()` collects the
replies still due after a stop or a refusal, so that the counts are exact.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import hiredis

from dcs_migration.client.cluster import ClusterRouter
from dcs_migration.client.connection import Interrupted
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.router import Router
from dcs_migration.client.standalone import StandaloneRouter
from dcs_migration.formats.records import Record
from dcs_migration.sources.inputs import Input
from dcs_migration.writer.native import Batches, hand_off, plan_handoff
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.writer import Refused, Writer, WriteStats

__all__ = [
    "Conflict",
    "Refused",
    "Strategy",
    "TargetWriter",
    "WriteOptions",
    "WriteStats",
    "open_writer",
]

SETTLE_ATTEMPTS = 1000
SETTLE_SECONDS = 30.0


def open_writer(
    target: Endpoint, options: WriteOptions, *, cluster: bool = False, resumed: bool = False
) -> TargetWriter:
    """A writer for `target` (a Redis Cluster when `cluster`). A `resumed` import keeps
    what was written before: no flush, and no hand-off (which replaces everything)."""
    if resumed:
        options = dataclasses.replace(options, flush=False, strategy=_resumed(options.strategy))
    return TargetWriter(target, options, cluster)


class TargetWriter:
    def __init__(self, target: Endpoint, options: WriteOptions, cluster: bool) -> None:
        self.target = target
        self.options = options
        self.cluster = cluster
        self.strategy = "restore"  # "handoff" once the hand-off streamed the inputs
        self.handed_off = 0  # keys the hand-off wrote
        self._writer = Writer(options)
        self._router: Router | None = None

    @property
    def stats(self) -> WriteStats:
        return self._writer.stats

    # -- the steps -----------------------------------------------------------------------

    def hand_off(
        self,
        inputs: list[Input],
        batches: Batches,
        on_bytes: Callable[[int], None],
        read_again: Callable[[], Batches],
    ) -> Batches:
        """Stream the inputs to the target with the native hand-off when it may run, and
        return the records still to write: the tail after a hand-off, `batches` when it
        does not apply, `read_again()` when the target refused it once asked. TargetError
        when the hand-off was asked for and cannot run."""
        options = self.options
        stats = self._writer.stats
        plan = plan_handoff(inputs, self.target, options, self.cluster)
        if isinstance(plan, str):
            if options.strategy is Strategy.HANDOFF:
                raise TargetError(f"the hand-off cannot run: {plan}")
            if options.strategy is Strategy.AUTO and options.flush and not self.cluster:
                stats.warnings.append(f"hand-off not used: {plan}")
            return batches
        outcome = hand_off(plan, inputs, self.target, options, batches, stats, on_bytes)
        if isinstance(outcome, str):  # refused before anything was streamed
            if options.strategy is Strategy.HANDOFF:
                raise TargetError(f"the hand-off cannot run: {outcome}")
            stats.warnings.append(f"hand-off not used: {outcome}")
            return read_again()
        self.strategy = "handoff"
        self.handed_off, rest = outcome
        # What the hand-off loaded stays: the rest is written beside it.
        self.options = self._writer.options = dataclasses.replace(options, flush=False)
        return rest

    def connect(self) -> None:
        """Open the connections to the target (every master of a cluster)."""
        writer = self._writer
        if self.cluster:
            self._router = ClusterRouter(self.target, writer.on_reply, self.options.limits)
        else:
            self._router = StandaloneRouter(self.target, writer.on_reply, self.options.limits)

    @property
    def dbs(self) -> int:
        """How many databases a key may go to (1 for a cluster)."""
        assert self._router is not None
        return self._router.dbs

    def start(self) -> None:
        """Ready to write: the target's limits checked, FLUSHALL done when asked."""
        assert self._router is not None
        self._writer.attach(self._router)

    def write(self, batch: Sequence[Record], file: str, at: tuple[int, int] | None = None) -> None:
        """Write a batch of records read from `file` (named where an AOF command fails);
        `at`: its input and first record's place, for the marker of a sealed batch."""
        self._writer.aof_file = file
        self._writer.write_records(batch, at)

    def read_key(self, key: bytes) -> bytes | None:
        """The string at `key` in db 0 (None when there is none), asked where it lives,
        once every reply due is in."""
        assert self._router is not None
        self._router.flush()
        pipe = self._router.pipeline_for(key, 0)
        reply = pipe.conn.call(b"GET", key)
        if isinstance(reply, hiredis.ReplyError):
            raise TargetError(f"GET {key!r}: {reply}")
        return reply if isinstance(reply, bytes) else None

    def acknowledge(self) -> None:
        """Wait until the target acknowledged everything written so far."""
        assert self._router is not None
        self._router.flush()

    def finish(self) -> None:
        """Wait for every reply; Refused if the target refused anything."""
        self._writer.finish()

    @property
    def in_transaction(self) -> bool:
        """Inside an AOF's MULTI block: its commands wait for EXEC, not yet sent."""
        return self._writer.in_transaction

    @property
    def resumable(self) -> bool:
        """Does a checkpoint name what was written? Not after a hand-off (a resume
        restores key by key) nor inside an open MULTI block (never sent)."""
        return self.strategy == "restore" and not self._writer.in_transaction

    @property
    def keys_written(self) -> int:
        """Keys the target acknowledged, the hand-off's included."""
        return self.handed_off + self._writer.keys_written

    def settle(self) -> bool:
        """After a stop or a refusal, collect the replies still on their way, so that the
        counts are exact; False when they could not all be had. Further refusals (a
        cluster whose slot moved refuses many at once) end one attempt each: every reply
        read before one is counted, and the next attempt reads on."""
        router = self._router
        if router is None:
            return False
        deadline = time.monotonic() + SETTLE_SECONDS
        for _ in range(SETTLE_ATTEMPTS):
            if time.monotonic() > deadline:
                break
            try:
                router.flush()
            except Refused:
                continue
            except (TargetError, OSError, Interrupted):
                return False
            return True
        return False

    def close(self) -> WriteStats:
        """Close the connections; the final counts (keys written and reconnects in all)."""
        stats = dataclasses.replace(self._writer.stats, keys_written=self.keys_written)
        stats.warnings = list(stats.warnings)
        stats.skipped_commands = list(stats.skipped_commands)
        if self._router is not None:
            stats.reconnects = sum(p.reconnects for p in self._router.masters())
            self._router.close()
        return stats


def _resumed(strategy: Strategy) -> Strategy:
    return Strategy.RESTORE if strategy in (Strategy.AUTO, Strategy.HANDOFF) else strategy
