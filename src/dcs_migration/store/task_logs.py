"""The log lines of migration tasks: what each one did, as the logs API lists it."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select

from dcs_migration.store.base import Repository, page_limit, page_offset
from dcs_migration.store.models import TaskLog, utcnow
from dcs_migration.store.records import LogLevel, TaskLogRecord, log_level
from dcs_migration.store.tasks import scoped_task


class TaskLogs(Repository):
    """Append a task's log lines; list them a page at a time."""

    def add_log(
        self,
        task_id: str,
        level: LogLevel | str,
        message: str,
        code: str = "",
        keyword: str = "",
    ) -> None:
        """Append a log line of the task (level INFO, WARNING or ERROR)."""
        entry = TaskLog.line(
            task_id, log_level(level).value, message, utcnow(), code=code, keyword=keyword
        )
        with self._write() as s:
            s.add(entry)

    def list_logs(
        self,
        task_id: str,
        offset: int = 0,
        limit: int = 100,
        level: LogLevel | str | None = None,
        *,
        project_id: str | None = None,
    ) -> tuple[int, list[TaskLogRecord]]:
        """(how many match, one page of them) in the order written; `project_id`, when given,
        limits the answer to a task of that project."""
        where: list[ColumnElement[bool]] = [TaskLog.task_id == task_id]
        if level:
            where.append(TaskLog.log_level == log_level(level).value)
        with self._read() as s:
            if project_id is not None and scoped_task(s, project_id, task_id) is None:
                return 0, []
            count = s.scalar(select(func.count()).select_from(TaskLog).where(*where)) or 0
            rows = s.scalars(
                select(TaskLog)
                .where(*where)
                .order_by(TaskLog.id)
                .offset(page_offset(offset))
                .limit(page_limit(limit))
            )
            return count, [
                TaskLogRecord(
                    id=r.id,
                    task_id=r.task_id,
                    created_at=r.created_at,
                    log_level=LogLevel(r.log_level),
                    message=r.message,
                    log_code=r.log_code,
                    keyword=r.keyword,
                )
                for r in rows
            ]
