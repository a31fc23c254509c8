"""A cluster whose slots move while an import writes: every write is acknowledged where
its slot lives, or the import fails naming the key and the node; never SUCCESS with a key
missing."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import redis

from dcs_migration.client.endpoint import Endpoint
from dcs_migration.client.slots import key_slot
from dcs_migration.importer import ImportResult, resolve_inputs, run_import
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.cluster import HOST, RedisCluster, emptied
from tests.support.flavours import every_flavour
from tests.support.servers import FLAVOUR_IDS

MOVING_TAG = b"{moving}"
SLOT = key_slot(MOVING_TAG)
MIGRATE_BATCH = 500
MIGRATION_SECONDS = 60.0  # the migrator's bound, whatever the import does


def _rdb(tmp_path: Path, moving: int, still: int) -> tuple[Path, dict[bytes, bytes]]:
    """Keys in the moving slot (a hash tag) and keys spread over every slot."""
    data = {MOVING_TAG + b":%d" % i: b"value-%d-" % i + b"x" * 40 for i in range(moving)}
    data.update({b"still:%d" % i: b"%d" % i for i in range(still)})
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(*(g.key(k, g.string(v)) for k, v in data.items()), version=9))
    return path, data


def _import(path: Path, cluster: RedisCluster, strategy: Strategy) -> ImportResult:
    host, port = cluster.nodes[0]
    return run_import(
        resolve_inputs([str(path)]),
        Endpoint(host, port),
        WriteOptions(strategy=strategy),
        cluster=True,
    )


def _node_ids(cluster: RedisCluster) -> dict[int, str]:
    ids = {}
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        ids[port] = client.execute_command("CLUSTER", "MYID").decode()
        client.close()
    return ids


def _owner(client: redis.Redis, slot: int) -> int:
    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(master[1])
    raise AssertionError(f"slot {slot} has no master")


class SlotMover(threading.Thread):
    """Moves one slot from master to master and back, as a resharding tool does
    (SETSLOT IMPORTING / MIGRATING, MIGRATE of its keys, SETSLOT NODE everywhere), until
    stopped or for `MIGRATION_SECONDS` at most. A move starts once every master agrees on
    the last one."""

    def __init__(self, cluster: RedisCluster) -> None:
        super().__init__(daemon=True)
        self.ports = [port for _, port in cluster.nodes]
        self.clients = {p: cluster.node_client(p) for p in self.ports}
        self.ids = _node_ids(cluster)
        self.stop = threading.Event()
        self.moves = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + MIGRATION_SECONDS
        try:
            owner = _owner(self.clients[self.ports[0]], SLOT)
            while not self.stop.is_set() and time.monotonic() < deadline:
                if not self._agreed(owner, seconds=10):
                    raise AssertionError(f"the masters do not agree that {owner} has {SLOT}")
                target = next(p for p in self.ports if p != owner)
                self._move(owner, target)
                owner = target
                self.moves += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for client in self.clients.values():
                client.close()

    def _move(self, source: int, target: int) -> None:
        src, dst = self.clients[source], self.clients[target]
        dst.execute_command("CLUSTER", "SETSLOT", SLOT, "IMPORTING", self.ids[source])
        src.execute_command("CLUSTER", "SETSLOT", SLOT, "MIGRATING", self.ids[target])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", SLOT, MIGRATE_BATCH):
            src.execute_command("MIGRATE", HOST, target, "", 0, 5000, "KEYS", *keys)
        self._assign(target)

    def _assign(self, target: int) -> None:
        # The new owner first, then the others (the documented order).
        for port in sorted(self.ports, key=lambda p: p != target):
            self.clients[port].execute_command("CLUSTER", "SETSLOT", SLOT, "NODE", self.ids[target])

    def settled(self) -> bool:
        """After the run: every master agrees on the slot's master."""
        clients = [redis.Redis(port=port) for port in self.ports]
        try:
            return len({_owner(c, SLOT) for c in clients}) == 1
        finally:
            for client in clients:
                client.close()

    def _agreed(self, target: int, seconds: float) -> bool:
        """Within `seconds`, every master says `target` has the slot and knows every
        master's config epoch: a node that has not heard of the newest epoch yet would
        not raise its own above it when it takes the slot next, and a stale claim of the
        old owner would then win (the cluster deletes the keys of a slot it loses so)."""
        deadline = time.monotonic() + seconds
        while True:
            views = [self._view(c) for c in self.clients.values()]
            if all(v == (target, views[0][1]) for v in views):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    @staticmethod
    def _view(client: redis.Redis) -> tuple[int, frozenset[tuple[str, str]]]:
        """One master's view: who has the slot, and every master's config epoch."""
        text = client.execute_command("CLUSTER", "NODES").decode()
        epochs = frozenset((line.split()[0], line.split()[6]) for line in text.splitlines())
        return _owner(client, SLOT), epochs


