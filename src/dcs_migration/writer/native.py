"""The native hand-off of an import: whether it can run, and the inputs streamed to the
target as an RDB image that its own loader reads (writer/handoff.py speaks the replica
protocol).

An input that needs no change on the way is forwarded as it is; otherwise its records
are written again as RDB (another db, module keys left out, several inputs). Either way
the hand-off ends where the first AOF command starts: what follows (the tail of an AOF
with an RDB preamble) goes through the ordinary writer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcs_migration.client.connection import Connection
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.rdb_header import HEADER_BYTES, redis_rdb_version
from dcs_migration.formats.rdb_writer import RdbWriter
from dcs_migration.formats.records import (
    AofCommand,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    Record,
)
from dcs_migration.reading import CHUNK_SIZE, read_batches
from dcs_migration.sources.inputs import Input
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.writer import WriteStats

if TYPE_CHECKING:
    from dcs_migration.writer import handoff

Batches = Iterator[Sequence[Record]]


@dataclass
class HandoffPlan:
    """A hand-off that can run: the connection that checked the target, and what it found."""

    rdb_version: int
    conn: Connection
    listen_host: str


def plan_handoff(
    inputs: list[Input], target: Endpoint, options: WriteOptions, cluster: bool
) -> HandoffPlan | str:
    """The hand-off's plan, or why it cannot run (a reason, for a log line)."""
    if options.strategy not in (Strategy.AUTO, Strategy.HANDOFF):
        return "another strategy was asked for"
    if not options.flush:
        return "it replaces the target's whole dataset, which needs --flush"
    if cluster:
        return "the target is a Redis Cluster"
    if options.conflict is not Conflict.REPLACE:
        return "the conflict policy keeps existing keys, and the hand-off replaces them all"
    versions = []
    for source in inputs:
        version = _rdb_version_of(source)
        if version is None:
            return f"{source.name} does not start with an RDB image"
        versions.append(version)
    if not versions:
        return "there is no input"
    # Imported here: an import that cannot hand off does not pay for its modules.
    from dcs_migration.writer import handoff

    if min(versions) < handoff.MIN_RDB_VERSION:
        return (
            f"RDB version {min(versions)} predates version {handoff.MIN_RDB_VERSION}: "
            "such files are restored key by key"
        )
    conn = Connection(target, timeout=options.reply_timeout)
    try:
        conn.connect()
        pre = handoff.check(conn, target, max(versions), options.handoff_addr)
    except handoff.HandoffUnavailable as exc:
        conn.close()
        return str(exc)
    except BaseException:
        conn.close()
        raise
    return HandoffPlan(max(versions), conn, pre.listen_host)


def hand_off(
    plan: HandoffPlan,
    inputs: list[Input],
    target: Endpoint,
    options: WriteOptions,
    batches: Batches,
    stats: WriteStats,
    on_bytes: Callable[[int], None],
) -> tuple[int, Batches] | str:
    """Stream the inputs to the target as its master, up to the first AOF command (the
    tail of an AOF with an RDB preamble). Returns the keys handed off and the records
    still to write, through the ordinary writer, or, when the target refused before
    anything was streamed, the reason."""
    from dcs_migration.writer import handoff

    session = handoff.Handoff(target, plan.conn, plan.listen_host, options.handoff_bind)
    try:
        try:
            session.start()
        except handoff.HandoffUnavailable as exc:
            session.release()
            plan.conn.close()
            return str(exc)
        if len(inputs) == 1 and options.db is None and not options.skip_module_keys:
            forwarded = _forward_image(session, inputs[0], on_bytes, stats)
            if forwarded is not None:
                plan.conn.close()
                return forwarded
        rdb = RdbWriter(plan.rdb_version)
        session.send(rdb.header())
        tail = _stream_records(session, rdb, batches, options, stats)
        session.send(rdb.end())
        session.finish(rdb.keys_by_db)
    except handoff.TargetLoadFailed as exc:
        session.release()
        plan.conn.close()
        stats.keys_skipped_expired = stats.keys_skipped_module = stats.functions_loaded = 0
        return str(exc)
    except BaseException:
        session.release()
        plan.conn.close()
        raise
    plan.conn.close()
    return sum(rdb.keys_by_db.values()), itertools.chain([tail], batches)


