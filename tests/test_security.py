"""Attacks on the running service: one project reading or changing another's objects,
secrets showing up where they should not, slow clients holding connections, and task
bodies or registrations that would point the service at a server it should not talk to.

One service for the module (started with short body and header timeouts, its output
kept in a file), driven over HTTP by the official SDK, and by raw sockets where the SDK
cannot express the attack.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.http.http_handler import HttpHandler
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    BackupInstanceBody,
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    CopyInstanceRequest,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    DcsClient,
    DeleteBackupFileRequest,
    DeleteMigrateTaskRequest,
    DeleteMigrationTaskRequest,
    DownloadBackupFilesReq,
    Files,
    ListBackupFileLinksRequest,
    ListBackupRecordsRequest,
    ListInstancesRequest,
    ListMigrationTaskLogsRequest,
    ListMigrationTaskRequest,
    ListRestoreRecordsRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
    ShowInstanceRequest,
    ShowMigrationTaskRequest,
    ShowMigrationTaskStatsRequest,
    SourceInstanceBody,
    StopMigrationTaskRequest,
    TargetInstanceBody,
)

from tests.support import rdbgen as g
from tests.support.peers import Peer
from tests.support.servers import RedisServer, free_port
from tests.support.service import Service, import_task_json
from tests.support.waiting import finished_backup, finished_restore, until

pytestmark = [pytest.mark.service, pytest.mark.redis]

PROJECT_A = "5e1a0c3d9b7f4e2a8c6d0b1f2e3a4c5d"
PROJECT_B = "9f8e7d6c5b4a49382716f5e4d3c2b1a0"
# Secrets: random, so that finding one anywhere can only mean it leaked.
INSTANCE_PASSWORD = "inst-pw-" + secrets.token_hex(12)
OVERRIDE_PASSWORD = "override-pw-" + secrets.token_hex(12)
REGISTER_PASSWORD = "register-pw-" + secrets.token_hex(12)
BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 2.0
SLACK = 3.0  # what a bounded wait may take beyond its timeout on a loaded machine

RESPONSES: list[bytes] = []
"""Every response body the module's clients received (grepped for secrets at the end)."""


# -- clients ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    ak: str
    sk: str
    project_id: str


def mint(service: Service, project: str) -> Key:
    out = service.cli("keys", "create", "--project-id", project)
    return Key(out["ak"], out["sk"], project)


def sdk(service: Service, key: Key) -> DcsClient:
    """The official client, every response body it gets recorded in RESPONSES."""
    config = HttpConfig.get_default_config()
    config.timeout = (5, 30)
    handler = HttpHandler().add_response_handler(
        lambda **kw: RESPONSES.append(bytes(kw["response"].content))
    )
    return (
        DcsClient.new_builder()
        .with_http_config(config)
        .with_http_handler(handler)
        .with_credentials(BasicCredentials(key.ak, key.sk, key.project_id))
        .with_endpoint(service.url)
        .build()
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    service: Service,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: Key | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request over http.client, signed with `key` by the SDK's signer (unsigned
    without a key); the body is JSON unless given as bytes."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = SdkRequest(
        method=method,
        schema="http",
        host=f"127.0.0.1:{service.port}",
        resource_path=path,
        query_params=[],
        header_params={"Content-Type": "application/json", **(headers or {})},
        body=data,
    )
    if key is not None:
        request = BasicCredentials(key.ak, key.sk, key.project_id).sign_request(request)
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.request(method, path, body=data, headers=request.header_params)
        response = conn.getresponse()
        answer = Answer(response.status, response.read())
    finally:
        conn.close()
    RESPONSES.append(answer.body)
    return answer


def outcome(call: Callable[[], Any], *ids: str) -> tuple[int, str | None, str]:
    """(status, error code, message or result) of an SDK call, each id in `ids` replaced
    by its position, so that answers about different ids compare equal."""
    try:
        result = call()
    except ClientRequestException as exc:
        status, code, text = exc.status_code, exc.error_code, str(exc.error_msg)
    else:
        status, code = result.status_code, None
        text = (result.raw_content or b"").decode()
    for n, each in enumerate(ids):
        if each:
            text = text.replace(each, f"<id {n}>")
    return status, code, text


SECONDS = 30  # what these tests wait for a task, a backup or a restore to end


