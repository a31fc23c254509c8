"""The online-migration API over real HTTP, driven by the official SDK as a user would:
create (and its job), configure, the refusals of each, sync-stop, batch-restart, the IP
switch a self-hosted service cannot do, and list, show, stats and delete of an online task.

What the engine does once a task is configured is tests/test_online.py's: here a
configured task's addresses are ports where nothing listens, and nothing is asserted of
it beyond the answer and its status."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BatchRestartOnlineMigrationTasksBody,
    BatchRestartOnlineMigrationTasksRequest,
    ConfigMigrationInstanceBody,
    CreateOnlineMigrationTaskBody,
    CreateOnlineMigrationTaskRequest,
    ExchangeInstanceIpRequest,
    IpExchangeRequest,
    ListMigrationTaskLogsRequest,
    ListMigrationTaskRequest,
    RollbackExchangeInstanceIpRequest,
    SetOnlineMigrationTaskBody,
    SetOnlineMigrationTaskRequest,
    ShowJobInfoRequest,
    ShowMigrationTaskRequest,
    ShowMigrationTaskStatsRequest,
    StopMigrationTaskRequest,
    StopMigrationTaskSyncRequest,
)
from huaweicloudsdkdcs.v2.model.delete_migrate_task_request import DeleteMigrateTaskRequest
from huaweicloudsdkdcs.v2.model.delete_migration_task_request import DeleteMigrationTaskRequest

from dcs_migration.config import Settings
from dcs_migration.store import Store, TaskStatus, open_settings_store
from tests.support.flavours import RedisServerFactory
from tests.support.sdk import PROJECT, create_task, minted, register
from tests.support.servers import free_port
from tests.support.service import Service, signed

pytestmark = [pytest.mark.service]

OTHER = "9f0e8d7c6b5a49382716f5e4d3c2b1a0"
NAMES = (f"online-{n}" for n in itertools.count(1))
STARTED = ("FULLMIGRATING", "INCRMIGEATING", "SUCCESS", "MIGRATION_FAILED")


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with Service() as running:
        yield running


@pytest.fixture(scope="module")
def client(service: Service) -> Any:
    return minted(service)


def _create(client: Any, name: str | None = None) -> str:
    body = CreateOnlineMigrationTaskBody(
        name=name or next(NAMES),
        description="from the old cache",
        vpc_id="vpc-0a1b",
        subnet_id="subnet-0a1b",
        security_group_id="sg-0a1b",
    )
    task_id: str = client.create_online_migration_task(
        CreateOnlineMigrationTaskRequest(body=body)
    ).instance_id
    return task_id


def _nowhere() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def _body(
    source: ConfigMigrationInstanceBody | None = None,
    target: ConfigMigrationInstanceBody | None = None,
    **changes: Any,
) -> SetOnlineMigrationTaskBody:
    values: dict[str, Any] = {
        "migration_method": "incremental_migration",
        "resume_mode": "manual",
        "bandwidth_limit_mb": "100",
        "source_instance": source or ConfigMigrationInstanceBody(addrs=_nowhere()),
        "target_instance": target or ConfigMigrationInstanceBody(addrs=_nowhere()),
    }
    values.update(changes)
    return SetOnlineMigrationTaskBody(**values)


def _configure(client: Any, task_id: str, body: SetOnlineMigrationTaskBody) -> Any:
    return client.set_online_migration_task(
        SetOnlineMigrationTaskRequest(task_id=task_id, body=body)
    )


def _refused(call: Any, status: int, code: str) -> str:
    with pytest.raises(ClientRequestException) as exc:
        call()
    assert (exc.value.status_code, exc.value.error_code) == (status, code), exc.value.error_msg
    message: str = exc.value.error_msg
    return message


def _in_store(service: Service) -> Store:
    """The store the service's settings name (its data dir's SQLite)."""
    return open_settings_store(Settings.from_env(service.env))


def register_nowhere(service: Service) -> str:
    """An instance of PROJECT at an address nobody answers at (for an import task that
    is never configured here): registering one needs a Redis that answers, so it is
    written with the store the service's settings name, as the CLI writes it."""
    store = _in_store(service)
    try:
        return store.add_instance(PROJECT, "nowhere", _nowhere(), None, "single").instance_id
    finally:
        store.close()


def _show(client: Any, task_id: str) -> Any:
    return client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id))


# -- create --------------------------------------------------------------------------------


