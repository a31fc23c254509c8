"""A bounded coverage-guided fuzz run of the readers (longer runs: `make soak`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_fuzzing_the_readers_finds_no_crash(tmp_path: Path) -> None:
    env = dict(os.environ, FUZZ_SECONDS="25", FUZZ_ARTIFACTS=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.fuzz_readers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    crashes = list(tmp_path.iterdir())
    assert result.returncode == 0 and not crashes, (
        f"fuzzing found a crash; inputs kept in {tmp_path}:\n{result.stderr[-4000:]}"
    )
