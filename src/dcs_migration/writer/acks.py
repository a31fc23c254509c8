"""What the writer's commands expect of their replies: the acks it pushes them with (see
client/acks.py), matched in `Writer.on_reply`.

Plain key writes (RESTORE ... REPLACE, SET) carry none: the pipeline counts their +OK.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcs_migration.client.acks import Ack, KeyAck
from dcs_migration.client.resp import command_key


@dataclass(frozen=True, slots=True)
class RestoreNx(Ack):
    """RESTORE without REPLACE: BUSYKEY means the key exists. One instance serves every
    key (RESTORE_NX): a key is read back from its command on the rare reply that needs
    it, so that the writer allocates nothing per key to have its +OK counted."""

    def named_key(self, command: bytes) -> bytes | None:
        return command_key(command)


RESTORE_NX = RestoreNx()


@dataclass(frozen=True, slots=True)
class BigRestore(KeyAck):
    """The RESTORE of a big value, sent in pieces."""

    size: int


@dataclass(frozen=True, slots=True)
class ModuleRestore(KeyAck):
    """The RESTORE of a module value: refused where the module is not loaded."""

    module: str | None


@dataclass(frozen=True, slots=True)
class Part(KeyAck):
    """One command of a rewritten key (its value built under a temporary key)."""


@dataclass(frozen=True, slots=True)
class Rename(KeyAck):
    """The RENAME that puts a rewritten value in place: the key is written."""


@dataclass(frozen=True, slots=True)
class RenameNx(KeyAck):
    """The same, keeping an existing key: 0 means the key exists."""


@dataclass(frozen=True, slots=True)
class TxQueued(KeyAck):
    """MULTI, or a command queued in the MULTI of a rewritten key: QUEUED, or refused."""


@dataclass(frozen=True, slots=True)
class TxExec(KeyAck):
    """The EXEC of a rewritten key: its parts' replies, RENAME (or RENAMENX: `keep`) last."""

    keep: bool


@dataclass(frozen=True, slots=True)
class Flushed(Ack):
    """The FLUSHALL that empties a target first."""


@dataclass(frozen=True, slots=True)
class FunctionLoaded(Ack):
    """FUNCTION LOAD of a library."""

    library: bytes


# The acks of AOF commands are not frozen: one is made per command replayed, and a frozen
# dataclass takes twice as long to build (measured: 5% more CPU for an AOF replay, all of
# it spent in their __init__). Nothing changes one once it is pushed.
@dataclass(slots=True)
class AofReplayed(Ack):
    """An AOF command, and where it is in the AOF: an error reply skips it, counted."""

    file: str
    offset: int
    name: bytes


# Not subclasses of AofReplayed, so that a `case AofReplayed()` matches that one only.
@dataclass(slots=True)
class AofCopied(Ack):
    """The same command sent to another master of a cluster: a refusal counts once."""

    file: str
    offset: int
    name: bytes


@dataclass(slots=True)
class AofQueued(Ack):
    """MULTI, or a command queued in it: +OK / QUEUED, or the whole block is lost."""

    file: str
    offset: int
    name: bytes


@dataclass(frozen=True, slots=True)
class AofExec(Ack):
    """The EXEC of an AOF's MULTI block: one reply per command queued (`commands`: the
    offset and name of each)."""

    file: str
    offset: int
    commands: tuple[tuple[int, bytes], ...]
