"""The AOF writer: records in, the RESP commands of a single-part AOF out, no I/O.

A backup stored "as an AOF" is what Redis 7 calls a base AOF in RESP form: plain
commands that rebuild the data when a server loads the file as its own AOF. Each key is
built under its own name by the same bounded commands the importer's rewrite sends
(`Rewrite`), so a big value becomes several commands of at most about `chunk_bytes`
each, and no single command outgrows what a server buffers while loading.

Expiry is written as absolute `PEXPIREAT`, as Redis' own AOF rewrite does: a key whose
time has already passed is still written, and the server drops it on load. Values of
module types have no command form (only the module's RDB loader reads them), so they
stop the writer with a `FormatError`: such a backup must be kept as an RDB.

It uses the value commands of `formats.rewrite` and the one RESP encoder of
`formats.resp`, as the importer's rewrite does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import (
    AofCommand,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    Record,
)
from dcs_migration.formats.resp import encode_command
from dcs_migration.formats.rewrite import CommandFeatures, Rewrite


class AofFeatures(CommandFeatures, Protocol):
    """What the server that will load the AOF supports (`client.Capabilities` is one)."""

    @property
    def functions(self) -> bool:
        """FUNCTION LOAD (7.0+)."""
        ...


class AofWriter:
    """Records in, RESP command bytes out.

    `caps` is what the server that will load the AOF supports (the Redis the snapshot
    came from): it decides stream metadata and hash field TTLs. `now_ms` is the clock
    hash fields are judged expired by (now when None). `keys_written` counts the keys
    that produced commands; `field_ttls_dropped` the hash field TTLs that `caps` cannot
    hold (Redis before 7.4).
    """

    def __init__(
        self, caps: AofFeatures, *, chunk_bytes: int = 1 << 20, now_ms: int | None = None
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        self.caps = caps
        self.keys_written = 0
        self._rewrite = Rewrite(
            caps, chunk_bytes, int(time.time() * 1000) if now_ms is None else now_ms
        )
        # A server loads an AOF with a fresh client in db 0, but naming the db before the
        # first key keeps the file right even when it is appended to another one.
        self._db: int | None = None

    @property
    def field_ttls_dropped(self) -> int:
        return self._rewrite.field_ttls_dropped

    def records(self, records: Iterable[Record]) -> bytes:
        """The bytes for these records, in order (b"" when none of them writes anything)."""
        parts: list[bytes] = []
        for record in records:
            if isinstance(record, (KeyRecord, BigKeyRecord)):
                self._key(record, parts)
            elif isinstance(record, FunctionLibrary):
                self._function(record, parts)
            elif isinstance(record, ModuleAux):
                # The importer refuses it too: no command carries a module's own data.
                raise FormatError(
                    f"the backup holds AUX data of module {record.module_name!r}: an AOF "
                    "backup cannot hold module data (an RDB backup can)",
                    offset=record.offset,
                )
            elif isinstance(record, AofCommand):
                self._command(record, parts)
            # Header, AUX fields, RESIZEDB, SELECTDB, slot hints and the end carry nothing
            # a server needs from an AOF: the key records name their own db.
        return b"".join(parts)

    def _select(self, db: int, parts: list[bytes]) -> None:
        if db != self._db:
            parts.append(encode_command([b"SELECT", b"%d" % db]))
            self._db = db

    def _key(self, record: KeyRecord | BigKeyRecord, parts: list[bytes]) -> None:
        if record.type_name == "module":
            raise FormatError(
                f"key of module type {record.module_name!r}: an AOF backup cannot hold "
                "module values (an RDB backup can)",
                offset=record.offset,
                key=record.key,
            )
        key = record.key
        commands = [encode_command(args) for args in self._rewrite.build(record, key)]
        if not commands:  # a hash whose every field has expired: nothing is left to write
            return
        self._select(record.db, parts)
        parts.extend(commands)
        if record.expire_at_ms is not None:
            parts.append(encode_command([b"PEXPIREAT", key, b"%d" % record.expire_at_ms]))
        self.keys_written += 1

    def _function(self, record: FunctionLibrary, parts: list[bytes]) -> None:
        if not self.caps.functions:
            raise FormatError(
                "the backup holds a function library, which a server before Redis 7.0 "
                "cannot load from an AOF",
                offset=record.offset,
            )
        parts.append(encode_command([b"FUNCTION", b"LOAD", b"REPLACE", record.code]))

    def _command(self, record: AofCommand, parts: list[bytes]) -> None:
        """An AOF command passes through; its SELECT is re-issued only when it matters."""
        if record.name == b"SELECT":
            return
        self._select(record.db, parts)
        parts.append(encode_command(record.args))
