"""A Redis Cluster: keys routed by hash slot, one pipeline per master, MOVED/ASK followed.

A command answered MOVED or ASK did not run; it is sent again where the reply points,
on the next round of `flush`. A slot that keeps moving (a resharding that goes back and
forth, nodes that disagree) could bounce a command for ever, so a flush follows at most
`REDIRECT_ROUNDS - 1` rounds of redirects (pausing between them, so that a move in
progress can end), takes every reply of the last round without following them, and then
raises `Unacknowledged` naming the first key left and the node: an import never ends
SUCCESS with a written command unacknowledged, and its counts stay exact.
"""

from __future__ import annotations

import time
from typing import Any

import hiredis

from dcs_migration.client.acks import Ack, Asking
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.command_table import CommandTable
from dcs_migration.client.connection import Connection, ConnectionLost, info
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.limits import PipelineLimits
from dcs_migration.client.pipeline import Pipeline, ReplyHandler
from dcs_migration.client.resp import command_key, encode_command
from dcs_migration.client.slots import SLOTS, key_slot

Node = tuple[str, int]
ASKING = encode_command([b"ASKING"])
REDIRECT_ROUNDS = 10  # rounds of a flush; redirects are followed in all but the last
REDIRECT_PAUSE_SECONDS = 0.01  # before the third round, doubling up to 0.5 s (1.6 s in all)


class Unacknowledged(TargetError):
    """The cluster kept redirecting a command: it was never acknowledged."""


class ClusterRouter:
    def __init__(self, seed: Endpoint, on_reply: ReplyHandler, limits: PipelineLimits) -> None:
        self.seed = seed
        self.on_reply = on_reply
        self.limits = limits
        self.dbs = 1
        self._pipelines: dict[Node, Pipeline] = {}
        conn = Connection(seed, timeout=limits.reply_timeout)
        try:
            conn.connect()
        except (ConnectionLost, TargetError) as exc:  # not Interrupted: a stop is no failure
            raise TargetError(f"cannot use {seed.host}:{seed.port}: {exc}") from exc
        try:
            self.caps = Capabilities.from_info(info(conn, "server"))
            if not self.caps.cluster:
                raise TargetError(f"{seed.host}:{seed.port} is not a Redis Cluster node")
            self._slots = slot_masters(conn, seed)
        except BaseException:
            conn.close()
            raise
        self._control = conn  # for COMMAND lookups and the synchronous moves of keys
        self._command_table: CommandTable | None = None
        self._following = True  # False in a flush's last round: redirects are not followed
        # The first command left unfollowed: its key, the node it was sent to, the reply.
        self._unfollowed: tuple[bytes, Node, str] | None = None
        for node in sorted(set(self._slots)):
            self._pipeline(node)

    # -- topology ----------------------------------------------------------------------

    def _pipeline(self, node: Node) -> Pipeline:
        pipe = self._pipelines.get(node)
        if pipe is None:
            pipe = Pipeline(
                self.seed.at(*node),
                self._reply_at(node),
                window_bytes=self.limits.window_bytes,
                retries=self.limits.retries,
                timeout=self.limits.reply_timeout,
            )
            pipe.open()
            self._pipelines[node] = pipe
        return pipe

    def _reply_at(self, node: Node) -> ReplyHandler:
        """`on_reply` for the pipeline to `node`: a refusal names the node that refused."""
        on_reply = self.on_reply

        def handle(ack: Ack | None, reply: Any, command: bytes) -> None:
            try:
                on_reply(ack, reply, command)
            except TargetError as exc:
                exc.args = (f"{exc} (node {node[0]}:{node[1]})", *exc.args[1:])
                raise

        return handle

    # -- routing -----------------------------------------------------------------------

    @property
    def only_pipeline(self) -> None:
        """Every key goes to the master of its slot (`pipeline_for`)."""
        return None

    def pipeline_for(self, key: bytes, db: int) -> Pipeline:
        if db != 0:
            raise TargetError(f"a Redis Cluster has only db 0; key {key!r} is in db {db}")
        return self._pipeline(self._slots[key_slot(key)])

    def command_pipeline(self, args: list[bytes], db: int) -> Pipeline | None:
        """The master a replayed command goes to; None for a command without keys.
        Raises CrossSlot when its keys live in different slots."""
        keys = self.command_table().keys(args)
        if not keys:
            return None
        slots = {key_slot(k) for k in keys}
        if len(slots) > 1:
            raise CrossSlot(keys)
        return self._pipeline(self._slots[slots.pop()])

    def command_table(self) -> CommandTable:
        """The masters' command table (asked of the seed node once)."""
        if self._command_table is None:
            table = self._control.call_checked(b"COMMAND")
            self._command_table = CommandTable(
                table, lambda a: self._control.call(b"COMMAND", b"GETKEYS", *a)
            )
        return self._command_table

    def move_key(self, source: bytes, destination: bytes, *, keep_existing: bool) -> None:
        """RENAME across slots: DUMP the source where it lives, RESTORE it (with its TTL)
        where the destination lives, then delete the source."""
        self.flush()
        src = self.pipeline_for(source, 0)
        dst = self.pipeline_for(destination, 0)
        payload = src.conn.call(b"DUMP", source)
        if payload is None or isinstance(payload, hiredis.ReplyError):
            raise TargetError(f"cannot move key {source!r} to {destination!r}: {payload}")
        ttl = src.conn.call_checked(b"PTTL", source)
        if keep_existing and dst.conn.call_checked(b"EXISTS", destination):
            return
        restore = [b"RESTORE", destination, b"%d" % max(int(ttl), 0), payload, b"REPLACE"]
        dst.conn.call_checked(*restore)
        src.conn.call_checked(b"DEL", source)

    def masters(self) -> list[Pipeline]:
        return [self._pipeline(node) for node in sorted(set(self._slots))]

    def redirect(self, reply: object, command: bytes, ack: Ack | None) -> bool:
        if not isinstance(reply, hiredis.ReplyError):
            return False
        text = str(reply)
        kind, _, rest = text.partition(" ")
        if kind not in ("MOVED", "ASK"):
            return False
        slot_text, _, address = rest.partition(" ")
        host, _, port = address.rpartition(":")
        node = _node(self.seed, host, port)
        # Connected first: a node the address policy refuses never enters the slot map,
        # so that nothing (the counts taken after a failure) tries it again.
        pipe = self._pipeline(node)
        if kind == "MOVED":
            self._slots[int(slot_text)] = node
        if not self._following:
            if self._unfollowed is None:
                # The key an ack names: a rewritten value's parts go to a temporary key.
                key = ack.named_key(command) if ack is not None else None
                named = key if key is not None else command_key(command)
                self._unfollowed = (named, node, text)
            return True
        # Held until the next round of the flush (or the next batch sent there): sending
        # from inside another pipeline's reply handling would nest one drain in another.
        if kind == "ASK":
            pipe.push(ASKING, Asking(), hold=True)
        pipe.push(command, ack, hold=True)
        return True

    def flush(self) -> None:
        """Send everything and take every reply, following redirects; Unacknowledged
        when commands are still being redirected after `REDIRECT_ROUNDS` rounds."""
        for round_ in range(REDIRECT_ROUNDS):
            if round_ > 1:  # a slot being moved: give the move time to end
                time.sleep(min(REDIRECT_PAUSE_SECONDS * 2 ** (round_ - 2), 0.5))
            self._following = round_ < REDIRECT_ROUNDS - 1
            try:
                for pipe in list(self._pipelines.values()):
                    pipe.flush()
            finally:
                self._following = True
            if all(p.idle for p in self._pipelines.values()):
                break
        unfollowed, self._unfollowed = self._unfollowed, None
        if unfollowed is not None:
            key, node, reply = unfollowed
            raise Unacknowledged(
                f"the cluster never acknowledged key {key!r}: still redirected after "
                f"{REDIRECT_ROUNDS - 1} rounds of redirects, last to node {node[0]}:{node[1]} "
                f"({reply}); its slot keeps moving: import again once the cluster is stable"
            )

    def close(self) -> None:
        self._control.close()
        for pipe in self._pipelines.values():
            pipe.close()


