"""Faults injected into real parts: the target Redis killed mid-import (and restarted, or
not), twenty running tasks stopped at once, the database locked, its disk full, its
server restarted. What is checked is the promise, never an internal: an import ends
SUCCESS with exactly the backup's contents, or FAILED saying why and how far it got,
within a bounded time; the API answers every request, in the DCS form, and works again
once the fault is gone.

A target restarted without persistence has lost every write it acknowledged before: the
importer cannot write those again (it no longer holds them), so "exact" is out of reach,
and the import must not end SUCCESS. The pipeline sees the restart on its reconnect (the
server's run_id changed) and fails, unless the server persists every write before it
answers (appendonly yes, appendfsync always): then nothing acknowledged was lost, the
commands not acknowledged are sent again, and the result is exact. (Nor is anything lost
when no reply had been taken yet: every command sent is still held, and sent again.)

A command sent but not answered may have run. Sent again, only a plain key write
(RESTORE ... REPLACE) is sure to leave the same contents; the parts of a key rewritten in
chunks are not (a list would be pushed twice, or renamed from a half-built temporary key),
so with such commands in flight a lost connection fails the import rather than resend them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import (
    CallTimeoutException,
    ServiceResponseException,
)
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdcs.v2 import (
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    CreateMigrationTaskRequest,
    DcsClient,
    ListMigrationTaskRequest,
    ShowMigrationTaskStatsRequest,
)

from dcs_migration.client.endpoint import Endpoint
from dcs_migration.importer import ImportHooks, Progress, resolve_inputs, run_import
from dcs_migration.store.db import SQLITE_FILE_NAME
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.backups import strings_rdb
from tests.support.flavours import RedisServerFactory
from tests.support.postgres import PostgresCluster, PostgresUnavailable
from tests.support.sdk import create_body, create_task, task_status
from tests.support.servers import RedisServer, restart
from tests.support.service import Service, import_task_json, signed

pytestmark = [pytest.mark.slow, pytest.mark.redis]
FIXTURE_MARKERS = {"service_dir": "service", "small_disk": "service", "postgres": "postgres"}

PROJECT = "0605767e3800d5762fb5c0110a0e3c7d"
# A target that persists every write before it answers, and whose digest can be read.
DURABLE = ("--appendonly", "yes", "--appendfsync", "always", "--enable-debug-command", "local")
DEBUG = ("--enable-debug-command", "local")
# A restarted target reads its AOF slowly (a sleep per command) enough for the
# reconnect to find it loading.
SLOW_LOAD = ("--key-load-delay", "1")


# -- backups and servers -----------------------------------------------------------------


def lists_rdb(path: Path, count: int, items: int) -> Path:
    """`count` plain-encoded lists of `items` elements each."""
    parts = [b"\xfe\x00"]
    for i in range(count):
        elements = [b"item-%04d-%06d" % (i, j) for j in range(items)]
        value = g.length(len(elements)) + b"".join(g.string(e) for e in elements)
        parts.append(g.key(b"list:%04d" % i, value, rdb_type=1))
    path.write_bytes(g.rdb(*parts, version=9))
    return path


def native_digest(redis_server: RedisServerFactory, rdb: Path) -> str:
    """DEBUG DIGEST of a server that loaded `rdb` itself: the contents an import must give."""
    source = redis_server(*DEBUG, rdb=rdb)
    try:
        return source.cli("DEBUG", "DIGEST")
    finally:
        source.stop()


def crash(server: RedisServer) -> None:
    assert server.process is not None
    server.process.kill()
    server.process.wait()


def endpoint(server: RedisServer) -> Endpoint:
    return Endpoint(host="127.0.0.1", port=server.port)


def killer_at(
    server: RedisServer, fraction: float, then: Callable[[], None] | None = None
) -> tuple[Callable[[Progress], None], dict[str, float]]:
    """An on_progress callback that SIGKILLs `server` once `fraction` of the input is read
    (in the importer's own thread, so the kill always lands mid-import), then calls `then`."""
    seen: dict[str, float] = {}

    def on_progress(p: Progress) -> None:
        if "killed_at" not in seen and p.bytes_read >= p.bytes_total * fraction:
            crash(server)
            seen["killed_at"] = time.monotonic()
            seen["bytes_read"] = p.bytes_read
            if then is not None:
                then()

    return on_progress, seen


# -- the target killed mid-import ----------------------------------------------------------


def test_a_durable_target_restarted_mid_import_ends_exact(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Killed half-way and started again at once: the importer reconnects while the
    target is still loading its AOF (answering -LOADING to writes), waits for it, sends
    again what was not acknowledged, and the result is exactly the backup."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 100_000)
    server = redis_server(*DURABLE)
    probed: list[str] = []

    def probe() -> None:  # what a client finds once the restarted server accepts
        deadline = time.monotonic() + 5
        while not probed and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.CalledProcessError):
                probed.append(server.cli("PING"))
            time.sleep(0.05)

    prober = threading.Thread(target=probe)

    def restart_slowly() -> None:
        restart(server, *SLOW_LOAD)
        prober.start()

    on_progress, seen = killer_at(server, 0.5, restart_slowly)
    options = WriteOptions(strategy=Strategy.RESTORE, window_bytes=1 << 20)
    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        options,
        hooks=ImportHooks(on_progress=on_progress),
    )
    recovered = time.monotonic() - seen["killed_at"]
    prober.join()
    assert result.status == "SUCCESS", result.error
    assert result.stats.reconnects == 1
    assert result.stats.keys_written == 100_000
    assert result.bytes_read == result.bytes_total
    assert probed and probed[0].startswith("LOADING"), probed
    assert server.cli("DBSIZE") == "100000"
    assert server.cli("DEBUG", "DIGEST") == native_digest(redis_server, rdb)
    assert recovered < 30


