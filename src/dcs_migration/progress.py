"""The import progress bar on a terminal: bytes, keys/s and time left."""

from __future__ import annotations

import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dcs_migration.importer import Progress as ImportState


class ImportProgress:
    """A rich progress bar fed by the importer's callback (or nothing, when disabled)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> ImportProgress:
        if self.enabled:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[keys]} keys ({task.fields[rate]} keys/s)"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("import", total=None, keys=0, rate=0)
        return self

    def update(self, state: ImportState) -> None:
        if self._bar is None or self._task is None:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        rate = int(state.keys_written / max(now - self._started, 1e-6))
        self._bar.update(
            self._task,
            total=state.bytes_total or None,
            completed=state.bytes_read,
            description=state.current_input[-40:],
            keys=state.keys_written,
            rate=rate,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
