"""What every connection to a target is held to: a module of plain values, which a
command line may import without loading the client itself."""

from __future__ import annotations

from dataclasses import dataclass

from dcs_migration.config import REPLY_TIMEOUT


@dataclass(frozen=True)
class PipelineLimits:
    """What each pipeline to a target is held to."""

    window_bytes: int = 8 << 20  # commands awaiting replies
    retries: int = 5  # reconnect attempts after a dropped connection
    reply_timeout: float = REPLY_TIMEOUT  # a server silent this long is hung
