"""`make bench`, third part: online migration beside a native replica of the same source.

The source is a redis-server started from an RDB file (cached in bench/.work/online)
that bench/scale.py's generator fills: its first SOURCE_FILES files merged, strings of
random bytes from a few bytes to 64 kB, integers, hashes, lists, sets and sorted sets
(some past the compact encodings), a fifth of the keys with a TTL years ahead. It runs
with `--repl-diskless-sync-delay 0` (neither side waits 5 s for its snapshot) and a
256 MB backlog, and serves every measure.

Full sync: BENCH_ROUNDS (3) interleaved rounds, each side into a fresh target.
- ours: a fresh `dcs-migration serve`, a key minted, the target registered and an online
  task created through the official SDK (untimed); timed from the call that configures
  it (incremental_migration, resume_mode manual) to the first poll (every 50 ms, through
  the SDK) that reads INCRMIGEATING: the task's process starting, the snapshot streamed
  and the target written. Peak RSS (VmHWM) of the task's own process (the service runs
  each task in one: `python -m dcs_migration.tasks.worker online_migration ...`), of the
  service and of the target; then a sync-stop, and the target's DEBUG DIGEST against
  the source's. Beside it, the copy's own time from the task's log (in-process).
- native: a fresh redis-server told `REPLICAOF` the source, timed until INFO says the
  link is up, no sync is in progress and nothing is loading; its peak RSS and digest.

Incremental phase, one pass, the native replica first: each side syncs once more into a
fresh target, then takes a ladder of write rates (RATES; "max" is as fast as the writer
goes), WINDOW_SECONDS each; ours' ladder has one more rung, at half the rate the replica
sustained (the goal's own test). The writer is a process of its own (forked) that sends
a pipelined batch every 10 ms and reads every reply: SET (16-512 random bytes), INCR,
HSET, LPUSH + LTRIM and EXPIRE, over a bounded keyspace whose lists are filled
beforehand, so that every write changes the data and is propagated as written (an LTRIM
that removes nothing, an EXPIRE of a missing key, are not). Every 50 ms it also RPUSHes
the time (time.time_ns) to a probe list. A thread here polls the target every 2 ms for
the list's new elements: an element's lag is the moment it was first seen there less the
time it holds. A list, rather than one key overwritten, so that a batch bringing several
probes at once shows each of them. After the window the writer stops and the reader
waits (DRAIN_SECONDS at most) for every probe; one never seen counts with the lag it had
reached by then.

Per step: the writes a second the writer achieved (probes included), the writes a
second the target ran over the same window (its commandstats of the writer's commands;
for ours less one marker SET per EXEC), lag p50/p99/max, growth (the median lag of the
window's last quarter less that of its first) and bounded: every probe seen, p99 under
BOUND_SECONDS, and the lag, growing on as it grew in the window, still under
BOUND_SECONDS HORIZON_SECONDS later (an 8 s window cannot tell a lag that settles at
half a second from one that climbs without end; this says which way it was going). A
step not bounded ends that side's ladder. Beside them, the CPU the applying process and
the target took (ours: the task's process; native: the replica, which is its target),
and for ours the service's own view (stats: lag_ms and offset, at the window's end).
Then each side's highest bounded rate, their ratio and the goals (p99 lag under 1 s at
20 k writes/s; a sustained rate at least 0.5x the native replica's). Once the ladder is
done ours is sync-stopped and the replica waited for, and both targets' digests are
checked against the source's.

The machine's other load is sampled in the second before each timing (every process
here descends from this one): a warning says when it was not quiet.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from random import Random
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hiredis  # noqa: E402
import redis  # noqa: E402
from bench.scale import (  # noqa: E402
    BUSY_WARNING,
    CLOCK_TICKS,
    KEYS_PER_FILE,
    QUIET_SECONDS,
    busy_jiffies,
    file_commands,
    saved_rdb,
    tree_jiffies,
)
from huaweicloudsdkdcs.v2 import (  # noqa: E402
    ConfigMigrationInstanceBody,
    CreateOnlineMigrationTaskBody,
    CreateOnlineMigrationTaskRequest,
    ListMigrationTaskLogsRequest,
    SetOnlineMigrationTaskBody,
    SetOnlineMigrationTaskRequest,
    ShowMigrationTaskRequest,
    StopMigrationTaskRequest,
    StopMigrationTaskSyncRequest,
)
from tests.support.procstat import vmhwm_mb  # noqa: E402
from tests.support.sdk import PROJECT, register  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402
from tests.support.service import Service, signed  # noqa: E402

from dcs_migration.client.resp import encode_command  # noqa: E402

WORK = ROOT / "bench" / ".work" / "online"
SOURCE_FILES = 3  # of bench/scale.py's files: KEYS_PER_FILE keys, about 63 MB of RDB, each
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DEBUG = ("--enable-debug-command", "yes")
SOURCE_ARGS = (*DEBUG, "--repl-diskless-sync-delay", "0", "--repl-backlog-size", "256mb")
STATUS_POLL_SECONDS = 0.05
INFO_POLL_SECONDS = 0.01
SYNC_SECONDS = 600.0  # a full sync that takes longer ends the benchmark
ENDED = ("MIGRATION_FAILED", "TERMINATED", "SUCCESS")
COPY_DONE = re.compile(r"full copy done: \d+ keys written in ([0-9.]+) s")  # the task's log

MAX = 0  # the rate "as fast as the writer goes"
RATES = (5_000, 10_000, 20_000, 40_000, 60_000, MAX)  # writes a second
WINDOW_SECONDS = 8.0
TICK_SECONDS = 0.01  # the writer sends a batch this often
MAX_BATCH = 500  # writes per batch at MAX
PROBE_SECONDS = 0.05
PROBE_POLL_SECONDS = 0.002
DRAIN_SECONDS = 30.0  # after a window, for the probes still on their way
CATCH_UP_SECONDS = 120.0  # after the ladder, before the digests
BOUND_SECONDS = 1.0
HORIZON_SECONDS = 60.0  # a lag growing as in the window must stay under the bound this long
GOAL_RATE = 20_000
GOAL_P99_SECONDS = 1.0
GOAL_SUSTAINED = 0.5

# The writer's keyspace: strings, counters, hashes of HASH_FIELDS fields, lists kept at
# LIST_LENGTH elements (filled before the ladder, so that each LTRIM removes one).
STRINGS, COUNTERS, HASHES, HASH_FIELDS, LISTS, LIST_LENGTH = 100_000, 1000, 10_000, 100, 1000, 100
# The writer's commands as the target's commandstats name them: EXPIRE is propagated as
# PEXPIREAT, the probe is an RPUSH.
WRITER_COMMANDS = ("set", "incr", "hset", "lpush", "ltrim", "expire", "pexpireat", "rpush")


# -- the source -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The source's file, and what a server that loaded it holds."""

    path: Path
    keys: int
    digest: str

    @property
    def megabytes(self) -> float:
        return self.path.stat().st_size / 1e6


