"""`make bench`, second part: how imports scale with the number of workers.

The distributed setup (DCS_MIGRATION_EXECUTOR=celery) on this one machine: PostgreSQL, a
redis-server as the broker, moto's S3 server and one `api` process, started from the
Procfile by tests.support.fleet, and 1, 2 or 4 `worker` processes (--concurrency 1
each). FILES backups go into as many fresh target redis-servers, one task per file,
created back to back through the official SDK. What is timed is the whole system, from
the first create to the moment the last task is seen SUCCESS: dispatch through the
broker, each task's plan unit, the download from S3 and the import itself.

Why: a user adds workers to import more backups at once. The ratio of the throughput
with W workers to that with one says how much of that holds; the ideal is W. On one
machine everything shares its cores (the api, the broker, S3, PostgreSQL and the targets
too): with more workers than cores the ratio is bounded by the cores, and more tightly
by the cores that one worker left idle (a single import keeps its target, S3 and the
database busy too), which the last table's cores column shows.

The files (FILES of them, cached in bench/.work/scale) are written by a real
redis-server, filled from a seeded random generator: strings of random bytes from a few
bytes to 64 kB, integers, hashes, lists, sets and sorted sets of varied sizes (some past
the compact encodings), a fifth of the keys with a TTL. Every import is checked: the
target's DEBUG DIGEST must equal that of a redis-server that loaded the file itself.

Rounds are interleaved (1, 2, 4 workers, then again), BENCH_ROUNDS of them (3), each on
a fresh fleet (its own database, broker, S3 server and api, the PostgreSQL cluster
shared) and fresh targets; the tables print medians. A second table splits the wall
time (the creates, and the tasks' units as recorded in the database) and gives the
processes' peak RSS (VmHWM); a third the CPU time each kind of process used while timed
(/proc). The machine's other load is sampled in the second before each timing: the
figures are only as good as the machine is quiet, and a warning says when it was not.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from random import Random
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from huaweicloudsdkdcs.v2 import ListMigrationTaskRequest  # noqa: E402
from tests.support.fleet import BUCKET, Fleet, Worker  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.procstat import vmhwm_mb  # noqa: E402
from tests.support.sdk import PROJECT, create, minted, register  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

from dcs_migration.client.resp import encode_command  # noqa: E402
from dcs_migration.store import open_store  # noqa: E402
from dcs_migration.store.units import PLAN_INDEX, RunRecord  # noqa: E402

WORK = ROOT / "bench" / ".work" / "scale"
FILES = 4
KEYS_PER_FILE = 100_000
WORKER_COUNTS = (1, 2, 4)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DEBUG = ("--enable-debug-command", "yes")
TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.2  # each poll costs the api a request: a finer one slows what it times
QUIET_SECONDS = 1.0  # the machine's load sampled this long before each timing
BUSY_WARNING = 0.1  # more than this share of the cores busy then: other load
DONE = ("SUCCESS", "FAILED", "TERMINATED")
ROLES = ("workers", "s3", "targets", "postgres", "api", "broker", "client")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times


# -- the files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    """One RDB file of the benchmark: its bucket key, its size, and what it holds."""

    key: str
    path: Path
    keys: int
    digest: str

    @property
    def megabytes(self) -> float:
        return self.path.stat().st_size / 1e6


def _blob(rng: Random) -> bytes:
    """Random bytes of a size drawn from a long-tailed mix: mostly small, a few large."""
    draw = rng.random()
    if draw < 0.6:
        return rng.randbytes(rng.randint(1, 64))
    if draw < 0.9:
        return rng.randbytes(rng.randint(65, 512))
    if draw < 0.99:
        return rng.randbytes(rng.randint(513, 4096))
    return rng.randbytes(rng.randint(4097, 65536))


def _small(rng: Random) -> bytes:
    return rng.randbytes(rng.randint(1, 48))


def _count(rng: Random, usual: int, rare: int) -> int:
    """An element count: up to `usual` mostly, up to `rare` (past the compact
    encodings) once in twenty."""
    return rng.randint(usual // 2, rare) if rng.random() < 0.05 else rng.randint(1, usual)


def _key_commands(rng: Random, key: bytes) -> list[bytes]:
    """RESP commands that write one key of a kind drawn at random."""
    kind = rng.choices(("string", "int", "hash", "list", "set", "zset"), (50, 8, 15, 12, 8, 7))[0]
    if kind == "string":
        return [encode_command([b"SET", key, _blob(rng)])]
    if kind == "int":
        return [encode_command([b"SET", key, b"%d" % rng.randint(-(1 << 40), 1 << 40)])]
    if kind == "hash":
        fields: list[bytes] = []
        for f in range(_count(rng, 20, 400)):
            fields += [b"f%d" % f, _small(rng)]
        return [encode_command([b"HSET", key, *fields])]
    if kind == "list":
        items = [_small(rng) for _ in range(_count(rng, 30, 600))]
        return [encode_command([b"RPUSH", key, *items])]
    if kind == "set":
        if rng.random() < 0.5:  # integers: an intset
            members = [b"%d" % rng.randint(0, 1 << 30) for _ in range(_count(rng, 30, 900))]
        else:
            members = [_small(rng) for _ in range(_count(rng, 30, 300))]
        return [encode_command([b"SADD", key, *members])]
    zargs: list[bytes] = []
    for m in range(_count(rng, 20, 300)):
        zargs += [repr(rng.uniform(-1e9, 1e9)).encode(), b"m%d:%s" % (m, _small(rng))]
    return [encode_command([b"ZADD", key, *zargs])]


def file_commands(number: int) -> Iterator[bytes]:
    """The commands that fill an empty server with file `number`'s keys."""
    rng = Random(1000 + number)
    for i in range(KEYS_PER_FILE):
        key = b"f%d:%d:%s" % (number, i, rng.randbytes(4).hex().encode())
        yield from _key_commands(rng, key)
        if rng.random() < 0.2:
            # Years ahead of the file's build: the file is cached, and a key that expires
            # between the native load (the reference digest) and an import would differ.
            ttl = rng.randint(365 * 86400, 5 * 365 * 86400)
            yield encode_command([b"EXPIRE", key, b"%d" % ttl])


