"""Why a task use-case was refused: the kinds the API answers each with its own DCS code
(`api/errors.py`), so that nothing below the API speaks HTTP."""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    """Why a use-case was refused (the API answers each with its own DCS code)."""

    INVALID_PARAMETER = "invalid_parameter"  # the message names the parameter
    INVALID_TASK_ID = "invalid_task_id"
    TASK_NOT_FOUND = "task_not_found"
    INSTANCE_NOT_FOUND = "instance_not_found"
    BACKUP_NOT_SUCCEEDED = "backup_not_succeeded"
    TASK_RUNNING = "task_running"
    STATE_NOT_ALLOWED = "state_not_allowed"
    BUCKET_NOT_FOUND = "bucket_not_found"  # not there, or not the project's: one answer
    STORE_UNAVAILABLE = "store_unavailable"  # the object store cannot say now: retry


class Refused(Exception):
    """A use-case the rules refuse; `message` says why (naming the parameter at fault)."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message
