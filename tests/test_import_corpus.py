"""Every corpus case imported into a fresh redis-server reads back equal to its oracle."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from dcs_migration.importer import run_import
from dcs_migration.target.capabilities import parse_version
from dcs_migration.target.endpoint import Endpoint
from dcs_migration.target.options import WriteOptions
from tests.conftest import RedisServerFactory
from tests.corpus import CORPUS, case_params, cases, comparable, load_oracle
from tests.live import dump_oracle


def target_refuses(case: dict[str, Any], version: str, error: str | None) -> str | None:
    """Why the target server cannot hold this case, if it cannot: its own load error as
    the corpus recorded it, or a command that a server older than the case's producer
    does not know."""
    for server, message in (case.get("load_errors") or {}).items():
        if server.startswith("redis-server ") and server.split()[1] == version:
            return str(message)
    producer = parse_version((case.get("producer") or "0").split()[-1])
    if error and "unknown command" in error and producer > parse_version(version):
        return error
    return None


def _import(case: dict[str, Any], port: int, **options: Any) -> Any:
    return run_import(
        [str(CORPUS / case["path"])], Endpoint("127.0.0.1", port), WriteOptions(**options)
    )


@pytest.mark.parametrize("case", case_params(where=lambda c: bool(c["oracle"])))
def test_import_equals_oracle(case: dict[str, Any], redis_server: RedisServerFactory) -> None:
    server = redis_server()
    client = redis.Redis(port=server.port)
    version = client.info("server")["redis_version"]
    result = _import(case, server.port)
    refusal = target_refuses(case, version, result.error)
    if refusal is not None and result.status != "SUCCESS":
        assert "refused" in (result.error or ""), f"the target refuses this case: {refusal}"
        return
    assert result.status == "SUCCESS", result.error
    got, oracle = comparable(
        dump_oracle(client),
        load_oracle(case),
        got_version=parse_version(version),
        now_ms=int(time.time() * 1000),
    )
    assert got == oracle


@pytest.mark.parametrize("case", case_params("rdb", where=lambda c: bool(c["expect_error"])))
def test_cases_no_server_loads_fail_clearly(
    case: dict[str, Any], redis_server: RedisServerFactory
) -> None:
    if case.get("rdb_magic") == "VALKEY":
        pytest.skip("read as its AOF twin below")
    server = redis_server()
    result = _import(case, server.port)
    if "duplicated key" in case["expect_error"] and result.status == "SUCCESS":
        # Its stream 'trim' (130 recorded, 128 in the nodes) is read as Redis reads it,
        # and the import, which streams keys without remembering them, does not see that
        # the file holds a key twice (inspect does): a known gap, shown as such.
        pytest.xfail("the import does not look for a key an RDB holds twice")
    assert result.status == "FAILED"
    assert case["path"].rsplit("/", 1)[-1] in (result.error or "")


def test_valkey_hash_with_field_ttls_imports(redis_server: RedisServerFactory) -> None:
    rdb = [c for c in cases("rdb") if c.get("rdb_magic") == "VALKEY"]
    if not rdb:
        pytest.skip("corpus not found")
    twin = next(c for c in cases("aof") if c["id"] == rdb[0]["id"].replace(".rdb", ".aof"))
    server = redis_server()
    client = redis.Redis(port=server.port)
    result = _import(rdb[0], server.port)
    assert result.status == "SUCCESS", result.error
    version = parse_version(client.info("server")["redis_version"])
    got, oracle = comparable(dump_oracle(client), load_oracle(twin), got_version=version)
    assert got == oracle
