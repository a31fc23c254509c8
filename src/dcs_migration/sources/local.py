"""Backups on the local disk: a file or a folder, turned into inputs by content.

A file may be an RDB, an AOF, a multi-part AOF manifest (its folder is then the input),
a gzip-compressed RDB or AOF (decompressed on the fly), or a zip, tar or tar.gz archive
(see `archive`). A folder is walked: every archive in it is opened as above, a folder
holding a manifest is one multi-part AOF, and every other RDB or AOF file is an input.
Symbolic links met while walking a folder are not followed. Files that are no backup
(notes, checksums, oracle JSON) are left out.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath

from dcs_migration.formats.detect import ARCHIVE_KINDS, SNIFF_BYTES, FileKind, detect_format
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.manifest import MAX_MANIFEST_BYTES
from dcs_migration.sources.archive import tar_inputs, zip_inputs
from dcs_migration.sources.entries import Entry, group_entries
from dcs_migration.sources.guard import DEFAULT_LIMITS, ArchiveLimits, GuardedStream, read_at_most
from dcs_migration.sources.inputs import ByteStream, Input, InputKind, InputPart

_GZIP_TRAILER = 4


def find_inputs(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> list[Input]:
    """The backups at `path` (a file or a folder), each one input, sorted by name.

    `name` is what errors and input names call `path` (and the files under it are named
    from it); by default the path itself. Raises FormatError when there is none, or when
    a file or archive cannot be read.
    """
    root = Path(path)
    shown = str(root) if name is None else name
    try:
        return _inputs_at(root, shown, limits)
    except OSError as exc:  # named by `shown`, never by a path the caller did not give
        raise FormatError(exc.strerror or type(exc).__name__, source=shown) from exc


def _inputs_at(root: Path, shown: str, limits: ArchiveLimits) -> list[Input]:
    if root.is_dir():
        inputs = _folder_inputs(root, shown, limits)
        if not inputs:
            raise FormatError(f"no RDB or AOF backup in the folder {shown}")
        return inputs
    if not root.exists():
        raise FormatError("no such file or folder", source=shown)
    found = _file_entry(root, PurePosixPath(root.name), shown, limits)
    if isinstance(found, list):
        if not found:
            raise FormatError("no RDB or AOF file in the archive", source=shown)
        return found
    if found.kind is FileKind.RDB:
        return [Input(shown, InputKind.RDB, (found.part,))]
    if found.kind is FileKind.AOF:
        return [Input(shown, InputKind.AOF, (found.part,))]
    if found.kind is FileKind.MANIFEST:
        folder = root.parent
        base = str(PurePosixPath(shown).parent)
        entries = [
            e
            for e in _folder_entries(folder, base, folder, limits, nested=False)
            if isinstance(e, Entry)
        ]
        display = partial(_display, base)
        return [i for i in group_entries(entries, display) if i.kind is InputKind.AOF_MULTIPART]
    if found.kind is FileKind.EMPTY:
        raise FormatError("the file is empty", source=shown)
    raise FormatError(
        "not an RDB or AOF file, an AOF manifest, a gzip file or a zip or tar archive",
        source=shown,
    )


def _display(base: str, rel: PurePosixPath) -> str:
    """The name of `rel` under a folder named `base`."""
    return str(PurePosixPath(base).joinpath(*rel.parts)) if rel.parts else base


def _folder_inputs(root: Path, shown: str, limits: ArchiveLimits) -> list[Input]:
    entries: list[Entry] = []
    inputs: list[Input] = []
    for found in _folder_entries(root, shown, root, limits, nested=True):
        if isinstance(found, Entry):
            entries.append(found)
        else:
            inputs.extend(found)
    inputs.extend(group_entries(entries, partial(_display, shown)))
    inputs.sort(key=lambda i: i.name)
    return inputs


def _folder_entries(
    root: Path, shown: str, folder: Path, limits: ArchiveLimits, *, nested: bool
) -> Iterator[Entry | list[Input]]:
    """Every regular file in `folder`, sniffed: an entry, or an archive's inputs. Files
    are named from `shown`, the name of `root`.

    With `nested`, the walk goes into subfolders and archives; without, it stays in
    `folder` and leaves archives out.
    """
    with os.scandir(folder) as scan:
        items = sorted(scan, key=lambda d: d.name)
    for item in items:
        if item.is_symlink():
            continue
        full = Path(item.path)
        if item.is_dir():
            if nested:
                yield from _folder_entries(root, shown, full, limits, nested=True)
        elif item.is_file():
            rel = PurePosixPath(*full.relative_to(root).parts)
            yield _file_entry(full, rel, _display(shown, rel), limits, expand=nested)


def _file_entry(
    full: Path, rel: PurePosixPath, shown: str, limits: ArchiveLimits, *, expand: bool = True
) -> Entry | list[Input]:
    """A file sniffed: an entry, or (with `expand`) the inputs of the archive it is."""
    with full.open("rb") as f:
        head = read_at_most(f, SNIFF_BYTES)
    kind = detect_format(head)
    size = full.stat().st_size
    if not expand and kind in ARCHIVE_KINDS:
        return Entry(rel, kind, InputPart(shown, size, partial(_open_file, full)))
    if kind is FileKind.ZIP:
        return zip_inputs(full, shown, limits)
    if kind is FileKind.TAR:
        return tar_inputs(full, shown, gz=False, limits=limits)
    if kind is FileKind.GZIP:
        limit = limits.budget(size)
        with _open_gzip(full, shown, limit) as stream:
            kind = detect_format(read_at_most(stream, SNIFF_BYTES))
        if kind is FileKind.TAR:
            return tar_inputs(full, shown, gz=True, limits=limits)
        if kind in (FileKind.GZIP, FileKind.ZIP):
            raise FormatError(f"a {kind} file inside a gzip file is not supported", source=shown)
        opener = partial(_open_gzip, full, shown, limit)
        part = InputPart(shown, _gzip_size(full, size), opener, size_exact=False)
    else:
        part = InputPart(shown, size, partial(_open_file, full))
    content = None
    if kind is FileKind.MANIFEST:
        with part.open() as stream:
            content = read_at_most(stream, MAX_MANIFEST_BYTES + 1)
    return Entry(rel, kind, part, content)


@contextmanager
def _open_file(path: Path) -> Iterator[ByteStream]:
    with path.open("rb") as f:
        yield f


@contextmanager
def _open_gzip(path: Path, shown: str, limit: int) -> Iterator[ByteStream]:
    with gzip.GzipFile(path, "rb") as gz:
        yield GuardedStream(gz, shown, limit)


def _gzip_size(path: Path, stored: int) -> int:
    """Estimated decompressed size: the gzip trailer holds it modulo 2**32."""
    if stored < 18:
        return 0
    with path.open("rb") as f:
        f.seek(-_GZIP_TRAILER, os.SEEK_END)
        isize = int.from_bytes(f.read(_GZIP_TRAILER), "little")
    while isize < stored // 2:
        isize += 1 << 32
    return isize