def test_a_created_task_is_running_and_its_job_succeeded(service: Service, client: Any) -> None:
    key = service.cli("keys", "create", "--project-id", PROJECT)
    code, answer, _ = signed(
        service,
        key,
        "POST",
        f"/v2/{PROJECT}/migration/instance",
        {"name": "raw-online", "vpc_id": "v", "subnet_id": "s", "security_group_id": "g"},
    )
    assert code == 200 and answer["job_id"] == answer["instance_id"]
    task_id = _create(client)
    task = _show(client, task_id)
    assert (task.status, task.migration_type) == ("RUNNING", "online_migration")
    assert task.tenant_vpc_id == "vpc-0a1b" and task.description == "from the old cache"
    job = client.show_job_info(ShowJobInfoRequest(job_id=task_id))
    assert (job.job_id, job.job_type, job.status, job.fail_reason) == (
        task_id,
        "createMigrationTask",
        "SUCCESS",
        "",
    )
    assert job.begin_time and job.end_time
    other = minted(service, OTHER)
    _refused(lambda: other.show_job_info(ShowJobInfoRequest(job_id=task_id)), 404, "DCS.4133")
    _refused(lambda: client.show_job_info(ShowJobInfoRequest(job_id="nope")), 404, "DCS.4133")


@pytest.mark.parametrize("name", ["abc", "1online", "online task", "a" * 65, "online.1"])
def test_a_bad_name_is_refused_naming_it(client: Any, name: str) -> None:
    message = _refused(lambda: _create(client, name), 400, "DCS.4800")
    assert message.startswith("Invalid parameter: name ")


# -- configure -----------------------------------------------------------------------------


def test_configuring_starts_the_task(client: Any) -> None:
    task_id = _create(client)
    source, target = _nowhere(), _nowhere()
    body = _body(
        ConfigMigrationInstanceBody(addrs=source, password="source-Pw-7731"),
        ConfigMigrationInstanceBody(addrs=target, password="target-Pw-7732"),
    )
    answer = _configure(client, task_id, body)
    assert (answer.id, answer.status) == (task_id, "FULLMIGRATING")
    task = _show(client, task_id)
    assert task.status in STARTED
    assert task.migration_method == "incremental_migration" and task.resume_mode == "manual"
    assert task.source_instance.addrs == source and task.target_instance.addrs == target
    assert task.bandwidth_limit_mb == "100"
    logs = client.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=task_id))
    text = " ".join(entry.message for entry in logs.migration_logs)
    assert "configured" in text and source in text
    assert "Pw-773" not in text and "Pw-773" not in str(task)
    message = _refused(lambda: _configure(client, task_id, _body()), 400, "DCS.4957")
    assert "only a RUNNING task" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"migration_method": "copy"}, "migration_method"),
        ({"resume_mode": "sometimes"}, "resume_mode"),
        ({"bandwidth_limit_mb": "0"}, "bandwidth_limit_mb"),
        ({"bandwidth_limit_mb": "10241"}, "bandwidth_limit_mb"),
        ({"bandwidth_limit_mb": "abc"}, "bandwidth_limit_mb"),
        (
            {"source_instance": ConfigMigrationInstanceBody(id="x", addrs="127.0.0.1:1")},
            "source_instance.addrs",
        ),
        ({"target_instance": ConfigMigrationInstanceBody()}, "target_instance.addrs"),
        (
            {"source_instance": ConfigMigrationInstanceBody(addrs="nowhere")},
            "source_instance.addrs",
        ),
        (
            {"source_instance": ConfigMigrationInstanceBody(addrs="169.254.169.254:6379")},
            "source_instance.addrs: 169.254.169.254:6379 is outside DCS_MIGRATION_ALLOWED_NETWORKS",
        ),
        (
            {"target_instance": ConfigMigrationInstanceBody(addrs="10.0.0.1:6379,8.8.8.8:6379")},
            "target_instance.addrs: 8.8.8.8:6379 is outside DCS_MIGRATION_ALLOWED_NETWORKS",
        ),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_field(
    client: Any, changes: dict[str, Any], field: str
) -> None:
    task_id = _create(client)
    message = _refused(lambda: _configure(client, task_id, _body(**changes)), 400, "DCS.4800")
    assert field in message
    assert _show(client, task_id).status == "RUNNING"


