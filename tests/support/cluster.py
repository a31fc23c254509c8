"""A three-master Redis Cluster of real redis-server processes on loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redis.cluster

from tests.support.servers import ServerFlavour, end_process, free_port, server_flavour

HOST = "127.0.0.1"
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


class _Node:
    def __init__(
        self, port: int, bus_port: int, args: tuple[str, ...], flavour: ServerFlavour
    ) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="dcs-cluster-"))
        # Before 7.0 the bus port is always the client port + 10000.
        bus = ["--cluster-port", str(bus_port)] if flavour.version >= (7,) else []
        self.args = [
            str(flavour.server),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(self.dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.dir / "nodes.conf"),
            *bus,
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *args,
        ]
        self.bus_port = bus_port
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        end_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three cluster-enabled masters owning slots 0-5460, 5461-10922 and 10923-16383.

    Each node has its own temporary folder (data, log and cluster config file) and its
    own free client and cluster-bus ports on 127.0.0.1. `args` are passed to every
    redis-server (e.g. "--requirepass", "secret"; the password is then used here too);
    `flavour` chooses the build (default: the system's redis-server). Use as a context
    manager, or call `start()` and `stop()`; a failed start stops whatever it had started.
    """

    def __init__(self, *args: str, flavour: ServerFlavour | None = None) -> None:
        self.args = args
        self.flavour = flavour if flavour is not None else server_flavour()
        self.password: str | None = None
        for i, arg in enumerate(args[:-1]):
            if arg == "--requirepass":
                self.password = args[i + 1]
        self._nodes: list[_Node] = []

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(HOST, n.port) for n in self._nodes]

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, password=self.password)

    def client(self) -> redis.cluster.RedisCluster:
        """A cluster client of redis-py, routing each key to its master."""
        return redis.cluster.RedisCluster(
            host=HOST, port=self._nodes[0].port, password=self.password
        )

    def start(self, timeout: float = 30.0) -> RedisCluster:
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, deadline: float) -> None:
        chosen = _free_ports(len(SLOT_RANGES), fixed_bus=self.flavour.version < (7,))
        for port, bus_port in chosen:
            node = _Node(port, bus_port, self.args, self.flavour)
            self._nodes.append(node)
            node.process = subprocess.Popen(node.args, stdout=subprocess.DEVNULL)
        clients = [self.node_client(n.port) for n in self._nodes]
        try:
            for node, client in zip(self._nodes, clients, strict=True):
                self._wait_ping(node, client, deadline)
            for epoch, (client, (low, high)) in enumerate(
                zip(clients, SLOT_RANGES, strict=True), start=1
            ):
                # distinct config epochs spare the nodes the epoch-collision round
                _command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                _command(client, "CLUSTER", "ADDSLOTS", *range(low, high + 1))
            # every pair meets directly: faster than learning of each other by gossip
            for i, client in enumerate(clients):
                for node in self._nodes[i + 1 :]:
                    _command(client, "CLUSTER", "MEET", HOST, node.port, node.bus_port)
            self._wait_ready(clients, deadline)
        finally:
            for client in clients:
                client.close()

    def _wait_ping(self, node: _Node, client: redis.Redis, deadline: float) -> None:
        while True:
            assert node.process is not None
            if node.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {node.log()[-2000:]}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {node.port} did not answer in time")
            time.sleep(0.02)

    def _wait_ready(self, clients: list[redis.Redis], deadline: float) -> None:
        """Until every node says cluster_state:ok and sees three connected masters."""
        while not all(self._ready(c) for c in clients):
            if time.monotonic() > deadline:
                states = [self._describe(c) for c in clients]
                raise RuntimeError(f"the cluster did not become ready in time: {states}")
            time.sleep(0.05)

    @staticmethod
    def _ready(client: redis.Redis) -> bool:
        info = _command(client, "CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        if "cluster_state:ok" not in text:
            return False
        return _connected_masters(client) == len(SLOT_RANGES)

    @staticmethod
    def _describe(client: redis.Redis) -> str:
        try:
            nodes = _command(client, "CLUSTER", "NODES")
            return nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        except redis.RedisError as exc:
            return repr(exc)

    def stop(self) -> None:
        for node in self._nodes:
            node.stop()
        self._nodes = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_ports(count: int, *, fixed_bus: bool) -> list[tuple[int, int]]:
    """`count` pairs of free (client, bus) ports; with `fixed_bus`, each bus port is its
    client port + 10000, as servers before 7.0 require."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    while len(pairs) < count:
        port = free_port()
        if fixed_bus:
            bus = port + 10000
            if bus > 65535 or not _is_free(bus):
                continue
        else:
            bus = free_port()
        if {port, bus} & used or port == bus:
            continue
        used |= {port, bus}
        pairs.append((port, bus))
    return pairs


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _connected_masters(client: redis.Redis) -> int:
    """The number of masters this node knows and has a live link to (itself included)."""
    raw = _command(client, "CLUSTER", "NODES")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    count = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        flags = parts[2].split(",")
        if "master" in flags and not {"fail", "fail?", "handshake", "noaddr"} & set(flags):
            count += parts[7] == "connected"
    return count


def _command(client: redis.Redis, *args: str | int) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def emptied(cluster: RedisCluster) -> RedisCluster:
    """`cluster` with every master flushed (keys, and functions where the flavour has them)."""
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        client.flushall()
        if cluster.flavour.version >= (7,):
            _command(client, "FUNCTION", "FLUSH")
        client.close()
    return cluster
