"""Online migration as a user drives it: the official SDK against `dcs-migration serve`, a
live source under a bounded load, a registered target; exactness is DEBUG DIGEST once a
sync-stop caught up, and the INCR counters equal to the INCRs sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from huaweicloudsdkdcs.v2 import (
    BatchRestartOnlineMigrationTasksBody,
    BatchRestartOnlineMigrationTasksRequest,
    ConfigMigrationInstanceBody,
    CreateOnlineMigrationTaskBody,
    CreateOnlineMigrationTaskRequest,
    ListMigrationTaskLogsRequest,
    SetOnlineMigrationTaskBody,
    SetOnlineMigrationTaskRequest,
    StopMigrationTaskRequest,
    StopMigrationTaskSyncRequest,
)

from dcs_migration.writer.stream import MARKER_PREFIX
from tests.support.flavours import RedisServerFactory
from tests.support.load import Load, assert_copied
from tests.support.sdk import PROJECT, register, wait_for
from tests.support.servers import RedisServer, free_port
from tests.support.service import Service, signed
from tests.support.waiting import until

pytestmark = [pytest.mark.redis, pytest.mark.service]

SOURCE_ARGS = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with Service(data_dir=tmp_path / "data", log_path=tmp_path / "service.log") as running:
        yield running


class User:
    """The SDK client of one project, with the key it signs with (for raw calls)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.key = service.cli("keys", "create", "--project-id", PROJECT)
        self.client = service.client(self.key["ak"], self.key["sk"], PROJECT)

    def create(self, name: str = "online-task") -> str:
        body = CreateOnlineMigrationTaskBody(
            name=name, vpc_id="vpc-1", subnet_id="subnet-1", security_group_id="sg-1"
        )
        answer = self.client.create_online_migration_task(
            CreateOnlineMigrationTaskRequest(body=body)
        )
        task_id: str = answer.instance_id
        return task_id

    def configure(
        self, task_id: str, source: RedisServer, target_id: str, method: str = "incremental"
    ) -> Any:
        body = SetOnlineMigrationTaskBody(
            migration_method=f"{method}_migration" if method != "full" else "full_amount_migration",
            resume_mode="auto",
            source_instance=ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{source.port}"),
            target_instance=ConfigMigrationInstanceBody(id=target_id),
        )
        return self.client.set_online_migration_task(
            SetOnlineMigrationTaskRequest(task_id=task_id, body=body)
        )

    def stats(self, task_id: str) -> dict[str, Any]:
        """The stats as JSON: with the fields beyond the SDK's model (lag_ms ...)."""
        status, body, _ = signed(
            self.service, self.key, "GET", f"/v2/{PROJECT}/migration-task/{task_id}/stats"
        )
        assert status == 200, body
        return body

    def detail(self, task_id: str) -> dict[str, Any]:
        """The task's detail as JSON (the SDK's model has no error_message)."""
        status, body, _ = signed(
            self.service, self.key, "GET", f"/v2/{PROJECT}/migration-task/{task_id}"
        )
        assert status == 200, body
        return body

    def sync_stop(self, task_id: str) -> None:
        self.client.stop_migration_task_sync(StopMigrationTaskSyncRequest(task_id=task_id))

    def logs(self, task_id: str) -> str:
        answer = self.client.list_migration_task_logs(
            ListMigrationTaskLogsRequest(task_id=task_id, limit=100)
        )
        return "\n".join(line.message for line in answer.migration_logs)


def test_full_and_incremental_then_sync_stop(
    service: Service, redis_server: RedisServerFactory
) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server("--enable-debug-command", "yes")
    source.cli("DEBUG", "POPULATE", "20000", "pre", "100")
    user = User(service)
    task_id = user.create()
    assert wait_for(user.client, task_id, ("RUNNING",)).migration_type == "online_migration"
    load = Load(source.port).start()
    configured = user.configure(task_id, source, register(service, target))
    assert configured.id == task_id
    wait_for(user.client, task_id, ("INCRMIGEATING",), 60)
    until(lambda: load.rounds > 300, "writes while in sync", 60)
    stats = user.stats(task_id)
    assert stats["full_migration_progress"] == "100"
    assert stats["is_migrating"] is True
    assert {"lag_ms", "applied_offset", "source_offset", "resyncs_partial"} <= stats.keys()
    load.stop()
    user.sync_stop(task_id)  # answers once caught up and stopped
    wait_for(user.client, task_id, ("TERMINATED",), 5)
    assert not user.detail(task_id).get("error_message")
    stats = user.stats(task_id)
    assert stats["offset"] == "0" and stats["lag_ms"] == 0  # the SDK model has strings
    assert stats["resyncs_full"] == 0
    assert redis.Redis(port=target.port).exists(MARKER_PREFIX + task_id.encode()) == 0
    assert_copied(source, target, load)
    assert "caught up at offset" in user.logs(task_id)