def build_source() -> Path:
    """The source's RDB file (cached): the commands of bench/scale.py's files 1 to
    SOURCE_FILES piped into one redis-server, then SAVE."""
    path = WORK / f"source-{SOURCE_FILES}x{KEYS_PER_FILE}-ttl-years.rdb"
    if path.exists():
        return path
    saved_rdb(
        path,
        (command for number in range(1, SOURCE_FILES + 1) for command in file_commands(number)),
    )
    return path


def digest(server: RedisServer) -> str:
    return server.cli("DEBUG", "DIGEST")


def connect(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=60)


def fill_lists(source: RedisServer) -> None:
    """The writer's lists at LIST_LENGTH elements, before any ladder."""
    conn = connect(source)
    try:
        with conn.pipeline(transaction=False) as pipe:
            for n in range(LISTS):
                pipe.rpush(b"bench:l:%d" % n, *(b"%d" % i for i in range(LIST_LENGTH)))
            pipe.execute()
    finally:
        conn.close()


# -- the machine ----------------------------------------------------------------------------


class OtherLoad:
    """The share of the machine's cores that other processes kept busy from `__init__` to
    `share`: all the machine's CPU time less what this process, its descendants (the
    servers, the service, the writer) and `ours` took. `ours`: a task's process, which
    the service starts from a thread of its own, where /proc lists it as that thread's
    child, not the service's."""

    def __init__(self, ours: tuple[int, ...] = ()) -> None:
        self.roots = [os.getpid(), *ours]
        self.busy, self.total = busy_jiffies()
        self.own = tree_jiffies(self.roots)

    def share(self) -> float:
        busy, total = busy_jiffies()
        other = busy - self.busy - (tree_jiffies(self.roots) - self.own)
        return max(other, 0) / max(total - self.total, 1)


def background_load(ours: tuple[int, ...] = ()) -> float:
    """Other processes' share of the cores over QUIET_SECONDS, before a timing."""
    load = OtherLoad(ours)
    time.sleep(QUIET_SECONDS)
    return load.share()


def task_process(task_id: str) -> int | None:
    """The pid of the task's own process: the one whose command line names the task."""
    wanted = task_id.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"dcs_migration.tasks.worker" in args and wanted in args:
                return int(entry.name)
    return None


def rss(server: RedisServer) -> float:
    return vmhwm_mb(server.process.pid) if server.process is not None else 0.0


# -- ours: the service, driven through the official SDK -------------------------------------


