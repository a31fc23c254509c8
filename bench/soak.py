"""`make soak`: the service under load and faults, then long fuzzing; a table at the end.

What runs, all on 127.0.0.1:

1. The service (`dcs-migration serve`, as `tests.support.service.Service` runs it) with its files
   in its bucket folder, a second one reading its buckets from a moto S3 server through
   a proxy that drops connections (`tests.support.s3server`), and several redis-server targets.
2. Migration tasks (50; `--tasks`) over a mix of corpus cases (`../shared/corpus`) and a
   few big generated files (an RDB of `--big-keys` strings, an AOF of non-idempotent
   RPUSH/INCRBY commands), each into a database of its own (a corpus case that spans
   several databases gets them on a target of its own), in waves: most at once, then one
   wave per fault, injected while that wave's big task is part way:
   - a target redis-server (AOF, fsync always: what it acknowledged survives) SIGKILLed
     and restarted;
   - S3 connections reset part way through responses (the S3 service's tasks);
   - the service SIGKILLed and restarted: a task it was running is resumed
     (`PUT .../migration-task/{id}` with `resume_mode: auto`) where the service has that
     API, and otherwise counts as "interrupted, reported FAILED".
3. Meanwhile signed clients (the official SDK's signer) send ~`--rate` requests/s of
   list, show and stats, timing each; and once the waves are in, an attack: 100
   (`--flood-connections`) unsigned requests at once, each sending all but the last byte
   of a 12 MiB body, while the service's RSS is read from /proc and signed calls are
   timed. Each must be refused unread (401), the RSS must rise less than 50 MB, and
   the signed calls must be answered.
4. Every task's end is checked: SUCCESS must hold exactly the case's oracle (the live
   server read back with `tests.support.live.dump_oracle`, compared with
   `tests.support.corpus.comparable`) or the generated file's contents; FAILED must say
   why. A task still MIGRATING at the end, or SUCCESS with other contents, is lost.
5. Attacks, each on a service of its own once the load is over (a table of its own):
   - a hung target: one project's tasks into a redis-server stopped with SIGSTOP (it
     accepts connections and never answers) hold every worker, while another project's
     task waits; then tasks part way into it are batch-stopped once it hangs. Held when
     the other project's task was done before the second round of hung tasks had ended
     (in submission order it waits for two rounds), every hung task FAILED naming the
     target, and every stopped one was TERMINATED within 2 s.
6. Then the readers' atheris fuzzing (`tests.support.fuzz_readers`, `FUZZ_SECONDS`) and the API's
   schemathesis fuzzing (`tests/test_api_fuzz.py`, `--api-fuzz-examples` per operation)
   run side by side.

Exit status 1 if a task was lost, an attack was not held or a fuzzer found a crash.
`--quick` is a 1-2 minute version; `--json FILE` also writes the results as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.sdk_request import SdkRequest  # noqa: E402
from tests.support import rdbgen as g  # noqa: E402
from tests.support.corpus import CORPUS, cases, comparable, load_oracle, version_tuple  # noqa: E402
from tests.support.floods import FULL_BODY, BodyFlood, unsigned_body_flood  # noqa: E402
from tests.support.live import dump_oracle  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402
from tests.support.service import Service  # noqa: E402

from dcs_migration.client.resp import encode_command  # noqa: E402

PROJECT = "50a4c0ffee5e4d2f8e7b1c0de0000501"
BUCKET = "soak"
NATIVE_DBS = (0, 1, 5, 15)  # the databases of the corpus' native cases
AOF_KEYS = 1000  # keys of the big AOF (each a list and a counter)
FINAL = ("SUCCESS", "FAILED", "TERMINATED")
FLOOD_GROWTH_MB = 50  # what the service's RSS may rise under the unsigned-body flood


# -- plan ------------------------------------------------------------------------------------


@dataclass
class Plan:
    tasks: int = 50
    seconds: float = 240.0  # of signed requests (and of task waves)
    rate: float = 200.0  # signed requests per second, all clients together
    clients: int = 16
    workers: int = 16  # the service's task workers
    targets: int = 6  # redis-servers for the calm tasks (plus one for the target faults)
    rounds: int = 2  # how many times each fault is injected
    big_keys: int = 1_000_000
    aof_commands: int = 400_000
    fuzz_seconds: int = 600
    api_fuzz_examples: int = 600
    settle_seconds: float = 240.0  # for tasks to end once the load is over
    flood_connections: int = 100  # unsigned 12 MiB bodies at once (0: no attack)
    seed: int = 20261128
    hung_workers: int = 4  # the hung-target attack's service: its workers
    hung_reply_timeout: float = 5.0  # and its DCS_MIGRATION_REPLY_TIMEOUT


def quick_plan() -> Plan:
    return Plan(
        tasks=14,
        seconds=45,
        rate=80,
        clients=4,
        workers=6,
        targets=3,
        rounds=1,
        big_keys=400_000,
        aof_commands=160_000,
        fuzz_seconds=25,
        api_fuzz_examples=8,
        settle_seconds=120,
        hung_workers=2,
        hung_reply_timeout=3.0,
    )


# -- signed requests -------------------------------------------------------------------------


class Api:
    """Signed JSON calls to a service, one keep-alive connection per thread."""

    def __init__(self, port: int, ak: str, sk: str, project: str) -> None:
        self.port = port
        self.credentials = BasicCredentials(ak, sk, project)
        self.project = project
        self._local = threading.local()

    def call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """(status, decoded body); OSError or HTTPException when there is no answer."""
        data = None if body is None else json.dumps(body).encode()
        request = SdkRequest(
            method=method,
            schema="http",
            host=f"127.0.0.1:{self.port}",
            resource_path=f"/v2/{self.project}{path}",
            query_params=list(query or []),
            header_params={"Content-Type": "application/json"},
            body=data,
        )
        signed = self.credentials.sign_request(request)
        for fresh in (False, True):
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self._local.conn = conn
            try:
                conn.request(method, signed.uri, body=data, headers=signed.header_params)
                answer = conn.getresponse()
                raw = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                # A kept-alive connection the server closed while idle: once more, anew.
                stale = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
                if reused and not fresh and isinstance(exc, stale):
                    continue
                raise
            return answer.status, (json.loads(raw) if raw else None)
        raise AssertionError("unreachable")

    def forget_connection(self) -> None:
        """Drop this thread's connection (its server was restarted)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body=body)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer


