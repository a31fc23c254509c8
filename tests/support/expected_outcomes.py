"""What importing each corpus case into each server flavour must end in.

A case absent from `EXPECTED_FAILURES` must end SUCCESS and read back equal to its
oracle. A case present must end FAILED with an error holding the fragment given: the
AOFs that record hash-field TTLs (HPEXPIREAT, HPERSIST: Redis 7.4) stop at that command
on every flavour the tests run (Redis 7.0 and 6.2, Valkey 8.1 know neither), as Redis
itself stops loading such an AOF. The table was recorded from the suite's own runs, one
server and a three-master cluster alike; a change in any outcome is a test failure.
"""

from __future__ import annotations

from tests.support.servers import FLAVOUR_IDS

# case id -> (command, offset, file): where the import stops.
_UNKNOWN_TO_EVERY_FLAVOUR: dict[str, tuple[str, int, str]] = {
    "native/redis-7.4.1/aof-multipart-preamble": ("HPEXPIREAT", 1865, "appendonly.aof.2.incr.aof"),
    "native/redis-7.4.1/aof-multipart-resp": ("HPEXPIREAT", 1831, "appendonly.aof.2.base.aof"),
    "native/redis-7.4.1/aof-multipart-resp-timestamps": (
        "HPEXPIREAT",
        133650,
        "appendonly.aof.2.base.aof",
    ),
    "native/redis-8.0-m01/aof-multipart-preamble": (
        "HPEXPIREAT",
        1865,
        "appendonly.aof.2.incr.aof",
    ),
    "native/redis-8.0-m01/aof-multipart-resp": ("HPEXPIREAT", 156111, "appendonly.aof.2.base.aof"),
    "thirdparty/HDT3213-rdb/hash_as_listpack_with_hfe.aof": (
        "HPEXPIREAT",
        82,
        "hash_as_listpack_with_hfe.aof",
    ),
    "thirdparty/HDT3213-rdb/hash_with_hfe.aof": ("HPERSIST", 158, "hash_with_hfe.aof"),
    "thirdparty/HDT3213-rdb/valkey_hash2_with_hfe.aof": (
        "HPEXPIREAT",
        78,
        "valkey_hash2_with_hfe.aof",
    ),
}

# (flavour id, case id) -> a fragment of the FAILED import's error.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {
    (flavour, case): f"the target refused AOF command {command} at offset {offset} of {file}: "
    "unknown command"
    for flavour in FLAVOUR_IDS
    for case, (command, offset, file) in _UNKNOWN_TO_EVERY_FLAVOUR.items()
}


# (flavour id, case id) -> why: cases that fail for a reason known and not yet fixed, each
# a strict xfail, so that it fails as XPASS the day it is fixed and its entry goes then.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def expected_failure(flavour_id: str, case_id: str) -> str | None:
    """The error fragment this import must fail with, or None: it must succeed."""
    return EXPECTED_FAILURES.get((flavour_id, case_id))
