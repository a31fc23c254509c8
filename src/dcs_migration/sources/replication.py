"""A live Redis as a source: its RDB snapshot, taken the way a replica takes it.

No access to the server's disk is needed: this connects as a replica would
(`client.replica`), receives the full-sync payload and hands it on in chunks while an RDB
reader checks it (structure and CRC64), so what is kept is known to be a whole, valid
image. `REPLCONF rdb-only` asks the server not to follow the snapshot with its
replication stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dcs_migration.client.connection import ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.replica import FullResync, ReplicaLink
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader


@dataclass
class Snapshot:
    """What a snapshot held: its size, RDB version and keys per db."""

    size: int = 0
    rdb_version: int = 0
    key_counts: dict[int, int] = field(default_factory=dict)
    replication_id: str = ""
    offset: int = 0


def take_snapshot(
    endpoint: Endpoint,
    sink: Callable[[bytes], None],
    *,
    timeout: float = 300.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Snapshot:
    """Stream the server's RDB snapshot into `sink`; raise TargetError (the server) or
    FormatError (the image) when it cannot be taken whole. `on_progress` hears the bytes
    and the keys received so far, after every chunk."""
    link = ReplicaLink(endpoint, timeout=timeout)
    try:
        answer = link.open(None, None, rdb_only=True)
        if not isinstance(answer, FullResync):  # a PSYNC ? -1 is always answered so
            raise TargetError("the server did not answer PSYNC with a full resync")
        snapshot = Snapshot(replication_id=answer.replication_id, offset=answer.offset)
        reader = RdbReader(count_keys_only=True)
        for data in link.snapshot():
            reader.feed(data)
            sink(data)
            snapshot.size += len(data)
            if on_progress is not None:
                on_progress(snapshot.size, sum(reader.key_counts.values()))
        reader.close()
        if not reader.done:
            raise FormatError("the snapshot ended before its RDB image did")
        snapshot.rdb_version = reader.rdb_version
        snapshot.key_counts = dict(reader.key_counts)
        return snapshot
    except (ConnectionLost, OSError) as exc:
        raise TargetError(f"the server dropped the snapshot: {exc}") from None
    finally:
        link.close()
