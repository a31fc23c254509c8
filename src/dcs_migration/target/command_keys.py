"""Which arguments of a command are keys, as the target server itself says (COMMAND).

Needed to route replayed AOF commands in a cluster. Fixed positions come from the
command table (subcommands included); commands whose keys move with their arguments
(EVAL, XREAD, ZUNIONSTORE, ...) are asked about one by one with COMMAND GETKEYS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis


@dataclass(frozen=True)
class KeySpec:
    first: int
    last: int
    step: int
    movable: bool


class CommandKeys:
    def __init__(self, table_reply: list[Any], getkeys: Callable[[list[bytes]], Any]) -> None:
        self._getkeys = getkeys
        self._specs: dict[bytes, KeySpec] = {}
        for entry in table_reply:
            self._add(entry)
            if len(entry) > 9 and isinstance(entry[9], list):
                for sub in entry[9]:
                    self._add(sub)

    def _add(self, entry: list[Any]) -> None:
        name = bytes(entry[0]).lower()
        flags = {bytes(f) for f in entry[2]} if isinstance(entry[2], list) else set()
        self._specs[name] = KeySpec(
            int(entry[3]), int(entry[4]), int(entry[5]), b"movablekeys" in flags
        )

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
