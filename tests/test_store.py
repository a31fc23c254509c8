"""The store against both backends: SQLite in a data dir, and a throwaway PostgreSQL."""

from __future__ import annotations

import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text

from dcs_migration.api.errors import DCS_JOB_FAILED
from dcs_migration.config import SECRET_KEY_ENV, Settings
from dcs_migration.store import (
    SQLITE_FILE_NAME,
    AddressHeld,
    BackupStatus,
    BackupUnusable,
    InstanceBusy,
    NewTaskFile,
    NotFoundError,
    RestoreStatus,
    SecretKeyError,
    Store,
    TaskStatus,
    open_store,
    parse_size,
)
from dcs_migration.store.crypto import SECRET_KEY_FILE, load_secret_box
from dcs_migration.store.db import _sqlite_url, create_store_engine, upgrade_schema
from dcs_migration.store.models import Base

PROJECT = "0605767e8b00d5e42f4ac00a6a0c0f30"
OTHER = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
PASSWORD = "instance-pa55word-Zq81"
OVERRIDE = "task-override-pa55-Wx72"


def _instance(store: Store, project: str = PROJECT, password: str | None = PASSWORD) -> str:
    return store.add_instance(project, "redis-a", "127.0.0.1:6379", password, "single").instance_id


def _task(
    store: Store, instance_id: str, name: str = "task", target_password: str | None = None
) -> str:
    record = store.create_task(
        PROJECT,
        task_name=name,
        target_instance_id=instance_id,
        bucket_name="bucket",
        files=[NewTaskFile("dump.rdb", "1000")],
        target_password=target_password,
    )
    return record.task_id


# -- schema -------------------------------------------------------------------------------


def test_migrations_apply_idempotently_and_match_the_models(
    store_url: str | None, data_dir: Path
) -> None:
    first = open_store(store_url, data_dir)
    key = first.create_key(PROJECT)
    first.close()
    again = open_store(store_url, data_dir)  # nothing left to apply
    try:
        assert again.secret_for(key.ak) is not None
        with again.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            assert [v[0] for v in versions] == ["0009_online_migrations"]
            tables = set(inspect(connection).get_table_names())
            assert {
                "access_keys",
                "instances",
                "migration_tasks",
                "migration_task_files",
                "migration_task_logs",
                "backups",
                "backup_files",
                "restores",
                "accepted_signatures",
            } <= tables
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        again.close()
    if store_url is None:
        assert (data_dir / SQLITE_FILE_NAME).is_file()


# -- keys ---------------------------------------------------------------------------------


def test_keys_create_lookup_revoke(store: Store) -> None:
    created = store.create_key(PROJECT)
    ak, sk = created
    assert len(ak) == 20 and len(sk) == 40
    assert sk not in repr(created)
    found = store.secret_for(ak)
    assert found is not None
    assert tuple(found) == (PROJECT, sk)
    assert sk not in repr(found)
    assert store.secret_for("NOSUCHKEY") is None
    assert [k.ak for k in store.list_keys(PROJECT)] == [ak]
    assert store.list_keys(OTHER) == []
    assert sk not in repr(store.list_keys(PROJECT))

    assert store.revoke_key(ak) is True
    assert store.revoke_key(ak) is False
    assert store.secret_for(ak) is None
    assert store.list_keys(PROJECT)[0].revoked_at is not None
    other_ak, _ = store.create_key(PROJECT)
    assert store.secret_for(other_ak) is not None


# -- secrets at rest -----------------------------------------------------------------------


