"""What several types share: the element loops of their skip functions, and the checks
their decoders make.

The element loops step over short strings (a length byte under 0x40, then the bytes)
inline and call skip_string for the others: a big hash or set is millions of them. An
inline step does not check `end`; the loop ends with that check, and reading past the
buffer (IndexError) means the same thing: the value is not all there yet.
"""

from __future__ import annotations

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import (
    Incomplete,
    Skipper,
    read_length,
    skip_string,
)


def skip_strings(buf: bytes, pos: int, end: int) -> int:
    """A count, then that many strings."""
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def skip_string_pairs(buf: bytes, pos: int, end: int) -> int:
    """A count, then that many pairs of strings."""
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
            b = buf[pos]
            pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def prefixed(width: int, then: Skipper) -> Skipper:
    """A skip function for `width` raw bytes followed by what `then` skips."""

    def skip(buf: bytes, pos: int, end: int) -> int:
        pos += width
        if pos > end:
            raise Incomplete()
        return then(buf, pos, end)

    return skip


def no_duplicates(members: list[bytes], what: str) -> None:
    if len(set(members)) != len(members):
        raise FormatError(f"{what} holds the same member twice")


def pairs(items: list[bytes], what: str) -> list[tuple[bytes, bytes]]:
    if len(items) % 2:
        raise FormatError(f"{what} encoding holds an odd number of elements")
    it = iter(items)
    return list(zip(it, it, strict=True))
