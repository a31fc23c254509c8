"""An import, from sources to a target: the one path the CLI and the service both run.

Data walks one way: inputs -> readers -> records -> writer -> target, with progress
(bytes read, keys written) reported through a callback. Whatever happens, the result
says how far the import got.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand, KeyRecord, Record
from dcs_migration.reading import read_batches, read_input
from dcs_migration.sources import Input, find_inputs
from dcs_migration.target.cluster import ClusterRouter
from dcs_migration.target.endpoint import Endpoint, TargetError
from dcs_migration.target.options import WriteOptions
from dcs_migration.target.router import Router
from dcs_migration.target.standalone import StandaloneRouter
from dcs_migration.target.writer import Refused, Writer


@dataclass
class Progress:
    bytes_total: int
    bytes_read: int = 0
    keys_written: int = 0
    current_input: str = ""


@dataclass
class ImportResult:
    status: str  # "SUCCESS" or "FAILED"
    keys_written: int = 0
    keys_skipped_expired: int = 0
    keys_skipped_existing: int = 0
    keys_skipped_module: int = 0
    keys_rewritten: int = 0
    field_ttls_dropped: int = 0
    functions_loaded: int = 0
    functions_skipped: int = 0
    commands_replayed: int = 0
    reconnects: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    inputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


def resolve_inputs(sources: list[str]) -> list[Input]:
    """The inputs of every source: a local file or folder, or `s3://bucket/key` (an object)
    or `s3://bucket/prefix/` (every backup under it), read from the store that the
    DCS_MIGRATION_OBS_* variables name."""
    from dcs_migration.sources.s3 import find_s3_inputs, is_s3_url, make_s3_client, parse_s3_url

    inputs: list[Input] = []
    client = None
    for source in sources:
        if is_s3_url(source):
            bucket, key = parse_s3_url(source)
            client = client if client is not None else make_s3_client()
            inputs.extend(find_s3_inputs(bucket, key, client=client))
        else:
            inputs.extend(find_inputs(source))
    return inputs


def run_import(
    sources: list[str],
    target: Endpoint,
    options: WriteOptions,
    *,
    cluster: bool = False,
    on_progress: ProgressCallback | None = None,
    inputs: list[Input] | None = None,
) -> ImportResult:
    """Import every backup found at `sources` into `target`; never raises for bad input
    or a refusing target: the result says FAILED, why, and what was written."""
    started = time.monotonic()
    result = ImportResult(status="FAILED")
    writer = Writer(options)
    router: Router | None = None
    progress = Progress(bytes_total=0)
    try:
        if inputs is None:
            inputs = resolve_inputs(sources)
        result.inputs = [i.name for i in inputs]
        progress.bytes_total = result.bytes_total = sum(i.size for i in inputs)
        if cluster:
            router = ClusterRouter(target, writer.on_reply, options)
        else:
            router = StandaloneRouter(target, writer.on_reply, options)
        if options.db is None and router.dbs == 1:
            _refuse_other_dbs(inputs)
        writer.attach(router)

        def read_bytes(n: int) -> None:
            progress.bytes_read += n
            if on_progress is not None:
                progress.keys_written = writer.keys_written
                on_progress(progress)

        for source in inputs:
            progress.current_input = source.name
            for batch in read_batches(source, on_bytes=read_bytes):
                writer.write_records(batch)
        writer.finish()
        result.status = "SUCCESS"
    except (FormatError, TargetError, OSError) as exc:
        result.error = str(exc)
        if not isinstance(exc, FormatError) and progress.current_input:
            result.error = f"{result.error} (while importing {progress.current_input})"
        if router is not None and isinstance(exc, Refused):
            _settle(router)
    finally:
        result.seconds = time.monotonic() - started
        result.bytes_read = progress.bytes_read
        stats = writer.stats
        result.keys_written = writer.keys_written
        for name in (
            "keys_skipped_expired",
            "keys_skipped_existing",
            "keys_skipped_module",
            "keys_rewritten",
            "field_ttls_dropped",
            "functions_loaded",
            "functions_skipped",
            "commands_replayed",
        ):
            setattr(result, name, getattr(stats, name))
        if router is not None:
            result.reconnects = sum(p.reconnects for p in router.masters())
            router.close()
        result.warnings = list(stats.warnings)
    return result


def _settle(router: Router) -> None:
    """After the target refused a command, collect the replies still on their way, so that
    the counts are exact."""
    with contextlib.suppress(TargetError, OSError):
        router.flush()


def _refuse_other_dbs(inputs: list[Input]) -> None:
    """A target with db 0 only: read the inputs once, before writing anything, to refuse
    keys of other databases unless they are mapped with --db."""
    for source in inputs:
        for record in _db_records(read_input(source)):
            db = record.db
            if db != 0:
                raise TargetError(
                    f"{source.name} holds keys in db {db}, and the target has db 0 only "
                    "(a Redis Cluster): map every key to db 0 with --db 0"
                )


def _db_records(records: Iterator[Record]) -> Iterator[KeyRecord | AofCommand]:
    for r in records:
        if type(r) is KeyRecord or (type(r) is AofCommand and r.name != b"SELECT"):
            yield r
