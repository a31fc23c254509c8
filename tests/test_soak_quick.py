"""A very small slice of `make soak` (bench/soak.py), so that the soak itself cannot rot:
5 tasks, 10 s of signed requests, each fault injected once, the attacks (an unsigned-body
flood, hung targets), no fuzzing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.corpus import manifest

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_a_small_soak_loses_no_task(tmp_path: Path) -> None:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH (install Redis, e.g. `make system-deps`)")
    if not manifest()["cases"]:
        pytest.skip("corpus not found")
    summary_file = tmp_path / "soak.json"
    # fmt: off
    args = [
        "--quick", "--tasks", "5", "--seconds", "10", "--rate", "20", "--clients", "2",
        "--big-keys", "150000", "--aof-commands", "60000",
        "--fuzz-seconds", "0", "--api-fuzz-examples", "0", "--settle-seconds", "60",
        "--json", str(summary_file),
    ]
    # fmt: on
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads(summary_file.read_text())
    assert summary["tasks"] == 5 and summary["lost"] == 0, summary
    assert summary["exact"] + summary["failed"] == 5
    assert summary["exact"] >= 2, done.stdout[-3000:]
    kinds = sorted(f["kind"] for f in summary["faults"])
    assert len(kinds) == 3 and all(f["back"] for f in summary["faults"]), summary["faults"]
    assert summary["requests"] > 50
    (attack,) = [a for a in summary["attacks"] if a["name"].startswith("unsigned")]
    assert attack["held"] and attack["refused"] == attack["connections"] == 100, attack
    assert "Faults" in done.stdout and "Tasks" in done.stdout and "p99 ms" in done.stdout
    assert "Attacks" in done.stdout
    hung = [a for a in summary["attacks"] if a["name"].startswith("hung target")]
    assert len(hung) == 3 and all(a["held"] for a in hung), hung
