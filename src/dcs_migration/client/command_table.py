"""The target's command table (COMMAND), as the target server itself reports it.

Two uses. Routing replayed AOF commands in a cluster needs their keys: fixed positions
come from the table (subcommands included); commands whose keys move with their
arguments (EVAL, XREAD, ZUNIONSTORE, ...) are asked about one by one with COMMAND
GETKEYS. And replaying an AOF as Redis loads one needs to tell a command the target does
not know (which stops Redis' own loader) from one it refuses (which the loader skips):
`lookup` finds a command as Redis' `lookupCommand` does, a container command's
subcommand included (Redis 7+; older tables list no subcommands).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis


@dataclass(frozen=True)
class CommandSpec:
    arity: int  # the argument count with the name; negative: at least that many
    first: int  # key positions: first, last (negative: from the end), step
    last: int
    step: int
    movable: bool  # keys found by COMMAND GETKEYS
    no_multi: bool  # refused inside MULTI (Redis 7+ says so in its flags)
    container: bool  # has subcommands: the second argument names the command run

    def fits(self, argc: int) -> bool:
        """Does the target take this many arguments (name included)?"""
        return argc == self.arity if self.arity >= 0 else argc >= -self.arity


class CommandTable:
    def __init__(self, table_reply: list[Any], getkeys: Callable[[list[bytes]], Any]) -> None:
        self._getkeys = getkeys
        self._specs: dict[bytes, CommandSpec] = {}
        for entry in table_reply:
            subcommands = entry[9] if len(entry) > 9 and isinstance(entry[9], list) else []
            self._add(entry, bool(subcommands))
            for sub in subcommands:
                self._add(sub, False)

    def _add(self, entry: list[Any], container: bool) -> None:
        name = bytes(entry[0]).lower()
        flags = {bytes(f) for f in entry[2]} if isinstance(entry[2], list) else set()
        self._specs[name] = CommandSpec(
            int(entry[1]),
            int(entry[3]),
            int(entry[4]),
            int(entry[5]),
            b"movablekeys" in flags,
            b"no_multi" in flags,
            container,
        )

    def lookup(self, args: list[bytes]) -> CommandSpec | None:
        """The command `args` run, or None when the target does not know it (nor, for a
        container command such as FUNCTION, the subcommand named)."""
        spec = self._specs.get(args[0].lower())
        if spec is not None and spec.container and len(args) > 1:
            return self._specs.get(args[0].lower() + b"|" + args[1].lower())
        return spec

    def keys(self, args: list[bytes]) -> list[bytes]:
        name = args[0].lower()
        spec = self._specs.get(name)
        if len(args) > 1:
            spec = self._specs.get(name + b"|" + args[1].lower(), spec)
        if spec is None or spec.movable:
            reply = self._getkeys(args)
            if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
                return []
            return [bytes(k) for k in reply]
        if spec.first <= 0:
            return []
        last = spec.last if spec.last >= 0 else len(args) + spec.last
        return args[spec.first : last + 1 : max(spec.step, 1)]
