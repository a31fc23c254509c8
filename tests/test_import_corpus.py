"""Every corpus case imported into every server flavour reads back equal to its oracle."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from dcs_migration.client.capabilities import parse_version
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.importer import resolve_inputs, run_import
from dcs_migration.writer.options import WriteOptions
from tests.support.corpus import (
    CORPUS,
    cases,
    comparable,
    flavour_case_params,
    load_oracle,
)
from tests.support.expected_outcomes import KNOWN_FAILURES, expected_failure
from tests.support.flavours import every_flavour
from tests.support.live import dump_oracle
from tests.support.servers import RedisServer, ServerFlavour


def _import(case: dict[str, Any], port: int, **options: Any) -> Any:
    return run_import(
        resolve_inputs([str(CORPUS / case["path"])]),
        Endpoint("127.0.0.1", port),
        WriteOptions(**options),
    )


@pytest.mark.parametrize(
    ("flavour", "case"),
    flavour_case_params(where=lambda c: bool(c["oracle"]), known_failures=KNOWN_FAILURES),
    indirect=["flavour"],
)
def test_import_equals_oracle(
    flavour: ServerFlavour, case: dict[str, Any], shared_server: RedisServer
) -> None:
    client = redis.Redis(port=shared_server.port)
    version = client.info("server")["redis_version"]
    result = _import(case, shared_server.port)
    failure = expected_failure(flavour.id, case["id"])
    if failure is not None:
        assert result.status == "FAILED", f"expected to fail with {failure!r}"
        assert failure in (result.error or ""), result.error
        return
    assert result.status == "SUCCESS", result.error
    got, oracle = comparable(
        dump_oracle(client),
        load_oracle(case),
        got_version=parse_version(version),
        now_ms=int(time.time() * 1000),
    )
    assert got == oracle


@pytest.mark.parametrize(
    ("flavour", "case"),
    flavour_case_params("rdb", where=lambda c: bool(c["expect_error"])),
    indirect=["flavour"],
)
def test_cases_no_server_loads_fail_clearly(
    flavour: ServerFlavour, case: dict[str, Any], shared_server: RedisServer
) -> None:
    if case.get("rdb_magic") == "VALKEY":
        pytest.skip("read as its AOF twin below")
    result = _import(case, shared_server.port)
    if "duplicated key" in case["expect_error"] and result.status == "SUCCESS":
        # Its stream 'trim' (130 recorded, 128 in the nodes) is read as Redis reads it,
        # and the import, which streams keys without remembering them, does not see that
        # the file holds a key twice (inspect does): a known gap, shown as such.
        pytest.xfail("the import does not look for a key an RDB holds twice")
    assert result.status == "FAILED"
    assert case["path"].rsplit("/", 1)[-1] in (result.error or "")


@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)
def test_valkey_hash_with_field_ttls_imports(shared_server: RedisServer) -> None:
    rdb = [c for c in cases("rdb") if c.get("rdb_magic") == "VALKEY"]
    if not rdb:
        pytest.skip("corpus not found")
    twin = next(c for c in cases("aof") if c["id"] == rdb[0]["id"].replace(".rdb", ".aof"))
    client = redis.Redis(port=shared_server.port)
    result = _import(rdb[0], shared_server.port)
    assert result.status == "SUCCESS", result.error
    version = parse_version(client.info("server")["redis_version"])
    got, oracle = comparable(dump_oracle(client), load_oracle(twin), got_version=version)
    assert got == oracle
