"""Coverage-guided fuzzing of the readers (atheris), seeded with the corpus.

Run for a bounded time: `python -m tests.support.fuzz_readers` (FUZZ_SECONDS, default 30).
A crash is any exception other than the readers' FormatError, or a hang past libFuzzer's
timeout; atheris then writes the input to FUZZ_ARTIFACTS and exits non-zero.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["dcs_migration"]):
    from dcs_migration.formats import FormatError, RdbReader
    from dcs_migration.oracle import oracle_from_records

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    chunk = 1 + data[0] * 7
    payload = data[1:]
    reader = RdbReader(verify_checksum=False, max_item_bytes=1 << 20)
    records = []
    try:
        for i in range(0, len(payload), chunk):
            records += reader.feed(payload[i : i + chunk])
        records += reader.close()
        oracle_from_records(records, 0, skip_modules=True)
    except FormatError:
        pass


def seeds(into: Path) -> None:
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix in (".rdb", ".aof") and path.stat().st_size < 64_000:
            (into / path.name.replace("/", "_")).write_bytes(b"\x40" + path.read_bytes())


def main() -> None:
    seconds = int(os.environ.get("FUZZ_SECONDS", "30"))
    artifacts = os.environ.get("FUZZ_ARTIFACTS", tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="dcs-fuzz-"))
    try:
        seeds(work)
        argv = [
            sys.argv[0],
            f"-max_total_time={seconds}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            f"-artifact_prefix={artifacts.rstrip('/')}/",
            str(work),
        ]
        atheris.Setup(argv, one_input)
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
