"""A bounded load on a live source: the writes an online migration must carry over.

Strings (random bytes), INCR counters, hashes, lists, sets, sorted sets, absolute
expiries (PXAT and PEXPIREAT, so that a replica applying them later holds the same
times; relative ones are propagated as absolute only since Redis 7.0), MULTI/EXEC
blocks, deletes, a big key grown by APPEND, and several dbs. It runs on a thread until
stopped or `most` rounds; `counters` says what each INCR counter must read at the end.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field

import redis
import redis.cluster

from tests.support.live import dump_oracle
from tests.support.servers import RedisServer

DBS = (0, 1, 5)
BIG_PIECE = 64 << 10


@dataclass
class Load:
    port: int
    password: str | None = None
    most: int | None = None  # rounds; None: until stopped
    per_second: float | None = None  # rounds a second at most
    seed: int = 7
    prefix: bytes = b"load"  # of every key: two loads with two prefixes count apart
    dbs: tuple[int, ...] = DBS  # (0,) for a cluster
    cluster: bool = False  # the port is a cluster node's: keys routed, no MULTI across slots
    counters: dict[tuple[int, bytes], int] = field(default_factory=dict)
    rounds: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def wait(self, timeout: float = 120.0) -> None:
        """Until `most` rounds are done."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        rng = random.Random(self.seed)
        clients = {db: self._client(db) for db in self.dbs}
        started = time.monotonic()
        try:
            while not self._stop.is_set() and (self.most is None or self.rounds < self.most):
                self._round(rng, clients)
                self.rounds += 1
                if self.per_second:
                    ahead = self.rounds / self.per_second - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            for client in clients.values():
                client.close()

    def _client(self, db: int) -> redis.Redis:
        if self.cluster:
            return redis.cluster.RedisCluster(  # type: ignore[return-value]
                host="127.0.0.1", port=self.port, password=self.password
            )
        return redis.Redis(port=self.port, password=self.password, db=db)

    def _round(self, rng: random.Random, clients: dict[int, redis.Redis]) -> None:
        n = self.rounds
        db = self.dbs[n % len(self.dbs)]
        r = clients[db]
        counter = self.prefix + b":counter:%d" % (n % 7)
        r.incr(counter)
        self.counters[(db, counter)] = self.counters.get((db, counter), 0) + 1
        r.set(self.prefix + b":s:%d" % rng.randrange(500), os.urandom(rng.randrange(1, 300)))
        r.hset(self.prefix + b":h:%d" % rng.randrange(50), b"f%d" % rng.randrange(40), n)
        r.rpush(self.prefix + b":l:%d" % rng.randrange(20), n)
        if n % 3 == 0:
            r.lpop(self.prefix + b":l:%d" % rng.randrange(20))
        r.sadd(self.prefix + b":set:%d" % rng.randrange(20), rng.randrange(1000))
        member = b"m%d" % rng.randrange(100)
        r.zadd(self.prefix + b":z:%d" % rng.randrange(20), {member: rng.random()})
        at = int(time.time() * 1000) + rng.randrange(60_000, 3_600_000)
        r.set(self.prefix + b":ttl:%d" % rng.randrange(200), n, pxat=at)
        r.pexpireat(self.prefix + b":h:%d" % rng.randrange(50), at)
        if n % 5 == 0 and not self.cluster:
            with r.pipeline(transaction=True) as tx:  # MULTI/EXEC
                tx.incr(counter)
                tx.hincrby(self.prefix + b":tx", b"n", 1)
                tx.delete(self.prefix + b":s:%d" % rng.randrange(500))
                tx.execute()
            self.counters[(db, counter)] += 1
        if n % 50 == 0:
            clients[0].append(self.prefix + b":big", os.urandom(BIG_PIECE))


def assert_copied(source: RedisServer, target: RedisServer, load: Load | None = None) -> None:
    """The target holds what the source holds (DEBUG DIGEST; between Redis and Valkey,
    which digest some encodings each their own way, the contents themselves), and each
    of `load`'s INCR counters reads what the load counted."""
    if source.flavour.name == target.flavour.name:
        assert target.cli("DEBUG", "DIGEST") == source.cli("DEBUG", "DIGEST")
    else:
        original = dump_oracle(redis.Redis(port=source.port, password=source.password))
        copied = dump_oracle(redis.Redis(port=target.port, password=target.password))
        assert copied["databases"] == original["databases"]
    if load is not None:
        for (db, key), count in load.counters.items():
            value = redis.Redis(port=target.port, password=target.password, db=db).get(key)
            assert int(value or 0) == count, (db, key)