# -- targets, files, tasks -------------------------------------------------------------------


@dataclass
class Target:
    server: RedisServer
    fault: bool = False
    # databases no task uses yet; those of the native cases last
    free: list[int] = field(
        default_factory=lambda: sorted(range(16), key=lambda db: (db in NATIVE_DBS, db))
    )
    cases: set[str] = field(default_factory=set)
    instance: dict[str, str] = field(default_factory=dict)  # service name -> instance id

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def take(self, dbs: tuple[int, ...] | None = None) -> int | None:
        """A free database (or the given ones, all free), now taken."""
        if dbs is not None:
            if not set(dbs) <= set(self.free):
                raise ValueError("taken")
            self.free = [d for d in self.free if d not in dbs]
            return None
        return self.free.pop(0)


@dataclass
class Job:
    n: int
    kind: str  # "corpus", "big-rdb" or "big-aof"
    wave: str
    service: str  # "main" or "s3"
    target: Target
    db: int | None  # every key to this db; None: a native case keeps its own dbs
    case: dict[str, Any] | None = None
    task_id: str | None = None
    status: str = ""
    error: str = ""
    interrupted: int = 0  # times a service restart failed it part way
    resumed: int = 0  # times it was resumed after that
    resume_unsupported: bool = False
    outcome: str = ""  # exact, failed, lost
    detail: str = ""

    @property
    def label(self) -> str:
        what = self.case["id"] if self.case else self.kind
        return f"#{self.n} {what} -> :{self.target.server.port}/{self.db}"

    @property
    def file_name(self) -> str:
        if self.kind == "big-rdb":
            return "big/big.rdb"
        if self.kind == "big-aof":
            return "big/big.aof"
        assert self.case is not None
        path: str = self.case["path"]
        if self.case["path_type"] != "file" and self.service == "s3":
            return path + "/"
        return path


def big_rdb(keys: int) -> bytes:
    return g.rdb(b"".join(g.key(*big_item(i)) for i in range(keys)), version=9)


def big_item(i: int) -> tuple[bytes, bytes]:
    return b"big:%07d" % i, g.string(big_value(i))


def big_value(i: int) -> bytes:
    return b"%07d." % i * 5


