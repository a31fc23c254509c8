"""From the files of one folder or archive to inputs.

Every file (or archive member) is sniffed first, giving an `Entry`. A directory that
holds an AOF manifest is one multi-part AOF input: the files the manifest names, in its
load order; the other files there (history files, leftovers of a rewrite) belong to it
and are not read. Every other RDB or AOF file is an input of its own, so an archive of
one RDB per cluster shard gives one input per shard. Anything else is not a backup
and is left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from dcs_migration.formats.detect import FileKind
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.manifest import parse_manifest
from dcs_migration.sources.inputs import Input, InputKind, InputPart

_SINGLE_KINDS = {FileKind.RDB: InputKind.RDB, FileKind.AOF: InputKind.AOF}


@dataclass(frozen=True, slots=True)
class Entry:
    """A sniffed file of a folder or archive: its path there, its kind, how to open it."""

    path: PurePosixPath
    kind: FileKind
    part: InputPart
    manifest: bytes | None = None  # the content, when the file is a manifest


def group_entries(entries: Sequence[Entry], display: Callable[[PurePosixPath], str]) -> list[Input]:
    """The inputs made of `entries`; `display` names a directory for messages and inputs."""
    by_dir: dict[PurePosixPath, dict[str, Entry]] = defaultdict(dict)
    for entry in entries:
        by_dir[entry.path.parent][entry.path.name] = entry
    inputs: list[tuple[PurePosixPath, Input]] = []
    manifest_dirs: set[PurePosixPath] = set()
    for entry in entries:
        if entry.kind is not FileKind.MANIFEST:
            continue
        folder = entry.path.parent
        if folder in manifest_dirs:
            others = sorted(
                e.part.name for e in by_dir[folder].values() if e.kind is FileKind.MANIFEST
            )
            raise FormatError(
                f"{display(folder)} holds more than one AOF manifest: {', '.join(others)}"
            )
        manifest_dirs.add(folder)
        inputs.append((folder, _multipart(entry, by_dir[folder], display(folder))))
    for entry in entries:
        kind = _SINGLE_KINDS.get(entry.kind)
        if kind is None or entry.path.parent in manifest_dirs:
            continue
        inputs.append((entry.path, Input(entry.part.name, kind, (entry.part,))))
    inputs.sort(key=lambda item: item[0].parts)
    return [item[1] for item in inputs]


def _multipart(manifest: Entry, siblings: dict[str, Entry], name: str) -> Input:
    assert manifest.manifest is not None
    try:
        files = parse_manifest(manifest.manifest).load_order
    except FormatError as exc:
        exc.source = manifest.part.name
        raise
    parts = []
    for file in files:
        entry = siblings.get(file.name)
        if entry is None:
            raise FormatError(
                f"the AOF manifest names {file.name!r} (line {file.line}), "
                f"which is not beside it in {name}",
                source=manifest.part.name,
            )
        parts.append(entry.part)
    return Input(name, InputKind.AOF_MULTIPART, tuple(parts))
