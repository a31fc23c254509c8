"""The online-migration engine (`tasks.sync.OnlineSync`) against real servers: a live
source under a bounded load (tests/support/load.py) copied into a target and kept in
sync; exactness is DEBUG DIGEST of both servers once a sync-stop caught up, and the INCR
counters read back equal to the number of INCRs sent."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from dcs_migration.client.endpoint import Endpoint
from dcs_migration.tasks.sync import Ending, OnlineSync, Phase, SyncHooks, SyncPlan, SyncResult
from dcs_migration.tasks.sync_cluster import ClusterSourceSync
from dcs_migration.writer.stream import MARKER_PREFIX
from tests.support.flavours import RedisServerFactory
from tests.support.live import dump_cluster_oracle, dump_oracle
from tests.support.load import Load, assert_copied
from tests.support.servers import RedisServer, restart
from tests.support.slot_mover import MOVING_TAG, SlotMover
from tests.support.waiting import until

pytestmark = pytest.mark.redis

SOURCE_ARGS = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes")
TARGET_ARGS = ("--enable-debug-command", "yes")


@dataclass
class Running:
    """An OnlineSync on a thread, with what its hooks heard."""

    plan: SyncPlan
    kind: Any = OnlineSync  # or ClusterSourceSync
    phases: list[tuple[Phase, float]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    result: SyncResult | None = None

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.sync_stop = threading.Event()
        self.sync = self.kind(
            self.plan,
            SyncHooks(
                on_phase=lambda p: self.phases.append((p, time.monotonic())),
                on_log=lambda level, message: self.logs.append((level, message)),
                should_stop=self.stop.is_set,
                sync_stop_asked=self.sync_stop.is_set,
                sync_stop_refused=self.refusals.append,
            ),
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.result = self.sync.run()

    @property
    def state(self) -> Any:
        return self.sync.state

    def wait_phase(self, phase: Phase, seconds: float = 60) -> None:
        wait_until(
            lambda: any(p is phase for p, _ in self.phases) or self.result is not None,
            seconds,
            f"phase {phase}",
        )
        assert self.result is None, self.result

    def finish(self, how: str = "sync_stop", seconds: float = 90) -> SyncResult:
        (self.sync_stop if how == "sync_stop" else self.stop).set()
        self._thread.join(seconds)
        assert self.result is not None, "the sync did not end"
        return self.result

    def log_text(self) -> str:
        return "\n".join(message for _, message in self.logs)


def wait_until(
    condition: Callable[[], bool], seconds: float, what: str, running: Running | None = None
) -> None:
    """`until`, saying on a timeout what the sync (when given) had done."""
    try:
        until(condition, what, seconds)
    except AssertionError:
        if running is None:
            raise
        raise AssertionError(
            f"timed out waiting for {what}: {running.state}, {running.logs}"
        ) from None


def plan_for(source: RedisServer, target: RedisServer, /, **changes: Any) -> SyncPlan:
    base: dict[str, Any] = {
        "source": Endpoint("127.0.0.1", source.port, password=source.password),
        "target": Endpoint("127.0.0.1", target.port, password=target.password),
        "marker_key": MARKER_PREFIX + b"test-task",
        "incremental": True,
        "reply_timeout": 10.0,
        "source_timeout": 30.0,
        "sync_stop_seconds": 30.0,
    }
    base.update(changes)
    return SyncPlan(**base)


@pytest.mark.parametrize("source_flavour", ["redis-7.0", "redis-6.2", "valkey-8.1"])
def test_full_then_incremental_is_exact(
    redis_server: RedisServerFactory, source_flavour: str
) -> None:
    source = redis_server(*SOURCE_ARGS, build=source_flavour)
    target = redis_server(*TARGET_ARGS)
    source.cli("DEBUG", "POPULATE", "20000", "pre", "40")
    Load(source.port, most=300, prefix=b"pre").start().wait()  # before the snapshot
    load = Load(source.port, seed=8).start()
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    wait_until(lambda: load.rounds > 400, 60, "writes during the incremental phase")
    # The applied offset is what the source hears: WAIT counts this replica once it is applied.
    assert redis.Redis(port=source.port).execute_command("WAIT", 1, 5000) == 1
    load.stop()
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED, result
    assert result.state.resyncs_full == 0 and result.state.resyncs_partial == 0
    assert result.state.applied_offset == result.state.source_offset
    assert result.state.lag_ms == 0
    assert redis.Redis(port=target.port).exists(MARKER_PREFIX + b"test-task") == 0
    assert_copied(source, target, load)
    assert result.state.commands_applied > 400


def test_full_only_copies_the_snapshot(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(*TARGET_ARGS)
    Load(source.port, most=500).start().wait()
    running = Running(plan_for(source, target, incremental=False))
    running._thread.join(60)
    assert running.result is not None and running.result.ending is Ending.COPIED
    assert running.result.state.full_progress == 100.0
    assert [p for p, _ in running.phases] == [Phase.FULL]
    assert_copied(source, target)


def test_source_restart_continues_by_partial_resync(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(*TARGET_ARGS)
    load = Load(source.port, most=300).start()
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    load.wait()
    wait_until(lambda: running.state.applied_offset == running.state.source_offset, 30, "sync")
    # A restart as Redis 7 restarts: its snapshot keeps its replication id and offset.
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(port=source.port).shutdown(save=True)
    assert source.process is not None
    source.process.wait(30)
    restart(source)
    wait_until(lambda: _answers(source), 30, "the source back")
    after = Load(source.port, most=300, seed=9, prefix=b"after").start()
    after.wait()
    state = running.state
    wait_until(lambda: state.resyncs_partial + state.resyncs_full >= 1, 30, "a resync", running)
    assert state.resyncs_full == 0, running.logs
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED, result
    assert result.state.resyncs_full == 0
    assert "continuing by partial resync" in running.log_text()
    assert_copied(source, target)


def test_backlog_overrun_means_one_full_resync(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS, "--repl-backlog-size", "16kb")
    target = redis_server(*TARGET_ARGS)
    plan = plan_for(source, target)
    first = Running(plan)
    first.wait_phase(Phase.INCREMENTAL)
    Load(source.port, most=100).start().wait()
    wait_until(lambda: first.state.applied_offset == first.state.source_offset, 30, "sync")
    assert first.finish("stop").ending is Ending.STOPPED
    Load(source.port, most=600, seed=3, prefix=b"more").start().wait()  # past the backlog
    second = Running(plan)
    second.wait_phase(Phase.INCREMENTAL)
    result = second.finish()
    assert result.ending is Ending.SYNC_STOPPED, result
    assert result.state.resyncs_full == 1
    assert "no longer holds offset" in second.log_text()
    assert_copied(source, target)


def test_a_stopped_sync_continues_exactly_once(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS, "--repl-backlog-size", "64mb")
    target = redis_server(*TARGET_ARGS)
    plan = plan_for(source, target)
    load = Load(source.port).start()
    for n in range(3):  # stopped and started again while the source takes INCRs
        running = Running(plan)
        running.wait_phase(Phase.INCREMENTAL)
        wait_until(lambda r=running: r.state.commands_applied > 500, 30, "commands applied")
        stopped = running.finish("stop")
        assert stopped.ending is Ending.STOPPED
        assert stopped.state.resyncs_partial == min(n, 1)  # each run counts its own
        assert stopped.state.resyncs_full == 0
    running = Running(plan)
    running.wait_phase(Phase.INCREMENTAL)
    load.stop()
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED
    assert result.state.resyncs_partial == 1 and result.state.resyncs_full == 0
    assert_copied(source, target, load)


def test_target_killed_and_restarted(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS, "--repl-backlog-size", "64mb")
    target = redis_server(*TARGET_ARGS, "--appendonly", "yes", "--appendfsync", "always")
    load = Load(source.port).start()
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    time.sleep(1.0)
    assert target.process is not None
    target.process.send_signal(signal.SIGKILL)
    target.process.wait()
    time.sleep(1.0)
    restart(target)
    wait_until(lambda: _answers(target), 30, "the target back")
    time.sleep(1.0)
    load.stop()
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED, result
    assert "trying again" in running.log_text()
    assert result.state.resyncs_full == 0 and result.state.resyncs_partial >= 1
    assert_copied(source, target, load)


def test_bandwidth_limit_holds_within_a_fifth(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS, "--rdbcompression", "no")
    target = redis_server(*TARGET_ARGS)
    redis.Redis(port=source.port).execute_command("DEBUG", "POPULATE", "3000", "bw", "2000")
    limit = 2 << 20
    running = Running(plan_for(source, target, incremental=False, bytes_per_second=limit))
    running._thread.join(60)
    assert running.result is not None and running.result.ending is Ending.COPIED
    state = running.result.state
    started = running.phases[0][1]
    seconds = time.monotonic() - started
    rate = state.snapshot_bytes / seconds
    assert state.snapshot_bytes > 5 << 20
    assert 0.8 * limit <= rate <= 1.2 * limit, (rate, seconds)


def test_flushall_is_not_forwarded(redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(*TARGET_ARGS)
    redis.Redis(port=source.port).set("kept", "1")
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    redis.Redis(port=source.port).flushall()
    redis.Redis(port=source.port).set("after", "2")
    wait_until(lambda: redis.Redis(port=target.port).get("after") == b"2", 30, "the write after")
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED
    assert redis.Redis(port=target.port).get("kept") == b"1"
    assert result.state.flushes_skipped == 1
    assert "FLUSHALL at offset" in running.log_text()


def test_a_command_the_target_does_not_know_fails_naming_it(
    redis_server: RedisServerFactory,
) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(build="redis-6.2")
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    code = "#!lua name=lib\nredis.register_function('f', function() return 1 end)"
    redis.Redis(port=source.port).execute_command("FUNCTION", "LOAD", code)
    running._thread.join(30)
    assert running.result is not None and running.result.ending is Ending.FAILED
    assert "FUNCTION" in running.result.error and "offset" in running.result.error


def test_a_target_too_slow_for_the_spool_fails_clearly(
    redis_server: RedisServerFactory,
) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(*TARGET_ARGS)
    running = Running(plan_for(source, target, spool_max_bytes=256 << 10))
    running.wait_phase(Phase.INCREMENTAL)
    redis.Redis(port=target.port).execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    big = redis.Redis(port=source.port)
    for n in range(40):
        big.set(f"fill:{n}", b"x" * (32 << 10))
    running._thread.join(30)
    assert running.result is not None and running.result.ending is Ending.FAILED
    assert "DCS_MIGRATION_SPOOL_MAX_BYTES" in running.result.error


def test_sync_stop_refused_when_the_target_cannot_catch_up(
    redis_server: RedisServerFactory,
) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server(*TARGET_ARGS)
    # A deadline far shorter than the stream takes to arrive while the load runs.
    running = Running(plan_for(source, target, sync_stop_seconds=0.01))
    running.wait_phase(Phase.INCREMENTAL)
    load = Load(source.port).start()
    wait_until(lambda: load.rounds > 200, 30, "writes")
    running.sync_stop.set()
    wait_until(lambda: bool(running.refusals), 10, "the sync-stop refused")
    running.sync_stop.clear()
    assert "did not catch up" in running.refusals[0]
    assert running.result is None  # it goes on
    load.stop()
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED
    assert_copied(source, target, load)


def _answers(server: RedisServer) -> bool:
    try:
        return bool(redis.Redis(port=server.port, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
        return False


def test_into_a_cluster_target(redis_server: RedisServerFactory) -> None:
    from tests.support.cluster import RedisCluster

    source = redis_server(*SOURCE_ARGS)
    Load(source.port, most=300, dbs=(0,), prefix=b"pre").start().wait()
    load = Load(source.port, dbs=(0,)).start()
    with RedisCluster() as cluster:
        host, port = cluster.nodes[0]
        target = Endpoint(host, port)
        running = Running(plan_for(source, source, target=target, target_cluster=True))
        running.wait_phase(Phase.INCREMENTAL)
        wait_until(lambda: running.state.commands_applied > 2000, 60, "commands applied")
        load.stop()
        result = running.finish()
        assert result.ending is Ending.SYNC_STOPPED, result
        copied = dump_cluster_oracle(cluster.nodes)["databases"]
        original = dump_oracle(redis.Redis(port=source.port))["databases"]
        assert copied == original
        client = cluster.client()
        for (_, key), count in load.counters.items():
            assert int(client.get(key) or 0) == count


def test_a_cluster_target_refuses_other_dbs_clearly(redis_server: RedisServerFactory) -> None:
    from tests.support.cluster import RedisCluster

    source = redis_server(*SOURCE_ARGS)
    with RedisCluster() as cluster:
        host, port = cluster.nodes[0]
        running = Running(
            plan_for(source, source, target=Endpoint(host, port), target_cluster=True)
        )
        running.wait_phase(Phase.INCREMENTAL)
        redis.Redis(port=source.port, db=3).set("elsewhere", "1")
        running._thread.join(30)
        assert running.result is not None and running.result.ending is Ending.FAILED
        assert "db 3" in running.result.error


class MovingKeys(threading.Thread):
    """Writes keys of the slot a SlotMover moves, through a cluster client."""

    def __init__(self, cluster: Any) -> None:
        super().__init__(daemon=True)
        self.client = cluster.client()
        self.stop = threading.Event()
        self.incrs = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.client.set(MOVING_TAG + b":s:%d" % (n % 300), n)
            self.client.incr(MOVING_TAG + b":counter")
            self.incrs += 1
            if n % 7 == 0:
                self.client.delete(MOVING_TAG + b":s:%d" % ((n * 13) % 300))
            n += 1


@pytest.mark.parametrize("target_kind", ["cluster", "standalone"])
def test_a_cluster_source_with_a_slot_migrated_mid_sync(
    redis_server: RedisServerFactory, target_kind: str
) -> None:
    from tests.support.cluster import RedisCluster

    with contextlib.ExitStack() as stack:
        source = stack.enter_context(RedisCluster(*SOURCE_ARGS))
        seed_host, seed_port = source.nodes[0]
        load = Load(seed_port, dbs=(0,), cluster=True).start()
        moving = MovingKeys(source)
        moving.start()
        if target_kind == "cluster":
            target_cluster = stack.enter_context(RedisCluster())
            host, port = target_cluster.nodes[0]
        else:
            target_server = redis_server(*TARGET_ARGS)
            host, port = "127.0.0.1", target_server.port
        plan = SyncPlan(
            source=Endpoint(seed_host, seed_port),
            target=Endpoint(host, port),
            marker_key=MARKER_PREFIX + b"test-task",
            incremental=True,
            target_cluster=target_kind == "cluster",
            reply_timeout=10.0,
            sync_stop_seconds=30.0,
        )
        running = Running(plan, kind=ClusterSourceSync)
        running.wait_phase(Phase.INCREMENTAL)
        mover = SlotMover(source, most=2)
        mover.start()
        mover.join(120)
        assert mover.error is None and mover.moves == 2 and mover.settled()
        moving.stop.set()
        moving.join(10)
        load.stop()
        result = running.finish()
        assert result.ending is Ending.SYNC_STOPPED, result
        original = dump_cluster_oracle(source.nodes)["databases"]
        if target_kind == "cluster":
            copied = dump_cluster_oracle(target_cluster.nodes)["databases"]
        else:
            copied = dump_oracle(redis.Redis(port=port))["databases"]
        differ = {
            k: (copied["0"].get(k), original["0"].get(k))
            for k in set(copied.get("0", {})) | set(original.get("0", {}))
            if copied["0"].get(k) != original["0"].get(k)
        }
        assert not differ, (len(differ), list(differ.items())[:5])
        assert "one link per master" in running.log_text()
        assert result.state.migrations_ordered > 0


def test_a_replica_promoted_under_the_sync_continues_by_its_second_id(
    redis_server: RedisServerFactory,
) -> None:
    """The source is a replica; it is promoted (as after a failover), its replication id
    changes and the old one becomes its second: the link goes on by partial resync."""
    primary = redis_server(*SOURCE_ARGS)
    source = redis_server(*SOURCE_ARGS, "--replicaof", "127.0.0.1", str(primary.port))
    target = redis_server(*TARGET_ARGS)
    Load(primary.port, most=200).start().wait()
    running = Running(plan_for(source, target))
    running.wait_phase(Phase.INCREMENTAL)
    Load(primary.port, most=200, prefix=b"before").start().wait()
    redis.Redis(port=source.port).execute_command("REPLICAOF", "NO", "ONE")
    Load(source.port, most=200, prefix=b"after").start().wait()
    state = running.state
    wait_until(lambda: state.resyncs_partial + state.resyncs_full >= 1, 30, "a resync", running)
    result = running.finish()
    assert result.ending is Ending.SYNC_STOPPED, result
    assert result.state.resyncs_full == 0, running.logs
    assert_copied(source, target)


def test_a_command_across_slots_fails_a_cluster_target_clearly(
    redis_server: RedisServerFactory,
) -> None:
    from tests.support.cluster import RedisCluster

    source = redis_server(*SOURCE_ARGS)
    with RedisCluster() as cluster:
        host, port = cluster.nodes[0]
        running = Running(
            plan_for(source, source, target=Endpoint(host, port), target_cluster=True)
        )
        running.wait_phase(Phase.INCREMENTAL)
        redis.Redis(port=source.port).mset({"a": 1, "b": 2})  # slots 15495 and 3300
        running._thread.join(30)
        assert running.result is not None and running.result.ending is Ending.FAILED
        assert "MSET" in running.result.error and "slots" in running.result.error


def test_a_slot_migrated_on_the_cluster_target_loses_nothing(
    redis_server: RedisServerFactory,
) -> None:
    from tests.support.cluster import RedisCluster

    source = redis_server(*SOURCE_ARGS)
    load = Load(source.port, dbs=(0,)).start()
    moving = Load(source.port, dbs=(0,), prefix=MOVING_TAG, seed=5).start()
    with RedisCluster() as cluster:
        host, port = cluster.nodes[0]
        running = Running(
            plan_for(source, source, target=Endpoint(host, port), target_cluster=True)
        )
        running.wait_phase(Phase.INCREMENTAL)
        mover = SlotMover(cluster, most=3)
        mover.start()
        mover.join(120)
        assert mover.error is None and mover.moves == 3 and mover.settled()
        load.stop()
        moving.stop()
        result = running.finish()
        assert result.ending is Ending.SYNC_STOPPED, result
        copied = dump_cluster_oracle(cluster.nodes)["databases"].get("0", {})
        original = dump_oracle(redis.Redis(port=source.port))["databases"].get("0", {})
        # MIGRATE carries a TTL as milliseconds left: the cluster's own move shifts an
        # expiry by a few of them. Everything else is exact.
        assert copied.keys() == original.keys()
        for name, entry in original.items():
            got = copied[name]
            assert (got["type"], got["value"]) == (entry["type"], entry["value"]), name
            if entry["expire_at_ms"] is None or not name.startswith("{moving}"):
                assert got["expire_at_ms"] == entry["expire_at_ms"], name
            else:
                assert abs(got["expire_at_ms"] - entry["expire_at_ms"]) < 1000, name