def big_aof(commands: int) -> bytes:
    out = []
    for i in range(commands // 2):
        out.append(encode_command([b"RPUSH", b"list:%d" % (i % AOF_KEYS), b"%d" % i]))
        out.append(encode_command([b"INCRBY", b"ctr:%d" % (i % AOF_KEYS), b"%d" % (i % 7 + 1)]))
    return b"".join(out)


def usable_cases() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(native cases spanning several dbs, cases whose keys fit one db, cases no server
    loads)."""
    native, single, bad = [], [], []
    for case in cases():
        if not case["oracle"]:
            if "redis-server 5.0.14" in (case.get("load_errors") or {}):
                bad.append(case)  # no server loads it: the task must fail
            continue  # some servers load it: no oracle to check it against
        oracle = load_oracle(case)
        names = [k for keys in oracle["databases"].values() for k in keys]
        (native if len(names) != len(set(names)) else single).append(case)
    return native, single, bad


def assign(plan: Plan, targets: list[Target], fault_target: Target) -> list[Job]:
    """The jobs, in waves: "calm" (most), then per round "target", "s3" and "service"."""
    rng = random.Random(plan.seed)
    native, single, bad = usable_cases()
    rng.shuffle(native)
    rng.shuffle(single)
    jobs: list[Job] = []

    def place(kind: str, wave: str, service: str, case: dict[str, Any] | None, on: Target) -> bool:
        if case is not None and case["id"] in on.cases:
            return False
        try:
            if case is not None and case in native:
                on.take(NATIVE_DBS)
                db = None
            elif not on.free:
                return False
            else:
                db = on.take()
        except ValueError:
            return False
        if case is not None:
            on.cases.add(case["id"])
        jobs.append(Job(len(jobs) + 1, kind, wave, service, on, db, case))
        return True

    def place_anywhere(kind: str, wave: str, service: str, case: dict[str, Any] | None) -> None:
        for on in sorted(targets, key=lambda t: -len(t.free)):
            if place(kind, wave, service, case, on):
                return
        raise RuntimeError(f"no room for {case and case['id']}")

    fault_waves = [
        (f"{name} #{r + 1}", name)
        for r in range(plan.rounds)
        for name in ("target", "s3", "service")
    ]
    per_fault = max(1, min(4, plan.tasks // (len(fault_waves) + 1)))
    calm = plan.tasks - per_fault * len(fault_waves)
    if calm < 0:
        fault_waves = fault_waves[: plan.tasks]
        per_fault, calm = 1, plan.tasks - len(fault_waves)
    pool = iter(_mix(native[: plan.targets], single, bad, rng))
    for _ in range(calm):
        place_anywhere("corpus", "calm", "main", next(pool))
    for r, (wave, name) in enumerate(fault_waves):
        if name == "target":
            # RESTOREs are resent after a reconnect; AOF commands may not be
            bigs = ["big-rdb", "big-aof"][:per_fault]
            for kind in bigs if r % 2 == 0 else bigs[::-1]:
                place(kind, wave, "main", None, fault_target)
            for _ in range(per_fault - len(bigs)):
                case = next(pool)
                while fault_target.free and (
                    case in native or not place("corpus", wave, "main", case, fault_target)
                ):
                    case = next(pool)
        else:
            service = "s3" if name == "s3" else "main"
            place_anywhere("big-rdb", wave, service, None)
            for _ in range(per_fault - 1):
                place_anywhere("corpus", wave, service, next(pool))
    return jobs


def _mix(
    native: list[dict[str, Any]],
    single: list[dict[str, Any]],
    bad: list[dict[str, Any]],
    rng: random.Random,
) -> Iterator[dict[str, Any]]:
    """Natives first (one per target), then the rest with a few cases no server loads,
    again and again."""
    yield from native
    rest = single + bad[:2]
    while True:
        rng.shuffle(rest)
        yield from rest


# -- the load --------------------------------------------------------------------------------


@dataclass
class LoadStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    """`clients` threads sending list/show/stats at `rate` requests/s in all."""

    def __init__(self, api: Api, rate: float, clients: int, task_ids: Callable[[], list[str]]):
        self.api = api
        self.rate = rate
        self.clients = clients
        self.task_ids = task_ids
        self.stop_event = threading.Event()
        self.down = threading.Event()  # set while the service is being restarted
        self.per_thread = [LoadStats() for _ in range(clients)]
        self.threads: list[threading.Thread] = []
        self.started = 0.0
        self.ended = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(60)
        self.ended = time.monotonic()

    def _run(self, n: int) -> None:
        stats = self.per_thread[n]
        rng = random.Random(n)
        interval = self.clients / self.rate
        next_at = time.monotonic() + rng.random() * interval
        while not self.stop_event.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - interval)
            op = rng.choice(("list", "show", "stats"))
            ids = self.task_ids()
            if op != "list" and not ids:
                op = "list"
            if op == "list":
                path, query = "/migration-tasks", [("limit", rng.choice((10, 50))), ("offset", 0)]
            else:
                path = f"/migration-task/{rng.choice(ids)}" + ("/stats" if op == "stats" else "")
                query = []
            down = self.down.is_set()
            begun = time.perf_counter()
            try:
                status, _ = self.api.call("GET", path, query, timeout=30)
            except (OSError, http.client.HTTPException) as exc:
                kind = "while restarting" if down or self.down.is_set() else type(exc).__name__
                stats.errors[f"no answer ({kind})"] += 1
                if down or self.down.is_set():
                    time.sleep(0.05)
                continue
            elapsed = time.perf_counter() - begun
            stats.statuses[str(status)] += 1
            if status == 200:
                stats.latencies.setdefault(op, []).append(elapsed)
            else:
                stats.errors[f"HTTP {status} on {op}"] += 1

    def merged(self) -> LoadStats:
        out = LoadStats()
        for stats in self.per_thread:
            for op, values in stats.latencies.items():
                out.latencies.setdefault(op, []).extend(values)
            out.statuses.update(stats.statuses)
            out.errors.update(stats.errors)
        return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Attack:
    """An attack on the service, what was tried, what happened and whether it was held;
    `figures` go to the JSON summary as they are."""

    name: str
    tried: str
    outcome: str
    held: bool
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    wave: str
    hit: bool = False  # a task of the wave was part way when it came
    back: bool = False  # the killed process answered again
    detail: str = ""
    in_flight: list[int] = field(default_factory=list)  # tasks running when it came


class Soak:
    def __init__(self, plan: Plan, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.log = log
        self.stack = contextlib.ExitStack()
        self.jobs: list[Job] = []
        self.faults: list[Fault] = []
        self.apis: dict[str, Api] = {}
        self.services: dict[str, Service] = {}
        self.targets: list[Target] = []
        self.fault_target: Target | None = None
        self.proxy: Any = None
        self.max_in_flight = 0
        self.load: Load | None = None
        self.load_stats = LoadStats()
        self.attacks: list[Attack] = []

    # -- setting up ---------------------------------------------------------------------------

    def setup(self) -> None:
        from tests.support.s3server import ACCESS_KEY, SECRET_KEY, DroppingProxy, MotoServer

        plan = self.plan
        for _ in range(plan.targets):
            server = RedisServer()
            self.stack.callback(server.stop)
            self.targets.append(Target(server.start()))
        durable = RedisServer("--appendonly", "yes", "--appendfsync", "always")
        self.stack.callback(durable.stop)
        self.fault_target = Target(durable.start(), fault=True)
        self.jobs = assign(plan, self.targets, self.fault_target)
        big_rdb_bytes = big_rdb(plan.big_keys)
        big_aof_bytes = big_aof(plan.aof_commands)

        moto = self.stack.enter_context(MotoServer())
        self.proxy = self.stack.enter_context(DroppingProxy(moto.port))
        from dcs_migration.sources.s3 import S3Settings, make_s3_client

        s3 = make_s3_client(S3Settings(moto.endpoint, ACCESS_KEY, SECRET_KEY))
        s3.create_bucket(Bucket=BUCKET)

        env = {"DCS_MIGRATION_WORKERS": str(plan.workers)}
        main = Service(env=env)
        s3_env = {
            **env,
            "DCS_MIGRATION_OBS_ENDPOINT": self.proxy.endpoint,
            "DCS_MIGRATION_OBS_ACCESS_KEY": ACCESS_KEY,
            "DCS_MIGRATION_OBS_SECRET_KEY": SECRET_KEY,
        }
        s3_service = Service(env=s3_env)
        for name, service in (("main", main), ("s3", s3_service)):
            self.stack.callback(shutil.rmtree, service.data_dir, True)
            self.stack.callback(service.stop)
            service.start()
            self.services[name] = service
            key = service.cli("keys", "create", "--project-id", PROJECT)
            service.grant(BUCKET, PROJECT)
            self.apis[name] = Api(service.port, key["ak"], key["sk"], PROJECT)
            for target in [*self.targets, self.fault_target]:
                body = {"name": f"target-{target.server.port}", "addrs": target.address}
                out = self.apis[name].ok("POST", "/instances", body)
                target.instance[name] = out["instance_id"]

        bucket = main.bucket(BUCKET)
        (bucket / "big").mkdir()
        (bucket / "big" / "big.rdb").write_bytes(big_rdb_bytes)
        (bucket / "big" / "big.aof").write_bytes(big_aof_bytes)
        s3.put_object(Bucket=BUCKET, Key="big/big.rdb", Body=big_rdb_bytes)
        s3.put_object(Bucket=BUCKET, Key="big/big.aof", Body=big_aof_bytes)
        for job in self.jobs:
            if job.case is None:
                continue
            source = CORPUS / job.case["path"]
            if job.service == "main":
                place = bucket / job.case["path"]
                if place.exists():
                    continue
                place.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, place)
                else:
                    shutil.copyfile(source, place)
            else:
                files = [source] if source.is_file() else sorted(source.rglob("*"))
                for path in files:
                    if path.is_file():
                        key = path.relative_to(CORPUS).as_posix()
                        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        self.log(
            f"setup: {len(self.jobs)} tasks, {len(self.targets) + 1} targets, "
            f"big files {len(big_rdb_bytes) >> 20} MB (RDB) and {len(big_aof_bytes) >> 20} MB "
            f"(AOF)"
        )

    # -- tasks ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        target: dict[str, Any] = {"id": job.target.instance[job.service]}
        if job.db is not None:
            target["db"] = job.db
        body = {
            "task_name": f"soak-{job.n}-{job.wave.replace(' ', '')}",
            "migration_type": "backupfile_import",
            "migration_method": "full_amount_migration",
            "backup_files": {
                "file_source": "self_build_obs",
                "bucket_name": BUCKET,
                "files": [{"file_name": job.file_name}],
            },
            "target_instance": target,
        }
        job.task_id = self.apis[job.service].ok("POST", "/migration-task", body)["id"]
        job.status = "MIGRATING"

    def task_ids(self) -> list[str]:
        return [j.task_id for j in self.jobs if j.task_id and j.service == "main"]

    def poll(self, job: Job) -> None:
        assert job.task_id is not None
        try:
            status, detail = self.apis[job.service].call("GET", f"/migration-task/{job.task_id}")
        except (OSError, http.client.HTTPException):
            return  # the service is down: asked again later
        if status == 404:
            job.status, job.error = "MISSING", "the task no longer exists"
        elif status == 200:
            job.status = detail["status"]
            job.error = detail.get("error_message") or ""

    def wait_part_way(self, job: Job, seconds: float = 60) -> bool:
        """Until the task has read part of its file (True), or ended (False)."""
        assert job.task_id is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status, stats = self.apis[job.service].call(
                    "GET", f"/migration-task/{job.task_id}/stats"
                )
            except (OSError, http.client.HTTPException):
                status, stats = 0, None
            if status == 200:
                if not stats["is_migrating"]:
                    return False
                if 0 < int(stats["full_migration_progress"]) < 100:
                    return True
            time.sleep(0.05)
        return False

    def begin_fault(self, kind: str, wave: str, big: Job | None) -> Fault:
        """A fault about to come: once `big` is part way, with the tasks then running."""
        fault = Fault(kind, wave)
        fault.hit = big is not None and self.wait_part_way(big)
        self.refresh()
        fault.in_flight = [j.n for j in self.jobs if j.status in ("MIGRATING", "TERMINATING")]
        return fault

    def count_in_flight(self) -> None:
        self.max_in_flight = max(
            self.max_in_flight,
            sum(1 for j in self.jobs if j.task_id and j.status in ("MIGRATING", "TERMINATING")),
        )

    # -- faults --------------------------------------------------------------------------------

    def fault_target_kill(self, wave: str, big: Job | None) -> None:
        assert self.fault_target is not None
        server = self.fault_target.server
        fault = self.begin_fault("target redis-server SIGKILL + restart", wave, big)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        time.sleep(1.0)
        server.start()
        fault.back = True
        self.faults.append(fault)
        self.log(f"fault: {fault.kind} ({wave}), a task part way: {fault.hit}")

    def fault_s3_drops(self, wave: str, big: Job | None) -> None:
        before = self.proxy.dropped
        fault = self.begin_fault("S3 connections reset mid-response", wave, big)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            j.status == "MIGRATING" for j in self.jobs if j.wave == wave
        ):
            for job in self.jobs:
                if job.wave == wave:
                    self.poll(job)
            time.sleep(0.2)
        self.proxy.disarm()
        fault.back = True
        fault.detail = f"{self.proxy.dropped - before} connections reset"
        self.faults.append(fault)
        self.log(f"fault: {fault.kind} ({wave}): {fault.detail}")

    def fault_service_kill(self, wave: str, big: Job | None) -> None:
        assert self.load is not None
        fault = self.begin_fault("service SIGKILL + restart", wave, big)
        self.load.down.set()
        service = self.services["main"]
        service.kill()
        time.sleep(0.5)
        try:
            service.start()
            fault.back = True
            self.apis["main"].forget_connection()
        finally:
            time.sleep(0.5)
            self.load.down.clear()
        self.faults.append(fault)
        self.log(f"fault: {fault.kind} ({wave}), a task part way: {fault.hit}")

    # -- attacks -------------------------------------------------------------------------------

    def attack_unsigned_bodies(self) -> None:
        """Unsigned requests with 12 MiB bodies, all at once, while the service works."""
        connections = self.plan.flood_connections
        service, api = self.services["main"], self.apis["main"]
        assert service.process is not None
        errors: list[str] = []

        def signed_call() -> None:
            try:
                status, _ = api.call("GET", "/migration-tasks", [("limit", 10)], timeout=30)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"no answer ({type(exc).__name__})")
                return
            if status != 200:
                errors.append(f"HTTP {status}")

        flood: BodyFlood = unsigned_body_flood(
            service.port,
            service.process.pid,
            f"/v2/{PROJECT}/migration-task",
            connections=connections,
            meanwhile=signed_call,
            calls=5,
        )
        refused = flood.statuses[401]
        notes = [f"{n}x {s or 'no answer'}" for s, n in flood.statuses.items() if s != 401]
        if flood.grew_mb >= FLOOD_GROWTH_MB:
            notes.append(f"RSS rose {flood.grew_mb:.0f} MB (at most {FLOOD_GROWTH_MB})")
        notes += [f"signed call: {e}" for e in errors]
        before, peak = flood.rss_before / 1024, flood.rss_before / 1024 + flood.grew_mb
        after = flood.rss_after / 1024
        signed_ms = [s * 1000 for s in flood.meanwhile_seconds]
        outcome = (
            f"{refused}/{connections} refused unread; RSS {before:.0f} / {peak:.0f} / "
            f"{after:.0f} MB before/peak/after; slowest signed call meanwhile "
            f"{max(signed_ms, default=float('nan')):.0f} ms"
        )
        attack = Attack(
            name=f"unsigned {FULL_BODY >> 20} MiB bodies, all but the last byte",
            tried=f"{connections} connections at once while the service works",
            outcome=outcome + (f"; NOT HELD: {'; '.join(notes)}" if notes else ""),
            held=not notes,
            figures={
                "connections": connections,
                "refused": refused,
                "rss_before_mb": round(before, 1),
                "rss_peak_mb": round(peak, 1),
                "rss_after_mb": round(after, 1),
                "signed_ms": [round(ms, 1) for ms in signed_ms],
                "seconds": round(flood.seconds, 1),
            },
        )
        self.attacks.append(attack)
        self.log(f"attack: {attack.name}: {outcome}")

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        plan = self.plan
        self.load = Load(self.apis["main"], plan.rate, plan.clients, self.task_ids)
        waves = list(dict.fromkeys(j.wave for j in self.jobs))
        started = time.monotonic()
        self.load.start()
        try:
            for n, wave in enumerate(waves):
                at = started + plan.seconds * n / max(len(waves), 1)
                while time.monotonic() < at:
                    self.refresh()
                    time.sleep(0.2)
                members = [j for j in self.jobs if j.wave == wave]
                kind = wave.split()[0]
                if kind == "s3":
                    self.proxy.arm(drop_after=256 << 10, drops=4)
                for job in members:
                    self.submit(job)
                self.count_in_flight()
                big = next((j for j in members if j.kind != "corpus"), None)
                if kind == "target":
                    self.fault_target_kill(wave, big)
                elif kind == "s3":
                    self.fault_s3_drops(wave, big)
                elif kind == "service":
                    self.fault_service_kill(wave, big)
            if plan.flood_connections > 0:
                self.attack_unsigned_bodies()
            while time.monotonic() < started + plan.seconds:
                self.refresh()
                time.sleep(0.2)
        finally:
            self.load.stop()
            self.load_stats = self.load.merged()
        self.settle()

    def refresh(self) -> None:
        for job in self.jobs:
            if job.task_id and job.status not in FINAL:
                self.poll(job)
        self.count_in_flight()

    def settle(self) -> None:
        """Every task to its end; an interrupted one resumed where the API allows it."""
        deadline = time.monotonic() + self.plan.settle_seconds
        while time.monotonic() < deadline:
            self.refresh()
            for job in self.jobs:
                if (
                    job.status == "FAILED"
                    and job.error.startswith("interrupted")
                    and not job.resume_unsupported
                    and job.interrupted < 3
                ):
                    job.interrupted += 1
                    self.resume(job)
            if all(j.status in FINAL for j in self.jobs):
                break
            time.sleep(0.5)

    def resume(self, job: Job) -> None:
        assert job.task_id is not None
        status, answer = self.apis[job.service].call(
            "PUT", f"/migration-task/{job.task_id}", body={"resume_mode": "auto"}
        )
        if status == 200:
            job.resumed += 1
            job.status = answer.get("status", job.status)
        elif status in (404, 405):
            job.resume_unsupported = True
        else:
            job.detail = f"resume refused: {status} {answer}"

    # -- checking ------------------------------------------------------------------------------

    def check(self) -> None:
        for job in self.jobs:
            if job.status not in FINAL:
                job.outcome, job.detail = "lost", f"still {job.status or 'not created'} at the end"
            elif job.status == "SUCCESS":
                try:
                    problem = self.contents_problem(job)
                except Exception as exc:  # a check that cannot run proves nothing
                    problem = f"could not be checked: {type(exc).__name__}: {exc}"
                job.outcome = "lost" if problem else "exact"
                job.detail = problem or ""
            elif job.error:
                job.outcome = "failed"
            else:
                job.outcome, job.detail = "lost", f"{job.status} without saying why"

    def contents_problem(self, job: Job) -> str | None:
        port = job.target.server.port
        if job.kind == "big-rdb":
            return check_big_rdb(port, job.db or 0, self.plan.big_keys)
        if job.kind == "big-aof":
            return check_big_aof(port, job.db or 0, self.plan.aof_commands)
        assert job.case is not None
        if job.case["expect_error"] or not job.case["oracle"]:
            return "a file no server loads was reported imported"
        oracle = load_oracle(job.case)
        client = redis.Redis(port=port)
        try:
            version = version_tuple(client.info("server")["redis_version"])
            dbs = NATIVE_DBS if job.db is None else (job.db,)
            got = dump_oracle(client, databases=dbs)
        finally:
            client.close()
        if job.db is not None:
            merged: dict[str, Any] = {}
            for keys in oracle["databases"].values():
                merged.update(keys)
            oracle = {**oracle, "databases": {str(job.db): merged} if merged else {}}
        wanted = oracle.pop("functions", None) or []
        held = got.pop("functions", None) or []
        if version >= (7,):
            missing = [f["library_name"] for f in wanted if f not in held]
            if missing:
                return f"function libraries missing or different: {missing}"
        g_doc, o_doc = comparable(got, oracle, got_version=version, now_ms=int(time.time() * 1000))
        if g_doc != o_doc:
            return f"contents differ from the oracle: {_first_difference(g_doc, o_doc)}"
        return None


def _first_difference(got: dict[str, Any], want: dict[str, Any]) -> str:
    g_dbs, w_dbs = got.get("databases", {}), want.get("databases", {})
    for db in sorted(set(g_dbs) | set(w_dbs)):
        g_keys, w_keys = g_dbs.get(db, {}), w_dbs.get(db, {})
        for name in sorted(set(g_keys) | set(w_keys)):
            if g_keys.get(name) != w_keys.get(name):
                return (
                    f"db {db} key {name!r}: {g_keys.get(name)!r:.120} != {w_keys.get(name)!r:.120}"
                )
    return "outside the keys"


def check_big_rdb(port: int, db: int, keys: int) -> str | None:
    client = redis.Redis(port=port, db=db)
    try:
        size = client.dbsize()
        if size != keys:
            return f"db {db} holds {size} keys, not {keys}"
        if client.info("keyspace").get(f"db{db}", {}).get("expires", 0):
            return f"db {db} has keys with a TTL"
        for start in range(0, keys, 5000):
            names = [b"big:%07d" % i for i in range(start, min(keys, start + 5000))]
            for i, value in zip(range(start, start + len(names)), client.mget(names), strict=True):
                if value != big_value(i):
                    return f"db {db} key big:{i:07d} holds {value!r:.60}"
    finally:
        client.close()
    return None


def check_big_aof(port: int, db: int, commands: int) -> str | None:
    lists: dict[int, list[bytes]] = {k: [] for k in range(AOF_KEYS)}
    counters = dict.fromkeys(range(AOF_KEYS), 0)
    for i in range(commands // 2):
        lists[i % AOF_KEYS].append(b"%d" % i)
        counters[i % AOF_KEYS] += i % 7 + 1
    client = redis.Redis(port=port, db=db)
    try:
        size = client.dbsize()
        if size != 2 * AOF_KEYS:
            return f"db {db} holds {size} keys, not {2 * AOF_KEYS}"
        pipe = client.pipeline(transaction=False)
        for k in range(AOF_KEYS):
            pipe.lrange(b"list:%d" % k, 0, -1)
            pipe.get(b"ctr:%d" % k)
        replies = pipe.execute()
    finally:
        client.close()
    for k in range(AOF_KEYS):
        got_list, got_counter = replies[2 * k], replies[2 * k + 1]
        if got_list != lists[k]:
            extra = len(got_list) - len(lists[k])
            return f"db {db} list:{k} has {len(got_list)} elements ({extra:+d}), or others"
        if got_counter != b"%d" % counters[k]:
            return f"db {db} ctr:{k} is {got_counter!r}, not {counters[k]}"
    return None


# -- the fuzzers ---------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    name: str
    inputs: int = 0
    crashes: int = 0
    seconds: float = 0.0
    detail: str = ""


def start_fuzzers(plan: Plan, work: Path) -> list[tuple[FuzzResult, subprocess.Popen[bytes], Path]]:
    started = []
    if plan.fuzz_seconds > 0:
        artifacts = work / "atheris-artifacts"
        artifacts.mkdir()
        log = work / "atheris.log"
        env = dict(os.environ, FUZZ_SECONDS=str(plan.fuzz_seconds), FUZZ_ARTIFACTS=str(artifacts))
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.fuzz_readers"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((FuzzResult("readers (atheris)"), process, log))
    if plan.api_fuzz_examples > 0:
        log = work / "api-fuzz.log"
        env = dict(
            os.environ,
            API_FUZZ_MAX_EXAMPLES=str(plan.api_fuzz_examples),
            API_FUZZ_STATS=str(work / "api-fuzz.json"),
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests/test_api_fuzz.py",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((FuzzResult("HTTP API (schemathesis)"), process, log))
    return started


def finish_fuzzers(
    started: list[tuple[FuzzResult, subprocess.Popen[bytes], Path]], begun: float, work: Path
) -> list[FuzzResult]:
    ended: dict[int, float] = {}
    while len(ended) < len(started):
        for n, (_, process, _) in enumerate(started):
            if n not in ended and process.poll() is not None:
                ended[n] = time.monotonic()
        time.sleep(0.5)
    results = []
    for n, (result, process, log) in enumerate(started):
        code = process.returncode
        result.seconds = ended[n] - begun
        text = log.read_text(errors="replace")
        if result.name.startswith("readers"):
            done = re.findall(r"Done (\d+) runs in", text)
            result.inputs = int(done[-1]) if done else 0
            kept = list((work / "atheris-artifacts").iterdir())
            result.crashes = len(kept) or (1 if code != 0 else 0)
            if result.crashes:
                result.detail = f"inputs kept in {work / 'atheris-artifacts'}; log {log}"
        else:
            stats_file = work / "api-fuzz.json"
            if stats_file.exists():
                stats = json.loads(stats_file.read_text())
                result.inputs = sum(stats["examples"].values())
            failed = re.search(r"(\d+) failed", text)
            result.crashes = int(failed.group(1)) if failed else (1 if code not in (0,) else 0)
            if result.crashes:
                result.detail = f"failing operations: see {log}"
        results.append(result)
    return results


# -- attacks: a hung target ---------------------------------------------------------------------

HUNG_ATTACKER = "a77ac4e2000000000000000000000502"
HUNG_VICTIM = "f1c71a00000000000000000000000503"


def _wait_statuses(
    api: Api, task_ids: list[str], wanted: set[str], seconds: float
) -> dict[str, Any]:
    """Each task's detail once every one is in `wanted`, or as they are after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        details = {t: api.ok("GET", f"/migration-task/{t}") for t in task_ids}
        if all(d["status"] in wanted for d in details.values()) or time.monotonic() > deadline:
            return details
        time.sleep(0.02)


def hung_target_attack(plan: Plan, log: Callable[[str], None]) -> list[Attack]:
    """Project A's tasks into a SIGSTOPped redis-server against project B's task, on a
    service of `plan.hung_workers` workers and a `plan.hung_reply_timeout` reply timeout;
    then a batch-stop of tasks whose target hangs part way."""
    workers, timeout = plan.hung_workers, plan.hung_reply_timeout
    attacks: list[Attack] = []
    with contextlib.ExitStack() as stack:
        hung, healthy = RedisServer(), RedisServer()
        for server in (hung, healthy):
            stack.callback(server.stop)
            server.start()
        stack.callback(_continue, hung)  # before it is stopped: a paused one would hang
        env = {"DCS_MIGRATION_WORKERS": str(workers), "DCS_MIGRATION_REPLY_TIMEOUT": f"{timeout}"}
        service = Service(env=env)
        stack.callback(shutil.rmtree, service.data_dir, True)
        stack.callback(service.stop)
        service.start()
        apis = {}
        for project in (HUNG_ATTACKER, HUNG_VICTIM):
            key = service.cli("keys", "create", "--project-id", project)
            apis[project] = Api(service.port, key["ak"], key["sk"], project)
        attacker, victim = apis[HUNG_ATTACKER], apis[HUNG_VICTIM]
        hung_id = attacker.ok("POST", "/instances", {"name": "hung", "addrs": _addr(hung)})
        healthy_id = victim.ok("POST", "/instances", {"name": "ok", "addrs": _addr(healthy)})
        bucket = service.bucket("hung", HUNG_ATTACKER, HUNG_VICTIM)
        (bucket / "small.rdb").write_bytes(big_rdb(1000))
        (bucket / "big.rdb").write_bytes(big_rdb(1_200_000))

        def task(api: Api, instance: dict[str, str], file_name: str, name: str) -> str:
            body = {
                "task_name": name,
                "migration_type": "backupfile_import",
                "migration_method": "full_amount_migration",
                "backup_files": {
                    "file_source": "self_build_obs",
                    "bucket_name": "hung",
                    "files": [{"file_name": file_name}],
                },
                "target_instance": {"id": instance["instance_id"]},
            }
            task_id: str = api.ok("POST", "/migration-task", body)["id"]
            return task_id

        # 1. Every worker held by tasks into a hung target; another project's task waits.
        assert hung.process is not None
        hung.process.send_signal(signal.SIGSTOP)
        hogs = [task(attacker, hung_id, "small.rdb", f"hog-{n}") for n in range(3 * workers)]
        time.sleep(0.5)
        sent = time.monotonic()
        victim_task = task(victim, healthy_id, "small.rdb", "victim")
        done = _wait_statuses(victim, [victim_task], {"SUCCESS", "FAILED"}, 3 * timeout + 30)
        waited = time.monotonic() - sent
        hogs_ended = sum(
            attacker.ok("GET", f"/migration-task/{t}")["status"] in FINAL for t in hogs
        )
        # It takes the first worker that frees: it is done while the second round of
        # hung tasks waits out its timeout. In submission order it would have waited
        # until 2 rounds had ended.
        ok = done[victim_task]["status"] == "SUCCESS" and hogs_ended < 2 * workers
        attacks.append(
            Attack(
                "hung target: a project takes every worker",
                f"{len(hogs)} tasks into a SIGSTOPped target, {workers} workers, then another "
                "project's task",
                f"the other project's task ended {done[victim_task]['status']} {waited:.1f} s "
                f"after it was sent, when {hogs_ended} hung tasks had ended (reply timeout "
                f"{timeout:g} s; in submission order: after {2 * workers + 1})",
                ok,
            )
        )
        ended = _wait_statuses(attacker, hogs, set(FINAL), 4 * timeout + 60)
        took = time.monotonic() - sent
        named = [
            t
            for t, d in ended.items()
            if d["status"] == "FAILED" and f"{_addr(hung)} did not answer" in d["error_message"]
        ]
        attacks.append(
            Attack(
                "hung target: tasks into it",
                f"{len(hogs)} tasks into a SIGSTOPped target",
                f"{len(named)} of {len(hogs)} FAILED naming the target, the last {took:.1f} s "
                f"after the other project's task was sent",
                len(named) == len(hogs) and took < (len(hogs) / workers + 1) * timeout + 30,
            )
        )
        log(f"attack: hung target, workers: {attacks[-2].outcome}; {attacks[-1].outcome}")

        # 2. Tasks part way when the target hangs, batch-stopped.
        hung.process.send_signal(signal.SIGCONT)
        hung.cli("FLUSHALL")
        stopped = [task(attacker, hung_id, "big.rdb", f"stopped-{n}") for n in range(workers)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = [attacker.ok("GET", f"/migration-task/{t}/stats") for t in stopped]
            if all(int(s["target_dbsize"]) > 0 for s in stats):
                break
            time.sleep(0.05)
        hung.process.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        asked = time.monotonic()
        answer = attacker.ok("POST", "/migration-task/batch-stop", {"migration_tasks": stopped})
        ended = _wait_statuses(attacker, stopped, set(FINAL), 2.0)
        took = time.monotonic() - asked
        terminated = [t for t, d in ended.items() if d["status"] == "TERMINATED"]
        others = sorted(d["status"] for d in ended.values() if d["status"] != "TERMINATED")
        accepted = sum(r["result"] == "success" for r in answer["migration_tasks"])
        attacks.append(
            Attack(
                "hung target: stop",
                f"batch-stop of {len(stopped)} tasks part way when their target hangs",
                f"{accepted} accepted, {len(terminated)} TERMINATED within {took:.1f} s"
                + (f"; {others}" if others else ""),
                len(terminated) == len(stopped) and took <= 2.0 + 0.1,  # the poll's own time
            )
        )
        log(f"attack: hung target, stop: {attacks[-1].outcome}")
    return attacks


def _addr(server: RedisServer) -> str:
    return f"127.0.0.1:{server.port}"


def _continue(server: RedisServer) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)


# -- the table -----------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(out)


def report(soak: Soak, fuzz: list[FuzzResult], seconds: float) -> tuple[str, dict[str, Any]]:
    jobs = soak.jobs
    outcome = Counter(j.outcome for j in jobs)
    lost = [j for j in jobs if j.outcome == "lost"]
    sections = []

    rows = []
    notes = []
    kinds = list(dict.fromkeys(f.kind for f in soak.faults))
    for kind in kinds:
        these = [f for f in soak.faults if f.kind == kind]
        affected = [j for j in jobs if any(_touched(f, j) for f in these)]
        survived = [
            f
            for f in these
            if f.back and not any(j.outcome == "lost" and _touched(f, j) for j in jobs)
        ]
        counts = Counter(j.outcome for j in affected)
        rows.append(
            [
                kind,
                str(len(these)),
                str(len(survived)),
                str(sum(f.hit for f in these)),
                f"{counts['exact']} / {counts['failed']} / {counts['lost']}",
            ]
        )
        notes += [f"{kind}: {f.detail}" for f in these if f.detail]
    interrupted = [j for j in jobs if j.interrupted]
    if interrupted:
        notes.append(
            f"service restarts: {len(interrupted)} task(s) interrupted, "
            f"{sum(1 for j in interrupted if j.resumed)} resumed (PUT resume_mode auto), "
            f"{sum(j.resume_unsupported for j in interrupted)} reported FAILED (no resume API)"
        )
    header = ["fault", "injected", "survived", "hit a task part way", "tasks exact/failed/lost"]
    sections.append("Faults\n" + table(rows, header) + "".join(f"\n{n}" for n in notes))

    rows = [[f.name, f"{f.inputs:,}", str(f.crashes), f"{f.seconds:.0f} s", f.detail] for f in fuzz]
    if rows:
        sections.append(
            "Fuzzing\n" + table(rows, ["target", "inputs tried", "crashes", "time", "detail"])
        )

    stats = soak.load_stats
    load = soak.load
    span = (load.ended - load.started) if load else 0.0
    served = sum(n for s, n in stats.statuses.items())
    rows = []
    every: list[float] = []
    for op in ("list", "show", "stats"):
        values = stats.latencies.get(op, [])
        every += values
        rows.append(
            [
                op,
                f"{len(values):,}",
                f"{percentile(values, 0.5) * 1000:.1f}",
                f"{percentile(values, 0.99) * 1000:.1f}",
            ]
        )
    rows.append(
        [
            "all",
            f"{len(every):,}",
            f"{percentile(every, 0.5) * 1000:.1f}",
            f"{percentile(every, 0.99) * 1000:.1f}",
        ]
    )
    errors = "; ".join(f"{k}: {v}" for k, v in sorted(stats.errors.items())) or "none"
    sections.append(
        f"API load: {served:,} requests answered in {span:.0f} s "
        f"({served / span if span else 0:.0f}/s, asked {soak.plan.rate:.0f}/s)\n"
        + table(rows, ["request", "200s", "p50 ms", "p99 ms"])
        + f"\nerrors: {errors}"
    )

    reasons = Counter(_reason(j.error) for j in jobs if j.outcome == "failed")
    rows = [
        ["tasks", str(len(jobs))],
        ["exact", str(outcome["exact"])],
        ["failed with a reason", str(outcome["failed"])],
        ["lost", str(outcome["lost"])],
        ["most at once", str(soak.max_in_flight)],
    ]
    text = "Tasks\n" + table(rows, ["", "count"])
    if reasons:
        text += "\nfailure reasons: " + "; ".join(f"{n}x {r}" for r, n in reasons.most_common())
    for job in lost:
        text += f"\nLOST {job.label} [{job.wave}]: {job.detail} (status {job.status})"
    sections.append(text)
    if soak.attacks:
        rows = [[a.name, a.tried, a.outcome, "yes" if a.held else "NO"] for a in soak.attacks]
        sections.append("Attacks\n" + table(rows, ["attack", "tried", "what happened", "held"]))
    sections.append(f"soak ran {seconds:.0f} s")

    summary = {
        "tasks": len(jobs),
        "exact": outcome["exact"],
        "failed": outcome["failed"],
        "lost": outcome["lost"],
        "lost_tasks": [f"{j.label}: {j.detail}" for j in lost],
        "faults": [
            {"kind": f.kind, "wave": f.wave, "hit": f.hit, "back": f.back, "detail": f.detail}
            for f in soak.faults
        ],
        "interrupted": sum(1 for j in jobs if j.interrupted),
        "resumed": sum(1 for j in jobs if j.resumed),
        "interrupted_reported_failed": sum(j.resume_unsupported for j in jobs),
        "requests": served,
        "request_errors": dict(stats.errors),
        "p50_ms": percentile(every, 0.5) * 1000,
        "p99_ms": percentile(every, 0.99) * 1000,
        "fuzz": [
            {"name": f.name, "inputs": f.inputs, "crashes": f.crashes, "detail": f.detail}
            for f in fuzz
        ],
        "attacks": [
            {"name": a.name, "tried": a.tried, "outcome": a.outcome, "held": a.held, **a.figures}
            for a in soak.attacks
        ],
    }
    return "\n\n".join(sections), summary


def _touched(fault: Fault, job: Job) -> bool:
    return job.wave == fault.wave or job.n in fault.in_flight


def _reason(error: str) -> str:
    """An error message with its numbers and ids blanked, to group alike failures."""
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", error)
    text = re.sub(r"\d+", "N", text)
    return text[:110]


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute version")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--seconds", type=float, help="of signed requests and task waves")
    parser.add_argument("--rate", type=float, help="signed requests per second")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--workers", type=int, help="the service's task workers")
    parser.add_argument("--targets", type=int)
    parser.add_argument("--rounds", type=int, help="times each fault is injected")
    parser.add_argument("--big-keys", type=int)
    parser.add_argument("--aof-commands", type=int)
    parser.add_argument("--fuzz-seconds", type=int, help="atheris (0: not run)")
    parser.add_argument("--api-fuzz-examples", type=int, help="schemathesis (0: not run)")
    parser.add_argument("--settle-seconds", type=float)
    parser.add_argument(
        "--flood-connections", type=int, help="unsigned 12 MiB bodies at once (0: no attack)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    plan = quick_plan() if args.quick else Plan()
    if not args.quick and os.environ.get("FUZZ_SECONDS"):
        plan.fuzz_seconds = int(os.environ["FUZZ_SECONDS"])
    for name in vars(plan):
        value = getattr(args, name, None)
        if value is not None:
            setattr(plan, name, value)
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"{tool} is not on PATH (`make system-deps` installs it)", file=sys.stderr)
            return 2

    begun = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - begun:6.1f}s] {message}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="dcs-soak-"))
    soak = Soak(plan, log)
    fuzz: list[FuzzResult] = []
    try:
        with soak.stack:
            soak.setup()
            log(f"load: {plan.rate:.0f} requests/s for {plan.seconds:.0f} s, faults in waves")
            soak.run()
            log("checking every task's target")
            soak.check()
            outcome = Counter(j.outcome for j in soak.jobs)
            log(
                f"tasks: {outcome['exact']} exact, {outcome['failed']} failed with a reason, "
                f"{outcome['lost']} lost"
            )
        soak.attacks += hung_target_attack(plan, log)
        if plan.fuzz_seconds > 0 or plan.api_fuzz_examples > 0:
            log(
                f"fuzzing: readers for {plan.fuzz_seconds} s, the API with "
                f"{plan.api_fuzz_examples} examples per operation"
            )
            fuzz_begun = time.monotonic()
            fuzz = finish_fuzzers(start_fuzzers(plan, work), fuzz_begun, work)
        text, summary = report(soak, fuzz, time.monotonic() - begun)
    finally:
        keep = any(f.crashes for f in fuzz)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + text, flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    bad = (
        summary["lost"]
        or any(f["crashes"] for f in summary["fuzz"])
        or not all(a["held"] for a in summary["attacks"])
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
