"""The API's edge, before and around the signature, against the running service: bodies
of unsigned or badly signed requests never read, a whole body within one deadline, a
budget for the bodies being read, the query and headers verified exactly as the routes
read them, download links that refuse any expiry that is not a time, links and
redirects on the public URL, and a signed call that changes something accepted once.

One service for the module (short body and header timeouts, a small body budget, its
output kept in a file), raw sockets and `http.client` for what the SDK cannot send, and
the official SDK for the calls that must still be answered.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    CopyInstanceRequest,
    DcsClient,
    DownloadBackupFilesReq,
    ListBackupFileLinksRequest,
    ListMigrationTaskRequest,
)

from dcs_migration.config import Settings
from dcs_migration.store import SQLITE_FILE_NAME
from tests.support import rdbgen as g
from tests.support.floods import FULL_BODY, unsigned_body_flood
from tests.support.servers import RedisServer
from tests.support.service import Service, import_task_json
from tests.support.waiting import finished_backup

pytestmark = [pytest.mark.service, pytest.mark.redis]

PROJECT = "7c0ffee5e1a04d2f8e7b1c0de0000612"
OTHER_PROJECT = "7c0ffee5e1a04d2f8e7b1c0de0000613"
BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 2.0
BUDGET_MB = 24  # two whole 12 MiB bodies
SLACK = 3.0  # what a bounded wait may take beyond its timeout on a loaded machine
PUBLIC_URL = "https://dcs.example.test:8443/api"


# -- the service ----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    ak: str
    sk: str
    project_id: str


@dataclass
class Edge:
    service: Service
    key: Key
    other: Key
    client: DcsClient
    instance_id: str
    log: Path


def _service(tmp: Path, **env: str) -> Service:
    base = {
        "DCS_MIGRATION_BODY_TIMEOUT": f"{BODY_TIMEOUT:g}",
        "DCS_MIGRATION_HEADER_TIMEOUT": f"{HEADER_TIMEOUT:g}",
        "DCS_MIGRATION_BODY_BUDGET_MB": str(BUDGET_MB),
    }
    return Service(env={**base, **env}, log_path=tmp / "service.log")


def _mint(service: Service, project: str) -> Key:
    out = service.cli("keys", "create", "--project-id", project)
    return Key(out["ak"], out["sk"], project)


@pytest.fixture(scope="module")
def redis_target() -> Iterator[RedisServer]:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    with RedisServer("--repl-diskless-sync-delay", "0") as server:
        yield server


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, redis_target: RedisServer) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    with _service(tmp) as service:
        service.bucket("bucket", PROJECT).joinpath("small.rdb").write_bytes(
            g.rdb(g.key(b"k", g.string(b"v")), version=9)
        )
        key, other = _mint(service, PROJECT), _mint(service, OTHER_PROJECT)
        added = service.cli(
            "instances", "add", "--project-id", PROJECT, "--name", "target",
            "--addrs", f"127.0.0.1:{redis_target.port}",
        )  # fmt: skip
        client = service.client(key.ak, key.sk, key.project_id)
        yield Edge(service, key, other, client, added["instance_id"], tmp / "service.log")


# -- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A request as the SDK signs it: its target (path and canonical query) and headers."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


def sign(
    service: Service,
    key: Key,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str | None = None,
) -> Signed:
    request = SdkRequest(
        method=method,
        schema="http",
        host=host or f"127.0.0.1:{service.port}",
        resource_path=path,
        query_params=list(query or []),
        header_params={"Content-Type": "application/json"},
        body=body,
    )
    request = BasicCredentials(key.ak, key.sk, key.project_id).sign_request(request)
    return Signed(method, request.uri, list(request.header_params.items()), body)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    service: Service,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
) -> Answer:
    """One request over `http.client`, its headers sent as given (repeated ones too)."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return Answer(response.status, response.msg, response.read())
    finally:
        conn.close()


def send_signed(service: Service, signed: Signed) -> Answer:
    return send(service, signed.method, signed.target, signed.headers, signed.body)


def refused(answer: Answer, status: int, code: str) -> str:
    """The message of a DCS-form refusal with `status` and `code`."""
    assert answer.status == status, answer
    body = answer.json()
    assert set(body) == {"error_code", "error_msg", "error_ext_msg"}, body
    assert body["error_code"] == code, body
    message: str = body["error_msg"]
    return message


