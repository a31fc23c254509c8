"""Every corpus RDB, truncated and with flipped bytes, ends in records or the readers' error.

The checksum is not verified here, so that damage reaches the structure and value
decoders instead of being caught by the footer.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from dcs_migration.formats import FormatError, RdbReader
from dcs_migration.oracle import oracle_from_records
from tests.support.corpus import CORPUS, case_params

pytestmark = pytest.mark.slow  # thousands of damaged files per corpus case

NOW_MS = 1_800_000_000_000


def outcome(data: bytes, chunk: int) -> str:
    reader = RdbReader(verify_checksum=False, max_item_bytes=1 << 20)
    records = []
    try:
        for i in range(0, len(data), chunk):
            records += reader.feed(data[i : i + chunk])
        records += reader.close()
        oracle_from_records(records, NOW_MS, skip_modules=True)
    except FormatError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(data) + 8
        return "error"
    return "records"


@pytest.mark.parametrize("case", case_params("rdb"))
def test_truncations_and_flipped_bytes(case: dict[str, Any]) -> None:
    data = (CORPUS / case["path"]).read_bytes()
    rng = random.Random(case["id"])
    probe = RdbReader(verify_checksum=False)
    try:
        probe.feed(data)
        probe.close()
        image_end = len(data) - len(probe.take_unused())  # some files carry bytes after the image
    except FormatError:
        image_end = len(data)
    cuts = sorted({rng.randrange(image_end) for _ in range(40)} | {image_end - 1, 9, 5})
    for cut in cuts:
        assert outcome(data[:cut], rng.choice((1, 13, 4096))) == "error"
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            pos = rng.randrange(9, len(data))
            mutated[pos] = rng.choice((mutated[pos] ^ (1 << rng.randrange(8)), 0, 0xFF, 0x80))
        outcome(bytes(mutated), rng.choice((7, 4096)))