class OnlineTasks:
    """A fresh `dcs-migration serve` (its data and log in a folder of its own, removed
    with `stack`) and an SDK client of one project, with the key it signs with (for the
    stats' fields beyond the SDK's model)."""

    def __init__(self, stack: ExitStack) -> None:
        folder = Path(tempfile.mkdtemp(prefix="bench-online-"))
        stack.callback(shutil.rmtree, folder, True)
        self.log_path = folder / "service.log"
        self.service = Service(data_dir=folder / "data", log_path=self.log_path)
        stack.callback(self.service.stop)
        self.service.start()
        self.key = self.service.cli("keys", "create", "--project-id", PROJECT)
        self.client = self.service.client(self.key["ak"], self.key["sk"], PROJECT)

    def create(self, name: str) -> str:
        body = CreateOnlineMigrationTaskBody(
            name=name, vpc_id="vpc-bench", subnet_id="subnet-bench", security_group_id="sg-bench"
        )
        request = CreateOnlineMigrationTaskRequest(body=body)
        task_id: str = self.client.create_online_migration_task(request).instance_id
        return task_id

    def configure(self, task_id: str, source: RedisServer, target_id: str) -> None:
        body = SetOnlineMigrationTaskBody(
            migration_method="incremental_migration",
            resume_mode="manual",
            source_instance=ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{source.port}"),
            target_instance=ConfigMigrationInstanceBody(id=target_id),
        )
        request = SetOnlineMigrationTaskRequest(task_id=task_id, body=body)
        self.client.set_online_migration_task(request)

    def status(self, task_id: str) -> str:
        task = self.client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id))
        found: str = task.status
        return found

    def wait(self, task_id: str, wanted: str, seconds: float) -> float:
        """Poll until the task reads `wanted`; the moment it was seen (perf_counter). A task
        that ended otherwise, or a timeout, ends the benchmark with what the service said."""
        deadline = time.monotonic() + seconds
        while True:
            status = self.status(task_id)
            seen = time.perf_counter()
            if status == wanted:
                return seen
            if status in ENDED or time.monotonic() > deadline:
                raise SystemExit(f"task {task_id} is {status}:\n{self.explain(task_id)}")
            time.sleep(STATUS_POLL_SECONDS)

    def stats(self, task_id: str) -> dict[str, Any]:
        path = f"/v2/{PROJECT}/migration-task/{task_id}/stats"
        status, body, _ = signed(self.service, self.key, "GET", path)
        if status != 200:
            raise SystemExit(f"the stats of task {task_id} answered {status}: {body}")
        return body

    def sync_stop(self, task_id: str) -> None:
        """A sync-stop (it answers once caught up and stopped), and the task TERMINATED."""
        self.client.stop_migration_task_sync(StopMigrationTaskSyncRequest(task_id=task_id))
        self.wait(task_id, "TERMINATED", 30)

    def stop(self, task_id: str) -> None:
        self.client.stop_migration_task(StopMigrationTaskRequest(task_id=task_id))

    def logs(self, task_id: str) -> list[str]:
        request = ListMigrationTaskLogsRequest(task_id=task_id, limit=100)
        return [
            line.message for line in self.client.list_migration_task_logs(request).migration_logs
        ]

    def explain(self, task_id: str) -> str:
        _, detail, _ = signed(
            self.service, self.key, "GET", f"/v2/{PROJECT}/migration-task/{task_id}"
        )
        lines = "\n".join(f"  {line}" for line in self.logs(task_id))
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        return f"error: {detail.get('error_message')}\ntask log:\n{lines}\nservice log:\n{tail}"


# -- full sync ------------------------------------------------------------------------------


@dataclass
class FullSync:
    """One side's full sync: its time and the peak RSS of what ran it."""

    seconds: float
    rss_mb: float  # ours: the task's process; native: the replica (its target too)
    target_rss_mb: float
    service_rss_mb: float = 0.0
    copy_seconds: float | None = None  # ours: the copy's own time, from the task's log
    background: float = 0.0
    exact: bool | None = None


@dataclass
class Ours:
    """A task of ours that reached INCRMIGEATING, and what ran it."""

    tasks: OnlineTasks
    task_id: str
    target: RedisServer
    pid: int | None
    full: FullSync


def start_ours(stack: ExitStack, source: RedisServer, name: str) -> Ours:
    """A fresh service and target, and an online task into it, timed to INCRMIGEATING."""
    target = stack.enter_context(RedisServer(*DEBUG))
    tasks = OnlineTasks(stack)
    target_id = register(tasks.service, target)
    task_id = tasks.create(name)
    tasks.wait(task_id, "RUNNING", 30)
    background = background_load()
    started = time.perf_counter()
    tasks.configure(task_id, source, target_id)
    seconds = tasks.wait(task_id, "INCRMIGEATING", SYNC_SECONDS) - started
    pid = task_process(task_id)
    service = tasks.service.process
    copied = [m for line in tasks.logs(task_id) if (m := COPY_DONE.search(line))]
    full = FullSync(
        seconds=seconds,
        rss_mb=vmhwm_mb(pid) if pid is not None else 0.0,
        target_rss_mb=rss(target),
        service_rss_mb=vmhwm_mb(service.pid) if service is not None else 0.0,
        copy_seconds=float(copied[0].group(1)) if copied else None,
        background=background,
    )
    return Ours(tasks, task_id, target, pid, full)


