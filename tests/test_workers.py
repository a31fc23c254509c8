"""Workers and stops against hung targets: a redis-server stopped with SIGSTOP keeps its
port (the kernel still accepts connections and takes bytes into its buffers) and never
answers, which is what a hung target looks like to a client.

- A hung target fails its import within the reply timeout, naming it, without spending
  the reconnect budget on it; a target that is slow at real work (loading its dataset, a
  big command in flight) is waited for.
- A stopped task whose target is hung ends TERMINATED within 2 s (stop and batch-stop),
  saying how far it got: its connections are shut down rather than waited on.
- Workers are shared between projects: one project's tasks into hung targets hold the
  slots, and another project's task still takes the first slot that frees.

Every paused server is continued (SIGCONT) before the test ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkdcs.v2 import (
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    ListMigrationTaskLogsRequest,
    ShowMigrationTaskStatsRequest,
    StopMigrationTaskRequest,
)

from dcs_migration.client.acks import KeyAck
from dcs_migration.client.connection import Interrupter, TargetHung
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.client.pipeline import Pipeline
from dcs_migration.client.resp import encode_command
from dcs_migration.config import REPLY_TIMEOUT_ENV, Settings
from dcs_migration.importer import ImportHooks, Progress, resolve_inputs, run_import
from dcs_migration.store import open_store
from dcs_migration.tasks.executor import Work, WorkKind
from dcs_migration.tasks.runner import FairQueue, InlineExecutor
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.backups import strings_rdb
from tests.support.flavours import RedisServerFactory
from tests.support.sdk import create_task, task_status
from tests.support.servers import RedisServer, restart
from tests.support.service import Service, signed
from tests.support.waiting import until

ATTACKER = "a77ac4e2000000000000000000000002"
VICTIM = "f1c71a00000000000000000000000001"


def endpoint(server: RedisServer) -> Endpoint:
    return Endpoint(host="127.0.0.1", port=server.port)


def pause(server: RedisServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def continued_at_the_end(*servers: RedisServer) -> Iterator[None]:
    """Whatever the block does to them, the servers run again when it ends (so that the
    fixture can stop them)."""
    try:
        yield
    finally:
        for server in servers:
            resume(server)


def pauser_at(server: RedisServer, fraction: float) -> tuple[Any, dict[str, float]]:
    """An on_progress callback that SIGSTOPs `server` once `fraction` of the input is
    read (in the importer's own thread: the pause always lands mid-import)."""
    seen: dict[str, float] = {}

    def on_progress(p: Progress) -> None:
        if "paused_at" not in seen and p.bytes_read >= p.bytes_total * fraction:
            pause(server)
            seen["paused_at"] = time.monotonic()

    return on_progress, seen


# -- the reply deadline (in-process imports, real servers) -----------------------------------


def test_a_target_hung_mid_import_fails_it_within_the_reply_timeout(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Before, a hung target cost 60 s per reply and then five reconnects that hung as
    well; now the import fails once the reply timeout has passed, naming the target,
    with what it had acknowledged counted."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 200_000)
    server = redis_server()
    on_progress, seen = pauser_at(server, 0.5)
    options = WriteOptions(strategy=Strategy.RESTORE, window_bytes=1 << 20, reply_timeout=2)
    with continued_at_the_end(server):
        result = run_import(
            resolve_inputs([str(rdb)]),
            endpoint(server),
            options,
            hooks=ImportHooks(on_progress=on_progress),
        )
        failed_after = time.monotonic() - seen["paused_at"]
    assert result.status == "FAILED"
    error = result.error or ""
    assert f"127.0.0.1:{server.port} did not answer within 2 s" in error, error
    assert "hung" in error and str(rdb) in error, error
    assert result.stats.reconnects == 0
    assert 0 < result.stats.keys_written < 200_000
    assert 0 < result.bytes_read < result.bytes_total
    assert failed_after < 2 + 5  # the timeout, and slack for a loaded machine


def test_a_target_hung_before_the_import_fails_it_naming_the_target(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Hung before the first reply (it accepts the connection, and says nothing to PING)."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 1000)
    server = redis_server()
    options = WriteOptions(reply_timeout=1)
    with continued_at_the_end(server):
        pause(server)
        began = time.monotonic()
        result = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
        took = time.monotonic() - began
    assert result.status == "FAILED"
    assert f"127.0.0.1:{server.port} did not answer within 1 s" in (result.error or "")
    assert result.stats.keys_written == 0
    assert took < 1 + 5  # one timeout, not one per reconnect


def test_the_command_line_takes_a_reply_timeout(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = strings_rdb(tmp_path / "dump.rdb", 1000)
    server = redis_server()
    with continued_at_the_end(server):
        pause(server)
        done = subprocess.run(
            [sys.executable, "-m", "dcs_migration", "import", str(rdb), "--json",
             "--target", f"redis://127.0.0.1:{server.port}", "--reply-timeout", "0.5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "FAILED"
    assert f"127.0.0.1:{server.port} did not answer within 0.5 s" in summary["error"]


def test_the_services_reply_timeout_is_a_positive_number_of_seconds(tmp_path: Path) -> None:
    def reply_timeout(**env: str) -> float:
        return Settings.from_env(env, data_dir=tmp_path).reply_timeout

    assert reply_timeout(**{REPLY_TIMEOUT_ENV: "2.5"}) == 2.5
    assert reply_timeout() == 30
    for nonsense in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match=f"{REPLY_TIMEOUT_ENV}='{nonsense}'"):
            reply_timeout(**{REPLY_TIMEOUT_ENV: nonsense})


def test_a_loading_target_is_waited_for_beyond_the_reply_timeout(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """A server loading its dataset answers -LOADING: it is busy, not hung. One that
    loads for longer than the reply timeout (a delay per key loaded) is waited for, and
    the import then ends exact."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 1000)
    server = redis_server()
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    strings_rdb(server.dir / "dump.rdb", 20_000)  # what it loads, 50 us a key: seconds
    # It answers clients (-LOADING) every so many bytes loaded: 2 MB by default, a few
    # ms of a real load; here every kilobyte, as the delay makes each one slow.
    restart(server, "--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024")
    until(lambda: _answers_loading(server), "the server to load", 10)
    began = time.monotonic()
    result = run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(reply_timeout=1))
    took = time.monotonic() - began
    assert result.status == "SUCCESS", result.error
    assert result.stats.keys_written == 1000
    assert server.cli("DBSIZE") == "20000"  # its own keys (the import's are among them)
    assert took > 1  # it waited through the load, longer than the reply timeout


def _answers_loading(server: RedisServer) -> bool:
    try:
        return "loading:1" in server.cli("INFO", "persistence")
    except subprocess.CalledProcessError:  # not listening yet
        return False


def test_a_big_command_in_flight_lengthens_the_deadline(redis_server: RedisServerFactory) -> None:
    """The server falls silent for longer than the reply timeout just as the last piece
    of a 96 MB command goes (as it would while building a big value): the deadline has a
    second more for every 32 MB in flight, so the reply is waited for. The same silence
    with nothing big in flight is a hung server."""
    server = redis_server()
    piece = b"v" * (8 << 20)
    pieces = 12
    silence = 1.6  # above the 1 s timeout, below the 4 s that 96 MB in flight have

    def command() -> Iterator[bytes]:
        yield b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % (pieces * len(piece))
        for n in range(pieces):
            if n == pieces - 1:  # silent from here, for a while
                pause(server)
                threading.Timer(silence, resume, (server,)).start()
            yield piece
        yield b"\r\n"

    replies: list[Any] = []
    with continued_at_the_end(server):
        big = Pipeline(endpoint(server), lambda tag, reply, _: replies.append(reply), timeout=1)
        big.open()
        try:
            big.push_pieces(command, KeyAck(b"big"), resendable=True)
            big.flush()
        finally:
            big.close()
        assert replies == [b"OK"]
        assert server.cli("STRLEN", "big") == str(pieces * len(piece))

        small = Pipeline(endpoint(server), lambda tag, reply, _: replies.append(reply), timeout=1)
        small.open()
        try:
            small.push(encode_command([b"SET", b"small", b"v"]), KeyAck(b"small"))
            pause(server)
            with pytest.raises(TargetHung, match="did not answer within 1 s"):
                small.flush()
        finally:
            small.close()


def test_an_interrupter_ends_an_import_waiting_on_a_hung_target_at_once(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """The stop's last resort: the connections shut down from another thread, the import
    blocked on a hung target's replies returns TERMINATED at once, with what the target
    had acknowledged."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 200_000)
    server = redis_server()
    on_progress, seen = pauser_at(server, 0.5)
    interrupter = Interrupter()
    options = WriteOptions(strategy=Strategy.RESTORE, window_bytes=1 << 20, reply_timeout=60)
    results: list[Any] = []

    def run() -> None:
        results.append(
            run_import(
                resolve_inputs([str(rdb)]),
                endpoint(server),
                options,
                hooks=ImportHooks(on_progress=on_progress, interrupter=interrupter),
            )
        )

    with continued_at_the_end(server):
        importer = threading.Thread(target=run)
        importer.start()
        deadline = time.monotonic() + 30
        while "paused_at" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the import now waits for replies that do not come
        assert importer.is_alive()
        interrupter.fire()
        importer.join(5)
        assert not importer.is_alive(), "the import did not end when interrupted"
    (result,) = results
    assert result.status == "TERMINATED"
    assert 0 < result.stats.keys_written < 200_000
    assert 0 < result.bytes_read < result.bytes_total


# -- the fair share (the rule itself) ----------------------------------------------------------


def test_a_free_slot_goes_to_the_waiting_project_that_runs_the_fewest() -> None:
    queue = FairQueue()
    hogs = [Work.migration_task("p2", f"p2-{n}") for n in range(6)]
    for job in hogs:
        queue.put(job)
    held = [queue.take() for _ in range(4)]  # alone, p2 takes every slot
    assert held == hogs[:4]
    queue.put(Work.migration_task("p1", "p1-0"))
    queue.put(Work.migration_task("p1", "p1-1"))
    assert held[0] is not None
    queue.done(held[0])
    assert queue.take() == Work.migration_task("p1", "p1-0")  # p1 runs none: the freed slot is its
    assert held[1] is not None
    queue.done(held[1])
    assert queue.take() == Work.migration_task("p1", "p1-1")  # p1 runs 1, p2 runs 2
    assert held[2] is not None
    queue.done(held[2])
    assert queue.take() == hogs[4]  # 2 and 1: p2 is next, in the order submitted
    assert queue.take() == hogs[5]
    assert queue.take() is None


def test_a_tie_goes_to_the_project_that_started_a_task_least_recently() -> None:
    queue = FairQueue()
    first, second = Work.migration_task("p2", "a"), Work.migration_task("p2", "b")
    queue.put(first)
    queue.put(second)
    taken = queue.take()
    assert taken == first
    queue.put(Work.migration_task("p1", "c"))  # submitted after p2's second task
    queue.done(first)  # both run none now; p2 had the last turn
    assert queue.take() == Work.migration_task("p1", "c")
    assert queue.take() == second


class _StoppedBeforeStart:
    """A job that records the units the executor ended in its own process."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(
        self,
        project_id: str,
        work_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
    ) -> None:
        assert stop.is_set()
        self.ran.append(work_id)

    def ended_without_outcome(
        self, project_id: str, work_id: str, exit_status: int, *, stopped: bool
    ) -> None:
        raise AssertionError("no process was started")


def test_the_inline_executor_holds_each_unit_until_it_ends(tmp_path: Path) -> None:
    job = _StoppedBeforeStart()
    settings = dataclasses.replace(Settings.from_env({}, data_dir=tmp_path), workers=1)
    executor = InlineExecutor({WorkKind.MIGRATION_TASK: job}, settings)
    first, second = Work.migration_task("p1", "a"), Work.migration_task("p1", "b")
    executor.submit(first)
    executor.submit(second)
    assert executor.running() == {first, second}  # waiting for the slot that has not started
    executor.stop(first)
    executor.stop(second)  # stopped while they wait: ended without a process
    executor.start()
    try:
        until(lambda: not executor.running(), "the units to end", 10)
    finally:
        executor.shutdown()
    assert job.ran == ["a", "b"]


# -- the service: stops and shares (real service, real task processes) ---------------------


def mint(service: Service, project: str) -> tuple[Any, dict[str, Any]]:
    key = service.cli("keys", "create", "--project-id", project)
    return service.client(key["ak"], key["sk"], project), key


def register(service: Service, key: dict[str, Any], project: str, server: RedisServer) -> str:
    code, body, _ = signed(
        service, key, "POST", f"/v2/{project}/instances",
        {"name": f"target-{server.port}", "addrs": f"127.0.0.1:{server.port}"},
    )  # fmt: skip
    assert code == 200, body
    instance_id: str = body["instance_id"]
    return instance_id


def written(client: Any, task_id: str) -> int:
    stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
    return int(stats.target_dbsize)


def time_to(client: Any, task_ids: list[str], wanted: str, seconds: float) -> float:
    """Seconds until every task is `wanted`, asked every 20 ms; fails past `seconds`."""
    began = time.monotonic()
    while True:
        statuses = {t: task_status(client, t) for t in task_ids}
        took = time.monotonic() - began
        if set(statuses.values()) == {wanted}:
            return took
        assert took < seconds, f"{statuses} after {took:.1f} s"
        time.sleep(0.02)


def test_stopped_tasks_into_a_hung_target_are_terminated_within_two_seconds(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Three tasks part way into one target, which then hangs: one is stopped, two are
    batch-stopped. Each is TERMINATED within 2 s (before, they stayed TERMINATING for
    minutes and then ended FAILED), saying how far it got. The reply timeout is long
    here: the stop does not wait for it."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 500_000)
    target = redis_server()
    env = {"DCS_MIGRATION_WORKERS": "4", "DCS_MIGRATION_REPLY_TIMEOUT": "60"}
    with continued_at_the_end(target), Service(tmp_path / "service", env=env) as service:
        client, key = mint(service, VICTIM)
        instance = register(service, key, VICTIM, target)
        shutil.copy(rdb, service.bucket("bucket", VICTIM) / "dump.rdb")
        tasks = [create_task(client, instance, "dump.rdb", f"t{n}") for n in range(3)]
        for task_id in tasks:  # each has had writes acknowledged (its progress says so)
            until(lambda t=task_id: written(client, t) > 0, f"{task_id} to write", 30)
        pause(target)
        time.sleep(1.5)  # every task now waits for replies
        assert {task_status(client, t) for t in tasks} == {"MIGRATING"}

        asked = time.monotonic()
        client.stop_migration_task(StopMigrationTaskRequest(task_id=tasks[0]))
        assert time_to(client, tasks[:1], "TERMINATED", 2.0 - (time.monotonic() - asked)) >= 0

        body = BatchStopMigrationTasksBody(migration_tasks=tasks[1:])
        asked = time.monotonic()
        answer = client.batch_stop_migration_tasks(BatchStopMigrationTasksRequest(body=body))
        assert [r.result for r in answer.migration_tasks] == ["success", "success"]
        assert time_to(client, tasks[1:], "TERMINATED", 2.0 - (time.monotonic() - asked)) >= 0

        for task_id in tasks:
            stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
            # How far it got: what it read, and what the target acknowledged (a task may
            # have read its whole file, its last replies still due, when the target hung).
            assert 0 < int(stats.offset) <= rdb.stat().st_size, stats
            assert 0 < int(stats.target_dbsize) < 500_000, stats
            assert not stats.is_migrating
            logs = client.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=task_id))
            said = [entry.message for entry in logs.migration_logs]
            assert any(m.startswith("import stopped:") for m in said), said
            assert not any("failed" in m for m in said), said


def started_and_finished(data_dir: Path, tasks: list[tuple[str, str]]) -> list[tuple[float, float]]:
    """Each (project, task)'s (started_at, finished_at), as timestamps, from the
    service's store."""
    store = open_store(None, data_dir)
    try:
        out = []
        for project_id, task_id in tasks:
            task = store.get_task(project_id, task_id)
            assert task is not None and task.started_at is not None, task_id
            assert task.finished_at is not None, task_id
            out.append((task.started_at.timestamp(), task.finished_at.timestamp()))
        return out
    finally:
        store.close()


def test_a_project_with_tasks_into_hung_targets_does_not_keep_another_waiting(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Two workers. Project A sends four tasks into a hung target: alone, it takes both
    workers, and each task fails after the 3 s reply timeout, naming the target. Project
    B's task, sent while A's wait, takes the first worker that frees, ahead of A's
    third and fourth tasks (which were sent before it), instead of after all of them."""
    hung, healthy = redis_server(), redis_server()
    small = tmp_path / "small.rdb"
    small.write_bytes(g.rdb(b"\xfe\x00", *(g.key(b"k%d" % i, g.string(b"v")) for i in range(100))))
    env = {"DCS_MIGRATION_WORKERS": "2", "DCS_MIGRATION_REPLY_TIMEOUT": "3"}
    data_dir = tmp_path / "service"
    with continued_at_the_end(hung), Service(data_dir, env=env) as service:
        attacker, attacker_key = mint(service, ATTACKER)
        victim, victim_key = mint(service, VICTIM)
        hung_instance = register(service, attacker_key, ATTACKER, hung)
        healthy_instance = register(service, victim_key, VICTIM, healthy)
        shutil.copy(small, service.bucket("bucket", ATTACKER, VICTIM) / "small.rdb")
        pause(hung)
        hogs = [create_task(attacker, hung_instance, "small.rdb", f"hog{n}") for n in range(4)]
        time.sleep(0.5)  # both workers have taken one
        task = create_task(victim, healthy_instance, "small.rdb", "victim")
        # Within a bound: one reply timeout, and process starts on a loaded machine.
        time_to(victim, [task], "SUCCESS", 3 + 15)
        time_to(attacker, hogs, "FAILED", 3 * 3 + 15)
        for hog in hogs:
            code, detail, _ = signed(
                service, attacker_key, "GET", f"/v2/{ATTACKER}/migration-task/{hog}"
            )
            assert code == 200, detail
            assert f"127.0.0.1:{hung.port} did not answer within 3 s" in detail["error_message"]
    times = started_and_finished(data_dir, [*((ATTACKER, h) for h in hogs), (VICTIM, task)])
    hog_times, (victim_started, _) = times[:4], times[4]
    # Alone, project A held both workers at once.
    (a_start, a_end), (b_start, b_end) = hog_times[:2]
    assert b_start < a_end and a_start < b_end, hog_times
    # Each hung task failed at about the reply timeout (from its own start).
    assert all(end - start < 3 + 5 for start, end in hog_times), hog_times
    # The victim started before A's fourth task, and at most one of A's waiting tasks
    # (taken in the same instant) started before it: in submission order, it would have
    # come after all four.
    before = [start for start, _ in hog_times if start < victim_started]
    assert len(before) <= 3, (hog_times, victim_started)
    assert hog_times[3][0] > victim_started
