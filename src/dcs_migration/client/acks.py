"""What a reply acknowledges: the typed tag a command is pushed with, handed back with
its reply.

A pipeline counts the +OK of plain key writes itself, without a Python call per reply;
every other reply goes to the pusher's handler together with the `Ack` its command was
pushed with, and the handler matches on it (`match ack:`), as a reader of the protocol
would. The acks here are the client's own; the writer defines the rest (writer/acks.py).
"""

from __future__ import annotations

from dataclasses import dataclass


class Ack:
    """A command whose reply the one who pushed it checks. Its kinds are small frozen
    dataclasses; this base holds no field, so that a kind may also be a plain one."""

    __slots__ = ()

    def named_key(self, command: bytes) -> bytes | None:
        """The key to name when `command` (pushed with this ack) goes wrong; None when
        it writes no key of its own."""
        return None


@dataclass(frozen=True, slots=True)
class KeyAck(Ack):
    """A command that writes `key` (named when its reply is a refusal or a redirect)."""

    key: bytes

    def named_key(self, command: bytes) -> bytes | None:
        return self.key


@dataclass(frozen=True, slots=True)
class Select(Ack):
    """SELECT of `db`, pushed by the pipeline itself: +OK makes `db` current."""

    db: int


@dataclass(frozen=True, slots=True)
class Asking(Ack):
    """The ASKING before a command a cluster node redirected with ASK."""


@dataclass(frozen=True, slots=True)
class BatchedWrite(KeyAck):
    """One plain key write of a batch, answered with something else than +OK (a refusal,
    a redirect): only then is it named, read back from the batch's bytes."""