def test_a_bandwidth_limit_may_be_a_number(service: Service, client: Any) -> None:
    key = service.cli("keys", "create", "--project-id", PROJECT)
    task_id = _create(client)
    body = {
        "migration_method": "full_amount_migration",
        "resume_mode": "auto",
        "bandwidth_limit_mb": 10240,
        "source_instance": {"addrs": _nowhere()},
        "target_instance": {"addrs": _nowhere()},
    }
    code, answer, _ = signed(service, key, "POST", f"/v2/{PROJECT}/migration/{task_id}/task", body)
    assert code == 200 and answer["status"] == "FULLMIGRATING", answer
    assert _show(client, task_id).bandwidth_limit_mb == "10240"


def test_the_source_and_the_target_are_two_redis(client: Any) -> None:
    task_id = _create(client)
    port = free_port()
    same = _body(
        ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{port}"),
        ConfigMigrationInstanceBody(addrs=f"127.0.0.2:{port}"),  # loopback is one host
    )
    message = _refused(lambda: _configure(client, task_id, same), 400, "DCS.4800")
    assert "target_instance" in message and "source" in message


def test_an_unknown_or_another_projects_instance_or_task_is_not_found(
    service: Service, client: Any
) -> None:
    task_id = _create(client)
    unknown = _body(target=ConfigMigrationInstanceBody(id="f" * 32))
    message = _refused(lambda: _configure(client, task_id, unknown), 404, "DCS.4001")
    assert "target_instance.id" in message
    other = minted(service, OTHER)
    _refused(lambda: _configure(other, task_id, _body()), 404, "DCS.4133")
    assert _show(client, task_id).status == "RUNNING"


