"""The command line: `dcs-migration inspect`, `import`, `serve`, `worker`, `keys`, `instances`,
`buckets`.

A command starts in a fresh process each time a user types it, so this module imports
only what every command shares (typer, and the option types its signatures name); each
command imports what it needs when it runs. `import` and `inspect` never load the
service's stack (SQLAlchemy, Alembic, FastAPI, boto3, ...): its imports stay in
`serve`, `keys`, `instances` and `buckets`. A test checks what a bare import of this module loads.

Each command reads the environment once, into `Settings` (`config.py`), and hands what it
needs down from there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dcs_migration.writer.options import Conflict, Strategy, WriteOptions

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from dcs_migration.config import Settings
    from dcs_migration.formats import Record
    from dcs_migration.importer import ImportResult
    from dcs_migration.inspect_backup import Summary
    from dcs_migration.sources import Input
    from dcs_migration.store import Store

# Plain help and usage errors: typer's rich rendering of them imports about a hundred
# modules (markdown, syntax highlighting), which would double the start-up of `--help`.
app = typer.Typer(
    help="Import Redis backups (RDB and AOF) into Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _records(source: Input, keep_big_values: bool = True) -> Iterator[Record]:
    from dcs_migration.reading import read_input

    yield from read_input(source, keep_big_values=keep_big_values)


def _console(*, stderr: bool = False) -> Console:
    """A rich console, imported when a command first prints (rich costs start-up time)."""
    from rich.console import Console

    return Console(stderr=stderr)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.callback()
def _root() -> None:
    """dcs-migration: Redis backup import service and tools."""


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="An RDB or AOF file, a folder or an archive.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full contents in the oracle JSON form.")
    ] = False,
    skip_modules: Annotated[
        bool, typer.Option("--skip-module-keys", help="Leave out module keys and module data.")
    ] = False,
) -> None:
    """Describe a backup: format, versions, keys per db and type, biggest keys, functions."""
    from dcs_migration.formats import FormatError
    from dcs_migration.inspect_backup import summarize
    from dcs_migration.sources import find_inputs

    now_ms = int(time.time() * 1000)
    err = _console(stderr=True)
    if not file.exists():
        err.print(f"[red]error:[/red] {file}: no such file or folder")
        raise typer.Exit(2)
    try:
        inputs = find_inputs(file)
        if as_json:
            docs = [_input_json(i, now_ms, skip_modules) for i in inputs]
            doc = docs[0] if len(docs) == 1 else {"inputs": docs}
            sys.stdout.write(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
        else:
            for source in inputs:
                summary = summarize(_records(source, keep_big_values=False), now_ms)
                _print_summary(source, summary)
    except FormatError as exc:
        if exc.source is None:
            exc.source = str(file)
        err.print(f"[red]error:[/red] {_escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _input_json(source: Input, now_ms: int, skip_modules: bool) -> dict[str, Any]:
    """An RDB as its oracle document; an AOF as the oracle of its RDB part (if any) and a
    summary of its commands, which only a server can turn into a dataset."""
    from dcs_migration.formats import FormatError
    from dcs_migration.inspect_backup import summarize
    from dcs_migration.oracle import oracle_from_records
    from dcs_migration.sources import InputKind

    try:
        rdb_part: list[Record] = []
        summary = summarize(_split_rdb(_records(source), rdb_part), now_ms)
        base: dict[str, Any] = oracle_from_records(rdb_part, now_ms, skip_modules=skip_modules)
    except FormatError as exc:
        if exc.source is None:
            exc.source = source.name
        raise
    if not summary.commands and summary.rdb_headers:
        return base
    return {
        "name": source.name,
        "format": "aof-preamble" if source.kind is InputKind.RDB else str(source.kind),
        "rdb": base if summary.rdb_headers else None,
        "aof": summary.as_json(),
    }


def _split_rdb(records: Iterator[Record], rdb_part: list[Record]) -> Iterator[Record]:
    """Pass every record on, keeping those of the RDB image (not the commands) aside."""
    from dcs_migration.formats import AofCommand

    for r in records:
        if not isinstance(r, AofCommand):
            rdb_part.append(r)
        yield r


def _print_summary(source: Input, s: Summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = _console()
    out.print(f"[bold]{escape(source.name)}[/bold] ({source.kind}, {source.size} bytes)")
    for h in s.rdb_headers:
        out.print(f"RDB image: {h.magic} version {h.rdb_version}")
    for name in ("redis-ver", "valkey-ver", "ctime", "used-mem", "aof-base"):
        if name in s.aux:
            out.print(f"  {name}: {s.aux[name]}")
    if s.checksum:
        out.print(f"  checksum: {s.checksum}")
    if s.keys:
        table = Table("db", "type", "keys")
        for (db, t), n in sorted(s.keys.items()):
            table.add_row(str(db), t, str(n))
        out.print(table)
    out.print(f"keys: {sum(s.keys.values())}, already expired (left out): {s.expired_keys}")
    if s.module_keys:
        out.print("module keys: " + ", ".join(f"{m} ({n})" for m, n in s.module_keys.items()))
    if s.module_aux:
        out.print("module AUX data: " + ", ".join(s.module_aux))
    if s.functions:
        out.print(
            "function libraries: " + ", ".join(f.decode(errors="replace") for f in s.functions)
        )
    if s.biggest:
        table = Table("bytes", "db", "type", "biggest keys")
        for n, db, key, t in sorted(s.biggest, reverse=True):
            table.add_row(str(n), str(db), t, repr(key)[2:-1])
        out.print(table)
    if s.commands:
        table = Table("db", "command", "count")
        for (db, c), n in sorted(s.commands.items()):
            table.add_row(str(db), c, str(n))
        out.print(table)
        if s.first_timestamp is not None:
            out.print(f"timestamps: {s.first_timestamp} .. {s.last_timestamp}")
    for cut in s.truncated:
        out.print(
            f"{escape(cut.source)} ends inside a command at offset {cut.offset}: its last "
            f"{cut.dropped} bytes are left out, as Redis loads a truncated AOF"
        )


@app.command("import")
def import_(
    sources: Annotated[
        list[str], typer.Argument(help="Backup files, folders, archives or s3://bucket/key.")
    ],
    target: Annotated[str, typer.Option("--target", help="redis://[user:password@]host:port[/db]")],
    cluster: Annotated[
        bool, typer.Option("--cluster", help="The target is a Redis Cluster.")
    ] = False,
    db: Annotated[
        int | None, typer.Option("--db", help="Write every key to this database.")
    ] = None,
    conflict: Annotated[
        Conflict, typer.Option("--conflict", help="What to do with a key the target already has.")
    ] = Conflict.REPLACE,
    flush: Annotated[bool, typer.Option("--flush", help="Empty the target first.")] = False,
    strategy: Annotated[Strategy, typer.Option("--strategy")] = Strategy.AUTO,
    skip_module_keys: Annotated[
        bool, typer.Option("--skip-module-keys", help="Leave out keys of module types.")
    ] = False,
    skip_unknown_commands: Annotated[
        bool,
        typer.Option(
            "--skip-unknown-commands",
            help="Leave out (and count) AOF commands the target does not know.",
        ),
    ] = False,
    big_key_bytes: Annotated[
        int, typer.Option("--big-key-bytes", help="Rewrite values larger than this in chunks.")
    ] = WriteOptions.big_key_bytes,
    reply_timeout: Annotated[
        float,
        typer.Option(
            "--reply-timeout",
            min=0.001,
            help="Seconds the target may leave the connection without an answer before "
            "the import fails (it is hung); a big command in flight has more.",
        ),
    ] = WriteOptions.reply_timeout,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary as the last line.")
    ] = False,
) -> None:
    """Import backups into a Redis (standalone or cluster) without running the service."""
    from dcs_migration.client.addresses import AddressPolicy
    from dcs_migration.client.endpoint import TargetError, parse_target_url
    from dcs_migration.config import Settings
    from dcs_migration.importer import ImportHooks, resolve_inputs, run_import

    try:
        settings = Settings.from_env()
        # The operator's own tool, under the service's rule all the same: the target
        # and every node a cluster names must lie in DCS_MIGRATION_ALLOWED_NETWORKS.
        endpoint = parse_target_url(target, AddressPolicy(settings.allowed_networks))
    except (TargetError, ValueError) as exc:
        _console(stderr=True).print(f"[red]error:[/red] {_escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    options = WriteOptions(
        conflict=conflict,
        strategy=strategy,
        db=db if db is not None else (endpoint.db if endpoint.db else None),
        flush=flush,
        skip_module_keys=skip_module_keys,
        skip_unknown_commands=skip_unknown_commands,
        big_key_bytes=big_key_bytes,
        reply_timeout=reply_timeout,
        handoff_addr=settings.handoff_addr,
        handoff_bind=settings.handoff_bind,
    )

    def found() -> list[Input]:
        return resolve_inputs(sources, settings)

    if sys.stderr.isatty() and not as_json:
        from dcs_migration.progress import ImportProgress

        with ImportProgress(enabled=True) as bar:
            hooks = ImportHooks(on_progress=bar.update)
            result = run_import(found, endpoint, options, hooks, cluster=cluster)
    else:
        result = run_import(found, endpoint, options, cluster=cluster)
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
    else:
        _print_result(result)
    raise typer.Exit(0 if result.status == "SUCCESS" else 1)


def _print_result(result: ImportResult) -> None:
    from rich.markup import escape

    out = _console()
    color = "green" if result.status == "SUCCESS" else "red"
    stats = result.stats
    aof = f"{stats.commands_replayed} AOF commands"
    if stats.commands_refused or stats.commands_skipped_unknown:
        aof += (
            f" ({stats.commands_refused} refused, "
            f"{stats.commands_skipped_unknown} unknown: skipped)"
        )
    out.print(
        f"[{color}]{result.status}[/{color}]: {stats.keys_written} keys written, "
        f"{stats.keys_skipped_expired} already expired, "
        f"{stats.keys_skipped_existing} kept (existing), {aof}, "
        f"{stats.functions_loaded} function libraries, "
        f"{result.bytes_read} of {result.bytes_total} bytes in {result.seconds:.2f} s",
        highlight=False,
    )
    if result.empty_keys_dropped:
        out.print(
            f"{result.empty_keys_dropped} empty keys in the backup left out, "
            "as Redis leaves them out when it loads it",
            highlight=False,
        )
    for warning in [*stats.warnings, *stats.skipped_command_log()]:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if result.error:
        out.print(f"[red]error:[/red] {escape(result.error)}", soft_wrap=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Default: $DCS_MIGRATION_DATA_DIR or ./dcs-data."),
    ] = None,
) -> None:
    """Run the migration-task service (the DCS API) on the embedded default."""
    from dcs_migration.api.app import create_app
    from dcs_migration.api.server import run_server

    settings = _service_settings(data_dir)
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    base = settings.public_url or f"http://{shown}:{port}"
    sys.stderr.write(f"The web console: {base}/console/ (sign in with a key of a project)\n")
    run_server(app, host, port)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Units run at once (default: CPU count)."),
    ] = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="The worker's name (Celery's -n).")
    ] = None,
) -> None:
    """Run a Celery worker (DCS_MIGRATION_EXECUTOR=celery): it takes the units of imports,
    restores and backups from the broker, on any machine that shares the database and the
    object store. SIGTERM hands its running imports over to other workers at once (from
    their checkpoints) and leaves; SIGQUIT leaves at once (its units resume on another
    worker once their leases expire)."""
    from dcs_migration.config import ExecutorKind

    settings = _service_settings(None)
    if settings.executor is not ExecutorKind.CELERY:
        _fail_setting(
            "a worker runs with DCS_MIGRATION_EXECUTOR=celery (the inline executor "
            "runs units in the service's own processes)"
        )
    try:
        from dcs_migration.tasks.distributed import run_worker
    except ImportError as exc:
        _fail_setting(f"{exc}: install the distributed extra (dcs-migration[distributed])")
    run_worker(settings, concurrency or os.cpu_count() or 1, hostname)


def _service_settings(data_dir: Path | None) -> Settings:
    """The settings of a service process, or exit 2 naming what cannot be used."""
    from dcs_migration.config import Settings

    try:
        settings = Settings.from_env(data_dir=data_dir)
    except ValueError as exc:  # a setting of the environment that cannot be used
        _fail_setting(str(exc))
    problem = settings.distribution_problem()
    if problem is not None:
        _fail_setting(problem)
    return settings


def _fail_setting(message: str) -> NoReturn:
    _console(stderr=True).print(f"[red]error:[/red] {_escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


keys_app = typer.Typer(
    help="Access keys (AK/SK) that sign API requests.", no_args_is_help=True, rich_markup_mode=None
)
instances_app = typer.Typer(
    help="Redis instances the service may import into.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
buckets_app = typer.Typer(
    help="Buckets each project may import from (folders of the data dir, or S3 buckets).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(keys_app, name="keys")
app.add_typer(instances_app, name="instances")
app.add_typer(buckets_app, name="buckets")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The service's data dir (default: $DCS_MIGRATION_DATA_DIR or ./dcs-data).",
    ),
]


def _settings(data_dir: Path | None) -> Settings:
    from dcs_migration.config import Settings

    return Settings.from_env(data_dir=data_dir)


def _open_store(data_dir: Path | None, settings: Settings | None = None) -> Store:
    """The service's store, as the settings (made here unless given) name it."""
    from dcs_migration.store import open_settings_store

    settings = settings if settings is not None else _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_settings_store(settings)