def test_secrets_are_encrypted_at_rest(store: Store, store_url: str | None, data_dir: Path) -> None:
    _, sk = store.create_key(PROJECT)
    instance_id = _instance(store)
    task_id = _task(store, instance_id, target_password=OVERRIDE)
    secrets = [sk, PASSWORD, OVERRIDE]

    with store.engine.connect() as connection:
        for table in ("access_keys", "instances", "migration_tasks"):
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                flat = " ".join(str(value) for value in row)
                for secret in secrets:
                    assert secret not in flat, f"{table} holds a secret in plain text"

    instance = store.get_instance(PROJECT, instance_id)
    task = store.get_task(PROJECT, task_id)
    assert instance is not None and instance.has_password
    assert task is not None and task.has_password_override
    for record in (instance, task):
        for secret in secrets:
            assert secret not in repr(record)
    assert store.task_password(task_id) == OVERRIDE
    assert store.instance_password(PROJECT, instance_id) == PASSWORD
    assert store.secret_for(store.list_keys(PROJECT)[0].ak) is not None

    if store_url is None:
        store.close()  # whatever the WAL held is in the files below either way
        for path in data_dir.iterdir():
            if path.name.startswith(SQLITE_FILE_NAME):
                raw = path.read_bytes()
                for secret in secrets:
                    assert secret.encode() not in raw, f"{path.name} holds a secret"

    # Another key cannot read them, and says so.
    wrong = open_store(store_url, data_dir, secret_keys=[Fernet.generate_key().decode()])
    try:
        with pytest.raises(SecretKeyError, match="secret key"):
            wrong.instance_password(PROJECT, instance_id)
    finally:
        wrong.close()


def test_secret_key_file_is_private_and_env_key_wins(tmp_path: Path) -> None:
    box = load_secret_box(tmp_path)
    key_file = tmp_path / SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt("hello")
    assert "hello" not in token
    assert load_secret_box(tmp_path).decrypt(token) == "hello"

    other_dir = tmp_path / "other"
    env_key = Fernet.generate_key().decode()

    def keys_of(value: str) -> tuple[str, ...]:
        return Settings.from_env({SECRET_KEY_ENV: value}, data_dir=other_dir).secret_keys

    env_box = load_secret_box(other_dir, keys_of(env_key))
    assert not (other_dir / SECRET_KEY_FILE).exists()
    rotated = load_secret_box(other_dir, keys_of(f"{Fernet.generate_key().decode()}, {env_key}"))
    assert rotated.decrypt(env_box.encrypt("x")) == "x"
    with pytest.raises(SecretKeyError):
        load_secret_box(other_dir, keys_of("not-a-key"))
    assert env_key not in repr(env_box)


# -- project scoping -----------------------------------------------------------------------


def test_another_project_sees_nothing(store: Store) -> None:
    instance_id = _instance(store)
    task_id = _task(store, instance_id)
    store.add_log(task_id, "INFO", "hello")

    assert store.get_instance(OTHER, instance_id) is None
    assert store.instance_password(OTHER, instance_id) is None
    assert store.list_instances(OTHER) == (0, [])
    assert store.get_task(OTHER, task_id) is None
    assert store.list_tasks(OTHER) == (0, [])
    assert store.list_logs(task_id, project_id=OTHER) == (0, [])
    assert store.list_logs(task_id, project_id=PROJECT)[0] == 1
    assert store.request_stop(OTHER, task_id) is None
    result = store.delete_tasks(OTHER, [task_id])
    assert result.deleted == () and result.missing == (task_id,)
    with pytest.raises(NotFoundError):
        store.create_task(OTHER, task_name="x", target_instance_id=instance_id)

    task = store.get_task(PROJECT, task_id)
    assert task is not None and task.status == TaskStatus.MIGRATING


# -- instances -----------------------------------------------------------------------------