def finished_task(client: DcsClient, task_id: str) -> Any:
    def done() -> Any:
        task = client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id))
        return task if task.status in ("SUCCESS", "FAILED", "TERMINATED") else None

    return until(done, f"task {task_id}", SECONDS)


def import_body(
    instance_id: str,
    file_name: str = "small.rdb",
    *,
    password: str | None = None,
    **target: Any,
) -> CreateMigrationTaskBody:
    return CreateMigrationTaskBody(
        task_name="import",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(
            file_source="self_build_obs", bucket_name="bucket", files=[Files(file_name=file_name)]
        ),
        target_instance=TargetInstanceBody(id=instance_id, password=password, **target),
    )


def create_task(client: DcsClient, body: CreateMigrationTaskBody) -> str:
    task_id: str = client.create_migration_task(CreateMigrationTaskRequest(body=body)).id
    return task_id


def register_cli(service: Service, project: str, port: int, password: str | None = None) -> str:
    args = ["--project-id", project, "--name", f"redis-{port}", "--addrs", f"127.0.0.1:{port}"]
    out = service.cli("instances", "add", *args, *(["--password", password] if password else []))
    instance_id: str = out["instance_id"]
    return instance_id


# -- the module's service and the objects of two projects ----------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    env = {
        "DCS_MIGRATION_BODY_TIMEOUT": f"{BODY_TIMEOUT:g}",
        "DCS_MIGRATION_HEADER_TIMEOUT": f"{HEADER_TIMEOUT:g}",
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with Service(env=env, log_path=log) as running:
        running.bucket("bucket", PROJECT_A).joinpath("small.rdb").write_bytes(
            g.rdb(g.key(b"k", g.string(b"v")), g.key(b"other", g.string(b"value")), version=9)
        )
        yield running


@dataclass
class World:
    """Project A's instance (password protected), task, backup and restore; project B's
    own instance; the keys of both; and what was minted along the way."""

    service: Service
    key_a: Key
    key_b: Key
    a: DcsClient
    b: DcsClient
    redis_a: RedisServer
    redis_b: RedisServer
    instance_a: str
    instance_b: str
    task_a: str
    backup_a: str
    restore_a: str
    sks: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(service: Service) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        redis_a = stack.enter_context(
            RedisServer("--requirepass", INSTANCE_PASSWORD, "--repl-diskless-sync-delay", "0")
        )
        redis_b = stack.enter_context(RedisServer("--repl-diskless-sync-delay", "0"))
        key_a, key_b = mint(service, PROJECT_A), mint(service, PROJECT_B)
        a, b = sdk(service, key_a), sdk(service, key_b)
        instance_a = register_cli(service, PROJECT_A, redis_a.port, INSTANCE_PASSWORD)
        instance_b = register_cli(service, PROJECT_B, redis_b.port)
        task_a = create_task(a, import_body(instance_a))
        assert finished_task(a, task_a).status == "SUCCESS"
        backup_a = a.copy_instance(
            CopyInstanceRequest(
                instance_id=instance_a, body=BackupInstanceBody(remark="a", backup_format="rdb")
            )
        ).backup_id
        assert finished_backup(a, instance_a, backup_a, SECONDS).status == "succeed"
        restore_a = a.restore_instance(
            RestoreInstanceRequest(
                instance_id=instance_a, body=RestoreInstanceBody(backup_id=backup_a)
            )
        ).restore_id
        assert finished_restore(a, instance_a, restore_a, SECONDS).status == "succeed"
        yield World(
            service=service,
            key_a=key_a,
            key_b=key_b,
            a=a,
            b=b,
            redis_a=redis_a,
            redis_b=redis_b,
            instance_a=instance_a,
            instance_b=instance_b,
            task_a=task_a,
            backup_a=backup_a,
            restore_a=restore_a,
            sks=[key_a.sk, key_b.sk],
        )


# -- 1. one project never sees another's objects ------------------------------------------


