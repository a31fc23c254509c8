"""The service at scale, with real processes: PostgreSQL, redis-server as the Celery
broker, moto's S3 server, two `serve` processes and `dcs-migration worker` processes
started from the Procfile, the official SDK as the client. A task's files fan out over
the workers; workers, API processes and the broker die and come back; nothing is lost
and no unit runs twice at once."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    ConfigMigrationInstanceBody,
    CopyInstanceRequest,
    CreateOnlineMigrationTaskBody,
    CreateOnlineMigrationTaskRequest,
    ListMigrationTaskLogsRequest,
    ListMigrationTaskRequest,
    MigrationUpdateRequestEntity,
    RestoreInstanceBody,
    RestoreInstanceRequest,
    SetOnlineMigrationTaskBody,
    SetOnlineMigrationTaskRequest,
    ShowMigrationTaskStatsRequest,
    StopMigrationTaskRequest,
    StopMigrationTaskSyncRequest,
    UpdateMigrationTaskRequest,
)

from dcs_migration.store import Store, open_store
from dcs_migration.store.units import RunRecord
from tests.support.fleet import BUCKET, Fleet
from tests.support.load import Load, assert_copied
from tests.support.sdk import PROJECT, create, minted, register, wait_for
from tests.support.servers import RedisServer
from tests.support.waiting import finished_backup, finished_restore, until

pytestmark = [pytest.mark.service, pytest.mark.redis, pytest.mark.s3, pytest.mark.postgres]

KEYS_PER_FILE = 200_000
BIG_FILE_KEYS = 800_000


# -- the setup ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(postgres_url: str) -> Iterator[Fleet]:
    """PostgreSQL, the broker, S3 and two API processes, for the module; workers per test."""
    with Fleet(postgres_url) as running:
        running.start_api()
        running.start_api()
        running.apis[0].grant(BUCKET, PROJECT)
        yield running


@pytest.fixture
def workers(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet, its workers stopped after the test (whatever it started)."""
    try:
        yield fleet
    finally:
        fleet.stop_workers()


