"""Zip and tar archives (a tar optionally gzipped): their RDB and AOF members, as inputs.

Nothing is extracted to disk. Each member is sniffed by content and opened as a stream
when its input is read: a zip member through `zipfile`, a tar member as a slice of the
tar stream. A gzipped tar is read with random access over a `GzipFile`, where a seek
forward decompresses up to the target: so that reading members in archive order costs
one pass, a reader left at the end of one member is parked and reused for the next.

Safety: a member with an absolute path or a `..` component, a link, a device or any
other non-regular file, an encrypted member, or two members of the same name fail the
whole archive with a FormatError naming the member. Sizes that members declare are
checked against `ArchiveLimits` before anything is decompressed; the bytes actually
decompressed are counted too. tar headers are read through a stream that refuses
oversized reads, so a lying header cannot make the listing allocate.
"""

from __future__ import annotations

import gzip
import re
import stat
import tarfile
import threading
import weakref
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Protocol

from dcs_migration.formats.detect import ARCHIVE_KINDS, SNIFF_BYTES, FileKind, detect_format
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.manifest import MAX_MANIFEST_BYTES
from dcs_migration.sources.entries import Entry, group_entries
from dcs_migration.sources.guard import (
    DECODE_ERRORS,
    ArchiveLimits,
    GuardedStream,
    SliceReader,
    over_budget,
    read_at_most,
)
from dcs_migration.sources.inputs import ByteStream, Input, InputPart

_MAX_HEADER_READ = 16 << 20  # tar header data (pax records, GNU long names) per read
_DRIVE = re.compile(r"^[A-Za-z]:")
_TAR_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_ZIP_ENCRYPTED = 0x1
_PARKED_MAX = 2


class _Seekable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...
    def close(self) -> None: ...


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The member's relative path, None for the archive root; unsafe names raise."""
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if "\x00" in name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise FormatError(f"archive member {name!r} has an absolute path", source=archive)
    if ".." in parts:
        raise FormatError(f"archive member {name!r} has a '..' in its path", source=archive)
    return PurePosixPath(*parts) if parts else None


def zip_inputs(path: Path, name: str, limits: ArchiveLimits) -> list[Input]:
    """The inputs among the members of the zip archive at `path` (shown as `name`)."""
    return group_entries(_zip_entries(path, name, limits), partial(_dir_name, name))


def tar_inputs(path: Path, name: str, *, gz: bool, limits: ArchiveLimits) -> list[Input]:
    """The inputs among the members of the tar (or gzipped tar) archive at `path`."""
    return group_entries(_tar_entries(path, name, gz, limits), partial(_dir_name, name))


def _dir_name(archive: str, folder: PurePosixPath) -> str:
    return f"{archive}:{folder}" if folder.parts else archive


# -- zip --------------------------------------------------------------------------------


def _zip_entries(path: Path, name: str, limits: ArchiveLimits) -> list[Entry]:
    budget = limits.budget(path.stat().st_size)
    entries: list[Entry] = []
    seen: set[PurePosixPath] = set()
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise FormatError(
                    f"the archive has {len(infos)} members, over the {limits.max_members} limit",
                    source=name,
                )
            for info in infos:
                rel = member_path(info.filename, name)
                mode = info.external_attr >> 16
                if rel is None or info.is_dir() or stat.S_ISDIR(mode):
                    continue
                shown = f"{name}:{rel}"
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise FormatError(
                        f"archive member {info.filename!r} is a link or special file", source=name
                    )
                if info.flag_bits & _ZIP_ENCRYPTED:
                    raise FormatError(f"archive member {info.filename!r} is encrypted", source=name)
                if rel in seen:
                    raise FormatError(
                        f"archive member {info.filename!r} appears twice", source=name
                    )
                seen.add(rel)
                total += info.file_size
                member_budget = limits.budget(info.compress_size)
                if info.file_size > member_budget:
                    raise over_budget(f"archive member {info.filename!r}", name, member_budget)
                if total > budget:
                    raise over_budget(f"the archive (at member {info.filename!r})", name, budget)
                entries.append(_zip_entry(zf, path, info, rel, shown, limits))
    except DECODE_ERRORS as exc:
        raise FormatError(f"cannot read the zip archive: {exc}", source=name) from exc
    return entries