def test_every_route_answers_for_another_projects_object_as_for_none(world: World) -> None:
    """B asking about A's task, instance, backup or restore gets exactly the answer it
    gets for an id that exists nowhere (status, code, and message but for the id)."""
    a, b = world.a, world.b
    task, inst, backup = world.task_a, world.instance_a, world.backup_a
    ghost_task, ghost_inst, ghost_backup = (str(uuid.uuid4()) for _ in range(3))
    own = world.instance_b  # B's own instance, with A's backup id

    def same(call: Callable[[str, str], Any], real: tuple[str, str], ghost: tuple[str, str]) -> Any:
        seen = outcome(lambda: call(*real), *real)
        assert seen == outcome(lambda: call(*ghost), *ghost)
        return seen

    def link(i: str, bk: str) -> Any:
        return b.list_backup_file_links(
            ListBackupFileLinksRequest(
                instance_id=i, backup_id=bk, body=DownloadBackupFilesReq(expiration=600)
            )
        )

    checks: dict[str, tuple[Callable[[str, str], Any], tuple[str, str], tuple[str, str]]] = {
        "task show": (
            lambda t, _: b.show_migration_task(ShowMigrationTaskRequest(task_id=t)),
            (task, ""),
            (ghost_task, ""),
        ),
        "task stats": (
            lambda t, _: b.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=t)),
            (task, ""),
            (ghost_task, ""),
        ),
        "task logs": (
            lambda t, _: b.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=t)),
            (task, ""),
            (ghost_task, ""),
        ),
        "task stop": (
            lambda t, _: b.stop_migration_task(StopMigrationTaskRequest(task_id=t)),
            (task, ""),
            (ghost_task, ""),
        ),
        "task batch-stop": (
            lambda t, _: b.batch_stop_migration_tasks(
                BatchStopMigrationTasksRequest(
                    body=BatchStopMigrationTasksBody(migration_tasks=[t])
                )
            ),
            (task, ""),
            (ghost_task, ""),
        ),
        "task delete": (
            lambda t, _: b.delete_migration_task(
                DeleteMigrationTaskRequest(body=DeleteMigrateTaskRequest(task_id_list=[t]))
            ),
            (task, ""),
            (ghost_task, ""),
        ),
        "task create into the instance": (
            lambda i, _: b.create_migration_task(CreateMigrationTaskRequest(body=import_body(i))),
            (inst, ""),
            (ghost_inst, ""),
        ),
        "task create from the backup": (
            lambda bk, _: b.create_migration_task(
                CreateMigrationTaskRequest(
                    body=CreateMigrationTaskBody(
                        task_name="steal",
                        migration_type="backupfile_import",
                        migration_method="full_amount_migration",
                        backup_files=BackupFilesBody(file_source="backup_record", backup_id=bk),
                        target_instance=TargetInstanceBody(id=own),
                    )
                )
            ),
            (backup, ""),
            (ghost_backup, ""),
        ),
        "instance show": (
            lambda i, _: b.show_instance(ShowInstanceRequest(instance_id=i)),
            (inst, ""),
            (ghost_inst, ""),
        ),
        "backup list": (
            lambda i, _: b.list_backup_records(ListBackupRecordsRequest(instance_id=i)),
            (inst, ""),
            (ghost_inst, ""),
        ),
        "backup create": (
            lambda i, _: b.copy_instance(
                CopyInstanceRequest(
                    instance_id=i, body=BackupInstanceBody(remark="x", backup_format="rdb")
                )
            ),
            (inst, ""),
            (ghost_inst, ""),
        ),
        "backup delete": (
            lambda i, bk: b.delete_backup_file(
                DeleteBackupFileRequest(instance_id=i, backup_id=bk)
            ),
            (inst, backup),
            (ghost_inst, ghost_backup),
        ),
        "backup delete through B's instance": (
            lambda bk, i: b.delete_backup_file(
                DeleteBackupFileRequest(instance_id=i, backup_id=bk)
            ),
            (backup, own),
            (ghost_backup, own),
        ),
        "backup links": (link, (inst, backup), (ghost_inst, ghost_backup)),
        "backup links through B's instance": (
            lambda bk, i: link(i, bk),
            (backup, own),
            (ghost_backup, own),
        ),
        "restore create": (
            lambda i, bk: b.restore_instance(
                RestoreInstanceRequest(instance_id=i, body=RestoreInstanceBody(backup_id=bk))
            ),
            (inst, backup),
            (ghost_inst, ghost_backup),
        ),
        "restore B's instance from A's backup": (
            lambda bk, i: b.restore_instance(
                RestoreInstanceRequest(instance_id=i, body=RestoreInstanceBody(backup_id=bk))
            ),
            (backup, own),
            (ghost_backup, own),
        ),
        "restore list": (
            lambda i, _: b.list_restore_records(ListRestoreRecordsRequest(instance_id=i)),
            (inst, ""),
            (ghost_inst, ""),
        ),
    }
    seen = {name: same(*check) for name, check in checks.items()}
    for name, (status, code, _) in seen.items():
        if name == "task batch-stop":
            assert status == 200  # the refusal is per task, checked equal above
        else:
            assert status in (400, 404) and code is not None, (name, status, code)

    # The lists of B hold none of A's objects, whatever the filter.
    listed = b.list_migration_task(ListMigrationTaskRequest(name="import"))
    assert task not in (listed.raw_content or b"").decode()
    assert b.list_migration_task(ListMigrationTaskRequest()).count == 0
    instances = b.list_instances(ListInstancesRequest())
    assert [i.instance_id for i in instances.instances] == [own]
    assert (
        b.list_instances(ListInstancesRequest(name=f"redis-{world.redis_a.port}")).instances == []
    )

    # A's objects are all still there, untouched by B's attempts.
    assert a.show_migration_task(ShowMigrationTaskRequest(task_id=task)).status == "SUCCESS"
    a_stop = outcome(lambda: a.stop_migration_task(StopMigrationTaskRequest(task_id=task)))
    assert a_stop[:2] == (400, "DCS.4957")  # A is told what B is not: the task exists
    backups = a.list_backup_records(ListBackupRecordsRequest(instance_id=inst))
    assert [(r.backup_id, r.status) for r in backups.backup_record_response] == [
        (backup, "succeed")
    ]
    restores = a.list_restore_records(ListRestoreRecordsRequest(instance_id=inst))
    assert [r.restore_id for r in restores.restore_record_response] == [world.restore_a]
    assert b.list_backup_records(ListBackupRecordsRequest(instance_id=own)).total_num == 0
    assert b.list_restore_records(ListRestoreRecordsRequest(instance_id=own)).total_num == 0
    assert b.list_migration_task(ListMigrationTaskRequest()).count == 0