def measure_ours(source: RedisServer, source_digest: str, round_no: int) -> FullSync:
    with ExitStack() as stack:
        ours = start_ours(stack, source, f"bench-full-{round_no}")
        ours.tasks.sync_stop(ours.task_id)
        ours.full.exact = digest(ours.target) == source_digest
        return ours.full


def replica_in_sync(replica: redis.Redis) -> bool:
    found = replica.info("replication")
    if found.get("master_link_status") != "up" or found.get("master_sync_in_progress") != 0:
        return False
    return replica.info("persistence").get("loading") == 0


def start_native(stack: ExitStack, source: RedisServer) -> tuple[RedisServer, FullSync]:
    """A fresh redis-server made a replica of the source, timed until it is in sync."""
    replica = stack.enter_context(RedisServer(*DEBUG))
    conn = connect(replica)
    stack.callback(conn.close)
    background = background_load()
    started = time.perf_counter()
    conn.replicaof("127.0.0.1", source.port)
    deadline = time.monotonic() + SYNC_SECONDS
    while not replica_in_sync(conn):
        if time.monotonic() > deadline:
            raise SystemExit(f"the replica did not sync:\n{replica.log()[-3000:]}")
        time.sleep(INFO_POLL_SECONDS)
    seconds = time.perf_counter() - started
    peak = rss(replica)
    return replica, FullSync(seconds, peak, peak, background=background)


def measure_native(source: RedisServer, source_digest: str) -> FullSync:
    with ExitStack() as stack:
        replica, full = start_native(stack, source)
        full.exact = digest(replica) == source_digest
        return full


# -- the writer (a process of its own) ------------------------------------------------------


def _writes(rng: Random, pool: bytes, count: int) -> list[bytes]:
    """About `count` writes of the mix (an LPUSH comes with its LTRIM)."""
    out: list[bytes] = []
    while len(out) < count:
        draw = rng.random()
        if draw < 0.5:
            size = rng.randint(16, 512)
            at = rng.randrange(len(pool) - size)
            key = b"bench:s:%d" % rng.randrange(STRINGS)
            out.append(encode_command([b"SET", key, pool[at : at + size]]))
        elif draw < 0.65:
            out.append(encode_command([b"INCR", b"bench:c:%d" % rng.randrange(COUNTERS)]))
        elif draw < 0.8:
            at = rng.randrange(len(pool) - 64)
            key = b"bench:h:%d" % rng.randrange(HASHES)
            field = b"f%d" % rng.randrange(HASH_FIELDS)
            out.append(encode_command([b"HSET", key, field, pool[at : at + rng.randint(16, 64)]]))
        elif draw < 0.95:
            at = rng.randrange(len(pool) - 64)
            key = b"bench:l:%d" % rng.randrange(LISTS)
            out.append(encode_command([b"LPUSH", key, pool[at : at + rng.randint(16, 64)]]))
            out.append(encode_command([b"LTRIM", key, b"0", b"%d" % (LIST_LENGTH - 1)]))
        else:  # a key that exists (a list), or the EXPIRE would not be propagated
            key = b"bench:l:%d" % rng.randrange(LISTS)
            out.append(encode_command([b"EXPIRE", key, b"3600"]))
    return out


