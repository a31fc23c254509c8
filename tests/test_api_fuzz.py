"""Fuzzing the HTTP API from its own /openapi.json with schemathesis, every request signed.

The app runs in this process (schemathesis' ASGI transport, with its lifespan, so the
task and backup workers run too), over a real redis-server registered as an instance.
Every request carries a valid SDK-HMAC-SHA256 signature made by the official SDK's own
signer (`SdkSigner`), with an AK/SK minted in the store, on the key's project: the
fuzzing reaches the routes, never just the signature check. Path parameters naming a
task, instance or backup are, half the time, ones that exist (the deleting operations
get ones of their own), so that the routes' deeper paths (stop, logs, links, restores,
...) run too.

Checks, for every answer: no 5xx; no 401/403 (the signature is valid); every non-2xx
body is exactly the DCS error form `{error_code, error_msg, error_ext_msg}`; status,
content type and body conform to the documented schema; invalid data is refused.

Bounded for `make test` (`API_FUZZ_MAX_EXAMPLES`, default 40 per operation and mode);
`make soak` raises it. With `API_FUZZ_STATS=FILE`, the counts are written there as JSON.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
import requests
from fastapi import FastAPI
from fastapi.routing import APIRoute

pytestmark = [pytest.mark.service, pytest.mark.redis, pytest.mark.slow]

schemathesis = pytest.importorskip("schemathesis")

from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.sdk_request import SdkRequest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python import asgi  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from dcs_migration.api import (  # noqa: E402
    routes_backups,
    routes_instances,
    routes_online,
    routes_tasks,
)
from dcs_migration.api.app import create_app  # noqa: E402
from dcs_migration.api.schemas import parse_addr  # noqa: E402
from dcs_migration.config import Settings  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

PROJECT = "0605767e3800d5762fb5c0110a0e3c7d"
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_MAX_EXAMPLES", "40"))
STATS_FILE = os.environ.get("API_FUZZ_STATS")
ERROR_KEYS = {"error_code", "error_msg", "error_ext_msg"}
ERROR_CODE = re.compile(r"(DCS|APIGW)\.[0-9]{4}")
REAL_ID_PARAMS = ("task_id", "instance_id", "backup_id")


# -- signing ---------------------------------------------------------------------------


class SdkSigner(requests.auth.AuthBase):
    """Signs a prepared request as the official SDK's client does, with its own code.

    The request is turned into the SDK's `SdkRequest` (method, path, decoded query pairs,
    Content-Type, body bytes) and signed by `BasicCredentials.sign_request`, which adds
    X-Project-Id, X-Sdk-Date, Host and Authorization. The query is then sent as the SDK
    sends it, in its canonical encoding. Each request also carries a signed header of
    its own, `X-Client-Request-Id`: the fuzzer sends identical requests within one
    second, which would otherwise have one signature, and the service accepts the
    signature of a call that changes something once.
    """

    def __init__(self, ak: str, sk: str, project_id: str) -> None:
        self.credentials = BasicCredentials(ak, sk, project_id)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        assert r.url is not None and r.method is not None
        parts = urlsplit(r.url)
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {"X-Client-Request-Id": uuid.uuid4().hex}
        if r.headers.get("Content-Type"):
            headers["Content-Type"] = r.headers["Content-Type"]
        request = SdkRequest(
            method=r.method,
            schema=parts.scheme,
            host=parts.netloc,
            resource_path=parts.path,
            query_params=parse_qsl(parts.query, keep_blank_values=True),
            header_params=headers,
            body=body or None,
        )
        signed = self.credentials.sign_request(request)
        path, _, query = signed.uri.partition("?")
        r.url = urlunsplit((parts.scheme, parts.netloc, path, query, ""))
        for name, value in signed.header_params.items():
            r.headers[name] = value
        return r


# -- the operations, known before the app runs -----------------------------------------


def _operations() -> list[tuple[str, str]]:
    found = []
    routers = (routes_tasks, routes_online, routes_instances, routes_backups)
    for router in (r.router for r in routers):
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                found += [(method, route.path) for method in sorted(route.methods)]
    return found


OPERATIONS = _operations()


# -- the service under test --------------------------------------------------------------


@dataclass
class Fuzzed:
    app: FastAPI
    auth: SdkSigner
    real: dict[str, str]  # path parameter -> an id that exists
    doomed: dict[str, str]  # the same, for the deleting operations to delete
    stats: Counter[str] = field(default_factory=Counter)


def _call(fuzzed: Fuzzed, method: str, path: str, body: Any = None) -> requests.Response:
    with asgi.get_client(fuzzed.app) as client:
        response: requests.Response = client.request(
            method,
            f"http://{asgi.HOST}{path}",
            json=body,
            auth=fuzzed.auth,
            timeout=30,
        )
    return response


def _wait(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the service did not get there in time"
        time.sleep(0.05)


def _real_ids(fuzzed: Fuzzed, instance_id: str) -> dict[str, str]:
    """A task (FAILED: its file is missing) and a succeed backup of the instance."""
    base = f"/v2/{PROJECT}"
    created = _call(
        fuzzed,
        "POST",
        f"{base}/migration-task",
        {
            "task_name": "fuzz",
            "migration_type": "backupfile_import",
            "migration_method": "full_amount_migration",
            "backup_files": {"bucket_name": "fuzz", "files": [{"file_name": "none.rdb"}]},
            "target_instance": {"id": instance_id},
        },
    )
    assert created.status_code == 200, created.text
    backup = _call(fuzzed, "POST", f"{base}/instances/{instance_id}/backups", {})
    assert backup.status_code == 200, backup.text
    backup_id = backup.json()["backup_id"]

    def backed_up() -> bool:
        listed = _call(fuzzed, "GET", f"{base}/instances/{instance_id}/backups")
        return any(
            b["backup_id"] == backup_id and b["status"] == "succeed"
            for b in listed.json()["backup_record_response"]
        )

    _wait(backed_up)
    return {"task_id": created.json()["id"], "instance_id": instance_id, "backup_id": backup_id}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (install Redis, e.g. `make system-deps`)")
    target = RedisServer("--repl-diskless-sync-delay", "0").start()
    try:
        data_dir = tmp_path_factory.mktemp("api-fuzz")
        app = create_app(Settings(data_dir=data_dir, workers=2))
        store = app.state.service.store
        key = store.create_key(PROJECT)
        (data_dir / "buckets" / "fuzz").mkdir(parents=True)
        store.grant_bucket(PROJECT, "fuzz")
        instance = store.add_instance(PROJECT, "fuzz-target", [f"127.0.0.1:{target.port}"])
        fuzzed = Fuzzed(app, SdkSigner(key.ak, key.sk, PROJECT), {}, {})
        fuzzed.real = _real_ids(fuzzed, instance.instance_id)
        fuzzed.doomed = _real_ids(fuzzed, instance.instance_id)
        yield fuzzed
        if STATS_FILE:
            Path(STATS_FILE).write_text(json.dumps({"examples": dict(fuzzed.stats)}))
    finally:
        asgi.shutdown_lifespans()  # the app's workers stop before its target does
        target.stop()


# -- making cases --------------------------------------------------------------------------


def _loopback(value: Any) -> Any:
    """An address the body gives, moved to 127.0.0.1: a registration probes what it names,
    and the fuzzing sends nothing off this machine (nor asks any resolver)."""
    if isinstance(value, list):
        return [_loopback(v) for v in value]
    if not isinstance(value, str):
        return value
    if "," in value:
        return ",".join(_loopback(part) for part in value.split(","))
    try:
        _, port = parse_addr(value)
    except ValueError:
        return value
    return f"127.0.0.1:{port}"


def _keep_local(case: Any) -> Any:
    body = case.body
    if isinstance(body, dict):
        if "addrs" in body:
            body["addrs"] = _loopback(body["addrs"])
        if isinstance(body.get("ip"), str):
            try:
                parse_addr(f"[{body['ip']}]:1" if ":" in body["ip"] else f"{body['ip']}:1")
                body["ip"] = "127.0.0.1"
            except ValueError:
                pass
    return case


def _with_real_ids(case: Any, real: dict[str, str]) -> Any:
    """Path ids and body ids that name what exists (positive cases only: a negative case
    must stay invalid)."""
    for name in REAL_ID_PARAMS:
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = real[name]
    body = case.body
    if isinstance(body, dict):
        target = body.get("target_instance")
        if isinstance(target, dict) and isinstance(target.get("id"), str):
            target["id"] = real["instance_id"]
            for name in ("addrs", "ip", "port"):
                target.pop(name, None)
        if isinstance(body.get("backup_id"), str):
            body["backup_id"] = real["backup_id"]
        for name in ("migration_tasks", "task_id_list"):
            if isinstance(body.get(name), list) and body[name]:
                body[name] = [real["task_id"], *body[name][1:]]
    return case


def _cases(operation: Any, mode: GenerationMode, fuzzed: Fuzzed) -> st.SearchStrategy[Any]:
    plain = operation.as_strategy(mode, path_parameters={"project_id": PROJECT})
    if mode is GenerationMode.POSITIVE:
        ids = fuzzed.doomed if operation.method.upper() == "DELETE" else fuzzed.real
        real = plain.map(lambda case: _with_real_ids(case, ids))
        plain = st.one_of(plain, real)
    return plain.map(_keep_local)


# -- checks --------------------------------------------------------------------------------


def dcs_error_form(ctx: Any, response: Any, case: Any) -> bool | None:
    """A non-2xx answer is exactly `{error_code, error_msg, error_ext_msg}`."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, f"not the DCS error form: {body}"
    assert isinstance(body["error_code"], str) and ERROR_CODE.fullmatch(body["error_code"]), body
    assert isinstance(body["error_msg"], str) and body["error_msg"], body
    assert body["error_ext_msg"] is None or isinstance(body["error_ext_msg"], str), body
    return True


