"""The online-migration repository, on SQLite and on a throwaway PostgreSQL: created
RUNNING, configured once, its replication's progress, the sync-stop, its restart, and what
a service restart does with one it left running."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from dcs_migration.api.errors import DCS_JOB_FAILED
from dcs_migration.store import OnlineConfig, Store, TaskStatus

PROJECT = "0605767e8b00d5e42f4ac00a6a0c0f30"
OTHER = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
SOURCE_PASSWORD = "source-pa55word-Jq19"
TARGET_PASSWORD = "target-pa55word-Vx33"


def _created(store: Store, name: str = "online-a", project: str = PROJECT) -> str:
    task = store.create_online_task(
        project,
        task_name=name,
        description="from the old cluster",
        vpc_id="vpc-1",
        subnet_id="subnet-1",
        security_group_id="sg-1",
    )
    return task.task_id


def _config(**changes: object) -> OnlineConfig:
    values: dict[str, object] = {
        "migration_method": "incremental_migration",
        "resume_mode": "manual",
        "bandwidth_limit_mb": 100,
        "source_addrs": "10.0.0.5:6379,10.0.0.6:6379",
        "source_instance_id": None,
        "source_instance_name": "",
        "source_password": SOURCE_PASSWORD,
        "source_cluster": True,
        "target_addrs": "127.0.0.1:7000",
        "target_instance_id": None,
        "target_instance_name": "",
        "target_password": TARGET_PASSWORD,
        "target_cluster": False,
    }
    values.update(changes)
    return OnlineConfig(**values)  # type: ignore[arg-type]


def _configured(store: Store, name: str = "online-a", **changes: object) -> str:
    task_id = _created(store, name)
    assert store.configure_online_task(PROJECT, task_id, _config(**changes)) is not None
    return task_id


def test_a_new_online_task_is_running_and_not_configured(store: Store) -> None:
    task_id = _created(store)
    task = store.get_task(PROJECT, task_id)
    assert task is not None and task.status is TaskStatus.RUNNING
    assert task.migration_type == "online_migration" and task.is_online
    assert not task.is_running  # it can be deleted, not stopped
    online = task.online
    assert online is not None and not online.configured
    assert (online.vpc_id, online.subnet_id, online.security_group_id) == (
        "vpc-1",
        "subnet-1",
        "sg-1",
    )
    assert store.get_task(OTHER, task_id) is None
    assert store.count_running(PROJECT) == 1  # it counts against the project's limit
    assert store.request_stop(PROJECT, task_id) is not None
    assert store.get_task(PROJECT, task_id).status is TaskStatus.RUNNING  # type: ignore[union-attr]


def test_configuring_starts_it_once(store: Store) -> None:
    task_id = _created(store)
    config = _config()
    assert SOURCE_PASSWORD not in repr(config) and TARGET_PASSWORD not in repr(config)
    assert store.configure_online_task(OTHER, task_id, config) is None
    task = store.configure_online_task(PROJECT, task_id, config)
    assert task is not None and task.status is TaskStatus.FULLMIGRATING
    assert task.started_at is None and task.is_running
    assert task.migration_method == "incremental_migration" and task.resume_mode == "manual"
    assert task.target_instance_addrs == "127.0.0.1:7000" and task.target_instance_id == ""
    online = task.online
    assert online is not None and online.configured and online.has_source_password
    assert online.source_addr_list == ["10.0.0.5:6379", "10.0.0.6:6379"]
    assert online.source_cluster and not online.target_cluster
    assert online.bandwidth_limit_mb == 100
    assert store.configure_online_task(PROJECT, task_id, config) is None  # not RUNNING now
    assert store.source_password(task_id) == SOURCE_PASSWORD
    assert store.task_password(task_id) == TARGET_PASSWORD
    assert SOURCE_PASSWORD not in repr(store.get_task(PROJECT, task_id))
    assert store.mark_started(task_id) and not store.mark_started(task_id)


def test_passwords_are_encrypted_at_rest_and_registered_ones_are_lent(store: Store) -> None:
    instance = store.add_instance(PROJECT, "source", "10.0.0.9:6379", "registered-Pw-01", "single")
    task_id = _configured(
        store,
        source_addrs=instance.addrs,
        source_instance_id=instance.instance_id,
        source_instance_name=instance.name,
        source_password=None,
        source_cluster=False,
    )
    assert store.source_password(task_id) == "registered-Pw-01"
    other = _configured(store, "online-b")
    with store.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT source_password_encrypted FROM online_migrations WHERE task_id = :t"),
            {"t": other},
        ).scalar()
    assert stored is not None and SOURCE_PASSWORD not in stored


def test_progress_of_the_replication(store: Store) -> None:
    task_id = _configured(store)
    assert store.update_online(
        task_id,
        replication_id="8de9" * 10,
        applied_offset=900,
        source_offset=1000,
        lag_ms=12,
        resyncs_partial=1,
        full_progress=250.0,
    )
    assert store.update_progress(task_id, keys_written=10, source_dbsize=20, target_dbsize=19)
    task = store.get_task(PROJECT, task_id)
    assert task is not None and task.online is not None
    online = task.online
    assert (online.applied_offset, online.source_offset, online.offset_behind) == (900, 1000, 100)
    assert online.full_progress == 100.0  # within 0 to 100
    assert (online.resyncs_partial, online.resyncs_full, online.lag_ms) == (1, 0, 12)
    assert (task.keys_written, task.source_dbsize, task.target_dbsize) == (10, 20, 19)
    with pytest.raises(TypeError):
        store.update_online(task_id, status="SUCCESS")
    with pytest.raises(TypeError):
        store.update_online(task_id, applied_offset="900")
    assert store.update_online("no-such-task", lag_ms=1) is False
    listed = store.list_tasks(PROJECT)[1]
    assert listed[0].online == online


def test_a_sync_stop_is_asked_of_an_incremental_task_only(store: Store) -> None:
    task_id = _configured(store)
    assert not store.request_sync_stop(PROJECT, task_id)  # FULLMIGRATING
    store.mark_started(task_id)
    store.set_status(task_id, TaskStatus.INCRMIGEATING)
    assert not store.request_sync_stop(OTHER, task_id)
    assert not store.sync_stop_requested(task_id)
    assert store.request_sync_stop(PROJECT, task_id)
    assert store.sync_stop_requested(task_id)
    store.refuse_sync_stop(task_id, "the target did not catch up within 60 seconds")
    assert not store.sync_stop_requested(task_id)
    online = store.online_of(task_id)
    assert online is not None and online.sync_stop_error.startswith("the target did not")
    assert store.request_sync_stop(PROJECT, task_id)  # asked again: the refusal is forgotten
    online = store.online_of(task_id)
    assert online is not None and online.sync_stop_error == ""
    assert online.sync_stop_requested_at is not None


def test_stop_and_restart(store: Store) -> None:
    waiting = _configured(store, "waiting")
    stopped = store.request_stop(PROJECT, waiting)
    assert stopped is not None and stopped.status is TaskStatus.TERMINATED  # no worker had it
    running = _configured(store, "running")
    store.mark_started(running)
    store.set_status(running, TaskStatus.INCRMIGEATING)
    stopping = store.request_stop(PROJECT, running)
    assert stopping is not None and stopping.status is TaskStatus.TERMINATING
    assert store.is_stop_requested(running)
    assert store.restart_online(PROJECT, running) is None  # still stopping
    store.set_status(running, TaskStatus.TERMINATED, finished=True)
    store.request_sync_stop(PROJECT, running)

    restarted = store.restart_online(PROJECT, running)
    assert restarted is not None and restarted.status is TaskStatus.FULLMIGRATING
    assert not restarted.stop_requested and restarted.finished_at is None
    assert restarted.started_at is None and restarted.error_message == ""
    failed = _configured(store, "failed")
    store.set_status(failed, TaskStatus.MIGRATION_FAILED, "the source went away", finished=True)
    assert store.restart_online(OTHER, failed) is None
    again = store.restart_online(PROJECT, failed)
    assert again is not None and again.status is TaskStatus.FULLMIGRATING
    assert store.restart_online(PROJECT, _created(store, "unconfigured")) is None


def test_deleting_an_online_task_removes_its_online_side(store: Store) -> None:
    unconfigured = _created(store, "unconfigured")
    running = _configured(store, "running")
    result = store.delete_tasks(PROJECT, [unconfigured, running])
    assert result.deleted == (unconfigured,) and result.running == (running,)
    assert store.online_of(unconfigured) is None and store.online_of(running) is not None


def test_a_service_restart_resumes_auto_tasks_and_fails_manual_ones(store: Store) -> None:
    auto = _configured(store, "auto", resume_mode="auto")
    time.sleep(0.002)
    manual = _configured(store, "manual", resume_mode="manual")
    time.sleep(0.002)
    waiting = _configured(store, "waiting", resume_mode="manual")  # no worker took it yet
    stopping = _configured(store, "stopping", resume_mode="auto")
    unconfigured = _created(store, "unconfigured")
    for task_id in (auto, manual, stopping):
        store.mark_started(task_id)
    store.set_status(auto, TaskStatus.INCRMIGEATING)
    store.set_status(manual, TaskStatus.INCRMIGEATING)
    store.request_stop(PROJECT, stopping)

    requeued = store.requeue_interrupted()
    assert [t.task_id for t in requeued] == [auto, waiting]
    resumed = store.get_task(PROJECT, auto)
    assert resumed is not None and resumed.started_at is None
    assert resumed.status is TaskStatus.INCRMIGEATING  # its engine says how it goes on
    assert store.list_logs(auto, level="WARNING")[1][0].keyword == "resumed"
    ended = store.get_task(PROJECT, stopping)
    assert ended is not None and ended.status is TaskStatus.TERMINATED

    assert store.fail_interrupted(DCS_JOB_FAILED) == 1
    failed = store.get_task(PROJECT, manual)
    assert failed is not None and failed.status is TaskStatus.MIGRATION_FAILED
    assert "service stopped" in failed.error_message
    assert "batch-restart" in failed.error_message
    assert store.list_logs(manual, level="ERROR")[1][0].log_code == DCS_JOB_FAILED
    for task_id, status in (
        (auto, TaskStatus.INCRMIGEATING),
        (waiting, TaskStatus.FULLMIGRATING),
        (unconfigured, TaskStatus.RUNNING),
    ):
        task = store.get_task(PROJECT, task_id)
        assert task is not None and task.status is status
    assert store.mark_started(auto)  # a worker takes it up again


def test_incrmigrating_is_read_as_the_wire_spelling() -> None:
    assert TaskStatus("INCRMIGRATING") is TaskStatus.INCRMIGEATING
    assert TaskStatus.INCRMIGEATING.value == "INCRMIGEATING"
