"""What every connection to a target is held to: a module of plain values, which a
command line may import without loading the client itself."""

from __future__ import annotations

from dataclasses import dataclass

# Seconds a server may leave a connection without an answer, and without taking bytes,
# before it is taken for hung and the import fails. Long enough for the pauses of a
# healthy server (a fork for a snapshot, an fsync, a failover's client pause: seconds),
# short enough that a stopped server costs a task half a minute, not minutes. The work
# of a big command in flight adds to it (see client/pipeline.py).
REPLY_TIMEOUT = 30.0


@dataclass(frozen=True)
class PipelineLimits:
    """What each pipeline to a target is held to."""

    window_bytes: int = 8 << 20  # commands awaiting replies
    retries: int = 5  # reconnect attempts after a dropped connection
    reply_timeout: float = REPLY_TIMEOUT  # a server silent this long is hung