def new_log(edge: Edge, since: int) -> str:
    with edge.log.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


# -- raw connections --------------------------------------------------------------------


def raw_head(method: str, path: str, headers: list[tuple[str, str]], *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers), *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- 1. bodies of requests that cannot be signed right are never read -------------------


@pytest.mark.timeout(60)
def test_unsigned_bodies_are_refused_unread_and_cost_no_memory(edge: Edge) -> None:
    """100 unsigned requests each send all but the last byte of a 12 MiB body: each is
    refused (401) before its body is read, the service's memory stays flat (its RSS
    rises less than 50 MB, at its highest), and a signed SDK call is answered meanwhile."""
    service = edge.service
    assert service.process is not None

    def signed_call() -> None:
        assert edge.client.list_migration_task(ListMigrationTaskRequest()).count is not None

    signed_call()  # warm: imports, connection pools
    flood = unsigned_body_flood(
        service.port, service.process.pid, f"/v2/{PROJECT}/migration-task", meanwhile=signed_call
    )
    assert flood.grew_mb < 50, flood
    assert flood.statuses == {401: 100}, flood.statuses
    assert all(b'"APIGW.0301"' in c.answer for c in flood.clients)
    assert len(flood.meanwhile_seconds) == 3 and max(flood.meanwhile_seconds) < 5, flood


def test_a_body_that_does_not_fit_the_budget_gets_a_503(edge: Edge) -> None:
    """Signed heads (what a holder of an AK, or of one captured request, can send) whose
    12 MiB bodies stall: two fill the budget, the next body is refused at once with a
    503 and Retry-After, a call without a body is still answered, and the budget is
    whole again once the stalled ones timed out."""
    service = edge.service
    path = f"/v2/{PROJECT}/migration-task"
    signed = sign(service, edge.key, "POST", path, body=b"{}")
    head = raw_head("POST", path, signed.headers, f"Content-Length: {FULL_BODY}")
    socks = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(head + b"{")
            socks.append(sock)
        time.sleep(0.5)
        third = socket.create_connection(("127.0.0.1", service.port), timeout=10)
        socks.append(third)
        third.sendall(head + b"{")
        answer = b""
        with contextlib.suppress(OSError):
            while not answer.endswith(b"}") and (data := third.recv(65536)):
                answer += data
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 503 "), answer
        assert b"\r\nretry-after: 1\r\n" in rest.lower(), answer
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error_code"] == "DCS.4842"
        small = sign(service, edge.key, "POST", path, body=b"{}")
        refused(send_signed(service, small), 503, "DCS.4842")
        assert edge.client.list_migration_task(ListMigrationTaskRequest()).count is not None
        time.sleep(BODY_TIMEOUT + 1)  # the stalled bodies are cut (408): their share is back
        again = sign(service, edge.key, "POST", path, body=b'{"task_name": "x"}')
        assert send_signed(service, again).status == 400  # read, and refused as incomplete
    finally:
        for sock in socks:
            sock.close()


def test_a_trickled_body_is_cut_at_one_deadline_for_the_whole_body(edge: Edge) -> None:
    """A signed head, a quick first megabyte, then a byte every half second: the body's
    deadline counts from its start, whatever came, so the answer is a 408 in time."""
    service = edge.service
    path = f"/v2/{PROJECT}/migration-task"
    signed = sign(service, edge.key, "POST", path, body=b"{}")
    size = (1 << 20) + 100
    head = raw_head("POST", path, signed.headers, f"Content-Length: {size}")
    answer = b""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head + b" " * (1 << 20))
        started = time.monotonic()
        sock.settimeout(0.5)
        closed_after = None
        while time.monotonic() - started < BODY_TIMEOUT + 12:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                continue
            except OSError:
                data = b""
            if not data:
                closed_after = time.monotonic() - started
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert closed_after is not None and closed_after < BODY_TIMEOUT + SLACK, closed_after


# -- 2. what is verified is what the routes read ----------------------------------------