def build_file(number: int) -> Path:
    """File `number` (cached): a redis-server filled by `file_commands`, then SAVE."""
    path = WORK / f"f{number}-{KEYS_PER_FILE}-ttl-years.rdb"
    if not path.exists():
        saved_rdb(path, file_commands(number))
    return path


def saved_rdb(path: Path, commands: Iterator[bytes]) -> None:
    """The RDB file of a redis-server that `redis-cli --pipe` filled with `commands`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {path.name} ...", flush=True)
    with RedisServer(*DEBUG) as server, tempfile.TemporaryFile() as piped:
        for command in commands:
            piped.write(command)
        piped.seek(0)
        subprocess.run(
            [str(server.flavour.cli), "-h", "127.0.0.1", "-p", str(server.port), "--pipe"],
            stdin=piped,
            capture_output=True,
            check=True,
        )
        server.cli("SAVE")
        shutil.move(server.dir / "dump.rdb", path)


def loaded_natively(path: Path) -> tuple[int, str]:
    """The key count and DEBUG DIGEST of a redis-server that loaded the file itself."""
    with RedisServer(*DEBUG, rdb=path) as server:
        return int(server.cli("DBSIZE")), server.cli("DEBUG", "DIGEST")


def backups() -> list[Backup]:
    found = []
    for number in range(1, FILES + 1):
        path = build_file(number)
        keys, digest = loaded_natively(path)
        found.append(Backup(f"f{number}.rdb", path, keys, digest))
    return found


# -- one measurement ----------------------------------------------------------------------


@dataclass
class Measurement:
    """One configuration in one round: wall time, where it went, and peak memory."""

    workers: int
    seconds: float
    unit_seconds: list[float]  # each file's import unit, start to end
    plan_seconds: list[float]  # each task's plan unit
    create_seconds: float  # the creates, one after another, through the SDK
    first_start: float  # from the first create to the first import unit starting
    tail: float  # from the last import unit ending to its task seen SUCCESS
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # by ROLES, while timed
    background: float = 0.0  # taken by other processes in the QUIET_SECONDS before


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    assert process is not None
    return process.pid


def peak_rss(fleet: Fleet) -> dict[str, float]:
    """Each process's VmHWM, read while all still run: for the workers, the largest of
    their main processes and of their pools' processes (which run the imports)."""
    mains = [_pid(w.process) for w in fleet.workers]
    pools = [child for pid in mains for child in _children(pid)]
    return {
        "pool": max((vmhwm_mb(p) for p in pools), default=0.0),
        "worker": max(vmhwm_mb(p) for p in mains),
        "api": vmhwm_mb(_pid(fleet.apis[0].process)),
        "broker": vmhwm_mb(_pid(fleet.broker.process)),
        "s3": vmhwm_mb(_pid(fleet.moto.process)),
    }