def test_instances(store: Store) -> None:
    single = store.add_instance(PROJECT, "one", " 127.0.0.1:6379 ", None, "single")
    cluster = store.add_instance(
        PROJECT, "Cluster-B", ["127.0.0.1:7000", "127.0.0.1:7001"], PASSWORD, "cluster", "admin"
    )
    assert not single.has_password and store.instance_password(PROJECT, single.instance_id) is None
    assert (single.ip, single.port, single.engine, single.status) == (
        "127.0.0.1",
        6379,
        "Redis",
        "RUNNING",
    )
    assert cluster.addrs == "127.0.0.1:7000,127.0.0.1:7001"
    assert cluster.username == "admin" and cluster.instance_type == "cluster"
    assert store.get_instance(PROJECT, cluster.instance_id) == cluster
    count, page = store.list_instances(PROJECT, 0, 10)
    assert count == 2 and [i.name for i in page] == ["Cluster-B", "one"]
    assert store.list_instances(PROJECT, 0, 10, name="cluster")[0] == 1
    assert store.list_instances(PROJECT, 1, 10)[1][0].name == "one"
    for bad in ("", "nohost", "host:notaport", "host:70000"):
        with pytest.raises(ValueError):
            store.add_instance(PROJECT, "bad", bad)
    with pytest.raises(ValueError):
        store.add_instance(PROJECT, "bad", "h:1", None, "sentinel")


def test_an_address_belongs_to_one_project(store: Store) -> None:
    held = ["127.0.0.1:6379", "10.0.0.7:6379"]
    first = store.add_instance(PROJECT, "a", "localhost:6379", addresses=held)
    # The same project may register it again; another one may not, even in part.
    store.add_instance(PROJECT, "again", "127.0.0.1:6379", addresses=held[:1])
    third = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
    with pytest.raises(AddressHeld, match=r"10\.0\.0\.7:6379"):
        store.add_instance(OTHER, "b", "10.0.0.7:6379", addresses=["10.0.0.7:6379", "10.0.0.8:1"])
    assert store.list_instances(OTHER)[0] == 0
    assert store.addresses_held_elsewhere(OTHER) == frozenset(held)
    assert store.addresses_held_elsewhere(PROJECT) == frozenset()
    # The operator shares one (the command line): that project may reach it now.
    store.add_instance(OTHER, "b", "127.0.0.1:6379", addresses=held[:1], exclusive=False)
    assert store.addresses_held_elsewhere(OTHER) == frozenset(held[1:])
    assert store.addresses_held_elsewhere(third) == frozenset(held)
    assert store.get_instance(PROJECT, first.instance_id) == first


