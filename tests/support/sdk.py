"""A user's migration-task calls through the official SDK, against `tests.support.service`."""

from __future__ import annotations

import itertools
import time
from typing import Any

from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    Files,
    ShowMigrationTaskRequest,
    TargetInstanceBody,
)

from tests.support.service import Service

PROJECT = "0605767e3800d5762fb5c0110a0e3c7d"


def minted(service: Service, project: str = PROJECT) -> Any:
    """An SDK client signing with a key the CLI just created for `project`."""
    key = service.cli("keys", "create", "--project-id", project)
    return service.client(key["ak"], key["sk"], project)


def register(service: Service, server: Any, project: str = PROJECT) -> str:
    out = service.cli(
        "instances",
        "add",
        "--project-id",
        project,
        "--name",
        "target",
        "--addrs",
        f"127.0.0.1:{server.port}",
    )
    instance_id: str = out["instance_id"]
    return instance_id


def create(
    client: Any, instance_id: str, files: list[str], bucket: str = "bucket", name: str = "import"
) -> Any:
    """Create a task as the seed request does. Two identical creates within one second have
    one signature, and the service accepts it once: calls made back to back differ by `name`."""
    body = CreateMigrationTaskBody(
        task_name=name,
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(
            file_source="self_build_obs",
            bucket_name=bucket,
            files=[
                Files(file_name=f, size="754.0MB", update_at="2026-11-28 10:00:00") for f in files
            ],
        ),
        target_instance=TargetInstanceBody(id=instance_id),
    )
    return client.create_migration_task(CreateMigrationTaskRequest(body=body))


def wait_for(client: Any, task_id: str, statuses: tuple[str, ...], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        task = client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id))
        if task.status in statuses:
            return task
        assert time.monotonic() < deadline, f"task stayed {task.status}"
        time.sleep(0.1)


_TASK_NUMBERS = itertools.count(1)


def create_body(instance_id: str, file_name: str, task_name: str = "import") -> Any:
    """The smallest create body: one file of bucket "bucket", no size or date."""
    return CreateMigrationTaskBody(
        task_name=task_name,
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(
            file_source="self_build_obs", bucket_name="bucket", files=[Files(file_name=file_name)]
        ),
        target_instance=TargetInstanceBody(id=instance_id),
    )


def create_task(client: Any, instance_id: str, file_name: str, task_name: str | None = None) -> str:
    """Create a task of `create_body`; its id. Unnamed, each is named afresh: two
    identical creates signed within one second share a signature, which the service
    accepts once (a retry after the database came back, for one)."""
    body = create_body(instance_id, file_name, task_name or f"import-{next(_TASK_NUMBERS)}")
    task_id: str = client.create_migration_task(CreateMigrationTaskRequest(body=body)).id
    return task_id


def task_status(client: Any, task_id: str) -> str:
    found: str = client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id)).status
    return found