def _zip_entry(
    zf: zipfile.ZipFile,
    path: Path,
    info: zipfile.ZipInfo,
    rel: PurePosixPath,
    shown: str,
    limits: ArchiveLimits,
) -> Entry:
    with zf.open(info) as raw:
        stream = GuardedStream(raw, shown, info.file_size)
        kind = detect_format(read_at_most(stream, SNIFF_BYTES))
    gz_limit: int | None = None
    if kind is FileKind.GZIP:
        gz_limit = limits.budget(info.file_size)
        with (
            zf.open(info) as raw,
            gzip.GzipFile(mode="rb", fileobj=GuardedStream(raw, shown)) as gz,
        ):
            kind = detect_format(read_at_most(GuardedStream(gz, shown, gz_limit), SNIFF_BYTES))
        _refuse_nested(kind, shown)
    elif kind in ARCHIVE_KINDS:
        _refuse_nested(kind, shown)
    opener = partial(_open_zip_member, path, info.filename, shown, gz_limit)
    part = InputPart(shown, info.file_size, opener, size_exact=gz_limit is None)
    return Entry(rel, kind, part, _manifest_content(kind, part))


@contextmanager
def _open_zip_member(
    path: Path, member: str, shown: str, gz_limit: int | None
) -> Iterator[ByteStream]:
    try:
        zf = zipfile.ZipFile(path)
    except DECODE_ERRORS as exc:
        raise FormatError(f"cannot read the zip archive: {exc}", source=shown) from exc
    with zf, zf.open(member) as raw:
        stream = GuardedStream(raw, shown)
        if gz_limit is None:
            yield stream
        else:
            with gzip.GzipFile(mode="rb", fileobj=stream) as gz:
                yield GuardedStream(gz, shown, gz_limit)


# -- tar --------------------------------------------------------------------------------


