"""A Redis Cluster as the source: one replication link per master, side by side.

Each master's link is an `OnlineSync` of its own, with a marker of its own in the target
(the task's marker key and the master's address), so that each continues after a stop
from exactly where the target holds that master's stream. The task's state is the sum of
the links' (offsets, counts), its lag the largest; it is FULLMIGRATING until every link
applies its stream, and it ends when every link ended: a link that fails stops the others.

Slots migrated on the source while the sync runs. MIGRATE makes the importing master run
RESTORE-ASKING (its stream carries the key's whole value) and then the migrating master
DEL the key (its stream carries that DEL). The links apply their streams at their own
pace, so a link behind the others could apply a key's old writes, or that DEL, after the
key's new master's link applied the RESTORE and what followed. So a link that meets a
RESTORE-ASKING waits, before applying it, until every other link has applied what its
master held just after that RESTORE-ASKING ran (told apart by the offsets the links
sample with their times, every SAMPLE_SECONDS): the old master's writes and its DEL come
first, as they came at the source.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from dcs_migration.client.cluster import Node, slot_masters
from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.tasks.sync import (
    Ending,
    OnlineSync,
    Phase,
    SyncHooks,
    SyncPlan,
    SyncResult,
    SyncState,
)

REPORT_SECONDS = 0.5
SAMPLE_SECONDS = 0.02  # how often each link reads its master's offset
AFTER_SECONDS = 0.03  # after a RESTORE-ASKING ran, by when its DEL ran on the old master
WAIT_SECONDS = 30.0  # the longest a migrated key waits for the other links
_ENDINGS_BY_RANK = (Ending.FAILED, Ending.LEFT, Ending.STOPPED, Ending.SYNC_STOPPED, Ending.COPIED)

T = TypeVar("T")


def source_masters(seed: Endpoint, timeout: float) -> list[Node]:
    """The masters serving the source cluster's slots, asked of `seed`."""
    conn = Connection(seed, timeout=timeout)
    try:
        conn.connect()
        return sorted(set(slot_masters(conn, seed)))
    except ConnectionLost as exc:
        raise TargetError(f"the source {seed.host}:{seed.port}: {exc}") from None
    finally:
        conn.close()


