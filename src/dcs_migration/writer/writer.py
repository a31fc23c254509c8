"""Records in, a target's contents out: policy, expiry, db mapping and counting.

The writer decides per key (RESTORE or rewrite, skip or write) and leaves where the
commands go to its router (one standalone server or a cluster's masters). Replies are
checked as they come back; an error reply stops the import with the key and the
server's message, after counting what the target acknowledged.

AOF commands are replayed as Redis' own loader runs them (aof.c,
`loadSingleAppendOnlyFile`): a command the target does not know stops the import, as
it stops the loader; a known command the target answers with an error (WRONGTYPE, a
bad option, a script error) is skipped, counted and logged, and the replay goes on.
Errors that say the target cannot take writes now (OOM, READONLY, MISCONF, NOPERM ...)
are no property of the AOF: they stop the import. Inside MULTI/EXEC the loader queues
every command unchecked and runs them all at EXEC, skipping the ones that fail, where a
server queuing them for a client discards the whole block (EXECABORT) if one is refused
while queued; so the commands the target would refuse while queuing (unknown, a wrong
argument count, not allowed in a transaction) are left out of the block first.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis

from dcs_migration.client.acks import Ack, Asking, BatchedWrite
from dcs_migration.client.capabilities import restore_version
from dcs_migration.client.cluster import CrossSlot
from dcs_migration.client.command_table import CommandTable
from dcs_migration.client.connection import TargetHung, info
from dcs_migration.client.endpoint import TargetError
from dcs_migration.client.pipeline import Pipeline
from dcs_migration.client.resp import (
    BULK_LENGTHS,
    CRLF,
    NO_TTL,
    PXAT_TAIL,
    REPLACE_ABSTTL_TAIL,
    REPLACE_TAIL,
    RESTORE_HEAD,
    RESTORE_TTL_HEAD,
    SET_HEAD,
    SET_PXAT_HEAD,
    TTL,
    command_key,
    encode_command,
)
from dcs_migration.client.router import Router
from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.crc64 import CRC64_CONTINUE, SHORT_CRC_BYTES, crc64_short
from dcs_migration.formats.functions import describe_library
from dcs_migration.formats.functions_pre_ga import ga_function_command
from dcs_migration.formats.primitives import LENGTH_SIZE
from dcs_migration.formats.records import (
    AofCommand,
    AofTruncated,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    Record,
)
from dcs_migration.writer.acks import (
    RESTORE_NX,
    AofCopied,
    AofExec,
    AofQueued,
    AofReplayed,
    BigRestore,
    Flushed,
    FunctionLoaded,
    ModuleRestore,
    Part,
    Rename,
    RenameNx,
    RestoreNx,
    TxExec,
    TxQueued,
)
from dcs_migration.writer.commands import (
    Rewrite,
    restore_command,
    restore_pieces,
    temporary_key,
    without_stream_metadata,
)
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions

_MODULE_TYPES = (T.RDB_TYPE_MODULE_2, T.RDB_TYPE_MODULE_PRE_GA)
_BUSYKEY = "BUSYKEY"
_QUEUED = b"QUEUED"
# Zipmaps (before Redis 2.6) with lengths over 253 bytes are refused by some servers'
# integrity check although they are valid: the rewrite is exact and they are rare.
_ALWAYS_REWRITTEN = (T.RDB_TYPE_HASH_ZIPMAP,)

_BATCH_BYTES = 256 << 10
_TYPE_BYTE = [bytes((t,)) for t in range(256)]
_TABLE = len(BULK_LENGTHS)
_SET_BYTES = 1 << 16  # strings up to this size go as SET, copied once (no checksum)
_FRAMING = 64  # what a batch counts for a fast-path command's framing and key
# Values up to this size are copied once into their DUMP body (one checksum call and one
# part to join); a bigger one is checksummed in place.
_COPIED_BYTES = 1 << 16
_VERSION_SUFFIX = [restore_version(t).to_bytes(2, "little") for t in range(256)]
_TYPE_CRC = [CRC64_CONTINUE(bytes((t,)), 0) for t in range(256)]  # the type byte's CRC

_MAX_KEY_WARNINGS = 20  # warnings naming a key stop there: a summary stays short

ABANDONED_TMP_MS = b"%d" % (24 * 3600 * 1000)  # the TTL of a value being rewritten

NO_FUNCTIONS = (
    "the target is older than Redis 7.0 and has no functions: function libraries are not imported"
)
COMMAND_LOG_LINES = 100  # skipped AOF commands logged one by one; the rest are counted
# First words of error replies that say the target cannot take the command now, whatever
# the AOF holds: the import stops rather than skip them.
TARGET_STATE_ERRORS = frozenset(
    (
        "OOM",
        "READONLY",
        "MISCONF",
        "NOPERM",
        "NOAUTH",
        "WRONGPASS",
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "NOREPLICAS",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "CROSSSLOT",
        "MOVED",
        "ASK",
        "EXECABORT",
    )
)
_NOT_IN_MULTI = (b"MULTI", b"WATCH", b"DISCARD")  # what a transaction refuses (Redis 6.2 too)


class Refused(TargetError):
    """The target answered a command with an error (the connection itself is fine)."""


class UnknownCommand(Refused):
    """An AOF command the target does not know: Redis' own loader stops there too."""