def test_a_target_restarted_without_persistence_fails_the_import(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """A restarted empty server lost what it had acknowledged: never SUCCESS then, but
    FAILED, saying the target restarted, with what was counted before."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 200_000)
    server = redis_server(*DEBUG)
    on_progress, seen = killer_at(server, 0.5, lambda: restart(server))
    started = time.monotonic()
    # A small window: replies are taken (and their commands let go) as the import goes.
    options = WriteOptions(strategy=Strategy.RESTORE, window_bytes=1 << 20)
    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        options,
        hooks=ImportHooks(on_progress=on_progress),
    )
    assert result.status == "FAILED"
    assert "restarted during the import" in (result.error or "")
    assert "appendonly no" in (result.error or "")
    assert str(rdb) in (result.error or "")
    assert 0 < result.stats.keys_written < 200_000
    assert seen["bytes_read"] <= result.bytes_read < result.bytes_total
    assert time.monotonic() - started < 20
    assert int(server.cli("DBSIZE")) < 200_000  # the target holds less: hence FAILED


def test_a_restart_before_any_reply_was_taken_loses_nothing(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Killed before the importer took any reply (the first 8 MB window was still open):
    every command sent is still held, so all are sent again to the empty server, and
    the result is exact even without persistence."""
    rdb = strings_rdb(tmp_path / "dump.rdb", 100_000)
    server = redis_server(*DEBUG)
    # Read a chunk at a time: the kill comes after the first ones were sent.
    on_progress, _ = killer_at(server, 0.5, lambda: restart(server))
    options = WriteOptions(strategy=Strategy.RESTORE)
    assert rdb.stat().st_size < options.window_bytes
    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        options,
        hooks=ImportHooks(on_progress=on_progress),
    )
    assert result.status == "SUCCESS", result.error
    assert result.stats.reconnects == 1
    assert result.stats.keys_written == 100_000
    assert server.cli("DEBUG", "DIGEST") == native_digest(redis_server, rdb)


def test_a_target_killed_for_good_fails_within_the_retry_budget(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = strings_rdb(tmp_path / "dump.rdb", 200_000)
    server = redis_server()
    on_progress, seen = killer_at(server, 0.5)
    options = WriteOptions(strategy=Strategy.RESTORE, retries=3, window_bytes=1 << 20)
    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        options,
        hooks=ImportHooks(on_progress=on_progress),
    )
    gave_up = time.monotonic() - seen["killed_at"]
    assert result.status == "FAILED"
    assert "could not reconnect after 3 attempts" in (result.error or "")
    assert str(rdb) in (result.error or "")
    # How far it got: what the target acknowledged, and how much was read.
    assert 0 < result.stats.keys_written < 200_000
    assert 0 < result.bytes_read < result.bytes_total
    assert gave_up < 0.2 + 0.4 + 0.8 + 5  # the backoff of three attempts, and some slack


