"""How an import writes: conflict policy, strategy, db mapping, limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Seconds a target may leave a connection without an answer, and without taking bytes,
# before it is taken for hung and the import fails. Long enough for the pauses of a
# healthy server (a fork for a snapshot, an fsync, a failover's client pause: seconds),
# short enough that a stopped server costs a task half a minute, not minutes. The work
# of a big command in flight adds to it (see client/pipeline.py).
REPLY_TIMEOUT = 30.0


class Conflict(StrEnum):
    REPLACE = "replace"  # an existing key is replaced
    SKIP = "skip"  # an existing key is kept, and counted
    FAIL = "fail"  # an existing key stops the import, named


class Strategy(StrEnum):
    AUTO = "auto"  # hand-off when the target may be replaced, else RESTORE
    RESTORE = "restore"  # RESTORE where the target can load the encoding, else rewrite
    REWRITE = "rewrite"  # ordinary commands for every key (targets that refuse RESTORE)
    HANDOFF = "handoff"  # the target loads the RDB itself, as a replica


@dataclass(frozen=True)
class WriteOptions:
    conflict: Conflict = Conflict.REPLACE
    strategy: Strategy = Strategy.AUTO
    db: int | None = None  # every key to this db, or each to its own when None
    flush: bool = False  # empty the target databases first
    skip_module_keys: bool = False
    # An AOF command the target does not know is left out (counted) instead of stopping.
    skip_unknown_commands: bool = False
    big_key_bytes: int = 256 << 20  # values above this are rewritten in chunks
    chunk_bytes: int = 1 << 20  # the most one rewrite command carries
    window_bytes: int = 8 << 20  # commands awaiting replies, per connection
    retries: int = 5  # reconnect attempts after a dropped connection
    reply_timeout: float = REPLY_TIMEOUT  # a target silent this long is hung: the import fails
    # The hand-off: the address of this host the target connects back to (None: loopback,
    # for a target on this host only), and where to listen when that differs (NAT).
    handoff_addr: str | None = None
    handoff_bind: str | None = None
