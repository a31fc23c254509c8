"""The statuses of a migration task, from the API to the store. A leaf of its own: an
import run from the command line names its outcome without loading the store."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    MIGRATING = "MIGRATING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
