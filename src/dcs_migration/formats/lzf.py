"""LZF decompression a piece at a time, for a compressed string too big to hold.

The C decoder (python-lzf) wants the whole compressed input and its whole output at once,
which is right for every ordinary string. A big one (hundreds of MB) is decoded here as
its compressed bytes arrive, keeping only the last 8 KiB of output that back-references
may reach. The format (liblzf): a control byte under 32 starts a run of that many plus one
literal bytes; any other is a back-reference of length (ctrl >> 5) + 2 (7 meaning a length
byte follows) at distance ((ctrl & 31) << 8) + the next byte + 1.
"""

from __future__ import annotations

from collections.abc import Iterator

from dcs_migration.formats.errors import FormatError

WINDOW = 8192  # the farthest a back-reference reaches
OUTPUT_BYTES = 1 << 20  # decoded bytes handed out at a time


class LzfStream:
    """Feed compressed bytes; each `feed` yields the decoded bytes they complete, in
    slices of about OUTPUT_BYTES. `close` checks the output reached `expected_len`."""

    def __init__(self, expected_len: int) -> None:
        self.expected_len = expected_len
        self.produced = 0
        self._pending = b""
        self._window = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        out = self._window
        start = len(out)  # out[start:] is not handed out yet
        i = 0
        while i < n:
            ctrl = buf[i]
            if ctrl < 32:
                run = ctrl + 1
                if i + 1 + run > n:
                    break
                out += buf[i + 1 : i + 1 + run]
                i += 1 + run
            else:
                length = ctrl >> 5
                j = i + 1
                if length == 7:
                    if j >= n:
                        break
                    length += buf[j]
                    j += 1
                if j >= n:
                    break
                distance = ((ctrl & 31) << 8) + buf[j] + 1
                length += 2
                at = len(out) - distance
                if at < 0:
                    raise FormatError(
                        f"LZF string refers {distance} bytes back, before its start",
                    )
                if distance >= length:
                    out += out[at : at + length]
                else:  # the copy overlaps what it writes: a repeating pattern
                    pattern = out[at:]
                    out += (pattern * (length // distance + 1))[:length]
                i = j + 1
            if len(out) - start >= OUTPUT_BYTES:
                yield from self._hand_out(out, start)
                out = self._window
                start = len(out)
        self._pending = buf[i:]
        if len(out) > start:
            yield from self._hand_out(out, start)

    def _hand_out(self, out: bytearray, start: int) -> Iterator[bytes]:
        piece = bytes(out[start:])
        self.produced += len(piece)
        if self.produced > self.expected_len:
            raise FormatError(
                f"LZF string decompresses to more than its stated {self.expected_len} bytes"
            )
        self._window = out[-WINDOW:]
        yield piece

    def close(self) -> None:
        if self._pending:
            raise FormatError("LZF string ends inside a back-reference or a literal run")
        if self.produced != self.expected_len:
            raise FormatError(
                f"LZF string decompresses to {self.produced} bytes, not its stated "
                f"{self.expected_len}"
            )
