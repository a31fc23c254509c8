"""An import, from inputs to a target: the one path the CLI and the service both run.

Data walks one way: inputs -> readers -> records -> writer -> target, with progress
(bytes read, keys written) told to the caller's hooks. Whatever happens, the result says
how far the import got. How the records reach the target (the native hand-off, RESTORE,
rewrites, AOF replay) is the writer's business (writer/facade.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcs_migration.client.connection import (
    Connection,
    ConnectionLost,
    Interrupted,
    Interrupter,
    interruptible,
)
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.pipeline import TargetRestarted
from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand, BigKeyRecord, KeyRecord, Record
from dcs_migration.reading import read_batches, read_input
from dcs_migration.sources import Input, Source, SourceError, find_all
from dcs_migration.statuses import TaskStatus
from dcs_migration.writer.facade import Refused, WriteOptions, WriteStats, open_writer


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


@dataclass(frozen=True)
class ImportHooks:
    """What the caller hears of a running import, and how it stops one.

    `on_progress` hears after every chunk read (a quarter of a megabyte). `should_stop`
    is asked as often: when it answers True, the import ends TERMINATED, with what the target
    acknowledged counted (the replies still due are waited for). When `interrupter`
    fires, every connection to the target is shut down at once, whatever it waits for (a
    hung target's replies), and the import ends TERMINATED with what was acknowledged
    until then. `on_checkpoint` hears, about once a second, how far the target has
    acknowledged (the writer waits for its replies then)."""

    on_progress: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    interrupter: Interrupter | None = None


NO_HOOKS = ImportHooks()


@dataclass
class ImportResult:
    status: TaskStatus  # SUCCESS, FAILED or TERMINATED (stopped)
    strategy: str = ""  # "handoff" or "restore" (with rewrites where needed)
    stats: WriteStats = field(default_factory=WriteStats)  # what the writer did, in all
    empty_keys_dropped: int = 0  # keys the backup holds empty, left out as Redis does
    bytes_read: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    inputs: list[str] = field(default_factory=list)
    # The target restarted and lost writes it had acknowledged: its checkpoints are void.
    target_lost_writes: bool = False
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The summary (`import --json`, a task's outcome): the keys are a contract."""
        stats = self.stats
        return {
            "status": str(self.status),
            "strategy": self.strategy,
            "keys_written": stats.keys_written,
            "keys_skipped_expired": stats.keys_skipped_expired,
            "keys_skipped_existing": stats.keys_skipped_existing,
            "keys_skipped_module": stats.keys_skipped_module,
            "keys_rewritten": stats.keys_rewritten,
            "field_ttls_dropped": stats.field_ttls_dropped,
            "functions_loaded": stats.functions_loaded,
            "functions_skipped": stats.functions_skipped,
            "commands_replayed": stats.commands_replayed,
            "commands_refused": stats.commands_refused,
            "commands_skipped_unknown": stats.commands_skipped_unknown,
            "reconnects": stats.reconnects,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "seconds": self.seconds,
            "inputs": list(self.inputs),
            "warnings": list(stats.warnings),
            # The skipped AOF commands, one line each (offset, name, the target's
            # reply), at most 100, then how many more.
            "skipped_commands": stats.skipped_command_log(),
            "target_lost_writes": self.target_lost_writes,
            "error": self.error,
            "empty_keys_dropped": self.empty_keys_dropped,
        }


# The inputs of an import, or how to find them: a source that cannot be read then ends
# the import FAILED, saying why, as a bad input does.
Inputs = Sequence[Input] | Callable[[], Sequence[Input]]


def resolve_inputs(sources: Sequence[Source], settings: Settings | None = None) -> list[Input]:
    """The inputs of every source: a spec, a local file or folder, or `s3://bucket/key`
    (an object) or `s3://bucket/prefix/` (every backup under it), read from the store
    that `settings` name (default: the settings of an empty environment)."""
    return find_all(sources, settings if settings is not None else Settings.from_env({}))


def run_import(
    inputs: Inputs,
    target: Endpoint,
    options: WriteOptions,
    hooks: ImportHooks = NO_HOOKS,
    *,
    cluster: bool = False,
    resume_from: Checkpoint | None = None,
) -> ImportResult:
    """Import every input into `target` (a Redis Cluster when `cluster`); never raises
    for bad input or a refusing target: the result says FAILED, why, and what was
    written. An import given `resume_from` writes nothing before that point, does not
    flush, and counts the keys it had written (see ImportHooks for the rest)."""
    interrupter = hooks.interrupter
    if options.marker_key is not None and not cluster:
        resume_from = _marked(target, options, resume_from)
    with interruptible(interrupter):
        return _import(
            inputs,
            target,
            options,
            hooks,
            cluster=cluster,
            resume_from=resume_from,
            interrupted=lambda: interrupter is not None and interrupter.fired,
        )


def _import(
    found: Inputs,
    target: Endpoint,
    options: WriteOptions,
    hooks: ImportHooks,
    *,
    cluster: bool,
    resume_from: Checkpoint | None,
    interrupted: Callable[[], bool],
) -> ImportResult:
    started = time.monotonic()
    result = ImportResult(status=TaskStatus.FAILED)
    should_stop, on_progress, on_checkpoint = (
        hooks.should_stop,
        hooks.on_progress,
        hooks.on_checkpoint,
    )
    writer = open_writer(target, options, cluster=cluster, resumed=resume_from is not None)
    written_before = resume_from.keys_written if resume_from is not None else 0
    progress = Progress(bytes_total=0)
    position = _Position(resume_from)

    def read_bytes(n: int) -> None:
        if should_stop is not None and should_stop():
            raise ImportStopped("stopped by the user")
        progress.bytes_read += n
        if on_progress is not None:
            progress.keys_written = written_before + writer.keys_written
            on_progress(progress)

    def read_again() -> Iterator[Sequence[Record]]:
        progress.bytes_read = 0
        return position.batches(inputs, progress, read_bytes)

    try:
        inputs = list(found() if callable(found) else found)
        result.inputs = [i.name for i in inputs]
        progress.bytes_total = result.bytes_total = sum(i.size for i in inputs)
        result.strategy = writer.strategy
        batches = writer.hand_off(
            inputs, position.batches(inputs, progress, read_bytes), read_bytes, read_again
        )
        result.strategy = writer.strategy
        writer.connect()
        if writer.options.db is None and writer.dbs == 1:
            _refuse_other_dbs(inputs)
        writer.start()
        last_checkpoint = time.monotonic()
        for batch in batches:
            at = (position.input_index, position.records_done - len(batch))
            writer.write(batch, _file_name(progress.current_part or progress.current_input), at)
            del batch  # a big value is not held while the next one is read
            # Asked after the write: the position then names what was handed out.
            if should_stop is not None and should_stop():
                raise ImportStopped("stopped by the user")
            if on_checkpoint is not None and writer.resumable:
                now = time.monotonic()
                if now - last_checkpoint >= CHECKPOINT_SECONDS:
                    writer.acknowledge()  # everything queued so far is acknowledged
                    on_checkpoint(position.checkpoint(written_before + writer.keys_written))
                    last_checkpoint = now
        writer.finish()
        result.status = TaskStatus.SUCCESS
    except (ImportStopped, Interrupted) as exc:
        result.status = TaskStatus.TERMINATED
        result.error = "stopped by the user" if isinstance(exc, Interrupted) else str(exc)
        settled = writer.settle()
        # An open MULTI block was never sent: the last checkpoint stands then.
        if settled and on_checkpoint is not None and writer.resumable:
            on_checkpoint(position.checkpoint(written_before + writer.keys_written))
    except (FormatError, SourceError, TargetError, OSError) as exc:
        if interrupted() and not isinstance(exc, (FormatError, SourceError)):
            # A connection shut down by the stop, reported as a failure on the way up.
            result.status, result.error = TaskStatus.TERMINATED, "stopped by the user"
            return result
        result.error = _error_text(exc)
        result.target_lost_writes = isinstance(exc, TargetRestarted)
        if not isinstance(exc, (FormatError, SourceError)) and progress.current_input:
            result.error = f"{result.error} (while importing {progress.current_input})"
        if isinstance(exc, Refused):
            writer.settle()
    finally:
        result.seconds = time.monotonic() - started
        result.bytes_read = progress.bytes_read
        result.empty_keys_dropped = position.empty_keys_dropped
        result.stats = writer.close()
        result.stats.keys_written += written_before
    return result


def _marked(target: Endpoint, options: WriteOptions, point: Checkpoint | None) -> Checkpoint | None:
    """Where a resumable import starts: its checkpoint, or the target's marker when that
    is further (the AOF commands up to the marker are applied, and none after it: see
    the writer's sealed batches). A target that cannot be asked is left to the import."""
    assert options.marker_key is not None
    conn = Connection(target, timeout=options.reply_timeout)
    try:
        conn.connect()
        conn.select(0)
        value = conn.call(b"GET", options.marker_key)
    except (ConnectionLost, TargetError):
        return point
    finally:
        conn.close()
    fields = value.split() if isinstance(value, bytes) else []
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return point
    input_index, records = int(fields[0]), int(fields[1])
    written = point.keys_written if point is not None else 0
    if point is not None and (point.input_index, point.records_done) >= (input_index, records):
        return point
    return Checkpoint(input_index, records, written)


def _error_text(exc: Exception) -> str:
    """What went wrong, for the result: an error about a file says what happened to it
    without its path on this machine (the input being read is named instead)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return exc.strerror or type(exc).__name__
    return str(exc)


def _file_name(name: str) -> str:
    """The last segment of a file's display name (a path, an archive member, a URL)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


class _Position:
    """Which input, and how many of its records, the batches handed out so far reach;
    skips what a checkpoint says is written."""

    def __init__(self, start: Checkpoint | None) -> None:
        self.start = start
        self.input_index = start.input_index if start is not None else 0
        self.records_done = start.records_done if start is not None else 0
        self.empty_keys_dropped = 0  # in the inputs read so far

    def _dropped(self, n: int) -> None:
        self.empty_keys_dropped += n

    def checkpoint(self, keys_written: int) -> Checkpoint:
        return Checkpoint(self.input_index, self.records_done, keys_written)

    def batches(
        self, inputs: list[Input], progress: Progress, on_bytes: Callable[[int], None]
    ) -> Iterator[Sequence[Record]]:
        start = self.start
        self.empty_keys_dropped = 0  # the inputs are read from their start again
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

            for batch in read_batches(
                source, on_bytes=on_bytes, on_part=on_part, on_empty_keys=self._dropped
            ):
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


def _refuse_other_dbs(inputs: list[Input]) -> None:
    """A target with db 0 only: read the inputs once, before writing anything, to refuse
    keys of other databases unless they are mapped with --db."""
    for source in inputs:
        if not source.rereadable:  # the writer refuses such a key when it comes
            continue
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
