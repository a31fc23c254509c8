"""What registering an instance means: checked before it is saved.

The addresses must be allowed (addresses.py), Redis must answer at the first one with
the credentials given (PING, INFO), and the instance holds every address it names once
resolved: those given and, for a cluster, every node the cluster names.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcs_migration.client.addresses import AddressPolicy, resolve
from dcs_migration.client.cluster import cluster_nodes
from dcs_migration.client.connection import Connection, ConnectionLost, info
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.networks import AllowedNetworks


@dataclass(frozen=True)
class Probed:
    version: str  # the server's redis_version
    addresses: frozenset[str]  # every address the instance holds, `address_key` form


def probe_instance(
    addresses: list[tuple[str, int]],
    networks: AllowedNetworks,
    *,
    username: str | None = None,
    password: str | None = None,
    cluster: bool = False,
    timeout: float = 5.0,
) -> Probed:
    """The version and the addresses of the instance at `addresses`; TargetError naming
    the cause when it cannot be registered (for the service's log: a project is told
    less)."""
    policy = AddressPolicy(networks)
    held: set[str] = set()
    for host, port in addresses:
        held.update(_keys(host, port, policy))
    host, port = addresses[0]
    seed = Endpoint(host, port, username=username, password=password, policy=policy)
    conn = Connection(seed, timeout=timeout)
    try:
        conn.connect()
        if conn.call_checked(b"PING") != b"PONG":
            raise TargetError(f"{host}:{port} does not answer PING as Redis")
        version = info(conn, "server").get("redis_version")
        if not version:
            raise TargetError(f"{host}:{port} does not report a Redis version")
        if cluster:
            for node_host, node_port in sorted(cluster_nodes(conn, seed)):
                held.update(_keys(node_host, node_port, policy))
    except ConnectionLost as exc:
        raise TargetError(str(exc)) from None
    finally:
        conn.close()
    return Probed(version, frozenset(held))


def _keys(host: str, port: int, policy: AddressPolicy) -> list[str]:
    try:
        return [r.key for r in resolve(host, port, policy)]
    except OSError as exc:
        raise TargetError(f"{host}:{port} does not resolve: {exc}") from None