class _Replies:
    """Reads the source's replies to the writer, counting them; an error ends the writer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()

    def read(self, count: int) -> None:
        while count:
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the source closed the writer's connection")
                self.reader.feed(data)
            elif isinstance(reply, hiredis.ReplyError):
                raise ConnectionError(f"the source refused a write: {reply}")
            else:
                count -= 1


def write_load(pipe: Connection, port: int, rate: int, probe_key: bytes, seed: int) -> None:
    """The writer's process: says "ready", waits for "go", then writes `rate` writes a
    second (MAX: as fast as it goes) for WINDOW_SECONDS, a pipelined batch every
    TICK_SECONDS and every reply read, a probe every PROBE_SECONDS; sends its summary."""
    try:
        rng = Random(seed)
        pool = rng.randbytes(1 << 20)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = _Replies(sock)
        writes = probes = 0
        pipe.send("ready")
        pipe.recv()
        started = time.monotonic()
        next_probe = started
        while (now := time.monotonic()) - started < WINDOW_SECONDS:
            due = int(rate * (now - started)) - writes if rate != MAX else MAX_BATCH
            batch = _writes(rng, pool, due) if due > 0 else []
            if now >= next_probe:
                batch.append(encode_command([b"RPUSH", probe_key, b"%d" % time.time_ns()]))
                probes += 1
                next_probe += PROBE_SECONDS
            if batch:
                sock.sendall(b"".join(batch))
                replies.read(len(batch))
                writes += len(batch)
            if rate != MAX:
                time.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - now)))
        seconds = time.monotonic() - started
        sock.close()
        pipe.send({"writes": writes, "probes": probes, "seconds": seconds})
        pipe.poll(60)  # alive until told, so that its CPU time counts as ours, not other
    except Exception as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


class Writer:
    """The writer, forked and connected to the source, until `go`."""

    def __init__(self, stack: ExitStack, source: RedisServer, rate: int, probe_key: bytes) -> None:
        context = multiprocessing.get_context("fork")
        self.pipe, theirs = context.Pipe()
        args = (theirs, source.port, rate, probe_key, rate + 1)
        self.process = context.Process(target=write_load, args=args, daemon=True)
        self.finished = False  # it sent its summary: it waits for a word to exit
        self.process.start()
        stack.callback(self._end)
        if self._answer(30) != "ready":
            raise SystemExit("the writer did not start")

    def go(self) -> None:
        self.pipe.send("go")

    def summary(self) -> dict[str, float]:
        found = self._answer(WINDOW_SECONDS + 30)
        self.finished = True
        if not isinstance(found, dict) or "error" in found:
            raise SystemExit(f"the writer failed: {found}")
        return found

    def _answer(self, seconds: float) -> Any:
        if not self.pipe.poll(seconds):
            raise SystemExit("the writer did not answer")
        return self.pipe.recv()

    def _end(self) -> None:
        if self.finished:
            self.pipe.send("done")
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# -- the incremental phase ------------------------------------------------------------------


class ProbeReader:
    """Polls the target for the probe list's new elements: (sent, first seen) of each, in
    nanoseconds of time.time_ns."""

    def __init__(self, target: RedisServer, key: bytes) -> None:
        self.key = key
        self.seen: dict[int, int] = {}
        self.error: BaseException | None = None
        self._conn = connect(target)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        held = 0
        try:
            while not self._stop.is_set():
                length = self._conn.llen(self.key)
                if length > held:
                    values = self._conn.lrange(self.key, held, length - 1)
                    now = time.time_ns()
                    self.seen.update((int(v), now) for v in values)
                    held = length
                self._stop.wait(PROBE_POLL_SECONDS)
        except BaseException as exc:  # reported by stop()
            self.error = exc


def applied_writes(conn: redis.Redis, ours: bool) -> int:
    """The writer's commands the target ran so far (commandstats): for ours less one
    marker SET per EXEC (each batch's transaction)."""
    stats = conn.info("commandstats")
    calls = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in WRITER_COMMANDS)
    if ours:
        calls -= stats.get("cmdstat_exec", {}).get("calls", 0)
    return int(calls)