# Requests for one of project A's objects: (method, path under /v2/{project}, body), with
# TASK, INSTANCE and BACKUP standing for the object's id.
REQUESTS_FOR_AN_OBJECT: list[tuple[str, str, Any]] = [
    ("GET", "/migration-task/TASK", None),
    ("GET", "/migration-task/TASK/logs", None),
    ("POST", "/migration-task/TASK/stop", None),
    ("DELETE", "/migration-tasks/delete", {"task_id_list": ["TASK"]}),
    ("GET", "/instances/INSTANCE", None),
    ("GET", "/instances/INSTANCE/restores", None),
    ("POST", "/instances/INSTANCE/backups/BACKUP/links", {"expiration": 600}),
]


@pytest.mark.parametrize(
    ("method", "route", "route_body"),
    REQUESTS_FOR_AN_OBJECT,
    ids=[f"{method} {route}" for method, route, _ in REQUESTS_FOR_AN_OBJECT],
)
def test_refused_signatures_say_nothing_of_what_exists(
    world: World, method: str, route: str, route_body: Any
) -> None:
    """Unsigned, badly signed, unknown-key and other-project requests get the same answer
    (status and whole body) for an existing object as for one that does not exist."""
    service = world.service
    ghost_task, ghost_inst, ghost_backup = (str(uuid.uuid4()) for _ in range(3))
    wrong_sk = Key(world.key_a.ak, "not-" + world.key_a.sk, PROJECT_A)
    unknown = Key("UNKNOWNAK" + secrets.token_hex(4).upper(), "whatever", PROJECT_A)
    ids = {"TASK": world.task_a, "INSTANCE": world.instance_a, "BACKUP": world.backup_a}

    def with_ids(text: str) -> str:
        for placeholder, real in ids.items():
            text = text.replace(placeholder, real)
        return text

    path = with_ids(f"/v2/{PROJECT_A}{route}")
    body = None if route_body is None else json.loads(with_ids(json.dumps(route_body)))
    ghosts = {
        world.task_a: ghost_task,
        world.instance_a: ghost_inst,
        world.backup_a: ghost_backup,
    }

    def ghostly(text: str) -> str:
        for real, ghost in ghosts.items():
            text = text.replace(real, ghost)
        return text

    ghost_path = ghostly(path)
    ghost_body = None if body is None else json.loads(ghostly(json.dumps(body)))
    for key, status in ((None, 401), (wrong_sk, 401), (unknown, 401), (world.key_b, 403)):
        real = raw(service, method, path, body, key=key)
        fake = raw(service, method, ghost_path, ghost_body, key=key)
        assert real.status == status, (method, path, key, real)
        assert (real.status, real.body) == (fake.status, fake.body), (method, path, key)
    # Signed by A, the same requests find A's objects (the ids are real).
    if method != "DELETE":
        assert raw(service, method, path, body, key=world.key_a).status in (200, 400)


