"""A standalone Redis (or a proxy in front of one): one connection, SELECT per db."""

from __future__ import annotations

from dcs_migration.client.acks import Ack
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.command_table import CommandTable
from dcs_migration.client.connection import info
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.limits import PipelineLimits
from dcs_migration.client.pipeline import Pipeline, ReplyHandler


class StandaloneRouter:
    def __init__(self, endpoint: Endpoint, on_reply: ReplyHandler, limits: PipelineLimits) -> None:
        self.pipeline = Pipeline(
            endpoint,
            on_reply,
            window_bytes=limits.window_bytes,
            retries=limits.retries,
            timeout=limits.reply_timeout,
        )
        self.pipeline.open()
        server = info(self.pipeline.conn, "server")
        self.caps = Capabilities.from_info(server)
        if self.caps.cluster:
            self.pipeline.close()
            raise TargetError(
                f"{endpoint.host}:{endpoint.port} is a Redis Cluster node: import with --cluster"
            )
        self.dbs = self._databases()
        self._command_table: CommandTable | None = None
        self._command_refused = False

    def _databases(self) -> int:
        reply = self.pipeline.conn.call(b"CONFIG", b"GET", b"databases")
        if isinstance(reply, list) and len(reply) == 2:
            try:
                return int(reply[1])
            except ValueError:
                pass
        return 16  # CONFIG may be refused (e.g. renamed by a managed service)

    @property
    def only_pipeline(self) -> Pipeline:
        """Every key goes to the one server: a writer gathers them without asking."""
        return self.pipeline

    def pipeline_for(self, key: bytes, db: int) -> Pipeline:
        self.pipeline.select(db)
        return self.pipeline

    def command_pipeline(self, args: list[bytes], db: int) -> Pipeline | None:
        self.pipeline.select(db)
        return self.pipeline

    def command_table(self) -> CommandTable | None:
        """The server's command table, asked once (after the replies still due, on the
        one connection); None where COMMAND is refused (some proxies)."""
        if self._command_table is None and not self._command_refused:
            self.pipeline.flush()
            reply = self.pipeline.conn.call(b"COMMAND")
            if isinstance(reply, list):
                self._command_table = CommandTable(reply, lambda a: None)
            else:
                self._command_refused = True
        return self._command_table

    def move_key(self, source: bytes, destination: bytes, *, keep_existing: bool) -> None:
        raise AssertionError("a standalone server runs RENAME itself")

    def masters(self) -> list[Pipeline]:
        return [self.pipeline]

    def redirect(self, reply: object, command: bytes, ack: Ack | None) -> bool:
        return False

    def flush(self) -> None:
        self.pipeline.flush()

    def close(self) -> None:
        self.pipeline.close()