@dataclass
class Step:
    """One rate of the ladder, on one side."""

    side: str
    rate: int  # asked for; MAX: as fast as the writer goes
    background: float
    other: float = 0.0  # other processes' share of the cores during the window
    writes_per_second: float = 0.0
    applied_per_second: float = 0.0
    lags: list[float] = field(default_factory=list)  # seconds, one per probe, in send order
    unseen: int = 0  # probes the target did not show within DRAIN_SECONDS
    cores: float = 0.0  # the CPU the applying process took over the window, in cores
    target_cores: float = 0.0  # the target's (native: the replica, the same process)
    service: dict[str, Any] | None = None  # ours: the stats at the window's end

    def percentile(self, share: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    @property
    def growth(self) -> float:
        """The median lag of the window's last quarter of probes less its first's."""
        if not self.lags:
            return 0.0
        quarter = max(1, len(self.lags) // 4)
        return statistics.median(self.lags[-quarter:]) - statistics.median(self.lags[:quarter])

    @property
    def projected(self) -> float:
        """The lag HORIZON_SECONDS after the window, growing as it grew in the window
        (from the first quarter's middle to the last's: three quarters of it)."""
        if not self.lags:
            return 0.0
        quarter = max(1, len(self.lags) // 4)
        now = statistics.median(self.lags[-quarter:])
        return now + max(0.0, self.growth) / (0.75 * WINDOW_SECONDS) * HORIZON_SECONDS

    @property
    def bounded(self) -> bool:
        p99 = self.percentile(0.99)
        return not self.unseen and p99 < BOUND_SECONDS and self.projected < BOUND_SECONDS


def probe_key(side: str, rate: int) -> bytes:
    return b"bench:probe:%s:%d" % (side.encode(), rate)


def probes(server: RedisServer, key: bytes) -> list[bytes]:
    """The probe list as `server` holds it now."""
    conn = connect(server)
    try:
        found: list[bytes] = conn.lrange(key, 0, -1)
        return found
    finally:
        conn.close()


def run_step(side: str, rate: int, source: RedisServer, applier: Applier) -> Step:
    """One window of writes at `rate` into the source, then the drain; its figures."""
    target = applier.target
    key = probe_key(side, rate)
    with ExitStack() as stack:
        writer = Writer(stack, source, rate, key)
        target_conn = connect(target)
        stack.callback(target_conn.close)
        ours = (applier.pid,) if side == "ours" else ()
        step = Step(side, rate, background_load(ours))
        reader = ProbeReader(target, key)
        stack.callback(reader.stop)
        applied_before = applied_writes(target_conn, side == "ours")
        cpu_before = tree_jiffies([applier.pid]), tree_jiffies([applier.target_pid])
        window_start = time.monotonic()
        load = OtherLoad(ours)
        writer.go()
        summary = writer.summary()
        step.other = load.share()
        applied_after = applied_writes(target_conn, side == "ours")
        window = time.monotonic() - window_start
        step.cores = (tree_jiffies([applier.pid]) - cpu_before[0]) / CLOCK_TICKS / window
        step.target_cores = (tree_jiffies([applier.target_pid]) - cpu_before[1]) / CLOCK_TICKS
        step.target_cores /= window
        step.service = applier.service_view()
        step.writes_per_second = summary["writes"] / summary["seconds"]
        step.applied_per_second = (applied_after - applied_before) / window
        deadline = time.monotonic() + DRAIN_SECONDS
        while len(reader.seen) < summary["probes"] and time.monotonic() < deadline:
            time.sleep(0.05)
    now = time.time_ns()
    sent = [int(v) for v in probes(source, key)]
    step.unseen = sum(1 for s in sent if s not in reader.seen)
    step.lags = [(reader.seen.get(s, now) - s) / 1e9 for s in sent]
    return step


@dataclass(frozen=True)
class Applier:
    """What applies the source's stream on one side: the target, the process whose CPU
    counts (ours: the task's; native: the replica), and the service's view, if any."""

    target: RedisServer
    pid: int
    service_view: Callable[[], dict[str, Any] | None] = lambda: None

    @property
    def target_pid(self) -> int:
        assert self.target.process is not None
        return self.target.process.pid


def ladder(side: str, rates: tuple[int, ...], source: RedisServer, applier: Applier) -> list[Step]:
    """Each rate in turn, until one is not bounded."""
    steps = []
    for rate in rates:
        step = run_step(side, rate, source, applier)
        steps.append(step)
        print(f"  {side} at {_rate_name(rate)}: {_step_line(step)}", flush=True)
        if not step.bounded:
            break
    return steps


def caught_up(source: RedisServer, target: RedisServer, last: Step) -> bool:
    """Wait (CATCH_UP_SECONDS at most) until the target holds every probe of the last
    step: it then holds every write made before."""
    key = probe_key(last.side, last.rate)
    wanted = len(probes(source, key))
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while len(probes(target, key)) < wanted:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Ladder:
    """One side's pass: its full sync, its steps, and what was checked after them."""

    full: FullSync
    rates: tuple[int, ...]
    steps: list[Step]
    rss_mb: float  # ours: the task's process; native: the replica, after the ladder
    exact: bool | None  # None: not checked (the target did not catch up)


def ladder_ours(source: RedisServer, rates: tuple[int, ...]) -> Ladder:
    with ExitStack() as stack:
        ours = start_ours(stack, source, "bench-ladder")
        tasks, task_id = ours.tasks, ours.task_id
        if ours.pid is None:
            raise SystemExit(f"the process of task {task_id} was not found")
        applier = Applier(ours.target, ours.pid, lambda: tasks.stats(task_id))
        steps = ladder("ours", rates, source, applier)
        peak = vmhwm_mb(ours.pid)
        if not caught_up(source, ours.target, steps[-1]):
            tasks.stop(task_id)
            return Ladder(ours.full, rates, steps, peak, None)
        tasks.sync_stop(task_id)
        exact = digest(ours.target) == digest(source)
        return Ladder(ours.full, rates, steps, peak, exact)


def ladder_native(source: RedisServer, rates: tuple[int, ...]) -> Ladder:
    with ExitStack() as stack:
        replica, full = start_native(stack, source)
        assert replica.process is not None
        steps = ladder("native", rates, source, Applier(replica, replica.process.pid))
        if not caught_up(source, replica, steps[-1]):
            return Ladder(full, rates, steps, rss(replica), None)
        source_conn, replica_conn = connect(source), connect(replica)
        stack.callback(source_conn.close)
        stack.callback(replica_conn.close)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while time.monotonic() < deadline and (
            source_conn.info("replication")["master_repl_offset"]
            > replica_conn.info("replication")["slave_repl_offset"]
        ):
            time.sleep(0.05)
        return Ladder(full, rates, steps, rss(replica), digest(replica) == digest(source))


# -- the tables -----------------------------------------------------------------------------


def _k(value: float) -> str:
    return f"{value / 1e3:.1f}k" if value < 1e4 else f"{value / 1e3:.0f}k"


def _rate_name(rate: int) -> str:
    return "max" if rate == MAX else _k(rate)


def _step_line(step: Step) -> str:
    return (
        f"{_k(step.writes_per_second)} writes/s, applied {_k(step.applied_per_second)}/s, "
        f"lag p50 {step.percentile(0.5) * 1e3:.0f} ms, p99 {step.percentile(0.99) * 1e3:.0f} ms"
        + ("" if step.bounded else " (not bounded)")
    )


def print_full(source: Source, ours: list[FullSync], native: list[FullSync]) -> None:
    print(
        f"\nfull sync of the source ({source.megabytes:.1f} MB of RDB, {source.keys} keys) into "
        f"a fresh target; medians of {ROUNDS} interleaved rounds (BENCH_ROUNDS)"
    )
    header = (
        f"{'measure':<27}{'seconds':>8}{'MB/s':>7}{'ratio':>7}{'RSS':>7}{'service':>8}"
        f"{'target':>8}{'copy s':>8}{'before':>7}  exact  each round (s)"
    )
    print(header)
    print("-" * len(header))
    ratio = statistics.median(o.seconds / n.seconds for o, n in zip(ours, native, strict=True))
    for label, runs in (("dcs-migration online task", ours), ("redis-server --replicaof", native)):
        seconds = statistics.median(r.seconds for r in runs)
        service = max(r.service_rss_mb for r in runs)
        copies = [r.copy_seconds for r in runs if r.copy_seconds is not None]
        print(
            f"{label:<27}{seconds:8.2f}{source.megabytes / seconds:7.1f}"
            f"{f'{ratio:.2f}x' if runs is ours else '':>7}"
            f"{max(r.rss_mb for r in runs):6.0f}M{f'{service:.0f}M' if service else '-':>8}"
            f"{max(r.target_rss_mb for r in runs):7.0f}M"
            f"{f'{statistics.median(copies):.1f}' if copies else '-':>8}"
            f"{max(r.background for r in runs):7.0%}  "
            f"{'yes' if all(r.exact for r in runs) else 'NO':<7}"
            + " ".join(f"{r.seconds:.2f}" for r in runs)
        )
    print(
        "\nseconds: ours from the configure call to the task seen INCRMIGEATING (polled every "
        "50 ms through the SDK), native from REPLICAOF to the replica's link up and its load "
        "done; MB/s: the RDB's size / seconds; ratio: ours' time / native's in the same round "
        "(median); RSS: peak of the process that ran the sync (ours: the task's own process; "
        "native: the replica, which is its target too); service: `dcs-migration serve`; "
        "target: the target redis-server (RSS columns: largest of rounds); copy s: the full "
        "copy's own time from the task's log (in-process: without the process's start, "
        "the handshake and the status reaching the API); before: the share of the cores "
        "other processes took in the second before (largest of rounds); exact: the target's "
        "DEBUG DIGEST equals the source's (ours after a sync-stop)."
    )


def print_ladder(ladders: dict[str, Ladder]) -> None:
    print(
        f"\nincremental phase: {WINDOW_SECONDS:.0f} s of writes at each rate (one pass), the "
        f"lag of a probe written every {PROBE_SECONDS * 1e3:.0f} ms, as seen on the target"
    )
    header = (
        f"{'side':<7}{'asked':>6}{'writes/s':>9}{'applied/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'growth':>8}{'in 60s':>8}{'cores':>6}{'target':>7}{'svc lag':>8}"
        f"{'svc offset':>11}{'before':>7}{'during':>7}  bounded"
    )
    print(header)
    print("-" * len(header))
    for found in ladders.values():
        for s in found.steps:
            view = s.service or {}
            bounded = "yes" if s.bounded else "NO" + (f" ({s.unseen} unseen)" if s.unseen else "")
            print(
                f"{s.side:<7}{_rate_name(s.rate):>6}{_k(s.writes_per_second):>9}"
                f"{_k(s.applied_per_second):>10}{s.percentile(0.5) * 1e3:8.0f}"
                f"{s.percentile(0.99) * 1e3:8.0f}{max(s.lags, default=0.0) * 1e3:8.0f}"
                f"{s.growth * 1e3:+8.0f}{s.projected * 1e3:8.0f}{s.cores:6.2f}"
                f"{s.target_cores:7.2f}{view.get('lag_ms', '-')!s:>8}"
                f"{view.get('offset', '-')!s:>11}{s.background:7.0%}{s.other:7.0%}  {bounded}"
            )
    print(
        "\nasked: the writer's rate (max: as fast as one writer process goes); writes/s: "
        "what it achieved on the source, probes included; applied/s: the writer's commands "
        "the target ran over the same window (commandstats); p50/p99/max: the probes' lag "
        "on the target (ms); growth: the median lag of the window's last quarter less its "
        f"first's (ms); in {HORIZON_SECONDS:.0f}s: the lag then, growing on as it grew (ms); "
        "cores: the CPU the applying process took over the window (ours: the task's "
        "process; native: the replica), target: the target's; svc lag, svc offset: the "
        "service's own view at the window's end (stats: lag_ms, and offset, the stream's "
        "bytes not applied yet); before, during: the share of the cores other processes "
        "took in the second before the window and during it; bounded: every probe seen, "
        f"p99 and the lag in {HORIZON_SECONDS:.0f} s under {BOUND_SECONDS:g} s. A step not "
        "bounded ends its side's ladder."
    )


def sustained(found: Ladder) -> tuple[float, bool]:
    """The highest write rate achieved in a bounded step, and whether every rate was
    bounded (the side's limit then lies above what the writer produced)."""
    bounded = [s.writes_per_second for s in found.steps if s.bounded]
    return max(bounded, default=0.0), len(bounded) == len(found.rates)


def ours_rates(native: Ladder) -> tuple[int, ...]:
    """RATES, with a rung at GOAL_SUSTAINED times the rate the native replica sustained:
    the goal's own test."""
    goal = math.ceil(GOAL_SUSTAINED * sustained(native)[0] / 1000) * 1000
    throttled = {r for r in RATES if r != MAX} | ({goal} if goal else set())
    return (*sorted(throttled), MAX)


def print_goals(ladders: dict[str, Ladder]) -> None:
    ours, ours_every = sustained(ladders["ours"])
    native, native_every = sustained(ladders["native"])
    print("\nthe highest write rate with the lag bounded (achieved writes/s):")
    for side, value, every in (("ours", ours, ours_every), ("native", native, native_every)):
        above = " (bounded at every rate: its limit lies above)" if every else ""
        print(f"  {side:<7}{_k(value)}{above}")
    ratio = ours / native if native else 0.0
    upper = native_every and not ours_every
    print(
        f"  ours / native: {ratio:.2f}x"
        + (" (at most: the native replica's limit was not reached)" if upper else "")
    )
    print("\ngoals:")
    at_goal = next((s for s in ladders["ours"].steps if s.rate == GOAL_RATE), None)
    if at_goal is None:
        print(
            f"  p99 lag < {GOAL_P99_SECONDS:g} s at {_k(GOAL_RATE)} writes/s: NOT MET (not reached)"
        )
    else:
        p99 = at_goal.percentile(0.99)
        met = at_goal.bounded and p99 < GOAL_P99_SECONDS
        print(
            f"  p99 lag < {GOAL_P99_SECONDS:g} s at {_k(GOAL_RATE)} writes/s: p99 {p99:.3f} s at "
            f"{_k(at_goal.writes_per_second)} writes/s achieved: {'met' if met else 'NOT MET'}"
        )
    verdict = "met" if ratio >= GOAL_SUSTAINED else "NOT MET"
    if upper and ratio >= GOAL_SUSTAINED:
        verdict += " against what the native replica was shown to sustain"
    print(f"  sustained rate >= {GOAL_SUSTAINED:g}x the native replica's: {ratio:.2f}x: {verdict}")


def _exact(found: bool | None) -> str:
    return "not checked (it did not catch up)" if found is None else "yes" if found else "NO"


def print_after(ladders: dict[str, Ladder]) -> None:
    ours, native = ladders["ours"], ladders["native"]
    print(
        f"\nthe ladders' own full syncs: native {native.full.seconds:.2f} s, ours "
        f"{ours.full.seconds:.2f} s (of a source grown by the native ladder's writes); "
        "peak RSS after the ladder: ours' task process "
        f"{ours.rss_mb:.0f} MB, the native replica {native.rss_mb:.0f} MB; each target's "
        f"digest equal to the source's after it: ours {_exact(ours.exact)} (after a "
        f"sync-stop), native {_exact(native.exact)}"
    )


def warn_if_disturbed(backgrounds: list[float]) -> None:
    busiest = max(backgrounds)
    if busiest > BUSY_WARNING:
        print(
            f"\nWARNING: other processes kept up to {busiest:.0%} of this machine's cores busy "
            "before or during a timing (before, during): the figures above are disturbed; run "
            "again on a quiet machine."
        )


def main() -> None:
    path = build_source()
    started = time.monotonic()
    with RedisServer(*SOURCE_ARGS, rdb=path) as source:
        source_digest = digest(source)
        found = Source(path, int(source.cli("DBSIZE")), source_digest)
        print(f"source: {path.name}, {found.megabytes:.1f} MB, {found.keys} keys", flush=True)
        ours: list[FullSync] = []
        native: list[FullSync] = []
        for round_no in range(1, ROUNDS + 1):
            ours.append(measure_ours(source, source_digest, round_no))
            native.append(measure_native(source, source_digest))
            print(
                f"round {round_no}/{ROUNDS}: full sync: ours {ours[-1].seconds:.2f} s, "
                f"native {native[-1].seconds:.2f} s",
                flush=True,
            )
        print("incremental phase ...", flush=True)
        fill_lists(source)
        native_ladder = ladder_native(source, RATES)
        ladders = {"ours": ladder_ours(source, ours_rates(native_ladder)), "native": native_ladder}
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    print_full(found, ours, native)
    print_ladder(ladders)
    print_goals(ladders)
    print_after(ladders)
    steps = [s for found_ladder in ladders.values() for s in found_ladder.steps]
    fulls = [*ours, *native, *(found_ladder.full for found_ladder in ladders.values())]
    warn_if_disturbed(
        [r.background for r in fulls] + [x for s in steps for x in (s.background, s.other)]
    )


if __name__ == "__main__":
    main()