# -- 4. the service only talks to registered Redis servers --------------------------------


@pytest.fixture
def decoy() -> Iterator[Peer]:
    server = Peer(lambda data: b"+PONG\r\n" if b"PING" in data else b"-ERR nothing\r\n")
    try:
        yield server
    finally:
        server.close()


def test_a_task_body_never_redirects_the_connection(world: World, decoy: Peer) -> None:
    a, inst, real = world.a, world.instance_a, world.redis_a.port
    tasks_before = a.list_migration_task(ListMigrationTaskRequest()).count
    redirects = [
        {"addrs": f"127.0.0.1:{decoy.port}"},
        {"addrs": f"127.0.0.1:{real},127.0.0.1:{decoy.port}"},
        {"ip": "127.0.0.2"},
        {"port": str(decoy.port)},
        {"ip": "127.0.0.1", "port": str(decoy.port)},
    ]
    for target in redirects:
        found = outcome(functools.partial(create_task, a, import_body(inst, **target)))
        assert found[:2] == (400, "DCS.4800"), target
        assert "target_instance" in found[2], found
    assert a.list_migration_task(ListMigrationTaskRequest()).count == tasks_before

    # A source instance in a backup import, or an online migration, is never contacted.
    sourced = import_body(inst)
    sourced.source_instance = SourceInstanceBody(addrs=f"127.0.0.1:{decoy.port}")
    with contextlib.suppress(ClientRequestException):
        finished_task(a, create_task(a, sourced))
    online = import_body(inst)
    online.migration_type = "online_migration"
    online.backup_files = None
    online.source_instance = SourceInstanceBody(addrs=f"127.0.0.1:{decoy.port}")
    assert outcome(lambda: create_task(a, online))[0] == 400

    # The registered address itself, spelled out, is accepted.
    same = import_body(inst, addrs=f"127.0.0.1:{real}", ip="127.0.0.1", port=str(real))
    assert finished_task(a, create_task(a, same)).status == "SUCCESS"
    assert decoy.accepted == 0


def _http_reply(data: bytes) -> bytes:
    return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _pong_then_array(data: bytes) -> bytes:
    return b"+PONG\r\n" if b"PING" in data else b"*1\r\n$1\r\na\r\n"


NOT_REDIS: dict[str, Callable[[bytes], bytes | None]] = {
    "closes at once": lambda data: b"",
    "answers errors": lambda data: b"-ERR unknown command\r\n",
    "answers PONG but no INFO": lambda data: b"+PONG\r\n",
    "never answers": lambda data: None,
    "speaks HTTP": _http_reply,
    "answers INFO with an array": _pong_then_array,
}


@pytest.mark.parametrize("behaviour", list(NOT_REDIS))
def test_registering_a_server_that_is_not_redis_is_refused(world: World, behaviour: str) -> None:
    server = Peer(NOT_REDIS[behaviour])
    try:
        path = f"/v2/{PROJECT_A}/instances"
        before = world.a.list_instances(ListInstancesRequest()).instance_num
        body = {"name": "impostor", "addrs": f"127.0.0.1:{server.port}"}
        answer = raw(world.service, "POST", path, body, key=world.key_a)
        assert answer.status == 400, answer
        assert answer.json()["error_code"] == "DCS.4800"
        assert "addrs" in answer.json()["error_msg"]
        assert server.accepted >= 1  # it was really asked
        assert world.a.list_instances(ListInstancesRequest()).instance_num == before
    finally:
        server.close()


def test_registering_needs_an_answering_redis_and_its_password(world: World) -> None:
    service, path = world.service, f"/v2/{PROJECT_A}/instances"
    before = world.a.list_instances(ListInstancesRequest()).instance_num
    nobody = free_port()
    for body in (
        {"name": "nobody", "addrs": f"127.0.0.1:{nobody}"},
        {"name": "nobody", "ip": "127.0.0.1", "port": nobody},
        {"name": "wrong", "addrs": f"127.0.0.1:{world.redis_a.port}", "password": "nope"},
        {"name": "none", "addrs": f"127.0.0.1:{world.redis_a.port}"},
    ):
        answer = raw(service, "POST", path, body, key=world.key_a)
        assert (answer.status, answer.json()["error_code"]) == (400, "DCS.4800"), body
    # The command line refuses the same, and saves nothing either.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "dcs_migration", "instances", "add"),
            *("--project-id", PROJECT_A, "--name", "nobody", "--addrs", f"127.0.0.1:{nobody}"),
        ],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert world.a.list_instances(ListInstancesRequest()).instance_num == before


