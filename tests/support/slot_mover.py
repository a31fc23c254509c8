"""Moving one slot of a real cluster from master to master, as a resharding tool does,
while something else writes or reads (tests/test_cluster_redirects.py, the online
migration of a cluster source)."""

from __future__ import annotations

import threading
import time

import redis

from dcs_migration.client.slots import key_slot
from tests.support.cluster import HOST, RedisCluster

MOVING_TAG = b"{moving}"
SLOT = key_slot(MOVING_TAG)
MIGRATE_BATCH = 500
MIGRATION_SECONDS = 60.0  # the migrator's bound, whatever the import does


def node_ids(cluster: RedisCluster) -> dict[int, str]:
    ids = {}
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        ids[port] = client.execute_command("CLUSTER", "MYID").decode()
        client.close()
    return ids


def owner_of(client: redis.Redis, slot: int) -> int:
    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(master[1])
    raise AssertionError(f"slot {slot} has no master")


class SlotMover(threading.Thread):
    """Moves one slot from master to master and back, as a resharding tool does
    (SETSLOT IMPORTING / MIGRATING, MIGRATE of its keys, SETSLOT NODE everywhere), until
    stopped or for `MIGRATION_SECONDS` at most. A move starts once every master agrees on
    the last one."""

    def __init__(self, cluster: RedisCluster, most: int | None = None) -> None:
        """`most`: the moves to make (None: until stopped or the bound)."""
        super().__init__(daemon=True)
        self.most = most
        self.ports = [port for _, port in cluster.nodes]
        self.clients = {p: cluster.node_client(p) for p in self.ports}
        self.ids = node_ids(cluster)
        self.stop = threading.Event()
        self.moves = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + MIGRATION_SECONDS
        try:
            owner = owner_of(self.clients[self.ports[0]], SLOT)
            while not self.stop.is_set() and time.monotonic() < deadline:
                if self.most is not None and self.moves >= self.most:
                    break
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
            return len({owner_of(c, SLOT) for c in clients}) == 1
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
        return owner_of(client, SLOT), epochs