def test_rewritten_keys_in_flight_at_a_restart_fail_rather_than_half_written(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """A key rewritten in chunks is built under a temporary key and renamed over the real
    one. A chunk or the RENAME may have run without its reply arriving: sent again, a
    list gets elements twice, or is rebuilt from a partial temporary key. The import
    fails then, naming the key, and every key it renamed into place is whole."""
    rdb = lists_rdb(tmp_path / "lists.rdb", 150, 2_000)
    server = redis_server(*DURABLE)
    on_progress, _ = killer_at(server, 0.5, lambda: restart(server))
    options = WriteOptions(
        strategy=Strategy.RESTORE, big_key_bytes=10_000, chunk_bytes=4_096, window_bytes=1 << 20
    )
    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        options,
        hooks=ImportHooks(on_progress=on_progress),
    )
    assert result.status == "FAILED", "a non-repeatable command was sent again"
    assert "may or may not have run" in (result.error or "")
    assert "list:" in (result.error or "")
    assert 0 < result.stats.keys_written < 150
    client = redis.Redis(port=server.port)
    try:
        for i in range(150):
            key = b"list:%04d" % i
            if client.exists(key):
                expected = [b"item-%04d-%06d" % (i, j) for j in range(2_000)]
                assert client.lrange(key, 0, -1) == expected, key
        # What was left half-built goes away by itself.
        for tmp in client.keys(b"*dcs-migration:tmp:*"):
            assert 0 < client.pttl(tmp) <= 24 * 3600 * 1000, tmp
    finally:
        client.close()


# -- the service ---------------------------------------------------------------------------


def minted(service: Service) -> tuple[Any, dict[str, Any]]:
    key = service.cli("keys", "create", "--project-id", PROJECT)
    return service.client(key["ak"], key["sk"], PROJECT), key


def register(
    service: Service, key: dict[str, Any], server: RedisServer, name: str = "target"
) -> str:
    """Register `server` through the API (quicker than the CLI's own process)."""
    code, body, _ = signed(
        service, key, "POST", f"/v2/{PROJECT}/instances",
        {"name": name, "addrs": f"127.0.0.1:{server.port}"},
    )  # fmt: skip
    assert code == 200, body
    instance_id: str = body["instance_id"]
    return instance_id


def wait_for_keys(server: RedisServer, count: int, seconds: float = 30) -> None:
    """Wait until the import into `server` has written `count` keys."""
    watcher = redis.Redis(port=server.port, socket_timeout=5)
    try:
        deadline = time.monotonic() + seconds
        while int(watcher.dbsize()) < count:
            if time.monotonic() > deadline:
                pytest.fail("the import did not get going")
            time.sleep(0.005)
    finally:
        watcher.close()