def test_two_projects_claiming_one_address_at_once_get_one_instance(store: Store) -> None:
    def claim(project: str, address: str, barrier: threading.Barrier, won: list[str]) -> None:
        barrier.wait()
        try:
            store.add_instance(project, "r", address, addresses=[address])
            won.append(project)
        except AddressHeld:
            pass

    for round_ in range(5):
        address, barrier, won = f"10.1.0.{round_}:6379", threading.Barrier(4), []
        threads = [
            threading.Thread(target=claim, args=(f"{n:032x}", address, barrier, won))
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, (address, won)


def test_instances_registered_before_hold_their_ip_addresses(tmp_path: Path) -> None:
    """The migration gives instances registered before it the addresses they were
    registered with, when those are IP addresses (host names are not resolved then)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = create_store_engine(_sqlite_url(data_dir))
    try:
        upgrade_schema(engine, "0004_aof_replay")
        with engine.begin() as connection:
            for n, (project, addrs) in enumerate(
                [
                    (PROJECT, "127.0.0.2:6379,[::ffff:10.0.0.1]:7000,redis.example:6379"),
                    (OTHER, "h:1"),
                ]
            ):
                connection.execute(
                    text(
                        "INSERT INTO instances (instance_id, project_id, name, instance_type,"
                        " addrs, engine, status, created_at) VALUES (:i, :p, 'n', 'single', :a,"
                        " 'Redis', 'RUNNING', '2026-01-01 00:00:00')"
                    ),
                    {"i": f"i{n}", "p": project, "a": addrs},
                )
    finally:
        engine.dispose()
    store = open_store(None, data_dir)
    try:
        assert store.addresses_held_elsewhere(OTHER) == {"127.0.0.1:6379", "10.0.0.1:7000"}
        assert store.addresses_held_elsewhere(PROJECT) == frozenset()
    finally:
        store.close()


# -- tasks ---------------------------------------------------------------------------------


def test_task_with_files(store: Store) -> None:
    instance_id = _instance(store)
    created = store.create_task(
        PROJECT,
        task_name="import-1",
        description="from the nightly backup",
        target_instance_id=instance_id,
        bucket_name="backups",
        target_db=3,
        files=[
            NewTaskFile("a/dump.rdb", "754.0MB", "2024-05-01 10:00:00"),
            NewTaskFile("a/appendonly.aof", "1024"),
            NewTaskFile("a/unknown.rdb"),
        ],
    )
    fetched = store.get_task(PROJECT, created.task_id)
    assert fetched == created
    assert fetched.status == TaskStatus.MIGRATING and fetched.started_at is None
    assert fetched.target_instance_name == "redis-a"
    assert fetched.target_instance_addrs == "127.0.0.1:6379"
    assert fetched.target_db == 3 and not fetched.has_password_override
    assert fetched.created_at.tzinfo is not None
    assert [(f.position, f.file_name, f.size_text, f.size_bytes) for f in fetched.files] == [
        (0, "a/dump.rdb", "754.0MB", 754 * 1024 * 1024),
        (1, "a/appendonly.aof", "1024", 1024),
        (2, "a/unknown.rdb", None, None),
    ]
    assert fetched.files[0].update_at == "2024-05-01 10:00:00"
    assert fetched.bytes_total == 0  # one size unknown: the worker measures it
    assert store.task_password(created.task_id) == PASSWORD

    with pytest.raises(NotFoundError):
        store.create_task(PROJECT, task_name="x", target_instance_id="no-such-instance")
    with pytest.raises(ValueError):
        store.create_task(
            PROJECT, task_name="x", target_instance_id=instance_id, file_source="nowhere"
        )


def test_status_and_progress(store: Store) -> None:
    task_id = _task(store, _instance(store, password=None))
    assert store.task_password(task_id) is None
    assert store.mark_started(task_id) is True
    assert store.mark_started(task_id) is False
    assert store.update_progress(
        task_id, bytes_total=1000, bytes_read=250, keys_written=7, ops_per_second=3
    )
    task = store.get_task(PROJECT, task_id)
    assert task is not None
    assert (task.bytes_read, task.keys_written, task.ops_per_second, task.percent) == (
        250,
        7,
        3.0,
        25,
    )
    assert task.started_at is not None and task.is_running
    assert store.update_progress("no-such-task", bytes_read=1) is False
    with pytest.raises(TypeError):
        store.update_progress(task_id, status="SUCCESS")
    with pytest.raises(TypeError):
        store.update_progress(task_id, bytes_read="many")
    with pytest.raises(ValueError):
        store.set_status(task_id, "DONE")

    assert store.set_status(task_id, "FAILED", "file dump.rdb, offset 9: bad CRC", finished=True)
    task = store.get_task(PROJECT, task_id)
    assert task is not None
    assert task.status == "FAILED" and task.error_message.startswith("file dump.rdb")
    assert task.finished_at is not None and not task.is_running


def test_progress_from_many_threads(store: Store) -> None:
    instance_id = _instance(store)
    task_ids = [_task(store, instance_id, f"t{n}") for n in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        task_id = task_ids[n % len(task_ids)]
        try:
            start.wait()
            for i in range(50):
                store.update_progress(
                    task_id, bytes_read=i, keys_written=i * 2, input_kbps=1.5, current_file="f"
                )
                if i % 10 == 0:
                    store.add_log(task_id, "INFO", f"thread {n} at {i}")
                    assert store.get_task(PROJECT, task_id) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for task_id in task_ids:
        task = store.get_task(PROJECT, task_id)
        assert task is not None
        assert (task.bytes_read, task.keys_written, task.current_file) == (49, 98, "f")
        assert store.list_logs(task_id)[0] == 10


def test_list_tasks_paging_filter_newest_first(store: Store) -> None:
    instance_id = _instance(store)
    names = ["alpha-1", "beta-1", "alpha-2", "gamma", "ALPHA-3", "100%_done"]
    ids = []
    for name in names:
        ids.append(_task(store, instance_id, name))
        time.sleep(0.002)
    count, page = store.list_tasks(PROJECT, 0, 10)
    assert count == 6
    assert [t.task_name for t in page] == list(reversed(names))
    assert page[0].files[0].file_name == "dump.rdb"
    count, page = store.list_tasks(PROJECT, 2, 2)
    assert count == 6 and [t.task_name for t in page] == ["gamma", "alpha-2"]
    count, page = store.list_tasks(PROJECT, 0, 10, name="alpha")
    assert count == 3 and [t.task_name for t in page] == ["ALPHA-3", "alpha-2", "alpha-1"]
    assert store.list_tasks(PROJECT, 0, 10, name="%_")[0] == 1  # wildcards match literally
    assert store.list_tasks(PROJECT, 10, 10) == (6, [])
    assert store.list_tasks(PROJECT, 0, 0) == (6, [])


def test_list_tasks_by_status_and_type(store: Store) -> None:
    instance_id = _instance(store)
    done, failed, running = (_task(store, instance_id, n) for n in ("done", "failed", "run"))
    store.finish_task(done, TaskStatus.SUCCESS, None, [])
    store.finish_task(failed, TaskStatus.FAILED, "bad CRC", [])
    count, page = store.list_tasks(PROJECT, 0, 10, statuses=[TaskStatus.FAILED])
    assert count == 1 and [t.task_id for t in page] == [failed]
    both = [TaskStatus.SUCCESS, TaskStatus.MIGRATING]
    count, page = store.list_tasks(PROJECT, 0, 10, statuses=both)
    assert count == 2 and {t.task_id for t in page} == {done, running}
    assert store.list_tasks(PROJECT, 0, 10, migration_type="backupfile_import")[0] == 3
    assert store.list_tasks(PROJECT, 0, 10, migration_type="online_migration") == (0, [])
    assert store.list_tasks(PROJECT, 0, 10, "fail", statuses=[TaskStatus.SUCCESS]) == (0, [])


def test_logs_in_order_with_level_filter(store: Store) -> None:
    task_id = _task(store, _instance(store))
    store.add_log(task_id, "INFO", "started")
    store.add_log(task_id, "warning", "3 keys expired", keyword="expired")
    store.add_log(task_id, "ERROR", "bad CRC", code="DCS.4842")
    store.add_log(task_id, "INFO", "finished")
    with pytest.raises(ValueError):
        store.add_log(task_id, "DEBUG", "nope")
    count, logs = store.list_logs(task_id, 0, 10)
    assert count == 4 and [x.message for x in logs] == [
        "started",
        "3 keys expired",
        "bad CRC",
        "finished",
    ]
    assert logs[1].log_level == "WARNING" and logs[1].keyword == "expired"
    assert logs[2].log_code == "DCS.4842"
    assert logs[0].created_at <= logs[3].created_at <= datetime.now(UTC)
    count, infos = store.list_logs(task_id, 0, 10, level="INFO")
    assert count == 2 and [x.message for x in infos] == ["started", "finished"]
    count, errors = store.list_logs(task_id, 0, 10, level="error")
    assert count == 1 and errors[0].message == "bad CRC"
    count, page = store.list_logs(task_id, 1, 2)
    assert count == 4 and [x.message for x in page] == ["3 keys expired", "bad CRC"]


def test_stop_requests(store: Store) -> None:
    instance_id = _instance(store)
    waiting = _task(store, instance_id, "waiting")
    running = _task(store, instance_id, "running")
    finished = _task(store, instance_id, "finished")
    store.mark_started(running)
    store.mark_started(finished)
    store.set_status(finished, "SUCCESS", finished=True)

    stopped = store.request_stop(PROJECT, waiting)
    assert stopped is not None and stopped.status == TaskStatus.TERMINATED
    assert stopped.finished_at is not None and stopped.stop_requested
    assert store.mark_started(waiting) is False  # a worker that picks it up later skips it

    stopping = store.request_stop(PROJECT, running)
    assert stopping is not None and stopping.status == TaskStatus.TERMINATING
    assert store.is_stop_requested(running)
    again = store.request_stop(PROJECT, running)
    assert again is not None and again.status == TaskStatus.TERMINATING
    store.set_status(running, "TERMINATED", finished=True)
    done = store.get_task(PROJECT, running)
    assert done is not None and done.status == TaskStatus.TERMINATED

    untouched = store.request_stop(PROJECT, finished)
    assert untouched is not None and untouched.status == TaskStatus.SUCCESS
    assert not store.is_stop_requested(finished)
    assert store.request_stop(PROJECT, "no-such-task") is None


def test_delete_tasks(store: Store) -> None:
    instance_id = _instance(store)
    running = _task(store, instance_id, "running")
    stopping = _task(store, instance_id, "stopping")
    done = _task(store, instance_id, "done")
    store.mark_started(stopping)
    store.request_stop(PROJECT, stopping)
    store.set_status(done, "SUCCESS", finished=True)
    store.add_log(done, "INFO", "finished")

    result = store.delete_tasks(PROJECT, [done, running, stopping, "no-such-task", done])
    assert result.deleted == (done,)
    assert result.running == (running, stopping)
    assert result.missing == ("no-such-task",)
    assert store.get_task(PROJECT, done) is None
    assert store.list_logs(done) == (0, [])
    with store.engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM migration_task_files WHERE task_id = :t"), {"t": done}
        ).scalar()
    assert left == 0
    assert store.list_tasks(PROJECT)[0] == 2


def test_fail_interrupted(store: Store) -> None:
    instance_id = _instance(store)
    running = _task(store, instance_id, "running")
    stopping = _task(store, instance_id, "stopping")
    waiting = _task(store, instance_id, "waiting")
    done = _task(store, instance_id, "done")
    for task_id in (running, stopping, done):
        store.mark_started(task_id)
    store.update_progress(
        running, bytes_total=5000, bytes_read=1234, keys_written=56, current_file="dump.rdb"
    )
    store.request_stop(PROJECT, stopping)
    store.set_status(done, "SUCCESS", finished=True)

    auto = _task(store, instance_id, "resumes")
    store.mark_started(auto)
    store.set_resume_mode(PROJECT, auto, "auto")
    requeued = store.requeue_interrupted()
    assert [t.task_id for t in requeued] == [waiting, auto]  # oldest first
    assert all(t.status == TaskStatus.MIGRATING and t.started_at is None for t in requeued)
    assert store.fail_interrupted(DCS_JOB_FAILED) == 2
    task = store.get_task(PROJECT, running)
    assert task is not None and task.status == TaskStatus.FAILED
    assert task.error_message.startswith(
        "interrupted: the service stopped after reading 1234 of 5000 bytes, 56 keys written"
    )
    assert "dump.rdb" in task.error_message
    assert task.finished_at is not None and task.bytes_read == 1234
    count, logs = store.list_logs(running, level="ERROR")
    assert count == 1 and logs[0].message == task.error_message
    assert logs[0].keyword == "interrupted" and logs[0].log_code == DCS_JOB_FAILED
    other = store.get_task(PROJECT, stopping)
    assert other is not None and other.status == TaskStatus.FAILED
    assert other.error_message.startswith("interrupted: ")
    assert store.list_logs(auto, level="WARNING")[1][0].keyword == "resumed"
    finished = store.get_task(PROJECT, done)
    assert finished is not None and finished.status == TaskStatus.SUCCESS
    assert store.fail_interrupted(DCS_JOB_FAILED) == 0


def test_next_waiting_hands_each_task_to_one_worker(store: Store) -> None:
    instance_id = _instance(store)
    ids = []
    for n in range(6):
        ids.append(_task(store, instance_id, f"t{n}"))
        time.sleep(0.002)
    store.request_stop(PROJECT, ids[5])  # stopped while waiting: never handed out
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (task := store.next_waiting()) is not None:
            assert task.started_at is not None
            with lock:
                taken.append(task.task_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == sorted(ids[:5])
    assert store.next_waiting() is None


def test_parse_size() -> None:
    assert parse_size("1234") == 1234
    assert parse_size("754.0MB") == 754 * 1024 * 1024
    assert parse_size("2 GiB") == 2 * 1024**3
    assert parse_size("10k") == 10240
    assert parse_size("7B") == 7
    for bad in (None, "", "lots", "5 apples", "-1"):
        assert parse_size(bad) is None


# -- backups and restores -------------------------------------------------------------------


def test_one_backup_or_restore_at_a_time_per_instance(store: Store) -> None:
    instance_id = _instance(store)
    other_instance = _instance(store)
    with pytest.raises(LookupError):
        store.begin_backup(OTHER, instance_id, "rdb")
    backup = store.begin_backup(PROJECT, instance_id, "rdb", "first")
    assert backup.status is BackupStatus.WAITING and backup.backup_type == "manual"
    with pytest.raises(InstanceBusy, match="backing up"):
        store.begin_backup(PROJECT, instance_id, "aof")
    with pytest.raises(InstanceBusy, match="backing up"):
        store.begin_restore(PROJECT, instance_id, backup.backup_id)
    elsewhere = store.begin_backup(PROJECT, other_instance, "rdb")  # another one is free
    store.finish_backup(elsewhere.backup_id, BackupStatus.FAILED, "DCS.4842", "test")
    assert store.backup_started(backup.backup_id)
    assert not store.backup_started(backup.backup_id)  # only once
    store.add_backup_file(backup.backup_id, "a.rdb", "p/i/b/a.rdb", 100, "127.0.0.1:1")
    store.add_backup_file(backup.backup_id, "b.rdb", "p/i/b/b.rdb", 23, "127.0.0.1:2")
    store.finish_backup(backup.backup_id, BackupStatus.SUCCEED)
    done = store.get_backup(PROJECT, backup.backup_id)
    assert done is not None and (done.size, done.progress) == (123, 100.0)
    assert [f.file_name for f in done.files] == ["a.rdb", "b.rdb"]
    assert store.get_backup(OTHER, backup.backup_id) is None

    restore = store.begin_restore(PROJECT, instance_id, backup.backup_id, "back")
    with pytest.raises(InstanceBusy, match="restoring"):
        store.begin_backup(PROJECT, instance_id, "rdb")
    with pytest.raises(BackupUnusable, match="not a backup of instance"):
        store.begin_restore(PROJECT, other_instance, backup.backup_id)
    assert store.restore_started(restore.restore_id)
    store.finish_restore(restore.restore_id, RestoreStatus.SUCCEED)
    count, restores = store.list_restores(PROJECT, instance_id)
    assert count == 1 and restores[0].progress == 100.0

    removed = store.delete_backup(PROJECT, instance_id, backup.backup_id)
    assert [f.object_key for f in removed.files] == ["p/i/b/a.rdb", "p/i/b/b.rdb"]
    gone = store.get_backup(PROJECT, backup.backup_id)
    assert gone is not None and gone.status is BackupStatus.DELETED and gone.files == ()
    with pytest.raises(BackupUnusable, match="deleted"):
        store.begin_restore(PROJECT, instance_id, backup.backup_id)


def test_backups_listed_newest_first_within_a_window(store: Store) -> None:
    instance_id = _instance(store)
    made = []
    for _ in range(3):
        b = store.begin_backup(PROJECT, instance_id, "rdb")
        store.finish_backup(b.backup_id, BackupStatus.FAILED, "DCS.4842", "no")
        made.append(b)
    count, page = store.list_backups(PROJECT, instance_id, offset=1, limit=1)
    assert count == 3 and [b.backup_id for b in page] == [made[1].backup_id]
    after = datetime(2999, 1, 1, tzinfo=UTC)
    assert store.list_backups(PROJECT, instance_id, begin=after) == (0, [])
    assert store.list_backups(PROJECT, instance_id, end=after)[0] == 3
    assert store.list_backups(OTHER, instance_id) == (0, [])


def test_backups_left_running_by_a_stopped_service_end_failed(store: Store) -> None:
    instance_id = _instance(store)
    second = _instance(store)
    running = store.begin_backup(PROJECT, instance_id, "rdb")
    store.backup_started(running.backup_id)
    store.add_backup_file(running.backup_id, "a.rdb", "p/i/b/a.rdb", 5, "127.0.0.1:1")
    finished = store.begin_backup(PROJECT, second, "rdb")
    store.finish_backup(finished.backup_id, BackupStatus.SUCCEED)
    restore = store.begin_restore(PROJECT, second, finished.backup_id)
    interrupted = store.fail_interrupted_backups(DCS_JOB_FAILED)
    assert [b.backup_id for b in interrupted] == [running.backup_id]
    after = store.get_backup(PROJECT, running.backup_id)
    assert after is not None and after.status is BackupStatus.FAILED
    assert "interrupted" in after.error_message and after.files == ()
    again = store.get_restore(PROJECT, restore.restore_id)
    assert again is not None and again.status is RestoreStatus.FAILED
    ok = store.get_backup(PROJECT, finished.backup_id)
    assert ok is not None and ok.status is BackupStatus.SUCCEED


def test_bucket_grants_are_per_project_and_revocable(store: Store) -> None:
    assert store.grant_bucket(PROJECT, "b1") is True
    assert store.grant_bucket(PROJECT, "b1") is False  # already granted
    assert store.grant_bucket(OTHER, "b2") is True
    assert store.bucket_granted(PROJECT, "b1") and not store.bucket_granted(OTHER, "b1")
    listed = {(g.project_id, g.bucket_name) for g in store.list_bucket_grants()}
    assert listed == {(PROJECT, "b1"), (OTHER, "b2")}
    assert [g.bucket_name for g in store.list_bucket_grants(PROJECT)] == ["b1"]
    assert store.revoke_bucket(PROJECT, "b1") is True
    assert store.revoke_bucket(PROJECT, "b1") is False
    assert not store.bucket_granted(PROJECT, "b1")
    assert store.list_bucket_grants(PROJECT) == []


# -- signatures of accepted calls ---------------------------------------------------------


def test_a_signature_is_accepted_once_by_every_store_on_the_database(
    store_url: str | None, data_dir: Path
) -> None:
    """Two stores on one database (two API processes): a signature one accepted, the
    other refuses; at once from many threads, exactly one accepts it."""
    later = datetime.now(UTC) + timedelta(minutes=30)
    with (
        open_store(store_url, data_dir) as one,
        open_store(store_url, data_dir) as two,
    ):
        assert one.remember_signature("a" * 64, later)
        assert not two.remember_signature("a" * 64, later)
        assert not one.remember_signature("a" * 64, later)
        assert two.remember_signature("b" * 64, later)

        accepted: list[bool] = []

        def remember(store: Store) -> None:
            accepted.append(store.remember_signature("c" * 64, later))

        threads = [threading.Thread(target=remember, args=(s,)) for s in (one, two) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(accepted) == [False] * 7 + [True]


def test_expired_signatures_are_pruned(store: Store) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(5):
        assert store.remember_signature(f"{n:064x}", past)
    store._next_prune = datetime.now(UTC)  # the next write prunes
    assert store.remember_signature("f" * 64, past + timedelta(hours=1))
    with store.engine.connect() as connection:
        kept = connection.execute(text("SELECT signature FROM accepted_signatures")).all()
    assert [row[0] for row in kept] == ["f" * 64]