def signature_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every request is signed right, for its own project: never a 401 or a 403."""
    assert response.status_code not in (401, 403), (
        f"a valid signature was refused: {response.status_code} {response.content!r}"
    )
    return True


CHECKS = [
    not_a_server_error,
    signature_accepted,
    dcs_error_form,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# -- the tests -----------------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_fuzz(fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
    operation = schema[path][method]
    label = f"{method} {path} ({mode.value})"

    @given(case=_cases(operation, mode, fuzzed))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        fuzzed.stats[label] += 1
        case.call_and_validate(auth=fuzzed.auth, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        pytest.skip("nothing of this operation can be made invalid (free-form string ids)")


def test_list_offsets_past_64_bits_are_refused(fuzzed: Fuzzed) -> None:
    for path in ("migration-tasks", f"migration-task/{fuzzed.real['task_id']}/logs"):
        answer = _call(fuzzed, "GET", f"/v2/{PROJECT}/{path}?offset={1 << 64}")
        assert answer.status_code == 400 and answer.json()["error_code"] == "DCS.4800"


def test_an_unknown_log_level_is_refused(fuzzed: Fuzzed) -> None:
    task = fuzzed.real["task_id"]
    answer = _call(fuzzed, "GET", f"/v2/{PROJECT}/migration-task/{task}/logs?log_level=DEBUG")
    assert answer.status_code == 400 and "log_level" in answer.json()["error_msg"]


def test_a_wrong_method_is_answered_405_with_allow(fuzzed: Fuzzed) -> None:
    answer = _call(fuzzed, "PATCH", f"/v2/{PROJECT}/migration-tasks")
    assert answer.status_code == 405 and answer.headers.get("Allow") == "GET"
    assert set(answer.json()) == ERROR_KEYS