@keys_app.command("create")
def keys_create(
    project_id: Annotated[str, typer.Option("--project-id", help="The project the key signs for.")],
    data_dir: DataDir = None,
) -> None:
    """Mint an AK/SK pair; the SK is printed this once."""
    with _open_store(data_dir) as store:
        key = store.create_key(project_id)
    sys.stdout.write(json.dumps({"ak": key.ak, "sk": key.sk, "project_id": project_id}) + "\n")


@keys_app.command("revoke")
def keys_revoke(ak: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    """Revoke an access key: requests it signs are refused from now on."""
    with _open_store(data_dir) as store:
        found = store.revoke_key(ak)
    sys.stdout.write(json.dumps({"ak": ak, "revoked": found}) + "\n")
    raise typer.Exit(0 if found else 1)


ProjectId = Annotated[str, typer.Option("--project-id", help="The project the grant is for.")]
BucketName = Annotated[str, typer.Option("--bucket", help="The bucket's name.")]


@buckets_app.command("grant")
def buckets_grant(project_id: ProjectId, bucket: BucketName, data_dir: DataDir = None) -> None:
    """Let the project's tasks read the bucket (it need not exist yet)."""
    from dcs_migration.sources.keys import bucket_name_problem

    problem = bucket_name_problem(bucket)
    if problem is not None or not project_id:
        why = f"--bucket {bucket!r} {problem}" if problem else "--project-id must not be empty"
        _console(stderr=True).print(f"[red]error:[/red] {_escape(why)}", soft_wrap=True)
        raise typer.Exit(2)
    with _open_store(data_dir) as store:
        new = store.grant_bucket(project_id, bucket)
    out = {"project_id": project_id, "bucket_name": bucket, "granted": True, "new": new}
    sys.stdout.write(json.dumps(out) + "\n")


@buckets_app.command("revoke")
def buckets_revoke(project_id: ProjectId, bucket: BucketName, data_dir: DataDir = None) -> None:
    """Take a grant back: the project's tasks that have not started reading it fail as
    for a missing bucket. Exit status 1 when there was no such grant."""
    with _open_store(data_dir) as store:
        found = store.revoke_bucket(project_id, bucket)
    out = {"project_id": project_id, "bucket_name": bucket, "revoked": found}
    sys.stdout.write(json.dumps(out) + "\n")
    raise typer.Exit(0 if found else 1)


@buckets_app.command("list")
def buckets_list(
    project_id: Annotated[
        str | None, typer.Option("--project-id", help="Only this project's grants.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """The grants, of one project or of all."""
    with _open_store(data_dir) as store:
        grants = store.list_bucket_grants(project_id)
    listed = [
        {
            "project_id": g.project_id,
            "bucket_name": g.bucket_name,
            "created_at": g.created_at.isoformat(),
        }
        for g in grants
    ]
    sys.stdout.write(json.dumps({"grants": listed}) + "\n")


@instances_app.command("add")
def instances_add(
    project_id: Annotated[str, typer.Option("--project-id")],
    name: Annotated[str, typer.Option("--name")],
    addrs: Annotated[str, typer.Option("--addrs", help="host:port (a cluster: any of its nodes)")],
    password: Annotated[str | None, typer.Option("--password")] = None,
    username: Annotated[str | None, typer.Option("--username")] = None,
    cluster: Annotated[bool, typer.Option("--cluster")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register a Redis (checked first: it must answer as Redis) and print its id.

    The operator's way to let a second project use an address that one project holds
    (the API refuses that); the address must still lie in the allowed networks."""
    from dcs_migration.api.schemas import parse_addr
    from dcs_migration.tasks.instances import NewInstance, RegistrationRefused, register_instance

    try:
        settings = _settings(data_dir)
        addresses = [parse_addr(a) for a in addrs.split(",") if a.strip()]
        if not addresses:
            raise ValueError("--addrs names no host:port")
        new = NewInstance(
            project_id,
            name,
            addresses,
            password=password,
            username=username,
            instance_type="cluster" if cluster else "single",
            exclusive=False,
        )
        with _open_store(data_dir, settings) as store:
            instance, version = register_instance(store, settings.allowed_networks, new)
    except (RegistrationRefused, ValueError) as exc:
        _console(stderr=True).print(f"[red]error:[/red] {_escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    sys.stdout.write(
        json.dumps(
            {
                "instance_id": instance.instance_id,
                "name": instance.name,
                "addrs": instance.addrs,
                "instance_type": instance.instance_type,
                "engine_version": version,
            }
        )
        + "\n"
    )


def main() -> None:
    app()