class _HeaderStream:
    """The tar stream as tarfile sees it while listing: bounded reads, one error type."""

    def __init__(self, raw: _Seekable, name: str) -> None:
        self._raw = raw
        self._name = name

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0 or size > _MAX_HEADER_READ:
            raise FormatError(
                f"a tar header asks for {size} bytes, over the {_MAX_HEADER_READ} limit",
                source=self._name,
            )
        return self._raw.read(size)

    def seek(self, pos: int, whence: int = 0, /) -> int:
        return self._raw.seek(pos, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def write(self, b: bytes, /) -> int:
        raise OSError("read-only")

    def close(self) -> None:
        """The raw stream belongs to the caller."""


def _tar_entries(path: Path, name: str, gz: bool, limits: ArchiveLimits) -> list[Entry]:
    source = _TarSource(path, gz)
    budget = limits.budget(path.stat().st_size) if gz else None
    entries: list[Entry] = []
    seen: set[PurePosixPath] = set()
    raw = source.open_raw()
    try:
        stream = _HeaderStream(raw, name)
        with tarfile.open(fileobj=stream, mode="r:") as tf:
            count = 0
            while (member := tf.next()) is not None:
                count += 1
                if count > limits.max_members:
                    raise FormatError(
                        f"the archive has more than {limits.max_members} members", source=name
                    )
                rel = member_path(member.name, name)
                if rel is None or member.isdir():
                    continue
                if member.type not in _TAR_FILE_TYPES or member.sparse is not None:
                    raise FormatError(
                        f"archive member {member.name!r} is a link or special file", source=name
                    )
                if budget is not None and member.offset_data + member.size > budget:
                    raise over_budget(f"the archive (at member {member.name!r})", name, budget)
                if rel in seen:
                    raise FormatError(f"archive member {member.name!r} appears twice", source=name)
                seen.add(rel)
                entries.append(_tar_entry(source, raw, member, rel, f"{name}:{rel}", limits))
            _check_tar_end(raw, tf.offset, name, budget)
    except DECODE_ERRORS as exc:
        raise FormatError(f"cannot read the tar archive: {exc}", source=name) from exc
    finally:
        raw.close()
    return entries


def _tar_entry(
    source: _TarSource,
    raw: _Seekable,
    member: tarfile.TarInfo,
    rel: PurePosixPath,
    shown: str,
    limits: ArchiveLimits,
) -> Entry:
    raw.seek(member.offset_data)
    kind = detect_format(read_at_most(SliceReader(raw, member.size, shown), SNIFF_BYTES))
    gz_limit: int | None = None
    if kind is FileKind.GZIP:
        gz_limit = limits.budget(member.size)
        raw.seek(member.offset_data)
        with gzip.GzipFile(mode="rb", fileobj=SliceReader(raw, member.size, shown)) as gz:
            kind = detect_format(read_at_most(GuardedStream(gz, shown, gz_limit), SNIFF_BYTES))
        _refuse_nested(kind, shown)
    elif kind in ARCHIVE_KINDS:
        _refuse_nested(kind, shown)
    opener = partial(source.member, member.offset_data, member.size, shown, gz_limit)
    part = InputPart(shown, member.size, opener, size_exact=gz_limit is None)
    content = None
    if kind is FileKind.MANIFEST:
        raw.seek(member.offset_data)
        content = read_at_most(SliceReader(raw, member.size, shown), MAX_MANIFEST_BYTES + 1)
    return Entry(rel, kind, part, content)


def _check_tar_end(raw: _Seekable, offset: int, name: str, budget: int | None) -> None:
    """After the last member only zero blocks may follow: anything else is a corrupt header."""
    raw.seek(offset)
    position = offset
    while chunk := raw.read(1 << 16):
        if chunk.count(0) != len(chunk):
            raise FormatError(
                "the tar archive has data after its last readable member (a corrupt header)",
                offset=position,
                source=name,
            )
        position += len(chunk)
        if budget is not None and position > budget:
            raise over_budget("the archive", name, budget)


class _TarSource:
    """Opens the tar stream of one archive file, reusing a parked reader that is behind.

    For a gzipped tar a new reader must decompress from the start, while a parked one
    only decompresses the gap to the member wanted.
    """

    def __init__(self, path: Path, gz: bool) -> None:
        self.path = path
        self.gz = gz
        self._parked: list[_Seekable] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._parked)

    def open_raw(self) -> _Seekable:
        if self.gz:
            return gzip.GzipFile(self.path, "rb")
        return self.path.open("rb")

    @contextmanager
    def member(
        self, offset: int, size: int, shown: str, gz_limit: int | None
    ) -> Iterator[ByteStream]:
        raw = self._take(offset)
        reusable = False
        try:
            try:
                raw.seek(offset)
            except DECODE_ERRORS as exc:
                raise FormatError(f"cannot read the tar archive: {exc}", source=shown) from exc
            stream = GuardedStream(SliceReader(raw, size, shown), shown)
            if gz_limit is None:
                yield stream
            else:
                with gzip.GzipFile(mode="rb", fileobj=stream) as gz:
                    yield GuardedStream(gz, shown, gz_limit)
            reusable = True
        finally:
            self._give_back(raw, reusable)

    def _take(self, offset: int) -> _Seekable:
        if self.gz:
            with self._lock:
                behind = [r for r in self._parked if r.tell() <= offset]
                if behind:
                    best = max(behind, key=lambda r: r.tell())
                    self._parked.remove(best)
                    return best
        return self.open_raw()

    def _give_back(self, raw: _Seekable, reusable: bool) -> None:
        if self.gz and reusable:
            with self._lock:
                self._parked.append(raw)
                if len(self._parked) <= _PARKED_MAX:
                    return
                raw = self._parked.pop(0)
        raw.close()


def _close_all(streams: list[_Seekable]) -> None:
    for stream in streams:
        stream.close()
    streams.clear()


# -- shared -----------------------------------------------------------------------------


def _refuse_nested(kind: FileKind, shown: str) -> None:
    if kind in ARCHIVE_KINDS:
        raise FormatError(
            f"{shown} is an archive ({kind}) inside an archive, which is not supported",
            source=shown,
        )


def _manifest_content(kind: FileKind, part: InputPart) -> bytes | None:
    if kind is not FileKind.MANIFEST:
        return None
    with part.open() as stream:
        return read_at_most(stream, MAX_MANIFEST_BYTES + 1)