def test_a_raw_plus_in_the_query_is_read_as_the_routes_read_it(edge: Edge) -> None:
    """The routes read ``+`` in a query as a space: a signature over the name ``a+b``
    (sent ``a%2Bb``) does not serve the query ``a+b``, which names ``a b``."""
    service, path = edge.service, f"/v2/{PROJECT}/migration-tasks"
    plus = sign(service, edge.key, "GET", path, query=[("name", "a+b")])
    assert plus.target.endswith("?name=a%2Bb"), plus.target
    assert send_signed(service, plus).status == 200
    swapped = Signed("GET", plus.target.replace("%2B", "+"), plus.headers, b"")
    message = refused(send_signed(service, swapped), 401, "APIGW.0301")
    assert "verify aksk signature fail" in message
    # A space, signed as the SDK sends it (%20) or sent as "+": one query, one signature.
    space = sign(service, edge.key, "GET", path, query=[("name", "a b")])
    assert send_signed(service, space).status == 200
    as_plus = Signed("GET", space.target.replace("%20", "+"), space.headers, b"")
    assert send_signed(service, as_plus).status == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Sdk-Date", "20200101T000000Z"),
        ("Authorization", "SDK-HMAC-SHA256 Access=X, SignedHeaders=host, Signature=00"),
        ("X-Project-Id", OTHER_PROJECT),
    ],
)
def test_a_signature_header_repeated_with_another_value_is_refused(
    edge: Edge, name: str, value: str
) -> None:
    service, path = edge.service, f"/v2/{PROJECT}/migration-tasks"
    plain = sign(service, edge.key, "GET", path)
    assert send_signed(service, plain).status == 200
    for headers in ([*plain.headers, (name, value)], [(name, value), *plain.headers]):
        answer = send(service, "GET", plain.target, headers)
        message = refused(answer, 401, "APIGW.0301")
        assert f"the header {name.lower()} is repeated" in message, message


@pytest.mark.parametrize(
    "expires", ["9" * 5000, quote("²"), quote("١٢٣"), "-1", "1e9", "+5", "%205", ""]
)
def test_a_link_whose_expiry_is_not_a_time_is_a_403_without_traceback(
    edge: Edge, expires: str
) -> None:
    logged = edge.log.stat().st_size
    target = f"/v2/{PROJECT}/backup-files/b/f.rdb?expires={expires}&signature={'0' * 64}"
    answer = send(edge.service, "GET", target, [("Host", "127.0.0.1")])
    message = refused(answer, 403, "APIGW.0302")
    assert "expiry is not a time" in message, message
    time.sleep(0.2)
    written = new_log(edge, logged)
    assert "Traceback" not in written and "internal error" not in written, written


# -- 3. links and redirects on the public URL -------------------------------------------


def test_links_and_redirects_use_the_public_url(tmp_path: Path, redis_target: RedisServer) -> None:
    """With `DCS_MIGRATION_PUBLIC_URL`, a download link and a redirect point there, even
    for a request that names another host (signed) and scheme (X-Forwarded-Proto from a
    proxy on this host)."""
    with _service(tmp_path, DCS_MIGRATION_PUBLIC_URL=PUBLIC_URL + "/") as service:
        key = _mint(service, PROJECT)
        instance_id = service.cli(
            "instances", "add", "--project-id", PROJECT, "--name", "target",
            "--addrs", f"127.0.0.1:{redis_target.port}",
        )["instance_id"]  # fmt: skip
        client = service.client(key.ak, key.sk, key.project_id)
        backup_id = client.copy_instance(
            CopyInstanceRequest(
                instance_id=instance_id, body=BackupInstanceBody(backup_format="rdb")
            )
        ).backup_id
        assert finished_backup(client, instance_id, backup_id, 30).status == "succeed"
        links = client.list_backup_file_links(
            ListBackupFileLinksRequest(
                instance_id=instance_id,
                backup_id=backup_id,
                body=DownloadBackupFilesReq(expiration=600),
            )
        ).links
        assert links and all(
            link.link.startswith(f"{PUBLIC_URL}/v2/{PROJECT}/backup-files/") for link in links
        ), links

        path = f"/v2/{PROJECT}/instances/{instance_id}/backups/{backup_id}/links"
        body = json.dumps({"expiration": 600}).encode()
        elsewhere = sign(service, key, "POST", path, body=body, host="attacker.example:80")
        headers = [*elsewhere.headers, ("X-Forwarded-Proto", "gopher")]
        answer = send(service, "POST", elsewhere.target, headers, body)
        assert answer.status == 200, answer
        for link in answer.json()["links"]:
            assert link["link"].startswith(f"{PUBLIC_URL}/v2/"), link

        redirect = send(
            service,
            "GET",
            f"/v2/{PROJECT}/migration-tasks/?limit=5",
            [("Host", "attacker.example"), ("X-Forwarded-Proto", "gopher")],
        )
        assert redirect.status == 307, redirect
        location = redirect.headers["location"]
        assert location == f"{PUBLIC_URL}/v2/{PROJECT}/migration-tasks?limit=5", location


