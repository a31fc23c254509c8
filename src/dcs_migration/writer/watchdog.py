"""A guard that leaves a hand-off target a master if the importing process dies.

During a hand-off the target is a replica of this process. Started before REPLICAOF is
sent, the guard reads the target's address and login as one JSON line on stdin, then
waits for stdin to close. A `done` line first means the importer finished (and made the
target a master itself); a close without it means the importer died, however it died
(SIGKILL included), and the guard sends REPLICAOF NO ONE.

Run as `python -m dcs_migration.writer.watchdog`.
"""

from __future__ import annotations

import json
import sys
import time

from dcs_migration.client.addresses import AddressPolicy
from dcs_migration.client.connection import Connection
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.networks import AllowedNetworks


def main() -> None:
    config = json.loads(sys.stdin.readline())
    endpoint = Endpoint(
        host=config["host"],
        port=int(config["port"]),
        username=config.get("username"),
        password=config.get("password"),
        tls=bool(config.get("tls")),
        policy=AddressPolicy(
            AllowedNetworks.parse(config["networks"]), frozenset(config["held_elsewhere"])
        ),
    )
    rest = sys.stdin.read()
    if rest.strip() == "done":
        return
    for attempt in range(30):
        try:
            conn = Connection(endpoint, timeout=5.0)
            conn.connect()
            conn.call_checked(b"REPLICAOF", b"NO", b"ONE")
            conn.close()
            return
        except Exception:
            time.sleep(min(0.2 * (attempt + 1), 2.0))


if __name__ == "__main__":
    main()
