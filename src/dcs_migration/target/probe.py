"""Does an address answer as Redis? (PING, INFO): checked before an instance is saved."""

from __future__ import annotations

from dcs_migration.target.connection import Connection, ConnectionLost, info
from dcs_migration.target.endpoint import Endpoint, TargetError


def probe_redis(endpoint: Endpoint, timeout: float = 5.0) -> str:
    """The server's version; TargetError when it does not answer as Redis."""
    conn = Connection(endpoint, timeout=timeout)
    try:
        conn.connect()
        if conn.call_checked(b"PING") != b"PONG":
            raise TargetError(f"{endpoint.host}:{endpoint.port} does not answer PING as Redis")
        server = info(conn, "server")
    except ConnectionLost as exc:
        raise TargetError(str(exc)) from None
    finally:
        conn.close()
    version = server.get("redis_version")
    if not version:
        raise TargetError(f"{endpoint.host}:{endpoint.port} does not report a Redis version")
    return version