def _held(cluster: RedisCluster) -> dict[bytes, bytes]:
    """Every key of every master, read where it lives."""
    held: dict[bytes, bytes] = {}
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        for key in client.scan_iter(count=1000):
            value = client.get(key)
            assert value is not None and key not in held, key
            held[key] = value
        client.close()
    return held


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("flavour", "strategy"),
    [
        *(pytest.param(f, Strategy.RESTORE, id=f"{f}-restore") for f in FLAVOUR_IDS),
        pytest.param(FLAVOUR_IDS[0], Strategy.REWRITE, id=f"{FLAVOUR_IDS[0]}-rewrite"),
    ],
    indirect=["flavour"],
)
def test_a_slot_moving_back_and_forth_never_ends_success_with_a_key_missing(
    tmp_path: Path, shared_cluster: RedisCluster, strategy: Strategy
) -> None:
    """Whatever the moves, the import ends SUCCESS with every key there and equal, or
    FAILED naming a key and a node, its counts exact. (The redirect loop below is the
    failure made certain.)"""
    redis_cluster = emptied(shared_cluster)
    path, data = _rdb(tmp_path, moving=10_000, still=2_000)
    mover = SlotMover(redis_cluster)
    mover.start()
    try:
        time.sleep(0.05)  # the first move under way
        result = _import(path, redis_cluster, strategy)
    finally:
        mover.stop.set()
        mover.join(MIGRATION_SECONDS + 30)
    assert not mover.is_alive()
    assert mover.error is None, repr(mover.error)
    assert mover.moves >= 1
    assert mover.settled()  # the slot has one master again, so every key can be read
    held = _held(redis_cluster)
    if result.status == "SUCCESS":
        assert held == data
        assert result.stats.keys_written == len(data)
    else:
        assert result.status == "FAILED"
        error = result.error or ""
        assert re.search(r"key b'\{moving\}:\d+'.*\bnode 127\.0\.0\.1:\d+", error), error
        # Every key acknowledged is there, equal, and counted; besides them, at most the
        # temporary keys of values being rewritten (they expire by themselves).
        imported = {k: v for k, v in held.items() if k in data}
        assert result.stats.keys_written == len(imported)
        assert all(data[k] == v for k, v in imported.items())
        assert all(b"dcs-migration:tmp:" in k for k in held.keys() - data.keys())


@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)
def test_a_redirect_loop_fails_naming_the_key_and_the_node(
    tmp_path: Path, shared_cluster: RedisCluster
) -> None:
    """A migration left half set up (the source MIGRATING, the target never told it is
    IMPORTING): the source answers ASK for a key it does not hold, the target MOVED back,
    for ever. The import fails naming that key and a node, its counts exact."""
    redis_cluster = emptied(shared_cluster)
    path, data = _rdb(tmp_path, moving=3, still=500)
    ids = _node_ids(redis_cluster)
    first = redis_cluster.node_client(redis_cluster.nodes[0][1])
    source = _owner(first, SLOT)
    target = next(p for _, p in redis_cluster.nodes if p != source)
    client = redis_cluster.node_client(source)
    client.execute_command("CLUSTER", "SETSLOT", SLOT, "MIGRATING", ids[target])
    try:
        result = _import(path, redis_cluster, Strategy.RESTORE)
    finally:
        client.execute_command("CLUSTER", "SETSLOT", SLOT, "STABLE")
    assert result.status == "FAILED"
    error = result.error or ""
    assert "never acknowledged key b'{moving}:" in error, error
    assert re.search(rf"node 127\.0\.0\.1:({source}|{target})\b", error), error
    held = _held(redis_cluster)
    assert not any(k.startswith(MOVING_TAG) for k in held)
    assert held == {k: v for k, v in data.items() if not k.startswith(MOVING_TAG)}
    assert result.stats.keys_written == len(held)
