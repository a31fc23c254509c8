"""The statuses of a migration task, from the API to the store. A leaf of its own: an
import run from the command line names its outcome without loading the store."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    # A backup import: MIGRATING, then SUCCESS, FAILED or TERMINATED.
    MIGRATING = "MIGRATING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    # An online migration: RUNNING (created, not configured yet), FULLMIGRATING (the
    # source's snapshot), INCRMIGEATING (its command stream; the managed service's own
    # spelling, kept on the wire), then SUCCESS (full only), TERMINATED or MIGRATION_FAILED.
    RUNNING = "RUNNING"
    FULLMIGRATING = "FULLMIGRATING"
    INCRMIGEATING = "INCRMIGEATING"
    MIGRATION_FAILED = "MIGRATION_FAILED"

    @classmethod
    def _missing_(cls, value: object) -> TaskStatus | None:
        """A status as a caller may spell it: INCRMIGRATING is INCRMIGEATING."""
        if isinstance(value, str) and value.upper() == "INCRMIGRATING":
            return cls.INCRMIGEATING
        return None