class ClusterSourceSync:
    """One link per master of the source cluster, run on threads of their own."""

    def __init__(self, plan: SyncPlan, hooks: SyncHooks, state: SyncState | None = None) -> None:
        self.plan = plan
        self.hooks = hooks
        self.state = state or SyncState()
        self._abort = threading.Event()
        self._lock = threading.Lock()  # the log lines, and the links waiting
        self._syncs: list[OnlineSync] = []
        self._waiting: dict[OnlineSync, tuple[float, int]] = {}  # waiting links, their key's rank

    def run(self) -> SyncResult:
        plan, hooks = self.plan, self.hooks
        try:
            masters = source_masters(plan.source, plan.reply_timeout)
        except TargetError as exc:
            return SyncResult(Ending.FAILED, str(exc), self.state)
        base = dataclasses.replace(self.state, skipped=[])
        links = [self._link(node) for node in masters]
        self._syncs = [sync for _, sync in links]
        hooks.on_log(
            "INFO",
            "the source is a cluster of "
            + ", ".join(f"{h}:{p}" for h, p in masters)
            + ": one link per master",
        )
        results: list[SyncResult | None] = [None] * len(links)
        threads = [
            threading.Thread(target=self._run_link, args=(n, sync, results), daemon=True)
            for n, (_, sync) in enumerate(links)
        ]
        for thread in threads:
            thread.start()
        phase: Phase | None = None
        while any(t.is_alive() for t in threads):
            time.sleep(REPORT_SECONDS)
            seen = [p[0] for p, _ in links]
            now = (
                Phase.INCREMENTAL
                if all(p is Phase.INCREMENTAL for p in seen)
                else Phase.FULL
                if any(p is not None for p in seen)
                else None
            )
            if now is not None and now is not phase:
                phase = now
                hooks.on_phase(now)
            self._sum(base, [sync.state for _, sync in links])
            hooks.on_state(self.state)
        self._sum(base, [sync.state for _, sync in links])
        return self._outcome(masters, [r for r in results if r is not None])

    def _link(self, node: Node) -> tuple[list[Phase | None], OnlineSync]:
        host, port = node
        where = f"{host}:{port}"
        hooks = self.hooks
        phase: list[Phase | None] = [None]

        def on_log(level: str, message: str) -> None:
            with self._lock:
                hooks.on_log(level, f"master {where}: {message}")

        def on_phase(p: Phase) -> None:
            phase[0] = p

        link_hooks = SyncHooks(
            on_phase=on_phase,
            on_log=on_log,
            should_stop=lambda: self._abort.is_set() or hooks.should_stop(),
            leaving=hooks.leaving,
            sync_stop_asked=hooks.sync_stop_asked,
            sync_stop_refused=hooks.sync_stop_refused,
        )
        plan = dataclasses.replace(
            self.plan,
            source=self.plan.source.at(host, port),
            marker_key=self.plan.marker_key + b":" + where.encode(),
            sample_seconds=SAMPLE_SECONDS,
        )
        sync = OnlineSync(plan, link_hooks)
        sync.before_migrated = lambda offset: self._wait_for_others(sync, offset, on_log)
        return phase, sync

    def _wait_for_others(
        self, waiting: OnlineSync, offset: int, on_log: Callable[[str, str], None]
    ) -> None:
        """Until the other links applied what their masters held just after `waiting`'s
        master stood at `offset` (a RESTORE-ASKING's end).

        Two links may wait for each other (keys migrated both ways within moments). The
        one whose key came later goes on: a link waiting has applied everything its
        master wrote before its own RESTORE-ASKING, so everything before the earlier
        one's too (a migration's DEL on the old master precedes what that master did
        after)."""
        deadline = time.monotonic() + WAIT_SECONDS
        at = self._until(lambda: waiting.offset_time(offset), deadline)
        if at is None:
            return self._gave_up(on_log, "its own master's offset")
        rank = (at, self._syncs.index(waiting))
        with self._lock:
            self._waiting[waiting] = rank
        try:
            for other in self._syncs:
                if other is waiting or other.ended:  # an ended link applies nothing more
                    continue
                goal = self._until(partial(self._offset_after, other, at), deadline)
                if goal is None:
                    return self._gave_up(on_log, f"the offsets of {other.where}")
                reached = self._until(partial(self._reached, other, goal, rank), deadline)
                if reached is None:
                    return self._gave_up(on_log, f"the link of {other.where}")
        finally:
            with self._lock:
                del self._waiting[waiting]
        self.state.migrations_ordered += 1
        return None

    @staticmethod
    def _offset_after(sync: OnlineSync, at: float) -> int | None:
        """`sync`'s master's offset just after `at`; -1 once the link ended."""
        return -1 if sync.ended else sync.offset_after(at + AFTER_SECONDS)

    def _reached(self, sync: OnlineSync, goal: int, rank: tuple[float, int]) -> bool | None:
        """True once `sync` applied its stream up to `goal`, ended, or waits for a key
        that came later than the one ranked `rank`; else None."""
        if (sync.state.applied_offset or -1) >= goal or sync.ended:
            return True
        theirs = self._waiting.get(sync)
        return True if theirs is not None and theirs > rank else None

    def _until(self, found: Callable[[], T | None], deadline: float) -> T | None:
        while (value := found()) is None:
            if time.monotonic() > deadline or self._abort.is_set() or self.hooks.should_stop():
                return None
            time.sleep(0.005)
        return value

    def _gave_up(self, on_log: Callable[[str, str], None], what: str) -> None:
        if not (self._abort.is_set() or self.hooks.should_stop()):
            on_log(
                "WARNING",
                f"a migrated key waited {WAIT_SECONDS:g} s for {what}, and is applied without it",
            )

    def _run_link(self, n: int, sync: OnlineSync, results: list[SyncResult | None]) -> None:
        result = sync.run()
        results[n] = result
        if result.ending is Ending.FAILED:
            self._abort.set()  # the others stop: the task fails as one

    def _sum(self, base: SyncState, states: list[SyncState]) -> None:
        total = self.state
        total.replication_id = ",".join(s.replication_id or "-" for s in states)
        applied = [s.applied_offset for s in states]
        total.applied_offset = None if None in applied else sum(a or 0 for a in applied)
        sources = [s.source_offset for s in states]
        total.source_offset = None if None in sources else sum(o or 0 for o in sources)
        lags = [s.lag_ms for s in states if s.lag_ms is not None]
        total.lag_ms = max(lags) if lags else None
        for name in (
            "resyncs_partial",
            "resyncs_full",
            "keys_written",
            "commands_applied",
            "commands_refused",
            "commands_skipped_unknown",
            "flushes_skipped",
            "snapshot_bytes",
            "snapshot_total",
        ):
            setattr(total, name, getattr(base, name) + sum(getattr(s, name) for s in states))
        total.ops_per_second = round(sum(s.ops_per_second for s in states), 1)
        total.input_kbps = round(sum(s.input_kbps for s in states), 1)
        total.full_progress = min((s.full_progress for s in states), default=0.0)
        dbsizes = [s.source_dbsize for s in states if s.source_dbsize is not None]
        total.source_dbsize = sum(dbsizes) if dbsizes else None
        targets = [s.target_dbsize for s in states if s.target_dbsize is not None]
        total.target_dbsize = max(targets) if targets else None
        total.skipped = [line for s in states for line in s.skipped]

    def _outcome(self, masters: list[Node], results: list[SyncResult]) -> SyncResult:
        for ending in _ENDINGS_BY_RANK:
            for node, result in zip(masters, results, strict=False):
                if result.ending is ending:
                    error = f"master {node[0]}:{node[1]}: {result.error}" if result.error else ""
                    return SyncResult(ending, error, self.state)
        return SyncResult(Ending.FAILED, "no link ran", self.state)
