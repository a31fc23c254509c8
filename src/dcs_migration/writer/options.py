"""How an import writes: conflict policy, strategy, db mapping, limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dcs_migration.client.limits import PipelineLimits
from dcs_migration.config import REPLY_TIMEOUT as REPLY_TIMEOUT


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
    # A key in the target that says how far a resumable import's AOF commands are applied
    # (a task's): each batch of commands goes with it in one transaction (exactly once).
    marker_key: bytes | None = None

    @property
    def limits(self) -> PipelineLimits:
        """What each connection to the target is held to."""
        return PipelineLimits(self.window_bytes, self.retries, self.reply_timeout)