# -- 3. slow clients --------------------------------------------------------------------


@dataclass
class Exchange:
    """What a slow client got: the bytes, and when the server closed (None: never)."""

    received: bytes = b""
    closed_after: float | None = None

    @property
    def status(self) -> int | None:
        if not self.received.startswith(b"HTTP/1.1 "):
            return None
        return int(self.received.split(b" ", 2)[1])

    def json(self) -> Any:
        return json.loads(self.received.partition(b"\r\n\r\n")[2])


def slow_client(
    port: int,
    first: bytes,
    drips: list[bytes] | None = None,
    *,
    repeat: bool = False,
    every: float = 0.25,
    limit: float = 12,
) -> Exchange:
    """Send `first`, then one of `drips` every `every` seconds (round and round with
    `repeat`), reading what comes back until the server closes or `limit` seconds pass."""
    out = Exchange()
    pending = list(drips or [])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if first:
            sock.sendall(first)
        start = time.monotonic()
        next_drip = start + every
        sock.settimeout(0.05)
        while time.monotonic() - start < limit:
            try:
                data: bytes | None = sock.recv(65536)
            except TimeoutError:
                data = None
            except OSError:  # a reset: closed too
                data = b""
            if data == b"":
                out.closed_after = time.monotonic() - start
                break
            out.received += data or b""
            if pending and time.monotonic() >= next_drip:
                drip = pending.pop(0)
                if repeat:
                    pending.append(drip)
                try:
                    sock.sendall(drip)
                except OSError:
                    out.closed_after = time.monotonic() - start
                    break
                next_drip += every
    return out


def alongside(world: World, jobs: dict[str, Callable[[], Exchange]]) -> dict[str, Exchange]:
    """Run the slow clients at once; meanwhile the service answers others promptly."""
    results: dict[str, Exchange] = {}

    def run(name: str, job: Callable[[], Exchange]) -> None:
        results[name] = job()

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    for _ in range(3):
        started = time.monotonic()
        assert world.a.list_migration_task(ListMigrationTaskRequest()).count >= 1
        with urllib.request.urlopen(f"{world.service.url}/health", timeout=5) as health:
            assert health.status == 200
        assert time.monotonic() - started < 1.5
    for thread in threads:
        thread.join(20)
    assert set(results) == set(jobs)
    return results


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def signed_head(world: World, method: str, path: str, body: bytes, *extra: str) -> bytes:
    """A request head signed with project A's key for `body`: the service reads the body
    of such a request (an unsigned one is refused before its body)."""
    request = SdkRequest(
        method=method,
        schema="http",
        host=f"127.0.0.1:{world.service.port}",
        resource_path=path,
        query_params=[],
        header_params={"Content-Type": "application/json"},
        body=body,
    )
    key = world.key_a
    request = BasicCredentials(key.ak, key.sk, key.project_id).sign_request(request)
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.header_params.items()]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def test_a_stalled_or_trickled_body_gets_a_408_and_others_are_served(world: World) -> None:
    port, path = world.service.port, f"/v2/{PROJECT_A}/migration-task"
    body = json.dumps({"task_name": "slow", "migration_type": "backupfile_import"}).encode()
    sized = signed_head(world, "POST", path, body, f"Content-Length: {len(body)}")
    chunked = signed_head(world, "POST", path, body, "Transfer-Encoding: chunked")
    jobs: dict[str, Callable[[], Exchange]] = {
        f"stalled {n}": lambda: slow_client(port, sized + body[:10]) for n in range(50)
    }
    jobs["no body at all"] = lambda: slow_client(port, sized)
    jobs["trickled"] = lambda: slow_client(port, sized, [bytes([c]) for c in body], repeat=True)
    jobs["trickled chunks"] = lambda: slow_client(port, chunked, [b"1\r\n \r\n"], repeat=True)
    # Slow but within the time: answered as usual (an incomplete task: a 400), never a 408.
    jobs["in time"] = lambda: slow_client(port, sized + body[:10], [body[10:]], every=0.6, limit=3)
    results = alongside(world, jobs)

    for name, got in results.items():
        if name == "in time":  # answered, and the connection kept for the next request
            assert got.status == 400, got
            assert got.closed_after is None, got
            continue
        assert got.closed_after is not None, name
        assert got.status == 408, (name, got)
        assert got.json()["error_code"] == "DCS.4800"
        assert "request body" in got.json()["error_msg"]
        assert BODY_TIMEOUT - 0.5 < got.closed_after < BODY_TIMEOUT + SLACK, (name, got)