def test_full_only_ends_success(service: Service, redis_server: RedisServerFactory) -> None:
    source = redis_server(*SOURCE_ARGS)
    target = redis_server("--enable-debug-command", "yes")
    load = Load(source.port, most=400).start()
    load.wait()
    user = User(service)
    task_id = user.create("full-only")
    user.configure(task_id, source, register(service, target), method="full")
    wait_for(user.client, task_id, ("SUCCESS",), 60)
    assert user.stats(task_id)["full_migration_progress"] == "100"
    assert_copied(source, target, load)


def test_service_killed_mid_sync_continues_exactly_once(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    source = redis_server(*SOURCE_ARGS, "--repl-backlog-size", "64mb")
    target = redis_server("--enable-debug-command", "yes")
    service = Service(data_dir=tmp_path / "data", log_path=tmp_path / "service.log").start()
    try:
        user = User(service)
        task_id = user.create()
        load = Load(source.port).start()
        user.configure(task_id, source, register(service, target))
        wait_for(user.client, task_id, ("INCRMIGEATING",), 60)
        until(lambda: user.stats(task_id)["applied_offset"] > 100_000, "applied", 30)
        service.kill()  # the sync's process dies with it, mid-batch as likely as not
        time.sleep(1.0)  # the load goes on meanwhile
        service.start()  # resume_mode auto: the task goes on by itself
        until(lambda: user.stats(task_id)["resyncs_partial"] >= 1, "a partial resync", 60)
        load.stop()
        user.sync_stop(task_id)
        wait_for(user.client, task_id, ("TERMINATED",), 5)
        assert user.stats(task_id)["resyncs_full"] == 0
        assert_copied(source, target, load)
    finally:
        service.stop()


def test_stopped_task_restarts_by_partial_resync(
    service: Service, redis_server: RedisServerFactory
) -> None:
    source = redis_server(*SOURCE_ARGS, "--repl-backlog-size", "64mb")
    target = redis_server("--enable-debug-command", "yes")
    user = User(service)
    task_id = user.create()
    load = Load(source.port).start()
    user.configure(task_id, source, register(service, target))
    wait_for(user.client, task_id, ("INCRMIGEATING",), 60)
    until(lambda: user.stats(task_id)["applied_offset"] > 50_000, "applied", 30)
    user.client.stop_migration_task(StopMigrationTaskRequest(task_id=task_id))
    wait_for(user.client, task_id, ("TERMINATED",), 5)
    answer = user.client.batch_restart_online_migration_tasks(
        BatchRestartOnlineMigrationTasksRequest(
            body=BatchRestartOnlineMigrationTasksBody(migration_tasks=[task_id])
        )
    )
    assert [r.result for r in answer.migration_tasks] == ["success"]
    wait_for(user.client, task_id, ("INCRMIGEATING",), 60)
    load.stop()
    user.sync_stop(task_id)
    wait_for(user.client, task_id, ("TERMINATED",), 5)
    stats = user.stats(task_id)
    assert stats["resyncs_partial"] >= 1 and stats["resyncs_full"] == 0
    assert_copied(source, target, load)
    assert "continuing by partial resync" in user.logs(task_id)


def test_an_unreachable_source_fails_clearly(
    service: Service, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    gone = free_port()  # nothing listens there
    user = User(service)
    task_id = user.create()
    body = SetOnlineMigrationTaskBody(
        migration_method="incremental_migration",
        resume_mode="manual",
        source_instance=ConfigMigrationInstanceBody(addrs=f"127.0.0.1:{gone}"),
        target_instance=ConfigMigrationInstanceBody(id=register(service, target)),
    )
    user.client.set_online_migration_task(SetOnlineMigrationTaskRequest(task_id=task_id, body=body))
    wait_for(user.client, task_id, ("MIGRATION_FAILED",), 60)
    assert f"127.0.0.1:{gone}" in user.detail(task_id)["error_message"]
