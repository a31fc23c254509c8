"""Polling the service until a task, backup or restore has ended (tests only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from huaweicloudsdkdcs.v2 import ListBackupRecordsRequest, ListRestoreRecordsRequest

ENDED = ("succeed", "failed")  # a backup's or restore's final statuses


def until(check: Callable[[], Any], what: str, seconds: float) -> Any:
    """The first truthy answer of `check`, asked every 50 ms for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def backup_record(client: Any, instance_id: str, backup_id: str) -> Any:
    listed = client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id))
    return next(b for b in listed.backup_record_response if b.backup_id == backup_id)


def finished_backup(client: Any, instance_id: str, backup_id: str, seconds: float = 60) -> Any:
    def ended() -> Any:
        record = backup_record(client, instance_id, backup_id)
        return record if record.status in ENDED else None

    return until(ended, f"backup {backup_id}", seconds)


def finished_restore(client: Any, instance_id: str, restore_id: str, seconds: float = 60) -> Any:
    def ended() -> Any:
        listed = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id))
        found = next(r for r in listed.restore_record_response if r.restore_id == restore_id)
        return found if found.status in ENDED else None

    return until(ended, f"restore {restore_id}", seconds)