def test_slow_silent_or_oversized_request_heads_are_bounded(world: World) -> None:
    port, path = world.service.port, f"/v2/{PROJECT_A}/migration-tasks"
    partial = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    jobs: dict[str, Callable[[], Exchange]] = {
        "stalled head": lambda: slow_client(port, partial),
        "trickled head": lambda: slow_client(port, partial, [b"X-Slow: 1\r\n"], repeat=True),
        "trickled request line": lambda: slow_client(port, b"G", [b"E"], repeat=True),
        "silent connection": lambda: slow_client(port, b""),
        "slow second request": lambda: slow_client(port, head("GET", "/health") + partial),
        # A header that never ends, and a 1 MiB one: refused once 16 KiB are in.
        "endless header": lambda: slow_client(port, partial + b"X-Big: " + b"a" * (20 << 10)),
        "huge head": lambda: slow_client(
            port, partial + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        ),
    }
    results = alongside(world, jobs)

    for name, got in results.items():
        assert got.closed_after is not None, name
        if name in ("endless header", "huge head"):
            assert got.status == 400, (name, got)
            assert got.json()["error_code"] == "DCS.4800"
            assert got.closed_after < SLACK
            continue
        assert got.closed_after < HEADER_TIMEOUT + SLACK, (name, got)
        if name == "silent connection":
            assert got.received == b""
            continue
        if name == "slow second request":
            first, _, rest = got.received.partition(b'{"status":"ok"}')
            assert first.startswith(b"HTTP/1.1 200 "), got
            got = Exchange(rest, got.closed_after)
        assert got.status == 408, (name, got)
        assert got.json()["error_code"] == "DCS.4800"
        assert "request headers" in got.json()["error_msg"]


def test_clients_that_leave_or_garble_mid_body_leave_no_traceback(world: World) -> None:
    """A client that goes away before its body is all in, or breaks the chunked
    encoding, is an ordinary refusal: no internal error, no traceback in the log."""
    service = world.service
    assert service.log_path is not None
    logged = service.log_path.stat().st_size
    path = f"/v2/{PROJECT_A}/migration-task"
    body = b'{"task_name": ' + b" " * 86
    sized = signed_head(world, "POST", path, body, "Content-Length: 100") + body[:14]
    chunked = signed_head(world, "POST", path, body, "Transfer-Encoding: chunked") + b"3\r\nabc\r\n"
    for first in (sized, chunked):
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
            sock.sendall(first)
            time.sleep(0.2)
    garbled = slow_client(service.port, chunked, [b"zz\r\nnot a chunk\r\n"], limit=5)
    assert garbled.status == 400 or garbled.status is None, garbled
    assert garbled.closed_after is not None and garbled.closed_after < SLACK
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as health:
        assert health.status == 200
    time.sleep(BODY_TIMEOUT + 0.5)  # past any timeout of what was left behind
    with service.log_path.open("rb") as log:
        log.seek(logged)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written and "internal error" not in written, written


# -- 2. secrets never leak --------------------------------------------------------------