def new_workers(fleet: Fleet, count: int) -> list[Worker]:
    """`count` workers of --concurrency 1, not started yet, in the fleet's list (so that
    the fleet stops them whatever happens)."""
    workers = [Worker(f"w{n}@scale", fleet.env, 1, fleet.dir) for n in range(1, count + 1)]
    fleet.workers.extend(workers)
    return workers


def stop_workers(fleet: Fleet) -> None:
    """Every worker stopped side by side (each takes a couple of seconds)."""
    if fleet.workers:
        with ThreadPoolExecutor(len(fleet.workers)) as pool:
            list(pool.map(Worker.stop, fleet.workers))


def upload_all(fleet: Fleet, files: list[Backup]) -> None:
    for backup in files:
        fleet.upload(backup.key, backup.path)


def start_targets(stack: ExitStack, count: int) -> list[RedisServer]:
    return [stack.enter_context(RedisServer(*DEBUG)) for _ in range(count)]


def statuses(client: Any) -> dict[str, tuple[str, str]]:
    """Every task of the project: its status and error message, by id."""
    answer = client.list_migration_task(ListMigrationTaskRequest(limit=1000))
    return {t.task_id: (t.status, t.error_message or "") for t in answer.migration_tasks}


def wait_all(client: Any, task_ids: list[str], fleet: Fleet) -> float:
    """Poll the tasks (one list call) until all have ended; the moment they had."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        found = statuses(client)
        now = time.time()
        ended = {t: found[t] for t in task_ids if found.get(t, ("", ""))[0] in DONE}
        if len(ended) == len(task_ids):
            failed = {t: s for t, s in ended.items() if s[0] != "SUCCESS"}
            if failed:
                raise SystemExit(f"tasks failed: {failed}\n{fleet.logs()}")
            return now
        if time.monotonic() > deadline:
            raise SystemExit(f"tasks not done in {TIMEOUT_SECONDS:.0f} s\n{fleet.logs()}")
        time.sleep(POLL_SECONDS)


def verify(targets: list[RedisServer], files: list[Backup]) -> None:
    """Each target holds exactly its file's keys (DEBUG DIGEST as the native load's; a
    couple of seconds each, so all at once)."""
    with ThreadPoolExecutor(len(targets)) as pool:
        digests = list(pool.map(lambda target: target.cli("DEBUG", "DIGEST"), targets))
    for target, backup, digest in zip(targets, files, digests, strict=True):
        if digest != backup.digest:
            dbsize = target.cli("DBSIZE")
            raise SystemExit(
                f"{backup.key}: target digest {digest} != {backup.digest} "
                f"({dbsize} keys, expected {backup.keys})"
            )


def _seconds(start: datetime, end: datetime | None) -> float:
    assert end is not None, "a unit of a successful task has no end"
    return (end - start).total_seconds()


def unit_runs(fleet: Fleet, task_ids: list[str]) -> list[RunRecord]:
    with open_store(
        fleet.database_url, fleet.dir, secret_keys=(fleet.env["DCS_MIGRATION_SECRET_KEY"],)
    ) as store:
        return [run for t in task_ids for run in store.runs_of("migration_task", t)]


def breakdown(
    workers: int, runs: list[RunRecord], started: float, created: float, ended: float
) -> Measurement:
    """Where the wall time went, from the units' runs (their clock is this machine's)."""
    imports = [r for r in runs if r.unit_index != PLAN_INDEX]
    plans = [r for r in runs if r.unit_index == PLAN_INDEX]
    first = min(r.started_at.timestamp() for r in imports)
    last = max(r.ended_at.timestamp() for r in imports if r.ended_at is not None)
    return Measurement(
        workers=workers,
        seconds=ended - started,
        create_seconds=created - started,
        unit_seconds=[_seconds(r.started_at, r.ended_at) for r in imports],
        plan_seconds=[_seconds(r.started_at, r.ended_at) for r in plans],
        first_start=first - started,
        tail=ended - last,
    )


def start_fleet(stack: ExitStack, postgres_url: str) -> Fleet:
    """A fleet (its own database, broker, S3 server, api), stopped and its folder removed
    when `stack` closes, its workers first and side by side."""
    fleet = Fleet(postgres_url)
    stack.callback(shutil.rmtree, fleet.dir, True)
    stack.callback(fleet.moto.__exit__, None, None, None)  # also removes its log
    stack.callback(fleet.stop)
    stack.callback(stop_workers, fleet)
    fleet.start()
    fleet.start_api()
    return fleet


def prepare(
    fleet: Fleet, files: list[Backup], targets: list[RedisServer], workers: int
) -> tuple[Any, list[str]]:
    """Side by side: the bucket granted and filled, a key minted, the targets registered
    and the workers started. An SDK client of the project and the instances' ids."""
    api = fleet.apis[0]
    with ThreadPoolExecutor(4 + len(targets) + workers) as pool:
        done: list[Future[Any]] = [
            pool.submit(api.grant, BUCKET, PROJECT),
            pool.submit(upload_all, fleet, files),
        ]
        done += [pool.submit(w.start) for w in new_workers(fleet, workers)]
        client = pool.submit(minted, api)
        instances = [pool.submit(register, api, target) for target in targets]
        for future in done:
            future.result()
        return client.result(), [i.result() for i in instances]