# -- 4. a signed call that changes something is accepted once ---------------------------


def test_a_replayed_create_is_refused_and_makes_no_second_task(edge: Edge) -> None:
    service = edge.service
    body = json.dumps({**import_task_json(edge.instance_id), "task_name": "replayed"}).encode()
    create = sign(service, edge.key, "POST", f"/v2/{PROJECT}/migration-task", body=body)
    first = send_signed(service, create)
    assert first.status == 200, first
    again = send_signed(service, create)
    message = refused(again, 401, "APIGW.0301")
    assert "already received" in message, message
    listed = sign(service, edge.key, "GET", f"/v2/{PROJECT}/migration-tasks",
                  query=[("name", "replayed")])  # fmt: skip
    answer = send_signed(service, listed)
    assert answer.status == 200 and answer.json()["count"] == 1, answer
    # A call that reads is not refused when it comes again.
    assert send_signed(service, listed).status == 200
    # The same create signed anew (another second) is a new call.
    time.sleep(1.1)
    fresh = sign(service, edge.key, "POST", f"/v2/{PROJECT}/migration-task", body=body)
    assert send_signed(service, fresh).status == 200


def test_a_call_the_service_failed_may_be_sent_again_and_a_refused_one_may_not(
    edge: Edge,
) -> None:
    """A create that failed on the service's side (here its database refuses the task's
    row: a trigger, as a broken disk would) changed nothing, so the same signed bytes are
    accepted when sent again, as a 5xx asks; a create the service answered with a 4xx
    was an answer, and its bytes stay spent."""
    service = edge.service
    path = f"/v2/{PROJECT}/migration-task"
    body = json.dumps({**import_task_json(edge.instance_id), "task_name": "retried"}).encode()
    create = sign(service, edge.key, "POST", path, body=body)
    database = sqlite3.connect(service.data_dir / SQLITE_FILE_NAME)
    try:
        with database:
            database.execute(
                "CREATE TRIGGER refuse_tasks BEFORE INSERT ON migration_tasks "
                "BEGIN SELECT RAISE(ABORT, 'no room for a task'); END"
            )
        failed = send_signed(service, create)
        assert failed.status == 500, failed
    finally:
        with database:
            database.execute("DROP TRIGGER IF EXISTS refuse_tasks")
        database.close()
    again = send_signed(service, create)
    assert again.status == 200, again
    listed = sign(service, edge.key, "GET", f"/v2/{PROJECT}/migration-tasks",
                  query=[("name", "retried")])  # fmt: skip
    assert send_signed(service, listed).json()["count"] == 1

    wrong = json.dumps(
        {**import_task_json(edge.instance_id), "task_name": "refused", "migration_type": "x"}
    ).encode()
    refused_create = sign(service, edge.key, "POST", path, body=wrong)
    assert send_signed(service, refused_create).status == 400
    message = refused(send_signed(service, refused_create), 401, "APIGW.0301")
    assert "already received" in message, message


# -- 5. the settings --------------------------------------------------------------------


def test_the_public_url_and_body_budget_settings() -> None:
    def settings(**env: str) -> Settings:
        return Settings.from_env(env, data_dir="/tmp/unused")

    assert settings().public_url is None
    assert settings(DCS_MIGRATION_PUBLIC_URL="https://a.example/x/").public_url == (
        "https://a.example/x"
    )
    for bad in ("ftp://a.example", "https://", "https://a.example/?q=1", "a.example", "http://u@a"):
        with pytest.raises(ValueError, match="DCS_MIGRATION_PUBLIC_URL"):
            settings(DCS_MIGRATION_PUBLIC_URL=bad)
    assert settings().body_budget == 32 << 20
    assert settings(DCS_MIGRATION_BODY_BUDGET_MB="100").body_budget == 100 << 20
    for bad in ("11", "x", "1.5"):
        with pytest.raises(ValueError, match="DCS_MIGRATION_BODY_BUDGET_MB"):
            settings(DCS_MIGRATION_BODY_BUDGET_MB=bad)
    assert settings(DCS_MIGRATION_BODY_TIMEOUT="nan").body_timeout == 30.0