def test_passwords_and_secret_keys_never_leak(world: World) -> None:
    """Drive the endpoints, failures included, with passwords and SKs about; then look
    for each secret in every response, the task logs, the service's output and every
    byte under the data dir."""
    service, a, inst = world.service, world.a, world.instance_a
    extra = mint(service, PROJECT_A)
    sks = [*world.sks, extra.sk]
    third = sdk(service, extra)

    # A task whose override password is wrong fails at login, saying so without it.
    wrong = create_task(a, import_body(inst, password=OVERRIDE_PASSWORD))
    failed = finished_task(a, wrong)
    assert failed.status == "FAILED"
    error = json.loads(failed.raw_content)["error_message"]
    assert error and "127.0.0.1" in error, error
    # The right one as an override, and the registered one, both work.
    right = create_task(a, import_body(inst, password=INSTANCE_PASSWORD))
    assert finished_task(third, right).status == "SUCCESS"
    assert finished_task(a, create_task(a, import_body(inst))).status == "SUCCESS"
    # Bodies refused with a password in them.
    path = f"/v2/{PROJECT_A}/migration-task"
    good = import_task_json(inst, password=OVERRIDE_PASSWORD)
    for refused in (
        {**good, "target_instance": {"id": inst, "password": OVERRIDE_PASSWORD, "db": "x"}},
        {**good, "task_name": None},
        {**good, "target_instance": {"id": str(uuid.uuid4()), "password": OVERRIDE_PASSWORD}},
        {**good, "target_instance": {"id": inst, "password": [OVERRIDE_PASSWORD]}},
    ):
        assert raw(service, "POST", path, refused, key=world.key_a).status in (400, 404)
    truncated = json.dumps(good).encode()[:-20]
    assert raw(service, "POST", path, truncated, key=world.key_a).status == 400
    # Registering through the API: with the right password, with a wrong one.
    path = f"/v2/{PROJECT_A}/instances"
    addrs = f"127.0.0.1:{world.redis_a.port}"
    ok = raw(service, "POST", path, {"name": "api", "addrs": addrs, "password": INSTANCE_PASSWORD})
    assert ok.status == 401  # unsigned
    ok = raw(
        service,
        "POST",
        path,
        {"name": "api", "addrs": addrs, "password": INSTANCE_PASSWORD},
        key=world.key_a,
    )
    assert ok.status == 200, ok
    refused_login = raw(
        service,
        "POST",
        path,
        {"name": "api", "addrs": addrs, "password": REGISTER_PASSWORD},
        key=world.key_a,
    )
    assert refused_login.status == 400, refused_login
    # Backups of the password-protected instance, an AOF one too, and their links.
    aof = a.copy_instance(
        CopyInstanceRequest(instance_id=inst, body=BackupInstanceBody(backup_format="aof"))
    ).backup_id
    assert finished_backup(a, inst, aof, SECONDS).status == "succeed"
    links = a.list_backup_file_links(
        ListBackupFileLinksRequest(
            instance_id=inst, backup_id=aof, body=DownloadBackupFilesReq(expiration=600)
        )
    )
    for each in links.links:
        with urllib.request.urlopen(each.link, timeout=30) as download:
            assert not any(s.encode() in download.read() for s in (INSTANCE_PASSWORD, *sks))
    # Every read endpoint, on everything there is.
    logs: list[Any] = []
    listed = a.list_migration_task(ListMigrationTaskRequest(limit=1000))
    for t in listed.migration_tasks:
        a.show_migration_task(ShowMigrationTaskRequest(task_id=t.task_id))
        a.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=t.task_id))
        logs.append(
            a.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=t.task_id, limit=1000))
        )
    for i in a.list_instances(ListInstancesRequest()).instances:
        a.show_instance(ShowInstanceRequest(instance_id=i.instance_id))
        a.list_backup_records(ListBackupRecordsRequest(instance_id=i.instance_id))
        a.list_restore_records(ListRestoreRecordsRequest(instance_id=i.instance_id))
    failed_logs = next(
        x for x, t in zip(logs, listed.migration_tasks, strict=True) if t.task_id == wrong
    )
    assert any(entry.log_level == "ERROR" for entry in failed_logs.migration_logs)

    wanted = {
        "instance password": INSTANCE_PASSWORD,
        "override password": OVERRIDE_PASSWORD,
        "wrong registration password": REGISTER_PASSWORD,
        **{f"SK {n}": sk for n, sk in enumerate(sks)},
    }
    places: dict[str, bytes] = {f"response {n}": body for n, body in enumerate(RESPONSES)}
    places["task logs"] = b"".join(x.raw_content or b"" for x in logs)
    places["task error"] = error.encode()
    assert service.log_path is not None
    places["service output"] = service.log_path.read_bytes()
    files = [p for p in service.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite3") for p in files)
    assert any("backups" in p.parts for p in files)
    places.update({f"file {p.relative_to(service.data_dir)}": p.read_bytes() for p in files})
    leaks = [
        (what, where)
        for where, data in places.items()
        for what, secret in wanted.items()
        if secret.encode() in data
    ]
    assert leaks == []
    assert len(RESPONSES) > 20