def busy_jiffies() -> tuple[int, int]:
    """The machine's CPU time so far (all cores): busy, and in all (/proc/stat)."""
    with open("/proc/stat") as stat:
        counts = [int(n) for n in stat.readline().split()[1:]]
    idle = counts[3] + counts[4]  # idle, iowait
    return sum(counts) - idle, sum(counts)


def _cpu_jiffies(pid: int) -> int:
    """A live process's CPU time so far (user and system), 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def tree_jiffies(roots: list[int]) -> int:
    """The CPU time so far of these processes and all their descendants, each once."""
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += _children(pid)
    return sum(_cpu_jiffies(pid) for pid in seen)


Roles = dict[str, list[int]]


def roles(fleet: Fleet, targets: list[RedisServer], postgres: PostgresCluster) -> Roles:
    """The processes of one measurement by ROLES, each the root of a tree of its own:
    PostgreSQL's is its postmaster (the first line of its pid file), the client's this
    process alone (every other process here is its child)."""
    return {
        "workers": [_pid(w.process) for w in fleet.workers],
        "s3": [_pid(fleet.moto.process)],
        "targets": [_pid(t.process) for t in targets],
        "postgres": [int((postgres.data / "postmaster.pid").read_text().split()[0])],
        "api": [_pid(a.process) for a in fleet.apis],
        "broker": [_pid(fleet.broker.process)],
    }


def cpu_jiffies(ours: Roles) -> dict[str, int]:
    """The CPU time so far of each role's processes."""
    found = {role: tree_jiffies(pids) for role, pids in ours.items()}
    found["client"] = _cpu_jiffies(os.getpid())
    return found


