"""Backups the tests import: generated with the project's RDB writer or saved by a real
redis-server, sized so that an import takes a while."""

from __future__ import annotations

from pathlib import Path

from tests.support import rdbgen as g
from tests.support.flavours import RedisServerFactory

FUTURE_MS = 4_102_444_800_000  # 2100-01-01


def strings_rdb(path: Path, count: int) -> Path:
    """`count` string keys, one in ten with a TTL far ahead (about 29 bytes a key)."""
    parts = [b"\xfe\x00"]
    for i in range(count):
        expire = FUTURE_MS if i % 10 == 0 else None
        parts.append(g.key(b"k:%07d" % i, g.string(b"v%015d" % i), expire_ms=expire))
    path.write_bytes(g.rdb(*parts, version=9))
    return path


def big_rdb(path: Path, redis_server: RedisServerFactory, keys: int = 1_500_000) -> None:
    """A backup whose import takes a few seconds (small keys cost the most per byte)."""
    source = redis_server("--enable-debug-command", "yes")
    source.cli("DEBUG", "POPULATE", str(keys), "key", "24")
    source.cli("SAVE")
    path.write_bytes((source.dir / "dump.rdb").read_bytes())
