"""The one RESP encoder: a command as the bytes a Redis server reads."""

from __future__ import annotations

from collections.abc import Sequence


def encode_command(args: Sequence[bytes]) -> bytes:
    """`*<n>` and each argument as a bulk string."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)