def cpu_seconds(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {role: (after[role] - before[role]) / CLOCK_TICKS for role in ROLES}


def background_load(ours: Roles) -> float:
    """The share of the machine's cores busy for QUIET_SECONDS, the fleet idle, less
    what the processes of `ours` took: other load on the machine."""
    quiet, own = busy_jiffies(), cpu_jiffies(ours)
    time.sleep(QUIET_SECONDS)
    busy, total = busy_jiffies()
    other = busy - quiet[0] - sum(cpu_seconds(own, cpu_jiffies(ours)).values()) * CLOCK_TICKS
    return max(other, 0) / max(total - quiet[1], 1)


def create_tasks(
    client: Any, instances: list[str], files: list[Backup], round_no: int
) -> list[str]:
    """A task per file, each into its own instance, created one after another."""
    return [
        create(client, instance, [b.key], bucket=BUCKET, name=f"scale-{round_no}-{n}").id
        for n, (instance, b) in enumerate(zip(instances, files, strict=True))
    ]


def measure(
    postgres: PostgresCluster, workers: int, files: list[Backup], round_no: int
) -> Measurement:
    """A fresh fleet with `workers` workers; the files into fresh targets, a task each."""
    with ExitStack() as stack:
        fleet = start_fleet(stack, postgres.url)
        targets = start_targets(stack, len(files))
        client, instances = prepare(fleet, files, targets, workers)
        ours = roles(fleet, targets, postgres)
        background = background_load(ours)
        cpu_before = cpu_jiffies(ours)
        started = time.time()
        task_ids = create_tasks(client, instances, files, round_no)
        created = time.time()
        ended = wait_all(client, task_ids, fleet)
        cpu = cpu_seconds(cpu_before, cpu_jiffies(ours))
        rss = peak_rss(fleet)
        verify(targets, files)
        found = breakdown(workers, unit_runs(fleet, task_ids), started, created, ended)
        found.rss_mb, found.cpu_seconds, found.background = rss, cpu, background
        return found


# -- the tables ---------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _rate(value: float) -> str:
    return f"{value / 1e3:.0f}k" if value >= 1e4 else f"{value:.1f}"


def print_scaling(results: dict[int, list[Measurement]], files: list[Backup]) -> None:
    total_mb = sum(b.megabytes for b in files)
    total_keys = sum(b.keys for b in files)
    cores = os.cpu_count() or 1
    print(
        f"\n{len(files)} files ({total_mb:.1f} MB, {total_keys} keys) into {len(files)} "
        f"targets, one task each; medians of {ROUNDS} interleaved rounds (BENCH_ROUNDS)"
    )
    header = (
        f"{'workers':>7}{'wall s':>9}{'MB/s':>8}{'keys/s':>9}{'scaling':>9}{'ideal':>7}"
        f"{'bound':>7}  each round (s)"
    )
    print(header)
    print("-" * len(header))
    base = _median([m.seconds for m in results[WORKER_COUNTS[0]]])
    for workers, found in results.items():
        wall = _median([m.seconds for m in found])
        each = " ".join(f"{m.seconds:.2f}" for m in found)
        print(
            f"{workers:7d}{wall:9.2f}{total_mb / wall:8.1f}{_rate(total_keys / wall):>9}"
            f"{base / wall:8.2f}x{workers:6d}x{min(workers, cores):6d}x  {each}"
        )
    one = _median([_cores(m) for m in results[WORKER_COUNTS[0]]])
    print(
        f"\nscaling = throughput with W workers / throughput with 1 (the inverse ratio of "
        f"the wall times); ideal = W. This machine has {cores} core(s) (os.cpu_count()), "
        f"shared by every process here (workers, api, broker, S3, PostgreSQL, targets): with "
        f"more workers than cores the ratio is bounded by the cores (bound = min(W, {cores})). "
        f"Tighter: with one worker the benchmark's processes kept {one:.2f} of the {cores} "
        f"cores busy (cores below), so more workers can raise the throughput "
        f"{cores / max(one, 1e-9):.2f}x at most, unless they spend less CPU per file."
    )


def print_breakdown(results: dict[int, list[Measurement]]) -> None:
    print("\nwhere the wall time went (medians), and peak RSS (largest of rounds):")
    header = (
        f"{'workers':>7}{'unit s':>8}{'plan s':>8}{'creates':>8}{'to 1st':>8}{'tail':>6}"
        f"{'before':>7}{'pool':>8}{'worker':>8}{'api':>7}{'broker':>8}{'s3':>7}"
    )
    print(header)
    print("-" * len(header))
    for workers, found in results.items():
        unit = _median([s for m in found for s in m.unit_seconds])
        plan = _median([s for m in found for s in m.plan_seconds])
        first = _median([m.first_start for m in found])
        tail = _median([m.tail for m in found])
        creates = _median([m.create_seconds for m in found])
        background = _median([m.background for m in found])
        rss = {k: max(m.rss_mb[k] for m in found) for k in found[0].rss_mb}
        print(
            f"{workers:7d}{unit:8.2f}{plan:8.2f}{creates:8.2f}{first:8.2f}{tail:6.2f}"
            f"{background:7.0%}{rss['pool']:7.0f}M{rss['worker']:7.0f}M"
            f"{rss['api']:6.0f}M{rss['broker']:7.0f}M{rss['s3']:6.0f}M"
        )
    print(
        "\nunit s: one file's import unit on a worker (download from S3 and import), start "
        "to end; plan s: a task's plan unit (finds the file, makes its unit); creates: the "
        "creates through the SDK, one after another; to 1st: from the first create to the "
        "first import unit starting (the creates, a plan unit, two trips through the "
        "broker); tail: from the last unit's end to its task seen SUCCESS; before: the share "
        "of the cores other processes took in the second before. pool: "
        "a worker's pool process (runs the units), worker: its main process; api, broker, "
        "s3: the other processes of the fleet."
    )


def _cores(m: Measurement) -> float:
    """The cores the benchmark's processes kept busy on average while timed."""
    return sum(m.cpu_seconds.values()) / m.seconds


def print_cpu(results: dict[int, list[Measurement]]) -> None:
    print("\nCPU seconds while timed, by process (medians):")
    header = f"{'workers':>7}" + "".join(f"{role:>9}" for role in ROLES)
    header += f"{'total':>8}{'cores':>7}"
    print(header)
    print("-" * len(header))
    for workers, found in results.items():
        cells = "".join(f"{_median([m.cpu_seconds[role] for m in found]):9.2f}" for role in ROLES)
        total = _median([sum(m.cpu_seconds.values()) for m in found])
        cores = _median([_cores(m) for m in found])
        print(f"{workers:7d}{cells}{total:8.2f}{cores:7.2f}")
    print(
        "\nworkers: the workers' processes (main and pool); s3: moto's server, serving the "
        "files; targets: the redis-servers written to; client: this process (the SDK's "
        "creates and polling); cores: total / wall s, the cores kept busy on average."
    )


def warn_if_disturbed(results: dict[int, list[Measurement]]) -> None:
    busiest = max(m.background for found in results.values() for m in found)
    if busiest > BUSY_WARNING:
        print(
            f"\nWARNING: other processes kept up to {busiest:.0%} of this machine's cores busy "
            "just before a timing (before): the figures above are disturbed; run again on a "
            "quiet machine."
        )


def main() -> None:
    files = backups()
    for b in files:
        print(f"  {b.key}: {b.path.name}, {b.megabytes:.1f} MB, {b.keys} keys")
    results: dict[int, list[Measurement]] = {w: [] for w in WORKER_COUNTS}
    started = time.monotonic()
    postgres = PostgresCluster()
    with postgres:
        for round_no in range(1, ROUNDS + 1):
            for workers in WORKER_COUNTS:
                found = measure(postgres, workers, files, round_no)
                results[workers].append(found)
                print(
                    f"round {round_no}/{ROUNDS}: {workers} worker(s): {found.seconds:.2f} s",
                    flush=True,
                )
    print(f"\n{ROUNDS} round(s) in {time.monotonic() - started:.0f} s")
    print_scaling(results, files)
    print_breakdown(results)
    print_cpu(results)
    warn_if_disturbed(results)


if __name__ == "__main__":
    main()