def slot_masters(conn: Connection, seed: Endpoint) -> list[Node]:
    """The master of every slot, from CLUSTER SHARDS (CLUSTER SLOTS on older servers);
    TargetError unless every slot is served."""
    slots: list[Node | None] = [None] * SLOTS
    shards = conn.call(b"CLUSTER", b"SHARDS")
    if isinstance(shards, hiredis.ReplyError):
        for start, end, master, *_ in conn.call_checked(b"CLUSTER", b"SLOTS"):
            node = _node(seed, master[0], master[1])
            for s in range(int(start), int(end) + 1):
                slots[s] = node
    else:
        for shard in shards:
            fields = _pairs(shard)
            master = next(
                (_pairs(n) for n in fields[b"nodes"] if _pairs(n).get(b"role") == b"master"),
                None,
            )
            if master is None:
                continue
            host = master.get(b"ip") or master.get(b"endpoint") or b""
            port = master.get(b"port") or master.get(b"tls-port")
            node = _node(seed, host, port)
            ranges = fields[b"slots"]
            for i in range(0, len(ranges), 2):
                for s in range(int(ranges[i]), int(ranges[i + 1]) + 1):
                    slots[s] = node
    missing = [s for s in range(SLOTS) if slots[s] is None]
    if missing:
        raise TargetError(
            f"the cluster at {seed.host}:{seed.port} does not serve "
            f"{len(missing)} slots (first: {missing[0]}): it is not ready for an import"
        )
    return [s for s in slots if s is not None]


def cluster_nodes(conn: Connection, seed: Endpoint) -> set[Node]:
    """Every node the cluster names, masters and replicas (CLUSTER SHARDS, or CLUSTER
    SLOTS on older servers): the addresses an instance registered as a cluster holds.
    TargetError when the reply is not shaped as Redis shapes it."""
    nodes: set[Node] = set()
    try:
        shards = conn.call(b"CLUSTER", b"SHARDS")
        if isinstance(shards, hiredis.ReplyError):
            for _, _, *served in conn.call_checked(b"CLUSTER", b"SLOTS"):
                nodes.update(_node(seed, n[0], n[1]) for n in served)
        else:
            for shard in shards:
                for n in _pairs(shard)[b"nodes"]:
                    node = _pairs(n)
                    port = node.get(b"port") or node.get(b"tls-port")
                    nodes.add(_node(seed, node.get(b"ip") or node.get(b"endpoint") or b"", port))
    except (TypeError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise TargetError(
            f"{seed.host}:{seed.port} does not describe its cluster as Redis does ({exc!r})"
        ) from None
    return nodes


def _node(seed: Endpoint, host: Any, port: Any) -> Node:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in ("", "?"):
        text = seed.host
    return (text, int(port))


class CrossSlot(TargetError):
    """A command's keys live in different hash slots."""

    def __init__(self, keys: list[bytes]) -> None:
        super().__init__(f"keys {keys!r} live in different hash slots")
        self.keys = keys


def _pairs(flat: Any) -> dict[bytes, Any]:
    """A RESP2 map (a flat list of name, value, ...) as a dict."""
    if isinstance(flat, dict):
        return flat
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
