"""The manifest of a Redis 7 multi-part AOF (`appendonly.aof.manifest`): which files, in what order.

One line per file: `file <name> seq <n> type <b|h|i>`, as key/value pairs in any order
(unknown keys are ignored, for the versions to come). A name is split and unquoted the
way Redis' `sdssplitargs` does it, since Redis quotes names that need it. `b` is the
base file (at most one), `i` an incremental file, `h` a history file that Redis has
not deleted yet and does not load. Load order: the base, then the incremental files by
ascending seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from dcs_migration.formats.errors import FormatError

FILE_TYPE_BASE = "b"
FILE_TYPE_HISTORY = "h"
FILE_TYPE_INCR = "i"
_FILE_TYPES = frozenset({FILE_TYPE_BASE, FILE_TYPE_HISTORY, FILE_TYPE_INCR})
MAX_MANIFEST_BYTES = 1 << 20
MAX_LINE_BYTES = 1024  # Redis' own manifest line limit

_SPACE = b" \t\n\r\v\f"
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One file line of the manifest."""

    name: str
    seq: int
    file_type: str  # FILE_TYPE_BASE, FILE_TYPE_HISTORY or FILE_TYPE_INCR
    line: int


@dataclass(frozen=True, slots=True)
class AofManifest:
    """A parsed manifest: its base file, incremental files (by seq) and history files."""

    base: ManifestFile | None
    incrs: tuple[ManifestFile, ...]
    history: tuple[ManifestFile, ...]

    @property
    def load_order(self) -> list[ManifestFile]:
        """The files Redis loads, in order: the base, then the incremental files."""
        return ([self.base] if self.base else []) + list(self.incrs)


def parse_manifest(data: bytes) -> AofManifest:
    """Parse a manifest; raise FormatError (with the line number) when it is not valid."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"AOF manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    base: ManifestFile | None = None
    incrs: list[ManifestFile] = []
    history: list[ManifestFile] = []
    names: set[str] = set()
    offset = 0
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        line_offset = offset
        offset += len(raw)
        if len(raw) > MAX_LINE_BYTES:
            raise _line_error(number, line_offset, f"is longer than {MAX_LINE_BYTES} bytes")
        line = raw.strip(_SPACE)
        if not line or line.startswith(b"#"):
            continue
        entry = _parse_line(line, number, line_offset)
        if entry.name in names:
            raise _line_error(number, line_offset, f"names {entry.name!r} a second time")
        names.add(entry.name)
        if entry.file_type == FILE_TYPE_BASE:
            if base is not None:
                raise _line_error(
                    number, line_offset, f"is a second base file (after line {base.line})"
                )
            base = entry
        elif entry.file_type == FILE_TYPE_INCR:
            incrs.append(entry)
        else:
            history.append(entry)
    if base is None and not incrs:
        raise FormatError("AOF manifest names no base file and no incremental file")
    incrs.sort(key=lambda f: f.seq)
    for before, after in pairwise(incrs):
        if before.seq == after.seq:
            raise _line_error(
                after.line, None, f"has seq {after.seq}, as line {before.line} already has"
            )
    return AofManifest(base, tuple(incrs), tuple(history))


def _parse_line(line: bytes, number: int, offset: int) -> ManifestFile:
    try:
        tokens = split_args(line)
    except ValueError as exc:
        raise _line_error(number, offset, f"cannot be split: {exc}") from None
    if len(tokens) % 2:
        raise _line_error(number, offset, "is not key/value pairs")
    fields: dict[str, bytes] = {}
    for key, value in zip(tokens[::2], tokens[1::2], strict=True):
        fields[key.decode("latin-1").lower()] = value  # the last one wins, as in Redis
    missing = [k for k in ("file", "seq", "type") if k not in fields]
    if missing:
        raise _line_error(number, offset, f"lacks {', '.join(missing)}")
    raw_name, raw_seq, raw_type = fields["file"], fields["seq"], fields["type"]
    name = raw_name.decode("utf-8", "surrogateescape")
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise _line_error(number, offset, f"has a file name that is not a plain name: {name!r}")
    if not raw_seq.isdigit() or len(raw_seq) > 19 or int(raw_seq) == 0:
        raise _line_error(number, offset, f"has a seq that is not a positive number: {raw_seq!r}")
    file_type = raw_type.decode("latin-1")
    if file_type not in _FILE_TYPES:
        raise _line_error(number, offset, f"has an unknown file type {file_type!r}")
    return ManifestFile(name, int(raw_seq), file_type, number)


def _line_error(number: int, offset: int | None, what: str) -> FormatError:
    return FormatError(f"AOF manifest line {number} {what}", offset=offset)


def split_args(line: bytes) -> list[bytes]:
    """Split a line into arguments as Redis' `sdssplitargs` does (quotes and escapes).

    Raises ValueError on unbalanced quotes, a closing quote not followed by a space, or a
    NUL byte.
    """
    if b"\x00" in line:
        raise ValueError("NUL byte in the line")
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0  # the open quote character, or 0
        while True:
            if i >= n:
                if quote:
                    raise ValueError("unbalanced quotes")
                break
            c = line[i]
            if quote == 0x22:  # "
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x78 and _is_hex(line, i + 2):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 4
                    continue
                if c == 0x5C and i + 1 < n:
                    nxt = line[i + 1]
                    current += _ESCAPES.get(nxt, bytes([nxt]))
                    i += 2
                    continue
                if c == 0x22:
                    _closing_quote(line, i)
                    i += 1
                    break
                current.append(c)
            elif quote == 0x27:  # '
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    current.append(0x27)
                    i += 2
                    continue
                if c == 0x27:
                    _closing_quote(line, i)
                    i += 1
                    break
                current.append(c)
            elif c in _SPACE:
                break
            elif c in (0x22, 0x27):
                quote = c
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


def _is_hex(line: bytes, i: int) -> bool:
    return i + 1 < len(line) and line[i] in _HEX and line[i + 1] in _HEX


def _closing_quote(line: bytes, i: int) -> None:
    if i + 1 < len(line) and line[i + 1] not in _SPACE:
        raise ValueError("closing quote must be followed by a space")
