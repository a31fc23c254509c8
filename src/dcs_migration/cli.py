"""The command line: `dcs-migration inspect`, and later `serve`, `import`, `keys`, ..."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dcs_migration.formats import FormatError, RdbReader, Record, feed_stream
from dcs_migration.inspect_backup import Summary, summarize
from dcs_migration.oracle import oracle_from_records

app = typer.Typer(
    help="Import Redis backups (RDB and AOF) into Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _records(path: Path) -> Iterator[Record]:
    with path.open("rb") as stream:
        yield from feed_stream(RdbReader(), stream, source=str(path))


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
    now_ms = int(time.time() * 1000)
    err = Console(stderr=True)
    if not file.exists():
        err.print(f"[red]error:[/red] {file}: no such file or folder")
        raise typer.Exit(2)
    try:
        if as_json:
            doc = oracle_from_records(_records(file), now_ms, skip_modules=skip_modules)
            sys.stdout.write(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
        else:
            _print_summary(file, summarize(_records(file), now_ms))
    except FormatError as exc:
        if exc.source is None:
            exc.source = str(file)
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _print_summary(file: Path, s: Summary) -> None:
    out = Console()
    out.print(f"[bold]{file}[/bold]")
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
        out.print("function libraries: " + ", ".join(f.decode(errors="replace") for f in s.functions))
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


def main() -> None:
    app()