@pytest.fixture(scope="module")
def files(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Backups in the bucket, written by a real redis-server (DEBUG POPULATE, then SAVE):
    four of KEYS_PER_FILE keys (f1..f4) and two of BIG_FILE_KEYS (b1, b2), each its own
    keys. Returns each object's key count."""
    made: dict[str, int] = {}
    folder = tmp_path_factory.mktemp("fleet-files")
    with RedisServer("--enable-debug-command", "yes") as maker:
        client = redis.Redis(port=maker.port)
        plan = {f"f{n}.rdb": KEYS_PER_FILE for n in range(1, 5)}
        plan.update({"b1.rdb": BIG_FILE_KEYS, "b2.rdb": BIG_FILE_KEYS})
        for name, count in plan.items():
            client.flushall()
            client.execute_command("DEBUG", "POPULATE", count, name.removesuffix(".rdb") + ":")
            client.save()
            path = folder / name
            path.write_bytes((maker.dir / "dump.rdb").read_bytes())
            fleet.upload(name, path)
            made[name] = count
        client.close()
    return made


@pytest.fixture
def target() -> Iterator[RedisServer]:
    with RedisServer("--enable-debug-command", "yes") as server:
        yield server


@pytest.fixture(scope="module")
def client(fleet: Fleet) -> Any:
    return minted(fleet.apis[0])


@functools.cache
def _digest_of(plan: tuple[tuple[str, int], ...]) -> str:
    with RedisServer("--enable-debug-command", "yes") as server:
        c = redis.Redis(port=server.port, socket_timeout=300)
        for name, count in plan:
            c.execute_command("DEBUG", "POPULATE", count, name.removesuffix(".rdb") + ":")
        digest = c.execute_command("DEBUG", "DIGEST")
        c.close()
    return str(digest)


def reference_digest(plan: dict[str, int]) -> str:
    """DEBUG DIGEST of a server holding exactly the keys of the files in `plan`."""
    return _digest_of(tuple(sorted(plan.items())))


def digest(server: RedisServer) -> str:
    c = redis.Redis(port=server.port, socket_timeout=300)
    try:
        return str(c.execute_command("DEBUG", "DIGEST"))
    finally:
        c.close()


def store_of(fleet: Fleet) -> Store:
    return open_store(
        fleet.database_url, fleet.dir, secret_keys=(fleet.env["DCS_MIGRATION_SECRET_KEY"],)
    )


def runs(fleet: Fleet, task_id: str) -> list[RunRecord]:
    with store_of(fleet) as store:
        return [r for r in store.runs_of("migration_task", task_id) if r.unit_index >= 0]


def assert_never_twice_at_once(found: list[RunRecord]) -> None:
    """Each unit's runs one after another: a run starts after the one before it last
    showed it was alive (its end, or its last heartbeat when its worker died)."""
    by_unit: dict[int, list[RunRecord]] = {}
    for run in found:
        by_unit.setdefault(run.unit_index, []).append(run)
    for index, unit_runs in by_unit.items():
        for before, after in itertools.pairwise(unit_runs):
            last_alive = before.ended_at or before.beat_at
            assert after.started_at >= last_alive, (index, before, after)


def error_of(client: Any, task_id: str) -> str:
    listed = client.list_migration_task(ListMigrationTaskRequest(limit=1000))
    message: str = next(t for t in listed.migration_tasks if t.task_id == task_id).error_message
    return message


def assert_exact_copy(
    fleet: Fleet, client: Any, task_id: str, target: RedisServer, plan: dict[str, int]
) -> None:
    """The task ends SUCCESS, the target holds exactly the files' keys, and no unit ran
    twice at once."""
    done = ended(client, task_id)
    assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
    assert digest(target) == reference_digest(plan)
    assert_never_twice_at_once(runs(fleet, task_id))


def logs(client: Any, task_id: str) -> list[str]:
    answer = client.list_migration_task_logs(
        ListMigrationTaskLogsRequest(task_id=task_id, limit=1000)
    )
    return [entry.message for entry in answer.migration_logs]


def running_units(fleet: Fleet, task_id: str, count: int) -> list[RunRecord]:
    """Wait until `count` units run, each with keys written."""

    def check() -> list[RunRecord] | None:
        with store_of(fleet) as store:
            units = store.units_of("migration_task", task_id)
        live = [u for u in units if u.state.value == "running" and u.counters["keys_written"] > 0]
        return runs(fleet, task_id) if len(live) >= count else None

    found: list[RunRecord] = until(check, f"{count} unit(s) writing", 60)
    return found


# -- the tests ---------------------------------------------------------------------------


def test_a_four_file_task_spreads_over_both_workers(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    fleet.start_worker()
    fleet.start_worker()
    instance = register(fleet.apis[0], target)
    names = ["f1.rdb", "f2.rdb", "f3.rdb", "f4.rdb"]
    task_id = create(client, instance, names, bucket=BUCKET, name="four-files").id
    other = minted(fleet.apis[1])  # the other API process answers for the same task
    done = wait_for(other, task_id, ("SUCCESS", "FAILED", "TERMINATED"), seconds=120)
    assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
    assert digest(target) == reference_digest({n: files[n] for n in names})
    found = runs(fleet, task_id)
    assert sorted(r.unit_index for r in found) == [0, 1, 2, 3]
    assert {r.worker.split(":")[0] for r in found} == {"w1@fleet", "w2@fleet"}, found
    stats = other.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
    assert stats.full_migration_progress == "100"
    assert_never_twice_at_once(found)
    lines = logs(other, task_id)
    assert any("4 file(s)" in line for line in lines), lines
    for name in names:
        finished = f"{name}: import finished: {KEYS_PER_FILE} keys"
        assert any(finished in line for line in lines), lines


def test_a_free_worker_goes_to_the_project_that_waits_not_to_the_one_that_queued_first(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    """One worker, one unit at a time: project A queues three tasks, then project B one.
    B's import runs before A's second: workers are shared fairly between projects."""
    fleet = workers
    other = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
    fleet.apis[0].grant(BUCKET, other)
    instance = register(fleet.apis[0], target)
    a_tasks = [
        create(client, instance, [name], bucket=BUCKET, name=f"a-{n}").id
        for n, name in enumerate(["f1.rdb", "f2.rdb", "f3.rdb"])
    ]
    with RedisServer() as b_target:
        b_client = minted(fleet.apis[0], other)
        b_instance = register(fleet.apis[0], b_target, other)
        b_task = create(b_client, b_instance, ["f4.rdb"], bucket=BUCKET, name="b").id
        fleet.start_worker()
        for task_id in a_tasks:
            assert ended(client, task_id).status == "SUCCESS", fleet.logs()
        assert ended(b_client, b_task).status == "SUCCESS", fleet.logs()
        assert redis.Redis(port=b_target.port).dbsize() == files["f4.rdb"]
    a_starts = sorted(r.started_at for t in a_tasks for r in runs(fleet, t))
    (b_start,) = [r.started_at for r in runs(fleet, b_task)]
    assert b_start < a_starts[1], (b_start, a_starts)


def test_no_worker_running_leaves_the_task_waiting_and_a_stop_ends_it(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    instance = register(fleet.apis[0], target)
    task_id = create(client, instance, ["f1.rdb"], bucket=BUCKET, name="no-worker").id
    time.sleep(3)
    assert wait_for(client, task_id, ("MIGRATING",)).status == "MIGRATING"
    assert redis.Redis(port=target.port).dbsize() == 0  # the API imported nothing itself
    started = time.monotonic()
    client.stop_migration_task(StopMigrationTaskRequest(task_id=task_id))
    wait_for(client, task_id, ("TERMINATED",), seconds=2)
    assert time.monotonic() - started < 2
    fleet.start_worker()
    again = create(client, instance, ["f2.rdb"], bucket=BUCKET, name="a-worker-came").id
    assert wait_for(client, again, ("SUCCESS", "FAILED"), seconds=60).status == "SUCCESS"
    assert redis.Redis(port=target.port).dbsize() == KEYS_PER_FILE
    assert wait_for(client, task_id, ("TERMINATED",)).status == "TERMINATED"  # it stays stopped


BIG = ["b1.rdb", "b2.rdb"]


def big_task(fleet: Fleet, client: Any, target: RedisServer, name: str) -> str:
    instance = register(fleet.apis[0], target)
    task_id: str = create(client, instance, BIG, bucket=BUCKET, name=name).id
    return task_id


def ended(client: Any, task_id: str, seconds: float = 180) -> Any:
    return wait_for(client, task_id, ("SUCCESS", "FAILED", "TERMINATED"), seconds=seconds)


def test_a_worker_killed_mid_unit_leaves_it_to_another_which_resumes_it_exactly(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    doomed, survivor = fleet.start_worker(), fleet.start_worker()
    task_id = big_task(fleet, client, target, "worker-killed")
    running_units(fleet, task_id, 2)
    doomed.kill()
    done = ended(client, task_id)
    assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
    assert digest(target) == reference_digest({n: files[n] for n in BIG})
    found = runs(fleet, task_id)
    assert_never_twice_at_once(found)
    again = [
        r
        for r in found
        if r.outcome == "success"
        and r.unit_index in {x.unit_index for x in found if x.ended_at is None}
    ]
    assert len(again) == 1, found  # the killed unit, run to its end by the survivor
    assert any("import resumed on" in line for line in logs(client, task_id))
    assert "unit migration_task" in survivor.log()


def test_a_worker_retired_with_sigterm_hands_its_units_over_at_once(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    retired, staying = fleet.start_worker(), fleet.start_worker()
    task_id = big_task(fleet, client, target, "retired")
    running_units(fleet, task_id, 2)
    retired.retire()
    assert retired.process is not None
    retired.process.wait(10)  # it left without finishing its unit
    assert_exact_copy(fleet, client, task_id, target, {n: files[n] for n in BIG})
    found = runs(fleet, task_id)
    (left,) = [r for r in found if r.outcome == "left"]
    (after,) = [r for r in found if r.unit_index == left.unit_index and r is not left]
    assert after.worker.startswith(staying.name)
    assert any("handed over by w" in line for line in logs(client, task_id))


def test_every_worker_killed_then_the_first_one_started_finishes_the_task(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    first, second = fleet.start_worker(), fleet.start_worker()
    task_id = big_task(fleet, client, target, "power-cut")
    running_units(fleet, task_id, 2)
    first.kill()
    second.kill()
    time.sleep(1)
    assert wait_for(client, task_id, ("MIGRATING",)).status == "MIGRATING"
    started = time.monotonic()
    fleet.start_worker(concurrency=2)
    done = ended(client, task_id)
    assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
    # Within the lease and the import, not a broker's hour-long visibility timeout.
    assert time.monotonic() - started < 90
    assert digest(target) == reference_digest({n: files[n] for n in BIG})
    assert_never_twice_at_once(runs(fleet, task_id))


def test_a_stop_reaches_units_on_every_worker_and_a_resume_finishes_what_was_left(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    fleet.start_worker()
    fleet.start_worker()
    task_id = big_task(fleet, client, target, "stopped-across")
    running_units(fleet, task_id, 2)
    other = minted(fleet.apis[1])
    started = time.monotonic()
    body = BatchStopMigrationTasksBody(migration_tasks=[task_id])
    other.batch_stop_migration_tasks(BatchStopMigrationTasksRequest(body=body))
    stopped = wait_for(other, task_id, ("TERMINATED", "SUCCESS", "FAILED"), seconds=5)
    assert stopped.status == "TERMINATED"
    assert time.monotonic() - started < 2.0
    lines = logs(other, task_id)
    for name in BIG:  # how far each unit got
        assert any(f"{name}: import stopped: " in line for line in lines), lines
    written = other.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
    assert 0 < redis.Redis(port=target.port).dbsize() < sum(files[n] for n in BIG), written
    other.update_migration_task(
        UpdateMigrationTaskRequest(
            task_id=task_id, body=MigrationUpdateRequestEntity(resume_mode="auto")
        )
    )
    assert_exact_copy(fleet, other, task_id, target, {n: files[n] for n in BIG})


def test_an_api_process_killed_loses_nothing(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    fleet.start_worker()
    instance = register(fleet.apis[0], target)
    names = ["f1.rdb", "f2.rdb"]
    task_id = create(client, instance, names, bucket=BUCKET, name="api-killed").id
    fleet.apis[0].kill()
    try:
        done = ended(minted(fleet.apis[1]), task_id)
        assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
        assert digest(target) == reference_digest({n: files[n] for n in names})
    finally:
        fleet.apis[0].start()


def test_a_broker_restart_loses_no_task(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    """One worker: one task runs while the other's message waits in the broker when it
    restarts; a third is created while the broker is down (the API answers; a worker's
    sweep sends it once the broker is back)."""
    fleet = workers
    fleet.start_worker()
    first = big_task(fleet, client, target, "before-restart")
    instance = register(fleet.apis[0], target)
    queued = create(client, instance, ["f1.rdb"], bucket=BUCKET, name="queued").id
    running_units(fleet, first, 1)
    fleet.stop_broker()
    try:
        while_down = create(client, instance, ["f2.rdb"], bucket=BUCKET, name="broker-down").id
    finally:
        fleet.start_broker()
    for task_id in (first, queued, while_down):
        done = ended(client, task_id, seconds=240)
        assert done.status == "SUCCESS", (task_id, error_of(client, task_id), fleet.logs())
    plan = {n: files[n] for n in [*BIG, "f1.rdb", "f2.rdb"]}
    assert digest(target) == reference_digest(plan)


def test_the_first_failure_fails_the_task_stops_its_siblings_and_a_resume_runs_the_rest(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any, tmp_path: Path
) -> None:
    fleet = workers
    fleet.start_worker()
    fleet.start_worker()
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(b"REDIS0011" + b"\xfa\x09redis-ver" + b"\x00" * 3)  # cut off in its AUX
    fleet.upload("bad.rdb", bad)
    names = ["f1.rdb", "bad.rdb", "b1.rdb"]
    instance = register(fleet.apis[0], target)
    task_id = create(client, instance, names, bucket=BUCKET, name="one-fails").id
    failed = ended(client, task_id)
    assert failed.status == "FAILED"
    assert "bad.rdb" in error_of(client, task_id), error_of(client, task_id)
    with store_of(fleet) as store:
        before = {
            u.key.unit_index: u.state.value for u in store.units_of("migration_task", task_id)
        }
    assert before[1] == "failed" and before[2] in ("terminated", "success"), before
    ran_before = runs(fleet, task_id)
    source = {"Bucket": BUCKET, "Key": "f2.rdb"}  # bad.rdb mended: f2's keys
    fleet.s3().copy_object(Bucket=BUCKET, Key="bad.rdb", CopySource=source)
    client.update_migration_task(
        UpdateMigrationTaskRequest(
            task_id=task_id, body=MigrationUpdateRequestEntity(resume_mode="auto")
        )
    )
    done = ended(client, task_id)
    assert done.status == "SUCCESS", (error_of(client, task_id), fleet.logs())
    found = runs(fleet, task_id)
    for index, state in before.items():  # only what had not finished ran again, once
        new = len([r for r in found if r.unit_index == index]) - len(
            [r for r in ran_before if r.unit_index == index]
        )
        assert new == (0 if state == "success" else 1), (index, state, found)
    plan = {"f1.rdb": files["f1.rdb"], "f2.rdb": files["f2.rdb"], "b1.rdb": files["b1.rdb"]}
    assert digest(target) == reference_digest(plan)


def test_backups_and_restores_run_on_the_workers(
    workers: Fleet, files: dict[str, int], target: RedisServer, client: Any
) -> None:
    fleet = workers
    fleet.start_worker()
    instance = register(fleet.apis[0], target)
    task_id = create(client, instance, ["f3.rdb"], bucket=BUCKET, name="to-back-up").id
    assert ended(client, task_id).status == "SUCCESS"
    backup_id = client.copy_instance(
        CopyInstanceRequest(instance_id=instance, body=BackupInstanceBody(remark="fleet"))
    ).backup_id
    assert finished_backup(client, instance, backup_id).status == "succeed"
    listed = fleet.s3().list_objects_v2(Bucket="dcs-backups")
    assert any(backup_id in o["Key"] for o in listed.get("Contents", []))
    redis.Redis(port=target.port).flushall()
    restore_id = client.restore_instance(
        RestoreInstanceRequest(instance_id=instance, body=RestoreInstanceBody(backup_id=backup_id))
    ).restore_id
    assert finished_restore(client, instance, restore_id).status == "succeed"
    assert digest(target) == reference_digest({"f3.rdb": files["f3.rdb"]})


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("DCS_MIGRATION_DATABASE_URL", "SQLite"),
        ("DCS_MIGRATION_OBS_ENDPOINT", "DCS_MIGRATION_OBS_ENDPOINT"),
        ("DCS_MIGRATION_BROKER_URL", "DCS_MIGRATION_BROKER_URL"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_to_start_on_what_machines_cannot_share(
    fleet: Fleet, command: str, unset: str, named: str
) -> None:
    env = {k: v for k, v in fleet.env.items() if k != unset}
    done = subprocess.run(
        [sys.executable, "-m", "dcs_migration", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert named in done.stderr, done.stderr


def test_an_online_migration_runs_on_a_worker_and_outlives_it(
    workers: Fleet, client: Any, target: RedisServer
) -> None:
    """Its worker SIGKILLed mid-sync, the lease passes to the other worker, which goes on
    by partial resync from the target's marker: exact, INCR counters included."""
    fleet = workers
    fleet.start_worker()
    fleet.start_worker()
    with RedisServer(
        "--repl-diskless-sync-delay",
        "0",
        "--repl-backlog-size",
        "64mb",
        "--enable-debug-command",
        "yes",
    ) as source:
        load = Load(source.port).start()
        task_id = client.create_online_migration_task(
            CreateOnlineMigrationTaskRequest(
                body=CreateOnlineMigrationTaskBody(
                    name="fleet-sync", vpc_id="v", subnet_id="s", security_group_id="g"
                )
            )
        ).instance_id
        client.set_online_migration_task(
            SetOnlineMigrationTaskRequest(
                task_id=task_id,
                body=SetOnlineMigrationTaskBody(
                    migration_method="incremental_migration",
                    resume_mode="auto",
                    source_instance=ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{source.port}"),
                    target_instance=ConfigMigrationInstanceBody(id=register(fleet.apis[0], target)),
                ),
            )
        )
        wait_for(client, task_id, ("INCRMIGEATING",), 60)
        time.sleep(1.0)  # commands applied on the first worker
        with store_of(fleet) as store:
            first = store.runs_of("online_migration", task_id)[0].worker
        doomed = next(w for w in fleet.workers if first.startswith(w.name))
        doomed.kill()
        until(
            lambda: (
                any("continuing by partial resync" in line for line in logs(client, task_id))
                or None
            ),
            "the sync going on on the other worker",
            90,
        )
        load.stop()
        client.stop_migration_task_sync(StopMigrationTaskSyncRequest(task_id=task_id))
        wait_for(client, task_id, ("TERMINATED",), 10)
        assert_copied(source, target, load)