class CrossSlotCommand(Refused):
    """A command whose keys live in different slots of a cluster target."""


@dataclass
class WriteStats:
    keys_written: int = 0
    keys_skipped_expired: int = 0
    keys_skipped_existing: int = 0
    keys_skipped_module: int = 0
    keys_rewritten: int = 0
    field_ttls_dropped: int = 0
    functions_loaded: int = 0
    functions_skipped: int = 0
    commands_replayed: int = 0  # AOF commands sent to the target
    commands_refused: int = 0  # AOF commands the target refused, skipped
    commands_skipped_unknown: int = 0  # AOF commands the target does not know, skipped
    reconnects: int = 0
    warnings: list[str] = field(default_factory=list)
    # One line per skipped AOF command (offset, name, the target's reply), at most
    # COMMAND_LOG_LINES; `skipped_command_log()` adds how many more there were.
    skipped_commands: list[str] = field(default_factory=list)

    def skipped_command_log(self) -> list[str]:
        more = self.commands_refused + self.commands_skipped_unknown - len(self.skipped_commands)
        if more <= 0:
            return list(self.skipped_commands)
        return [*self.skipped_commands, f"{more} more skipped AOF commands (not logged one by one)"]


class Writer:
    def __init__(self, options: WriteOptions) -> None:
        self.options = options
        self.stats = WriteStats()
        self._now_ms = int(time.time() * 1000)
        self._since_clock = 0
        self.router: Router | None = None
        self._rewrite: Rewrite | None = None
        # Per RDB type: may a value of it go as RESTORE (size and Valkey aside)?
        self._restore_types = bytes(256)
        self._multi: list[AofCommand] | None = None
        self._transactions = True  # cleared when the target refuses MULTI (some proxies)
        self._commands: CommandTable | None = None  # the target's, once an AOF command came
        self._commands_asked = False
        self._admitted: set[bytes] = set()  # names of commands the target knows
        # The file the records being written come from, to say where an AOF command is.
        self.aof_file = ""
        # Sealing (see `seal`): the AOF commands of the batch being written, gathered for
        # one transaction with the import's marker; None when commands go one by one.
        self._sealed: list[AofCommand] | None = None
        self._batch_at: tuple[int, int] = (0, 0)  # the batch's input and first record
        self._batch: Sequence[Record] = ()
        self._batch_index: dict[int, int] | None = None  # id(record) -> its place
        self._block_at: tuple[int, int] | None = None  # where an open MULTI block starts

    def attach(self, router: Router) -> None:
        """Start writing through `router` (built with this writer's `on_reply`)."""
        self.router = router
        if self.options.strategy is not Strategy.REWRITE:
            self._restore_types = bytes(
                int(
                    t not in _MODULE_TYPES
                    and t not in _ALWAYS_REWRITTEN
                    and router.caps.can_restore(t)
                )
                for t in range(256)
            )
        self._rewrite = Rewrite(router.caps, self.options.chunk_bytes, self._now_ms)
        if self.options.db is not None and self.options.db >= router.dbs:
            raise TargetError(
                f"--db {self.options.db}: the target has {router.dbs} database(s)"
                + (" (a Redis Cluster has db 0 only)" if router.dbs == 1 else "")
            )
        for pipe in router.masters():
            # Some proxies run no transactions: rewritten values then go without MULTI.
            refused = isinstance(pipe.conn.call(b"MULTI"), hiredis.ReplyError)
            pipe.conn.call(b"DISCARD")
            self._transactions = self._transactions and not refused
        if self.options.marker_key is not None and router.dbs > 1 and self._transactions:
            self._sealed = []
        if self.options.flush:
            for pipe in router.masters():
                # Freeing a big dataset takes the server a while: its reply deadline grows
                # with the memory it holds.
                work = _used_memory(pipe)
                pipe.push(encode_command([b"FLUSHALL"]), Flushed(), work=work)
            router.flush()

    # -- records -------------------------------------------------------------------------

    def write_records(self, records: Sequence[Record], at: tuple[int, int] | None = None) -> None:
        """Write a batch of records (`at`: its input and the place of its first record
        there, which a sealed batch's marker names)."""
        if self._sealed is None:
            self._write_records(records)
            return
        self._batch_at = at if at is not None else (0, 0)
        self._batch, self._batch_index = records, None
        try:
            self._write_records(records)
        finally:
            self._batch = ()
        self._seal(self._block_at or (self._batch_at[0], self._batch_at[1] + len(records)))

    def _write_records(self, records: Sequence[Record]) -> None:
        """Keys that need nothing but RESTORE ... REPLACE (or a SET) take a fast path:
        built in one loop and queued in batches, one per server."""
        router = self.router
        assert router is not None
        if self.options.conflict is not Conflict.REPLACE:
            for record in records:
                self.write(record)
            return
        # Keys that all go to one server gather in `data`, without a lookup per key (the
        # SELECT logic below is for them); where the server depends on the key (a
        # cluster: the master of its slot, db 0 only), each has a batch of its own
        # (`pending`).
        only = router.only_pipeline
        route = router.pipeline_for if only is None else None
        pending: dict[Pipeline, list[bytes]] = {}
        pending_bytes: dict[Pipeline, int] = {}
        pipe = only if only is not None else router.masters()[0]
        fast = self._restore_types
        big = self.options.big_key_bytes
        mapped_db = self.options.db
        now = self._now_ms = int(time.time() * 1000)
        calc = CRC64_CONTINUE
        short_crc = crc64_short
        short_crc_bytes = SHORT_CRC_BYTES
        suffix = _VERSION_SUFFIX
        type_crc = _TYPE_CRC
        type_byte = _TYPE_BYTE
        string_header = LENGTH_SIZE  # a plain string's length prefix (0: not plain)
        pxat = router.caps.set_pxat
        bulk_len = BULK_LENGTHS
        current_db = pipe.db
        # A standalone server's commands gather as their parts in `data`, joined once per
        # batch (a command is never joined on its own); `count` commands, about `size`
        # bytes (each command's framing counted as _FRAMING).
        data: list[bytes] = []
        size = count = 0
        skipped = 0
        extend = data.extend
        for r in records:
            if type(r) is KeyRecord:
                db, key, t, payload, expire, _, _, idle, freq, valkey = r
                if fast[t] and not valkey and idle is None and freq is None and len(payload) <= big:
                    if expire is not None and expire <= now:
                        skipped += 1
                        continue
                    if mapped_db is not None:
                        db = mapped_db
                    if route is None and db != current_db:
                        if data:
                            pipe.push_batch(b"".join(data), count)
                            data, size, count = [], 0, 0
                            extend = data.extend
                        pipe.select(db)
                        current_db = db
                    klen = bulk_len[len(key)] if len(key) < _TABLE else b"$%d\r\n" % len(key)
                    header = string_header[payload[0]] if t == 0 else 0
                    parts: tuple[bytes, ...]
                    if header and len(payload) < _SET_BYTES and (expire is None or pxat):
                        # A short plain string: SET costs the target less than RESTORE
                        # and needs no checksum, for the same result.
                        value = payload[header:]
                        n = len(value)
                        vlen = bulk_len[n] if n < _TABLE else b"$%d\r\n" % n
                        if expire is None:
                            parts = (SET_HEAD, klen, key, CRLF, vlen, value, CRLF)
                        else:
                            ms = b"%d" % expire
                            pxat_ms = PXAT_TAIL % (len(ms), ms)
                            parts = (SET_PXAT_HEAD, klen, key, CRLF, vlen, value, pxat_ms)
                    else:
                        if expire is None:
                            head, ttl, tail = RESTORE_HEAD, NO_TTL, REPLACE_TAIL
                        else:
                            ms = b"%d" % expire
                            head, tail = RESTORE_TTL_HEAD, REPLACE_ABSTTL_TAIL
                            ttl = TTL % (len(ms), ms)
                        n = len(payload) + 11
                        nlen = bulk_len[n] if n < _TABLE else b"$%d\r\n" % n
                        if n < _COPIED_BYTES:
                            # The DUMP body in one piece: one checksum call, one part.
                            body = type_byte[t] + payload + suffix[t]
                            crc = short_crc(body) if n < short_crc_bytes else calc(body, 0)
                            crc_bytes = crc.to_bytes(8, "little")
                            parts = (head, klen, key, ttl, nlen, body, crc_bytes, tail)
                        else:  # not copied once more only to be checksummed
                            crc = calc(suffix[t], calc(payload, type_crc[t]))
                            crc_bytes = crc.to_bytes(8, "little")
                            parts = (
                                head,
                                klen,
                                key,
                                ttl,
                                nlen,
                                type_byte[t],
                                payload,
                                suffix[t],
                                crc_bytes,
                                tail,
                            )
                    if route is not None:
                        target = route(key, db)
                        command = b"".join(parts)
                        queued = pending.setdefault(target, [])
                        queued.append(command)
                        queued_bytes = pending_bytes.get(target, 0) + len(command)
                        pending_bytes[target] = queued_bytes
                        if queued_bytes >= _BATCH_BYTES:
                            target.push_batch(b"".join(queued), len(queued))
                            del pending[target], pending_bytes[target]
                        continue
                    extend(parts)
                    count += 1
                    size += n + _FRAMING
                    if size >= _BATCH_BYTES:
                        pipe.push_batch(b"".join(data), count)
                        data, size, count = [], 0, 0
                        extend = data.extend
                    continue
            if data:
                pipe.push_batch(b"".join(data), count)
                data, size, count = [], 0, 0
                extend = data.extend
            _push_pending(pending, pending_bytes)
            self.write(r)
            current_db = pipe.db
        if data:
            pipe.push_batch(b"".join(data), count)
        _push_pending(pending, pending_bytes)
        self.stats.keys_skipped_expired += skipped

    def write(self, record: Record) -> None:
        if type(record) is KeyRecord:
            self.write_key(record)
        elif type(record) is BigKeyRecord:
            self.write_big_key(record)
        elif type(record) is AofCommand:
            self.write_command(record)
        elif type(record) is FunctionLibrary:
            self.write_function(record)
        elif type(record) is ModuleAux:
            self.write_module_aux(record)
        elif type(record) is AofTruncated:
            self._warn_once(
                f"{record.source} ends inside a command at offset {record.offset}: the "
                f"commands before it are imported and its last {record.dropped} bytes are "
                "not, as Redis loads a truncated AOF"
            )

    def write_module_aux(self, record: ModuleAux) -> None:
        """Module AUX data has no command that carries it: only the module's own load can
        read it, so an import stops unless module data is to be left out."""
        if self.options.skip_module_keys:
            self._warn_once(f"module AUX data of {record.module_name!r} left out")
            return
        raise TargetError(
            f"the backup holds AUX data of module {record.module_name!r} at offset "
            f"{record.offset}, which no command can carry to a target "
            "(--skip-module-keys leaves module data out)"
        )

    def write_key(self, record: KeyRecord) -> None:
        assert self.router is not None and self._rewrite is not None
        self._since_clock += 1
        if self._since_clock >= 4096:
            self._since_clock = 0
            self._now_ms = self._rewrite.now_ms = int(time.time() * 1000)
        expire = record.expire_at_ms
        if expire is not None and expire <= self._now_ms:
            self.stats.keys_skipped_expired += 1
            return
        if record.rdb_type in _MODULE_TYPES and self.options.skip_module_keys:
            self.stats.keys_skipped_module += 1
            return
        db = record.db if self.options.db is None else self.options.db
        pipe = self.router.pipeline_for(record.key, db)
        if record.rdb_type in _MODULE_TYPES:
            # Only RESTORE carries a module value; a target without the module refuses it.
            replace = self.options.conflict is Conflict.REPLACE
            module = ModuleRestore(record.key, record.module_name)
            pipe.push(restore_command(record, replace), module)
        elif self._restorable(record):
            if self.options.conflict is Conflict.REPLACE:
                pipe.push(restore_command(record, True))
            else:
                pipe.push(restore_command(record, False), RESTORE_NX)
        else:
            self._write_rewritten(record, pipe)

    def write_big_key(self, record: BigKeyRecord) -> None:
        """A value too big to hold: its RESTORE is sent as its pieces are read back, or it
        is rewritten a piece at a time."""
        assert self.router is not None
        expire = record.expire_at_ms
        if expire is not None and expire <= int(time.time() * 1000):
            self.stats.keys_skipped_expired += 1
            return
        db = record.db if self.options.db is None else self.options.db
        pipe = self.router.pipeline_for(record.key, db)
        if not self._restorable(record):
            self._write_rewritten(record, pipe)
            return
        replace = self.options.conflict is Conflict.REPLACE
        pipe.push_pieces(
            lambda: restore_pieces(record, replace),
            BigRestore(record.key, record.size),
            resendable=replace,
        )

    def _restorable(self, record: KeyRecord | BigKeyRecord) -> bool:
        return (
            bool(self._restore_types[record.rdb_type])
            and not record.valkey
            and record.size <= self.options.big_key_bytes
        )

    def _write_rewritten(self, record: KeyRecord | BigKeyRecord, pipe: Pipeline) -> None:
        """Build the value under a temporary key, then RENAME it over the key.

        A value of several commands must never be renamed into place half-built (a part
        refused for OOM, say, while the rest succeed): a small one goes as one MULTI/EXEC,
        which the target refuses whole; a big one (over one chunk) waits for its parts'
        replies before the RENAME goes out.
        """
        assert self._rewrite is not None
        key = record.key
        tmp = temporary_key(key)
        dropped = self._rewrite.field_ttls_dropped
        commands = self._rewrite.build(record, tmp)
        head: list[list[bytes]] = []
        size = 0
        for args in commands:
            head.append(args)
            size += sum(map(len, args))
            if size > self.options.chunk_bytes:
                break
        else:
            if len(head) > 1 and self._transactions:
                self._write_transaction(record, tmp, head, pipe)
                self._note_field_ttls(dropped)
                self._note_stream_length(key)
                return
        part = Part(key)
        pipe.push(encode_command([b"DEL", tmp]), part)
        parts = 0
        for args in itertools.chain(head, commands):
            pipe.push(encode_command(args), part)
            if not parts:
                # An import that fails half-way must not leave the half-built value
                # behind for good: it expires unless it is renamed into place.
                pipe.push(encode_command([b"PEXPIRE", tmp, ABANDONED_TMP_MS]), part)
            parts += 1
        self._note_field_ttls(dropped)
        self._note_stream_length(key)
        if parts > 1:
            pipe.flush()  # a refused part raises here, before the RENAME is sent
        # The expiry right before the RENAME: the safety TTL stays until the value is placed.
        for args in self._finishing(record, tmp):
            pipe.push(encode_command(args), part)
        if self.options.conflict is Conflict.REPLACE:
            pipe.push(encode_command([b"RENAME", tmp, key]), Rename(key))
        else:
            pipe.push(encode_command([b"RENAMENX", tmp, key]), RenameNx(key))
            pipe.push(encode_command([b"DEL", tmp]), part)
        self.stats.keys_rewritten += 1

    def _write_transaction(
        self, record: KeyRecord | BigKeyRecord, tmp: bytes, parts: list[list[bytes]], pipe: Pipeline
    ) -> None:
        key = record.key
        keep = self.options.conflict is not Conflict.REPLACE
        queued = [[b"DEL", tmp], *parts, *self._finishing(record, tmp)]
        queued.append([b"RENAMENX" if keep else b"RENAME", tmp, key])
        if keep:
            queued.append([b"DEL", tmp])
        in_multi = TxQueued(key)
        pipe.push(encode_command([b"MULTI"]), in_multi)
        for args in queued:
            pipe.push(encode_command(args), in_multi)
        pipe.push(encode_command([b"EXEC"]), TxExec(key, keep))
        self.stats.keys_rewritten += 1

    @staticmethod
    def _finishing(record: KeyRecord | BigKeyRecord, tmp: bytes) -> list[list[bytes]]:
        """The expiry of a rewritten value, set on the temporary key before the RENAME."""
        if record.expire_at_ms is not None:
            return [[b"PEXPIREAT", tmp, b"%d" % record.expire_at_ms]]
        return [[b"PERSIST", tmp]]

    def _note_stream_length(self, key: bytes) -> None:
        assert self._rewrite is not None
        lengths = self._rewrite.stream_length
        if lengths is not None and len(self.stats.warnings) < _MAX_KEY_WARNINGS:
            self._warn_once(
                f"stream {key!r} records a length of {lengths[0]} but holds {lengths[1]} "
                f"entries: rewritten as commands, its XLEN on the target is {lengths[1]}"
            )

    def _note_field_ttls(self, dropped_before: int) -> None:
        assert self._rewrite is not None
        if self._rewrite.field_ttls_dropped != dropped_before:
            self._warn_once(
                "the target is older than Redis 7.4 and cannot hold hash field TTLs: "
                "they are dropped (the fields and values are written)",
            )

    def write_function(self, record: FunctionLibrary) -> None:
        assert self.router is not None
        library = describe_library(record.code)
        if not self.router.caps.functions:
            self.stats.functions_skipped += 1
            self._warn_once(NO_FUNCTIONS)
            return
        args = [b"FUNCTION", b"LOAD"]
        if self.options.conflict is Conflict.REPLACE:
            args.append(b"REPLACE")
        command = encode_command([*args, record.code])
        loaded = FunctionLoaded(library.name)
        for pipe in self.router.masters():
            pipe.push(command, loaded)

    def write_command(self, record: AofCommand) -> None:
        """Replay one AOF command. SELECT is carried by each command's db; a MULTI block
        is buffered, so that one the AOF leaves open is dropped as Redis drops it."""
        name = record.name
        if name == b"SELECT":
            return
        if name == b"FUNCTION":
            record = self._ga_function(record)
        if self._multi is not None:
            if name == b"EXEC":
                block, self._multi = self._multi, None
                if self._sealed is not None:  # the seal's transaction holds the block whole
                    self._sealed.extend(self._queueable(block))
                    self._block_at = None
                else:
                    self._replay_block(block, record)
            else:  # a nested MULTI too: the loader queues it, and it fails at EXEC
                self._multi.append(record)
            return
        if name == b"MULTI":
            self._multi = []
            if self._sealed is not None:
                self._block_at = self._place_of(record)
        elif name == b"EXEC":
            self._skip_refused(record, "ERR EXEC without MULTI (as Redis answers it)")
        elif name in self._admitted or self._admit(record, name):
            if self._sealed is not None:
                self._sealed.append(record)
            else:
                self._replay(record, name)

    def _admit(self, record: AofCommand, name: bytes) -> bool:
        """Is the command sent? FUNCTION commands for a target without functions are left
        out, as function libraries of an RDB are; a command the target does not know
        stops the import (UnknownCommand), or is left out and counted when told so."""
        assert self.router is not None
        args = record.args
        if name == b"FUNCTION" and not self.router.caps.functions:
            if len(args) > 1 and args[1].upper() in (b"LOAD", b"RESTORE"):
                self.stats.functions_skipped += 1
            self._warn_once(NO_FUNCTIONS)
            return False
        table = self._command_table()
        if table is None:
            return True  # the target's reply tells (`_aof_error`)
        spec = table.lookup(args)
        if spec is not None:
            if not spec.container:  # known whatever its arguments: asked once
                self._admitted.add(name)
            return True
        shown = name.decode(errors="replace")
        if len(args) > 1 and table.lookup(args[:1]) is not None:
            shown += " " + args[1].upper().decode(errors="replace")
        self._unknown(self.aof_file, record.offset, shown)
        return False

    def _command_table(self) -> CommandTable | None:
        assert self.router is not None
        if not self._commands_asked:
            self._commands_asked = True
            self._commands = self.router.command_table()
        return self._commands

    def _queue_refusal(self, record: AofCommand) -> str | None:
        """Why the target would refuse this command while queuing it in a MULTI (which
        discards the whole block), or None."""
        if record.name in _NOT_IN_MULTI:
            return f"not run: Redis refuses {record.name.decode()} inside a transaction"
        table = self._command_table()
        spec = table.lookup(record.args) if table is not None else None
        if spec is None:
            return None
        if spec.no_multi:
            return f"not run: the target refuses {record.name.decode()} inside a transaction"
        if not spec.fits(len(record.args)):
            return (
                f"not run: the target refuses {len(record.args)} arguments for "
                f"{record.name.decode(errors='replace')} (arity {spec.arity})"
            )
        return None

    def _ga_function(self, record: AofCommand) -> AofCommand:
        """A pre-release 7.0 function command in the GA form, which every 7.0+ loads."""
        args = ga_function_command(record.args)
        if args is None:
            return record
        self._warn_once(
            "the AOF loads function libraries in the pre-release 7.0 form, which no Redis "
            "release runs: they are sent in the GA form (#!<engine> name=<library>)"
        )
        return AofCommand(args, record.db, record.offset, record.timestamp)

    def _queueable(self, block: list[AofCommand]) -> list[AofCommand]:
        """The commands of a MULTI block that the target takes in a transaction (the
        others are counted as the loader would, and left out)."""
        queued: list[AofCommand] = []
        for c in block:
            if c.name not in self._admitted and not self._admit(c, c.name):
                continue
            why = self._queue_refusal(c)
            if why is not None:
                self._skip_refused(c, why)
            else:
                queued.append(c)
        return queued

    def _replay_block(self, block: list[AofCommand], exec_record: AofCommand) -> None:
        assert self.router is not None
        queued = self._queueable(block)
        if not queued:
            return
        if self.router.dbs == 1 or not self._transactions:
            # A cluster runs no transaction across slots (and some proxies none at all);
            # replayed one after the other, the commands leave the same contents.
            for c in queued:
                self._replay(c, c.name)
            return
        db = queued[0].db if self.options.db is None else self.options.db
        pipe = self.router.command_pipeline(queued[0].args, db)
        assert pipe is not None
        file = self.aof_file
        pipe.push(encode_command([b"MULTI"]), AofQueued(file, exec_record.offset, b"MULTI"))
        for c in queued:
            pipe.push(encode_command(self._target_args(c)), AofQueued(file, c.offset, c.name))
        where = tuple((c.offset, c.name) for c in queued)
        pipe.push(encode_command([b"EXEC"]), AofExec(file, exec_record.offset, where))
        self.stats.commands_replayed += len(queued)

    # -- sealed batches (exactly once) ---------------------------------------------------
    #
    # With a marker key (a task's import into a standalone server), the AOF commands of a
    # batch go as one transaction that also sets the marker to where the batch ends:
    # `MULTI`, the commands (`SELECT` where their db changes), `SET <marker> "<input>
    # <records>"`, `EXEC`. The target applies them and the marker together or not at all,
    # so a resume goes on exactly after what the target holds: nothing runs twice. A
    # MULTI block of the AOF runs inside that transaction, whole; a batch that ends inside
    # one leaves it for the next, and its marker names where the block starts.

    def _place_of(self, record: AofCommand) -> tuple[int, int]:
        """The input and place of a record of the batch being written."""
        if self._batch_index is None:
            self._batch_index = {id(r): n for n, r in enumerate(self._batch)}
        input_index, first = self._batch_at
        return input_index, first + self._batch_index.get(id(record), 0)

    def _seal(self, place: tuple[int, int]) -> None:
        """Send the commands gathered, with the marker set to `place`, as one transaction."""
        commands = self._sealed
        if not commands:
            return
        self._sealed = []
        assert self.router is not None and self.options.marker_key is not None
        pipe = self.router.command_pipeline(commands[0].args, commands[0].db)
        assert pipe is not None
        file, first, last = self.aof_file, commands[0], commands[-1]
        before = db = pipe.db  # the transaction leaves it current again
        where: list[tuple[int, bytes]] = []
        pipe.push(encode_command([b"MULTI"]), AofQueued(file, first.offset, b"MULTI"))

        def queue(command: list[bytes], offset: int, name: bytes) -> None:
            pipe.push(encode_command(command), AofQueued(file, offset, name))
            where.append((offset, name))

        for c in commands:
            wanted = c.db if self.options.db is None else self.options.db
            if wanted != db:
                db = wanted
                queue([b"SELECT", b"%d" % db], c.offset, b"SELECT")
            queue(self._target_args(c), c.offset, c.name)
        if db != 0:
            queue([b"SELECT", b"0"], last.offset, b"SELECT")
        marker = b"%d %d" % place
        queue([b"SET", self.options.marker_key, marker], last.offset, b"SET")
        if before != 0:
            queue([b"SELECT", b"%d" % before], last.offset, b"SELECT")
        pipe.push(encode_command([b"EXEC"]), AofExec(file, last.offset, tuple(where)))
        self.stats.commands_replayed += len(commands)

    def _replay(self, record: AofCommand, name: bytes) -> None:
        assert self.router is not None
        db = record.db if self.options.db is None else self.options.db
        try:
            pipe = self.router.command_pipeline(record.args, db)
        except CrossSlot:
            if name in (b"RENAME", b"RENAMENX") and len(record.args) == 3:
                self.router.move_key(
                    record.args[1], record.args[2], keep_existing=name == b"RENAMENX"
                )
                self.stats.commands_replayed += 1
                return
            raise CrossSlotCommand(
                f"AOF command {name.decode(errors='replace')} at "
                f"{_where(self.aof_file, record.offset)} touches keys in different hash "
                "slots, which a Redis Cluster cannot run"
            ) from None
        command = encode_command(self._target_args(record))
        ack = AofReplayed(self.aof_file, record.offset, name)
        if pipe is not None:
            pipe.push(command, ack)
        else:  # a command without keys runs on every master; a refusal counts once
            first, *others = self.router.masters()
            first.push(command, ack)
            copy = AofCopied(self.aof_file, record.offset, name)
            for other in others:
                other.push(command, copy)
        self.stats.commands_replayed += 1

    def _target_args(self, record: AofCommand) -> list[bytes]:
        """The command as the target takes it: a target before 7.0 gets the streams'
        7.0 options left out, as the RDB path leaves them out."""
        assert self.router is not None
        if record.name in (b"XSETID", b"XGROUP") and not self.router.caps.stream_metadata:
            return without_stream_metadata(record.args)
        return record.args

    def _aof_error(
        self, file: str, offset: int, name: bytes, reply: Any, *, counted: bool = True
    ) -> None:
        """An AOF command answered with an error: skipped and counted, as Redis' loader
        skips it, unless the target does not know it or cannot take writes now."""
        text = str(reply)
        shown = name.decode(errors="replace")
        if text.startswith(("ERR unknown command", "ERR unknown subcommand")):
            if counted:
                self._unknown(file, offset, shown, f": {text}")
        elif text.split(" ", 1)[0] in TARGET_STATE_ERRORS:
            raise Refused(
                f"the target refused AOF command {shown} at {_where(file, offset)}: {text}"
            )
        elif counted:
            self.stats.commands_refused += 1
            self._log_skipped(
                f"AOF command {shown} at {_where(file, offset)} skipped, refused: {text}"
            )

    def _skip_refused(self, record: AofCommand, why: str) -> None:
        """A command left out because the target would refuse it: counted as refused."""
        self.stats.commands_refused += 1
        name = record.name.decode(errors="replace")
        self._log_skipped(
            f"AOF command {name} at {_where(self.aof_file, record.offset)} skipped, {why}"
        )

    def _unknown(self, file: str, offset: int, name: str, reply: str = "") -> None:
        where = _where(file, offset)
        if not self.options.skip_unknown_commands:
            raise UnknownCommand(
                f"the target refused AOF command {name} at {where}: unknown command{reply} "
                "(the target is older than the AOF or lacks its module, and Redis stops "
                "loading such an AOF there too; --skip-unknown-commands, or "
                "skip_unknown_commands in a task, leaves unknown commands out)"
            )
        self.stats.commands_skipped_unknown += 1
        self._log_skipped(f"AOF command {name} at {where} skipped, unknown command{reply}")

    def _log_skipped(self, line: str) -> None:
        if len(self.stats.skipped_commands) < COMMAND_LOG_LINES:
            self.stats.skipped_commands.append(line)

    def finish(self) -> None:
        """Wait for every reply; raises TargetError if the target refused anything."""
        assert self.router is not None
        if self._multi:
            self._warn_once(f"the AOF ends inside a MULTI: {len(self._multi)} commands not applied")
            self._multi = None
        self.router.flush()
        if self.options.marker_key is not None and self._sealed is not None:
            # Done: the marker has nothing more to say (a resume would start over).
            pipe = self.router.masters()[0]
            pipe.select(0)
            pipe.push(
                encode_command([b"DEL", self.options.marker_key]),
                AofReplayed(self.aof_file, 0, b"DEL"),
            )
            self.router.flush()

    @property
    def in_transaction(self) -> bool:
        """Inside an AOF's MULTI block: its commands wait for EXEC, not yet queued."""
        return self._multi is not None

    @property
    def keys_written(self) -> int:
        acknowledged = sum(p.acknowledged for p in self.router.masters()) if self.router else 0
        return self.stats.keys_written + acknowledged

    # -- replies -------------------------------------------------------------------------

    def on_reply(self, ack: Ack | None, reply: Any, command: bytes) -> None:
        """A reply the pipeline did not count itself, with the ack its command was pushed
        with. A command a cluster node redirected (MOVED/ASK) is sent again there, except
        the ones that must not run apart from their neighbours (a MULTI's) or cannot be
        sent again (a big value's pieces)."""
        if reply == _QUEUED and type(ack) is AofQueued:  # a sealed batch's every command
            return
        router = self.router
        assert router is not None
        error = isinstance(reply, hiredis.ReplyError)
        match ack:
            case AofReplayed():  # first: an AOF's every reply comes here
                if error and not router.redirect(reply, command, ack):
                    self._aof_error(ack.file, ack.offset, ack.name, reply)
            case RestoreNx():  # next: every key's, when existing keys are kept
                if not error:
                    self.stats.keys_written += 1
                elif not router.redirect(reply, command, ack):
                    key = command_key(command)
                    if str(reply).startswith(_BUSYKEY):
                        self._exists(key)
                    else:
                        raise Refused(f"the target refused key {key!r}: {reply}")
            case BatchedWrite(key):  # one write of a batch: sent again alone if redirected
                if not (error and router.redirect(reply, command, None)):
                    raise Refused(f"the target refused key {key!r}: {reply}")
            case None:  # a plain key write (RESTORE ... REPLACE) not answered +OK
                if not (error and router.redirect(reply, command, None)):
                    raise Refused(f"the target refused key {command_key(command)!r}: {reply}")
            case TxQueued(key):  # not redirected: moved out of its MULTI it would run alone
                if error:
                    raise Refused(f"the target refused key {key!r}: {reply}")
            case TxExec(key, keep):
                self._transaction_reply(key, keep, reply, error)
            case BigRestore(key, size):
                self._big_restore_reply(key, size, reply, error)
            case _ if error and router.redirect(reply, command, ack):
                pass
            case Part(key):
                if error:
                    raise Refused(f"the target refused key {key!r}: {reply}")
            case Asking():
                if error:
                    raise Refused(f"the target refused ASKING: {reply}")
            case Flushed():
                if error:
                    raise Refused(f"the target refused FLUSHALL: {reply}")
            case ModuleRestore(key, module):
                if error and str(reply).startswith(_BUSYKEY):
                    self._exists(key)
                elif error:
                    raise Refused(
                        f"the target refused key {key!r}, a value of module type {module!r} "
                        f"(is the module loaded there? --skip-module-keys leaves such keys "
                        f"out): {reply}"
                    )
                else:
                    self.stats.keys_written += 1
            case RenameNx(key):
                if reply == 0 or (error and str(reply).startswith(_BUSYKEY)):  # it exists
                    self._exists(key)
                elif error:
                    raise Refused(f"the target refused key {key!r}: {reply}")
                else:
                    self.stats.keys_written += 1
            case Rename(key):
                if error:
                    raise Refused(f"the target refused key {key!r}: {reply}")
                self.stats.keys_written += 1
            case FunctionLoaded(library):
                if error and "already exists" in str(reply):
                    if self.options.conflict is Conflict.FAIL:
                        raise Refused(f"function library {library!r} already exists on the target")
                    self.stats.functions_skipped += 1
                elif error:
                    raise Refused(f"the target refused function library {library!r}: {reply}")
                else:
                    self.stats.functions_loaded += 1
            case AofCopied(file, offset, name):
                if error:
                    self._aof_error(file, offset, name, reply, counted=False)
            case AofQueued(file, offset, name):
                if error:  # refused while queued: the target now discards the whole block
                    raise Refused(
                        f"the target refused AOF command {name.decode(errors='replace')} at "
                        f"{_where(file, offset)} inside MULTI, and so discards its whole "
                        f"block (Redis' own loader would run the rest): {reply}"
                    )
            case AofExec(file, offset, commands):
                if not isinstance(reply, list):
                    raise Refused(
                        f"the target did not run the MULTI block ending at "
                        f"{_where(file, offset)}: {reply}"
                    )
                for (at, name), item in zip(commands, reply, strict=False):
                    if isinstance(item, hiredis.ReplyError):
                        self._aof_error(file, at, name, item)
            case _:
                raise AssertionError(f"a reply for an unknown ack {ack!r}")

    def _big_restore_reply(self, key: bytes, size: int, reply: Any, error: bool) -> None:
        if not error:
            self.stats.keys_written += 1
        elif str(reply).startswith(_BUSYKEY):
            self._exists(key)
        elif str(reply).startswith(("MOVED ", "ASK ")):
            # Not sent again elsewhere: its pieces would have to be read back for a node
            # that only now owns the slot. A resumed import writes it again.
            raise Refused(
                f"the target moved the slot of key {key!r} ({size} bytes) while it was "
                f"being written: {reply}"
            )
        else:
            raise Refused(f"the target refused key {key!r} ({size} bytes): {reply}")

    def _transaction_reply(self, key: bytes, keep: bool, reply: Any, error: bool) -> None:
        """The EXEC of a rewritten key."""
        if error:
            raise Refused(f"the target refused key {key!r}: {reply}")
        if not isinstance(reply, list):  # EXEC answers an array (nil only after WATCH)
            raise Refused(f"the target did not run the commands of key {key!r}: {reply!r}")
        bad = _first_error(reply)
        if bad is not None:
            raise Refused(f"the target refused key {key!r}: {bad}")
        if keep and reply[-2] == 0:  # RENAMENX found the key there
            self._exists(key)
        else:
            self.stats.keys_written += 1

    def _exists(self, key: bytes) -> None:
        if self.options.conflict is Conflict.FAIL:
            raise Refused(f"key {key!r} already exists on the target (conflict policy fail)")
        self.stats.keys_skipped_existing += 1

    def _warn_once(self, message: str) -> None:
        if message not in self.stats.warnings:
            self.stats.warnings.append(message)


def _push_pending(pending: dict[Pipeline, list[bytes]], sizes: dict[Pipeline, int]) -> None:
    """Queue the batches still being gathered, one per server."""
    for target, queued in pending.items():
        target.push_batch(b"".join(queued), len(queued))
    pending.clear()
    sizes.clear()


def _where(file: str, offset: int) -> str:
    return f"offset {offset} of {file}" if file else f"offset {offset}"


def _first_error(reply: Any) -> Any:
    if isinstance(reply, list):
        for item in reply:
            if isinstance(item, hiredis.ReplyError):
                return item
    return None


def _used_memory(pipe: Pipeline) -> int:
    """The bytes the server holds (INFO memory), or 0 where INFO does not tell it."""
    try:
        value = info(pipe.conn, "memory").get("used_memory", "")
    except TargetHung:
        raise
    except TargetError:  # INFO refused (a proxy, a renamed command)
        return 0
    return int(value) if value.strip().isdigit() else 0