@pytest.mark.redis
def test_a_registered_instance_lends_its_address_and_another_projects_is_refused(
    service: Service, client: Any, redis_server: RedisServerFactory
) -> None:
    mine, theirs = redis_server(), redis_server()
    instance_id = register(service, mine)
    register(service, theirs, OTHER)
    task_id = _create(client)
    held = _body(ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{theirs.port}"))
    message = _refused(lambda: _configure(client, task_id, held), 400, "DCS.4800")
    assert message.startswith("Invalid parameter: source_instance.addrs: ")
    answer = _configure(client, task_id, _body(target=ConfigMigrationInstanceBody(id=instance_id)))
    assert answer.status == "FULLMIGRATING"
    task = _show(client, task_id)
    assert task.target_instance.id == instance_id
    assert task.target_instance.addrs == f"127.0.0.1:{mine.port}"


def test_an_import_task_is_not_configured(service: Service, client: Any) -> None:
    instance_id = register_nowhere(service)
    service.bucket("bucket", PROJECT)
    task_id = create_task(client, instance_id, "missing.rdb")
    message = _refused(lambda: _configure(client, task_id, _body()), 400, "DCS.4957")
    assert "backupfile_import" in message


# -- sync-stop, restart, the IP switch ----------------------------------------------------


def test_a_sync_stop_of_a_task_not_in_its_incremental_sync_is_refused(client: Any) -> None:
    task_id = _create(client)
    message = _refused(
        lambda: client.stop_migration_task_sync(StopMigrationTaskSyncRequest(task_id=task_id)),
        400,
        "DCS.4957",
    )
    assert "is RUNNING" in message and "INCRMIGEATING" in message


@pytest.mark.parametrize("refused", [False, True])
def test_a_sync_stop_answers_once_the_engine_ended_or_refused_it(
    service: Service, client: Any, refused: bool
) -> None:
    """The engine's part (catching up, then ending the task) is played here by writing
    what it writes: the call answers from the task's row."""
    task_id = _create(client)
    store = _in_store(service)
    try:
        store.set_status(task_id, TaskStatus.INCRMIGEATING)  # never configured: no engine
        engine_done = threading.Event()

        def engine() -> None:
            deadline = time.monotonic() + 10
            while not store.sync_stop_requested(task_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            if refused:
                store.refuse_sync_stop(task_id, "the target is 5 MB behind and not catching up")
            else:
                store.set_status(task_id, TaskStatus.TERMINATED, finished=True)
            engine_done.set()

        thread = threading.Thread(target=engine)
        thread.start()
        request = StopMigrationTaskSyncRequest(task_id=task_id)
        try:
            if refused:
                message = _refused(
                    lambda: client.stop_migration_task_sync(request), 400, "DCS.4957"
                )
                assert message == "the target is 5 MB behind and not catching up"
                assert _show(client, task_id).status == "INCRMIGEATING"
            else:
                client.stop_migration_task_sync(request)
                assert _show(client, task_id).status == "TERMINATED"
        finally:
            thread.join()
        assert engine_done.is_set()
    finally:
        store.close()


def test_batch_restart_answers_for_each_task(service: Service, client: Any) -> None:
    running = _create(client)
    instance_id = register_nowhere(service)
    service.bucket("bucket", PROJECT)
    an_import = create_task(client, instance_id, "missing.rdb")
    ids = [running, an_import, "0" * 8 + "-0000-0000-0000-" + "0" * 12]
    answer = client.batch_restart_online_migration_tasks(
        BatchRestartOnlineMigrationTasksRequest(
            body=BatchRestartOnlineMigrationTasksBody(migration_tasks=ids)
        )
    )
    results = {r.task_id: r for r in answer.migration_tasks}
    assert [r.task_id for r in answer.migration_tasks] == ids
    assert all(r.result == "failed" for r in results.values())
    assert results[running].error_code == "DCS.4957"
    assert "not configured" in results[running].error_msg
    assert results[an_import].error_code == "DCS.4957"
    assert "not an online migration" in results[an_import].error_msg
    assert results[ids[2]].error_code == "DCS.4133"


def test_there_is_no_ip_to_switch(client: Any) -> None:
    task_id = _create(client)
    exchange = ExchangeInstanceIpRequest(
        task_id=task_id, body=IpExchangeRequest(exchanged_ip=["10.0.0.1"])
    )
    message = _refused(lambda: client.exchange_instance_ip(exchange), 400, "DCS.4957")
    assert message.startswith("a self-hosted service has no IP address to switch")
    rollback = RollbackExchangeInstanceIpRequest(task_id=task_id)
    message = _refused(lambda: client.rollback_exchange_instance_ip(rollback), 400, "DCS.4957")
    assert "point your clients at the target instance" in message
    missing = RollbackExchangeInstanceIpRequest(task_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)
    _refused(lambda: client.rollback_exchange_instance_ip(missing), 404, "DCS.4133")


# -- list, show, stats, stop, delete -------------------------------------------------------


def test_list_show_and_stats_of_an_online_task(client: Any) -> None:
    name = next(NAMES)
    task_id = _create(client, name)
    source = _nowhere()
    _configure(client, task_id, _body(ConfigMigrationInstanceBody(addrs=source)))
    listed = client.list_migration_task(ListMigrationTaskRequest(name=name))
    assert listed.count == 1
    item = listed.migration_tasks[0]
    assert (item.task_id, item.migration_type) == (task_id, "online_migration")
    assert item.migration_method == "incremental_migration" and item.data_source == source
    assert item.status in STARTED and item.target_instance_addrs
    task = _show(client, task_id)
    assert task.source_instance.addrs == source and task.source_instance.ip == "127.0.0.1"
    assert task.backup_files is None
    stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
    assert stats.full_migration_progress in {str(n) for n in range(101)}
    assert stats.offset == "0" or stats.offset.isdigit()


def test_stats_carry_the_replications_fields(service: Service) -> None:
    key = service.cli("keys", "create", "--project-id", PROJECT)
    task_id = _create(service.client(key["ak"], key["sk"], PROJECT))
    code, stats, _ = signed(service, key, "GET", f"/v2/{PROJECT}/migration-task/{task_id}/stats")
    assert code == 200
    assert stats == {
        "full_migration_progress": "0",
        "offset": "0",
        "source_dbsize": None,
        "target_dbsize": None,
        "target_input_kbps": "0.00",
        "target_ops": "0",
        "is_migrating": False,
        "commands_refused": None,
        "commands_skipped_unknown": None,
        "lag_ms": None,
        "applied_offset": None,
        "source_offset": None,
        "resyncs_partial": 0,
        "resyncs_full": 0,
    }


def test_an_unconfigured_task_is_deleted_not_stopped(client: Any) -> None:
    task_id = _create(client)
    stop = StopMigrationTaskRequest(task_id=task_id)
    message = _refused(lambda: client.stop_migration_task(stop), 400, "DCS.4957")
    assert "RUNNING" in message
    deleted = client.delete_migration_task(
        DeleteMigrationTaskRequest(body=DeleteMigrateTaskRequest(task_id_list=[task_id]))
    )
    assert deleted.task_id_list == [task_id]
    _refused(lambda: _show(client, task_id), 404, "DCS.4133")
