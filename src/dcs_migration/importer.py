"""An import, from sources to a target: the one path the CLI and the service both run.

Data walks one way: inputs -> readers -> records -> writer -> target, with progress
(bytes read, keys written) reported through a callback. Whatever happens, the result
says how far the import got.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dcs_migration.client.cluster import ClusterRouter
from dcs_migration.client.connection import Connection, Interrupted, Interrupter, interruptible
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.pipeline import TargetRestarted
from dcs_migration.client.router import Router
from dcs_migration.client.standalone import StandaloneRouter
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.rdb_writer import RdbWriter
from dcs_migration.formats.records import (
    AofCommand,
    BigKeyRecord,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    Record,
)
from dcs_migration.reading import CHUNK_SIZE, read_batches, read_input
from dcs_migration.sources import Input, find_inputs
from dcs_migration.sources.bucket import LocalObject, Source
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.writer import Refused, Writer, WriteStats

if TYPE_CHECKING:
    from dcs_migration.writer import handoff


class ImportStopped(Exception):
    """The caller asked the import to stop."""


CHECKPOINT_SECONDS = 1.0
SLICE_RECORDS = 4096  # records written between two stop checks


@dataclass(frozen=True)
class Checkpoint:
    """How far an import got with everything before it acknowledged by the target: the
    inputs before `input_index` whole, and the first `records_done` records of that one.
    Inputs are read again up to there on a resume (which checks them whole), and nothing
    before it is written again."""

    input_index: int
    records_done: int
    keys_written: int  # acknowledged by the target, in all, up to here


@dataclass
class Progress:
    bytes_total: int
    bytes_read: int = 0
    keys_written: int = 0
    current_input: str = ""
    current_part: str = ""  # the file of the input being read (a multi-part AOF has several)


@dataclass
class ImportResult:
    status: str  # "SUCCESS", "FAILED" or "TERMINATED" (stopped)
    strategy: str = ""  # "handoff" or "restore" (with rewrites where needed)
    keys_written: int = 0
    keys_skipped_expired: int = 0
    keys_skipped_existing: int = 0
    keys_skipped_module: int = 0
    keys_rewritten: int = 0
    field_ttls_dropped: int = 0
    functions_loaded: int = 0
    functions_skipped: int = 0
    commands_replayed: int = 0
    commands_refused: int = 0  # AOF commands the target answered with an error: skipped
    commands_skipped_unknown: int = 0  # AOF commands the target does not know (when told)
    reconnects: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    inputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The skipped AOF commands, one line each (offset, name, the target's reply), at
    # most 100, then how many more.
    skipped_commands: list[str] = field(default_factory=list)
    # The target restarted and lost writes it had acknowledged: its checkpoints are void.
    target_lost_writes: bool = False
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


def resolve_inputs(sources: Sequence[Source]) -> list[Input]:
    """The inputs of every source: a local file or folder, an object of a folder bucket
    (named `bucket/key`), or `s3://bucket/key` (an object) or `s3://bucket/prefix/`
    (every backup under it), read from the store that the DCS_MIGRATION_OBS_* variables
    name."""
    from dcs_migration.sources.s3 import find_s3_inputs, is_s3_url, make_s3_client, parse_s3_url

    inputs: list[Input] = []
    client = None
    for source in sources:
        if isinstance(source, LocalObject):
            inputs.extend(find_inputs(source.path(), name=source.name))
        elif is_s3_url(source):
            bucket, key = parse_s3_url(source)
            client = client if client is not None else make_s3_client()
            inputs.extend(find_s3_inputs(bucket, key, client=client))
        else:
            inputs.extend(find_inputs(source))
    return inputs


def run_import(
    sources: Sequence[Source],
    target: Endpoint,
    options: WriteOptions,
    *,
    cluster: bool = False,
    on_progress: ProgressCallback | None = None,
    inputs: list[Input] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    interrupter: Interrupter | None = None,
) -> ImportResult:
    """Import every backup found at `sources` into `target`; never raises for bad input
    or a refusing target: the result says FAILED, why, and what was written.

    `should_stop` is asked after every chunk read (about a megabyte): when it answers
    True, the import ends TERMINATED, with what the target acknowledged counted (the
    replies still due are waited for). When `interrupter` fires, every connection to the
    target is shut down at once, whatever it waits for (a hung target's replies), and the
    import ends TERMINATED with what was acknowledged until then.
    `on_checkpoint` hears, about once a second, how far the target has acknowledged
    (the writer waits for its replies then); an import given `resume_from` writes
    nothing before that point, does not flush, and counts the keys it had written."""
    with interruptible(interrupter):
        return _import(
            sources,
            target,
            options,
            cluster=cluster,
            on_progress=on_progress,
            inputs=inputs,
            should_stop=should_stop,
            resume_from=resume_from,
            on_checkpoint=on_checkpoint,
            interrupted=lambda: interrupter is not None and interrupter.fired,
        )


def _import(
    sources: Sequence[Source],
    target: Endpoint,
    options: WriteOptions,
    *,
    cluster: bool,
    on_progress: ProgressCallback | None,
    inputs: list[Input] | None,
    should_stop: Callable[[], bool] | None,
    resume_from: Checkpoint | None,
    on_checkpoint: Callable[[Checkpoint], None] | None,
    interrupted: Callable[[], bool],
) -> ImportResult:
    started = time.monotonic()
    result = ImportResult(status="FAILED")
    writer = Writer(options)
    router: Router | None = None
    progress = Progress(bytes_total=0)
    handed_off = resume_from.keys_written if resume_from is not None else 0
    position = _Position(resume_from)
    if resume_from is not None:
        # What was written stays: no flush, and no hand-off (which replaces everything).
        options = dataclasses.replace(options, flush=False, strategy=_resumed(options.strategy))

    def read_bytes(n: int) -> None:
        if should_stop is not None and should_stop():
            raise ImportStopped("stopped by the user")
        progress.bytes_read += n
        if on_progress is not None:
            progress.keys_written = handed_off + writer.keys_written
            on_progress(progress)

    try:
        if inputs is None:
            inputs = resolve_inputs(sources)
        result.inputs = [i.name for i in inputs]
        progress.bytes_total = result.bytes_total = sum(i.size for i in inputs)
        batches: Iterator[Sequence[Record]] = position.batches(inputs, progress, read_bytes)
        result.strategy = "restore"
        plan = _plan_handoff(inputs, target, options, cluster)
        if isinstance(plan, str):
            if options.strategy is Strategy.HANDOFF:
                raise TargetError(f"the hand-off cannot run: {plan}")
            if options.strategy is Strategy.AUTO and options.flush and not cluster:
                writer.stats.warnings.append(f"hand-off not used: {plan}")
        else:
            outcome = _handoff(plan, inputs, target, options, batches, writer.stats, read_bytes)
            if isinstance(outcome, str):  # refused before anything was streamed
                if options.strategy is Strategy.HANDOFF:
                    raise TargetError(f"the hand-off cannot run: {outcome}")
                writer.stats.warnings.append(f"hand-off not used: {outcome}")
                progress.bytes_read = 0
                batches = position.batches(inputs, progress, read_bytes)
            else:
                result.strategy = "handoff"
                handed_off, batches = outcome
        if cluster:
            router = ClusterRouter(target, writer.on_reply, options.limits)
        else:
            router = StandaloneRouter(target, writer.on_reply, options.limits)
        if options.db is None and router.dbs == 1:
            _refuse_other_dbs(inputs)
        if result.strategy == "handoff":
            options_after = dataclasses.replace(options, flush=False)
            writer.options = options_after
        writer.attach(router)
        last_checkpoint = time.monotonic()
        for batch in batches:
            writer.aof_file = _file_name(progress.current_part or progress.current_input)
            writer.write_records(batch)
            del batch  # a big value is not held while the next one is read
            # Asked after the write: the position then names what was handed out.
            if should_stop is not None and should_stop():
                raise ImportStopped("stopped by the user")
            if on_checkpoint is not None and not writer.in_transaction:
                now = time.monotonic()
                if now - last_checkpoint >= CHECKPOINT_SECONDS and result.strategy == "restore":
                    router.flush()  # everything queued so far is acknowledged
                    on_checkpoint(position.checkpoint(handed_off + writer.keys_written))
                    last_checkpoint = now
        writer.finish()
        result.status = "SUCCESS"
    except (ImportStopped, Interrupted) as exc:
        result.status = "TERMINATED"
        result.error = "stopped by the user" if isinstance(exc, Interrupted) else str(exc)
        settled = router is not None and _settle(router)
        # An open MULTI block was never sent: the last checkpoint stands then.
        resumable = result.strategy == "restore" and not writer.in_transaction
        if settled and on_checkpoint is not None and resumable:
            on_checkpoint(position.checkpoint(handed_off + writer.keys_written))
    except (FormatError, TargetError, OSError) as exc:
        if interrupted() and not isinstance(exc, FormatError):
            # A connection shut down by the stop, reported as a failure on the way up.
            result.status, result.error = "TERMINATED", "stopped by the user"
            return result
        result.error = _error_text(exc)
        result.target_lost_writes = isinstance(exc, TargetRestarted)
        if not isinstance(exc, FormatError) and progress.current_input:
            result.error = f"{result.error} (while importing {progress.current_input})"
        if router is not None and isinstance(exc, Refused):
            _settle(router)
    finally:
        result.seconds = time.monotonic() - started
        result.bytes_read = progress.bytes_read
        stats = writer.stats
        for name, value in asdict(stats).items():
            if name not in ("keys_written", "reconnects", "warnings", "skipped_commands"):
                setattr(result, name, value)
        result.keys_written = handed_off + writer.keys_written
        if router is not None:
            result.reconnects = sum(p.reconnects for p in router.masters())
            router.close()
        result.warnings = list(stats.warnings)
        result.skipped_commands = stats.skipped_command_log()
    return result


def _error_text(exc: Exception) -> str:
    """What went wrong, for the result: an error about a file says what happened to it
    without its path on this machine (the input being read is named instead)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return exc.strerror or type(exc).__name__
    return str(exc)


def _file_name(name: str) -> str:
    """The last segment of a file's display name (a path, an archive member, a URL)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def _resumed(strategy: Strategy) -> Strategy:
    return Strategy.RESTORE if strategy in (Strategy.AUTO, Strategy.HANDOFF) else strategy


class _Position:
    """Which input, and how many of its records, the batches handed out so far reach;
    skips what a checkpoint says is written."""

    def __init__(self, start: Checkpoint | None) -> None:
        self.start = start
        self.input_index = start.input_index if start is not None else 0
        self.records_done = start.records_done if start is not None else 0

    def checkpoint(self, keys_written: int) -> Checkpoint:
        return Checkpoint(self.input_index, self.records_done, keys_written)

    def batches(
        self, inputs: list[Input], progress: Progress, on_bytes: Callable[[int], None]
    ) -> Iterator[Sequence[Record]]:
        start = self.start
        for index, source in enumerate(inputs):
            if start is not None and index < start.input_index:
                progress.bytes_read += source.size  # written whole before
                continue
            skip = start.records_done if start is not None and index == start.input_index else 0
            self.input_index, self.records_done = index, 0
            progress.current_input = source.name
            progress.current_part = ""

            def on_part(name: str) -> None:
                progress.current_part = name

            for batch in read_batches(source, on_bytes=on_bytes, on_part=on_part):
                seen = self.records_done
                if seen + len(batch) <= skip:
                    self.records_done = seen + len(batch)
                    continue
                at = max(skip - seen, 0)
                # Slices of a chunk's records: a stop is heard between them, and the
                # position always names what was handed out.
                while at < len(batch):
                    piece = batch[at : at + SLICE_RECORDS]
                    at += len(piece)
                    self.records_done = seen + at
                    yield piece


# -- the hand-off -------------------------------------------------------------------------


@dataclass
class _HandoffPlan:
    rdb_version: int
    conn: Connection
    listen_host: str


def _plan_handoff(
    inputs: list[Input], target: Endpoint, options: WriteOptions, cluster: bool
) -> _HandoffPlan | str:
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
        pre = handoff.check(conn, target, max(versions))
    except handoff.HandoffUnavailable as exc:
        conn.close()
        return str(exc)
    except BaseException:
        conn.close()
        raise
    return _HandoffPlan(max(versions), conn, pre.listen_host)


def _rdb_version_of(source: Input) -> int | None:
    with source.parts[0].open() as stream:
        head = stream.read(9)
    if head.startswith(b"REDIS") and head[5:9].isdigit():
        return int(head[5:9])
    return None


def _refuse_module_aux(records: Sequence[Record]) -> None:
    for r in records:
        if type(r) is ModuleAux:
            raise TargetError(
                f"the backup holds AUX data of module {r.module_name!r}, which the "
                "hand-off cannot carry (--skip-module-keys leaves it out)"
            )


def _forward_image(
    session: handoff.Handoff,
    source: Input,
    on_bytes: Callable[[int], None],
    stats: WriteStats,
) -> tuple[int, Iterator[Sequence[Record]]] | None:
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


def _handoff(
    plan: _HandoffPlan,
    inputs: list[Input],
    target: Endpoint,
    options: WriteOptions,
    batches: Iterator[Sequence[Record]],
    stats: WriteStats,
    on_bytes: Callable[[int], None],
) -> tuple[int, Iterator[Sequence[Record]]] | str:
    """Stream the inputs to the target as its master, up to the first AOF command (the
    tail of an AOF with an RDB preamble). Returns the keys handed off and the records
    still to write, through the ordinary writer, or, when the target refused before
    anything was streamed, the reason."""
    from dcs_migration.writer import handoff

    session = handoff.Handoff(target, plan.conn, plan.listen_host)
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
                    raise TargetError(
                        f"the backup holds AUX data of module {r.module_name!r}, which the "
                        "hand-off cannot carry (--skip-module-keys leaves it out)"
                    )
            session.send(rdb.keys(keys, options.db))
            if tail:
                break
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


SETTLE_ATTEMPTS = 1000
SETTLE_SECONDS = 30.0


def _settle(router: Router) -> bool:
    """After the target refused a command, or a stop, collect the replies still on their
    way, so that the counts are exact; False when they could not all be had. Further
    refusals (a cluster whose slot moved refuses many at once) end one attempt each:
    every reply read before one is counted, and the next attempt reads on."""
    deadline = time.monotonic() + SETTLE_SECONDS
    for _ in range(SETTLE_ATTEMPTS):
        if time.monotonic() > deadline:
            break
        try:
            router.flush()
        except Refused:
            continue
        except (TargetError, OSError, Interrupted):
            return False
        return True
    return False


def _refuse_other_dbs(inputs: list[Input]) -> None:
    """A target with db 0 only: read the inputs once, before writing anything, to refuse
    keys of other databases unless they are mapped with --db."""
    for source in inputs:
        for record in _db_records(read_input(source, keep_big_values=False)):
            db = record.db
            if db != 0:
                raise TargetError(
                    f"{source.name} holds keys in db {db}, and the target has db 0 only "
                    "(a Redis Cluster): map every key to db 0 with --db 0"
                )


def _db_records(records: Iterator[Record]) -> Iterator[KeyRecord | BigKeyRecord | AofCommand]:
    for r in records:
        if isinstance(r, (KeyRecord, BigKeyRecord)) or (
            isinstance(r, AofCommand) and r.name != b"SELECT"
        ):
            yield r
