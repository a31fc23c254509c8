"""Where a key's commands go: the one shape every target (standalone, cluster) offers."""

from __future__ import annotations

from typing import Protocol

from dcs_migration.client.acks import Ack
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.command_table import CommandTable
from dcs_migration.client.pipeline import Pipeline


class Router(Protocol):
    caps: Capabilities  # what every node can take (the oldest node decides)
    dbs: int  # how many databases a key may go to (1 for a cluster)

    @property
    def only_pipeline(self) -> Pipeline | None:
        """The one pipeline every key goes to, whatever the key (a standalone server: a
        writer may gather keys into one batch without asking per key, and SELECTs the db
        on it itself); None when the pipeline depends on the key (`pipeline_for`)."""
        ...

    def pipeline_for(self, key: bytes, db: int) -> Pipeline:
        """The pipeline to push `key`'s commands to, with `db` current on it."""
        ...

    def command_pipeline(self, args: list[bytes], db: int) -> Pipeline | None:
        """Where a replayed command goes (None: a command without keys, for every master).
        A cluster raises CrossSlot when the keys live in different slots."""
        ...

    def command_table(self) -> CommandTable | None:
        """The target's command table (COMMAND); None where the target refuses COMMAND."""
        ...

    def move_key(self, source: bytes, destination: bytes, *, keep_existing: bool) -> None:
        """RENAME (or RENAMENX) between two slots of a cluster."""
        ...

    def masters(self) -> list[Pipeline]:
        """One pipeline per master, for what every master must run (functions, flush)."""
        ...

    def redirect(self, reply: object, command: bytes, ack: Ack | None) -> bool:
        """Resend a command a node answered with MOVED/ASK; False if it was no redirect."""
        ...

    def flush(self) -> None:
        """Send everything pushed and wait for every reply."""
        ...

    def close(self) -> None: ...
