"""`inspect --json` of every RDB case of the corpus equals its oracle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from dcs_migration.cli import app
from tests.support.corpus import CORPUS, case_params, cases, comparable, load_oracle

runner = CliRunner()


def inspect_json(path: str) -> Any:
    result = runner.invoke(app, ["inspect", "--json", str(CORPUS / path)])
    return result


@pytest.mark.parametrize("case", case_params("rdb", where=lambda c: not c["expect_error"]))
def test_inspect_json_equals_oracle(case: dict[str, Any]) -> None:
    result = inspect_json(case["path"])
    assert result.exit_code == 0, result.output
    got, oracle = comparable(json.loads(result.stdout), load_oracle(case))
    assert got == oracle


def _refused_by_every_server(case: dict[str, Any]) -> bool:
    return bool(case["expect_error"]) and case.get("rdb_magic") != "VALKEY"


@pytest.mark.parametrize("case", case_params("rdb", where=_refused_by_every_server))
def test_expected_error_cases_fail_clearly(case: dict[str, Any]) -> None:
    result = inspect_json(case["path"])
    assert result.exit_code != 0
    message = result.stderr
    assert "error:" in message
    assert case["path"].rsplit("/", 1)[-1] in message.replace("\n", "")
    assert "offset" in message


def test_valkey_hash_with_field_ttls_reads_as_its_aof_twin() -> None:
    """Servers of the corpus cannot load Valkey 9's RDB 80, but the reader can: its content
    equals what the same data written as an AOF loads to."""
    rdb = [c for c in cases("rdb") if c.get("rdb_magic") == "VALKEY"]
    if not rdb:
        pytest.skip("corpus not found")
    twin = next(c for c in cases("aof") if c["id"] == rdb[0]["id"].replace(".rdb", ".aof"))
    result = inspect_json(rdb[0]["path"])
    assert result.exit_code == 0, result.output
    got, oracle = comparable(json.loads(result.stdout), load_oracle(twin))
    assert got == oracle