def wait_for(client: Any, task_id: str, statuses: tuple[str, ...], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        now = task_status(client, task_id)
        if now in statuses:
            return now
        assert time.monotonic() < deadline, f"task {task_id} stayed {now}"
        time.sleep(0.05)


def health(service: Service) -> int:
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as answer:
        code: int = answer.status
        return code


def assert_unavailable(answer: tuple[int, dict[str, Any], float], why: str) -> None:
    code, body, _ = answer
    assert code == 503, body
    assert set(body) == {"error_code", "error_msg", "error_ext_msg"}, body
    assert body["error_code"] == "DCS.4842"
    assert "database is unavailable" in body["error_msg"] and why in body["error_msg"], body


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    return tmp_path / "service"


def test_the_service_imports_exactly_through_a_target_restart(
    tmp_path: Path, service_dir: Path, redis_server: RedisServerFactory
) -> None:
    rdb = strings_rdb(tmp_path / "dump.rdb", 150_000)
    server = redis_server(*DURABLE)
    with Service(service_dir) as service:
        client, key = minted(service)
        instance_id = register(service, key, server)
        shutil.copy(rdb, service.bucket("bucket", PROJECT) / "dump.rdb")
        task_id = create_task(client, instance_id, "dump.rdb")
        wait_for_keys(server, 50_000)
        crash(server)
        killed_at = time.monotonic()
        time.sleep(0.5)  # the importer finds the target gone, and retries
        restart(server)
        assert wait_for(client, task_id, ("SUCCESS", "FAILED"), 60) == "SUCCESS"
        took = time.monotonic() - killed_at
        stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
        assert stats.full_migration_progress == "100"
        assert server.cli("DBSIZE") == "150000"
        assert server.cli("DEBUG", "DIGEST") == native_digest(redis_server, rdb)
        assert took < 30


def listed_statuses(client: Any) -> dict[str, str]:
    """Every task's status, from one list call."""
    listed = client.list_migration_task(ListMigrationTaskRequest(limit=100))
    return {t.task_id: t.status for t in listed.migration_tasks}


@contextlib.contextmanager
def paused(servers: list[RedisServer]) -> Iterator[None]:
    """The servers stopped (SIGSTOP) for the block: a client connects, and then waits."""
    for server in servers:
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for server in servers:
            assert server.process is not None
            server.process.send_signal(signal.SIGCONT)


# The stop call answers within 2 s; the last of the twenty is TERMINATED within about 2 s
# too on a 2-core machine, where twenty import processes and four targets share two cores
# (its tail has been seen at 2.0-2.1 s): the bound leaves it that second of noise.
ALL_TERMINATED_SECONDS = 3.0


def test_twenty_running_tasks_stop_within_two_seconds(
    tmp_path: Path, service_dir: Path, redis_server: RedisServerFactory
) -> None:
    # Small keys: the most work per megabyte read.
    rdb = tmp_path / "dump.rdb"
    parts = [b"\xfe\x00", *(g.key(b"t%06d" % i, g.string(b"1")) for i in range(300_000))]
    rdb.write_bytes(g.rdb(*parts, version=9))
    targets = [redis_server() for _ in range(4)]
    service = Service(service_dir, env={"DCS_MIGRATION_WORKERS": "20"}).start()
    try:
        client, key = minted(service)
        instances = [register(service, key, t, f"target-{n}") for n, t in enumerate(targets)]
        shutil.copy(rdb, service.bucket("bucket", PROJECT) / "dump.rdb")
        # The tasks wait for their paused targets while all twenty are created, then
        # run at once.
        with paused(targets):
            task_ids = [
                create_task(client, instances[n % 4], "dump.rdb", f"t{n}") for n in range(20)
            ]
            time.sleep(0.5)  # every worker has taken its task, and waits for its target
        # Twenty worker processes start at once on a machine of two cores: that alone can
        # take many seconds. The guard below (no task ends first) is what says "at once".
        deadline = time.monotonic() + 60
        while True:  # every target is being written to, and no task has ended
            statuses = listed_statuses(client)
            sizes = [int(t.cli("DBSIZE")) for t in targets]
            if set(statuses.values()) != {"MIGRATING"}:
                pytest.fail(f"a task ended before the stop: {statuses}")
            if all(sizes):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the twenty tasks did not all run at once: {sizes}")
            time.sleep(0.1)
        time.sleep(1)
        # The SDK itself, with a read timeout that is the promise: 2 s.
        config = HttpConfig.get_default_config()
        config.timeout = (2, 2)
        stopper = (
            DcsClient.new_builder()
            .with_http_config(config)
            .with_credentials(BasicCredentials(key["ak"], key["sk"], PROJECT))
            .with_endpoint(service.url)
            .build()
        )
        asked = time.monotonic()
        body = BatchStopMigrationTasksBody(migration_tasks=task_ids)
        try:
            answer = stopper.batch_stop_migration_tasks(BatchStopMigrationTasksRequest(body=body))
        except (requests.exceptions.Timeout, CallTimeoutException) as exc:
            raise AssertionError("the batch stop did not answer within 2 s") from exc
        answered = time.monotonic() - asked
        refused = [
            (r.error_code, r.error_msg) for r in answer.migration_tasks if r.result != "success"
        ]
        assert not refused, refused
        while True:
            statuses = listed_statuses(client)
            took = time.monotonic() - asked
            if set(statuses.values()) == {"TERMINATED"} or took > ALL_TERMINATED_SECONDS:
                break
        late = sorted(s for s in statuses.values() if s != "TERMINATED")
        assert not late, f"{late} {took:.1f} s after the batch stop (answered in {answered:.1f} s)"
        assert all(int(t.cli("DBSIZE")) < 300_000 for t in targets)  # stopped mid-way
    finally:
        service.kill()  # no graceful wait for twenty workers


# -- the database ---------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another process' connection holding the database's write lock (BEGIN EXCLUSIVE)."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def test_requests_answer_503_while_the_database_is_locked(
    tmp_path: Path, service_dir: Path, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    env = {"DCS_MIGRATION_SQLITE_BUSY_TIMEOUT": "1"}
    with Service(service_dir, env=env) as service:
        client, key = minted(service)
        instance_id = register(service, key, target)
        (service.bucket("bucket", PROJECT) / "small.rdb").write_bytes(
            g.rdb(g.key(b"a", g.string(b"1")), version=9)
        )
        path = f"/v2/{PROJECT}/migration-task"
        body = import_task_json(instance_id)
        with sqlite_locked(service_dir / SQLITE_FILE_NAME):
            answer = signed(service, key, "POST", path, body)
            assert_unavailable(answer, "locked")
            assert answer[2] < 1 + 4  # the busy timeout, and some slack
            # Reads do not wait for a writer (WAL): listing works all along.
            listed = client.list_migration_task(ListMigrationTaskRequest())
            assert listed.count == 0
            with pytest.raises(ServiceResponseException) as raised:
                client.create_migration_task(
                    CreateMigrationTaskRequest(body=create_body(instance_id, "small.rdb"))
                )
            assert raised.value.status_code == 503
            assert raised.value.error_code == "DCS.4842"
            assert health(service) == 200
        task_id = create_task(client, instance_id, "small.rdb")
        assert wait_for(client, task_id, ("SUCCESS", "FAILED"), 30) == "SUCCESS"
        assert client.list_migration_task(ListMigrationTaskRequest()).count == 1
    with sqlite3.connect(service_dir / SQLITE_FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_running_task_outlives_a_locked_database(
    tmp_path: Path, service_dir: Path, redis_server: RedisServerFactory
) -> None:
    rdb = strings_rdb(tmp_path / "dump.rdb", 400_000)
    target = redis_server(*DEBUG)
    env = {"DCS_MIGRATION_SQLITE_BUSY_TIMEOUT": "0.3", "DCS_MIGRATION_WORKERS": "1"}
    with Service(service_dir, env=env) as service:
        client, key = minted(service)
        instance_id = register(service, key, target)
        shutil.copy(rdb, service.bucket("bucket", PROJECT) / "dump.rdb")
        (service.bucket("bucket", PROJECT) / "small.rdb").write_bytes(
            g.rdb(g.key(b"a", g.string(b"1")), version=9)
        )
        task_id = create_task(client, instance_id, "dump.rdb")
        wait_for_keys(target, 10_000)
        with sqlite_locked(service_dir / SQLITE_FILE_NAME):
            time.sleep(2)  # the task's progress writes (once a second) find it locked
        # The task ends (its progress writes are best effort), and its worker lives on.
        assert wait_for(client, task_id, ("SUCCESS", "FAILED"), 4) == "SUCCESS"
        assert target.cli("DEBUG", "DIGEST") == native_digest(redis_server, rdb)
        after = create_task(client, instance_id, "small.rdb")
        assert wait_for(client, after, ("SUCCESS", "FAILED"), 8) == "SUCCESS"


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A folder on a 4 MB tmpfs of its own, unmounted after the test; skipped where
    mounting is not permitted."""
    path = Path(tempfile.mkdtemp(prefix="dcs-small-disk-"))
    if not _mount_tmpfs(path, "4m"):
        path.rmdir()
        pytest.skip("cannot mount a tmpfs here (not root, or not permitted)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def fill(folder: Path) -> Path:
    """A file that takes every byte left on the file system of `folder`."""
    filler = folder / "filler"
    block = b"\0" * (64 << 10)
    with filler.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(block)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return filler


def register_calls(
    service: Service, key: dict[str, Any], target: RedisServer, count: int
) -> list[tuple[int, dict[str, Any], float]]:
    """Register instances (small writes that start no work) until one is refused."""
    answers = []
    for n in range(count):
        answer = signed(
            service, key, "POST", f"/v2/{PROJECT}/instances",
            {"name": f"more-{n}", "addrs": f"127.0.0.1:{target.port}"},
        )  # fmt: skip
        answers.append(answer)
        if answer[0] != 200:
            break
    return answers


def test_a_full_disk_answers_503_and_recovers(
    small_disk: Path, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    data_dir = small_disk / "data"
    with Service(data_dir) as service:
        client, key = minted(service)
        instance_id = register(service, key, target)
        (service.bucket("bucket", PROJECT) / "small.rdb").write_bytes(
            g.rdb(g.key(b"a", g.string(b"1")), version=9)
        )
        filler = fill(small_disk)
        # The write-ahead log may have room left from earlier writes: write until it has not.
        answers = register_calls(service, key, target, 2_000)
        assert answers[-1][0] != 200, "2000 writes fitted on a full disk"
        assert_unavailable(answers[-1], "its disk is full")
        assert all(seconds < 15 for *_, seconds in answers)
        assert health(service) == 200
        listed = signed(service, key, "GET", f"/v2/{PROJECT}/migration-tasks")
        assert listed[0] == 200, listed  # reading needs no room
        filler.unlink()  # space comes back
        again = register_calls(service, key, target, 1)
        assert again[0][0] == 200, again
        task_id = create_task(client, instance_id, "small.rdb")
        assert wait_for(client, task_id, ("SUCCESS", "FAILED"), 30) == "SUCCESS"
    with sqlite3.connect(data_dir / SQLITE_FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        registered = db.execute("SELECT count(*) FROM instances").fetchone()[0]
    # The one registered first, those the API said it registered, and the one after.
    assert registered == 1 + sum(1 for code, *_ in answers if code == 200) + 1


def test_a_file_size_limit_answers_503_and_recovers(
    service_dir: Path, redis_server: RedisServerFactory
) -> None:
    """The disk-full case where no tmpfs can be mounted: RLIMIT_FSIZE on the service
    process makes its writes past the limit fail (EFBIG) as a full disk would."""
    target = redis_server()
    with Service(service_dir) as service:
        _, key = minted(service)
        assert service.process is not None
        pid = service.process.pid
        db_files = [service_dir / (SQLITE_FILE_NAME + s) for s in ("", "-wal")]
        limit = max(f.stat().st_size for f in db_files if f.exists())
        soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
        try:
            answers = register_calls(service, key, target, 2_000)
            assert answers[-1][0] != 200, "2000 writes fitted under the file size limit"
            assert_unavailable(answers[-1], "its disk cannot be written")
            assert health(service) == 200
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
        again = register_calls(service, key, target, 1)
        assert again[0][0] == 200, again
    with sqlite3.connect(service_dir / SQLITE_FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster of this test's own, for it to restart."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not installed: {exc}")
    with cluster:
        yield cluster


def test_a_postgres_restart_costs_only_the_calls_made_while_it_was_down(
    service_dir: Path, postgres: PostgresCluster, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    env = {"DCS_MIGRATION_DATABASE_URL": postgres.url}
    with Service(service_dir, env=env) as service:
        client, key = minted(service)
        instance_id = register(service, key, target)
        (service.bucket("bucket", PROJECT) / "small.rdb").write_bytes(
            g.rdb(g.key(b"a", g.string(b"1")), version=9)
        )
        first = create_task(client, instance_id, "small.rdb")
        assert wait_for(client, first, ("SUCCESS", "FAILED"), 30) == "SUCCESS"
        postgres.stop_server()
        try:
            answer = signed(service, key, "GET", f"/v2/{PROJECT}/migration-tasks")
            assert_unavailable(answer, "cannot be reached")
            assert answer[2] < 10
            with pytest.raises(ServiceResponseException) as raised:
                create_task(client, instance_id, "small.rdb")
            assert raised.value.status_code == 503
            assert health(service) == 200
        finally:
            postgres.start_server()
        # Connections of before the restart are found dead before use, and replaced.
        listed = client.list_migration_task(ListMigrationTaskRequest())
        assert listed.count == 1
        second = create_task(client, instance_id, "small.rdb")
        assert wait_for(client, second, ("SUCCESS", "FAILED"), 30) == "SUCCESS"