def _stream_records(
    session: handoff.Handoff,
    rdb: RdbWriter,
    batches: Batches,
    options: WriteOptions,
    stats: WriteStats,
) -> list[Record]:
    """Write the records as RDB into the stream up to the first AOF command; returns the
    records from there on (the rest of that batch)."""
    now_ms = int(time.time() * 1000)
    tail: list[Record] = []
    for batch in batches:
        keys: list[KeyRecord] = []
        for r in batch:
            if tail or type(r) is AofCommand:  # from here on, the ordinary writer
                tail.append(r)
            elif type(r) is KeyRecord:
                if r.expire_at_ms is not None and r.expire_at_ms <= now_ms:
                    stats.keys_skipped_expired += 1
                elif options.skip_module_keys and r.type_name == "module":
                    stats.keys_skipped_module += 1
                else:
                    keys.append(r)
            elif type(r) is BigKeyRecord:
                assert isinstance(r, BigKeyRecord)
                session.send(rdb.keys(keys, options.db))
                keys = []
                if r.expire_at_ms is not None and r.expire_at_ms <= now_ms:
                    stats.keys_skipped_expired += 1
                else:
                    for data in rdb.big_key(r, options.db):
                        session.send(data)
            elif type(r) is FunctionLibrary:
                session.send(rdb.keys(keys, options.db))
                keys = []
                session.send(rdb.function(r.code))
                stats.functions_loaded += 1
            elif type(r) is ModuleAux and not options.skip_module_keys:
                _refuse_module_aux([r])
        session.send(rdb.keys(keys, options.db))
        if tail:
            break
    return tail


def _forward_image(
    session: handoff.Handoff,
    source: Input,
    on_bytes: Callable[[int], None],
    stats: WriteStats,
) -> tuple[int, Batches] | None:
    """Send one input's RDB image as it is, checked by a reader that only counts keys:
    the fastest hand-off, for an input that needs no change on the way (the target
    verifies the image's own checksum as it loads it). None when the input is not one
    file, before anything is sent."""
    if len(source.parts) != 1:
        return None
    reader = RdbReader(count_keys_only=True, expired_before_ms=int(time.time() * 1000))
    sent = 0
    # The last chunk read is held back: a reader waiting for a big value's end may only
    # find where the image ends at close(), and what follows it must not be sent.
    held = b""
    with source.parts[0].open() as stream:
        while chunk := stream.read(CHUNK_SIZE):
            on_bytes(len(chunk))
            _refuse_module_aux(reader.feed(chunk))
            if held:
                session.send(held)
                sent += len(held)
            held = chunk
            if reader.done:
                break
        if not reader.done:
            _refuse_module_aux(reader.close())
        image_end = reader.offset - sent
        session.send(held[:image_end])
        has_tail = image_end < len(held) or bool(stream.read(1))
    session.finish(reader.key_counts)
    # Keys that had expired travel with the image; the target drops them as it would
    # any expired key. They are counted as skipped, not written.
    stats.keys_skipped_expired += reader.expired_keys
    handed = sum(reader.key_counts.values()) - reader.expired_keys
    if not has_tail:
        return handed, iter(())
    # What follows the image (the commands of an AOF with an RDB preamble) goes through
    # the ordinary writer: read again, from the first command on.
    return handed, ([r for r in batch if type(r) is AofCommand] for batch in read_batches(source))


def _rdb_version_of(source: Input) -> int | None:
    with source.parts[0].open() as stream:
        return redis_rdb_version(stream.read(HEADER_BYTES))


def _refuse_module_aux(records: Sequence[Record]) -> None:
    for r in records:
        if type(r) is ModuleAux:
            raise TargetError(
                f"the backup holds AUX data of module {r.module_name!r}, which the "
                "hand-off cannot carry (--skip-module-keys leaves it out)"
            )
