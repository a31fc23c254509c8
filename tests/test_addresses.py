"""Where the service connects: only to allowed networks, only to Redis, and never to
another project's Redis (DESIGN §7, DCS_MIGRATION_ALLOWED_NETWORKS).

Probed as an attacker with a valid key would: two projects, the service and its task
processes running, real Redis servers, and small servers written here for the peers
that are not Redis (an HTTP server, an SSH server, a silent one) or that pretend to be
a cluster whose topology points elsewhere. Everything listens on loopback;
127.0.0.2 stands for an address the allowed networks exclude or include.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import hiredis
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    BackupInstanceBody,
    CopyInstanceRequest,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    DcsClient,
    DownloadBackupFilesReq,
    Files,
    ListBackupFileLinksRequest,
    ShowMigrationTaskRequest,
    TargetInstanceBody,
)

from dcs_migration.client.addresses import AddressPolicy, AddressRefused, resolve
from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.networks import AllowedNetworks, address_key
from tests.support import rdbgen as g
from tests.support.peers import Peer
from tests.support.servers import RedisServer, free_port
from tests.support.service import Service, signed
from tests.support.waiting import finished_backup, until

FIXTURE_MARKERS = {"service": "service", "narrow": "service", "redis": "redis"}

P1 = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
P2 = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
NO_REDIS = "Invalid parameter: addrs: no Redis answered at that address with those credentials"
SECONDS = 30


# -- peers that are not Redis, or pretend to be ------------------------------------------


class FakeClusterNode(Peer):
    """Answers as a Redis Cluster node would, enough for a registration, an import and a
    backup to use it; its CLUSTER SLOTS names `names` (itself unless changed) as the
    master of every slot, and with `moved_to` set every write is answered MOVED there."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.names: tuple[str, int] = (self.host, self.port)
        self.moved_to: tuple[str, int] | None = None

    def _serve(self, conn: socket.socket) -> None:
        reader = hiredis.Reader()
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += data
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    conn.sendall(self.command(list(command)))
        conn.close()

    def command(self, args: list[bytes]) -> bytes:
        name = args[0].upper()
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"INFO":
            text = (
                b"redis_version:7.2.4\r\nredis_mode:cluster\r\ncluster_enabled:1\r\n"
                b"run_id:" + b"f" * 40 + b"\r\nloading:0\r\n"
            )
            return b"$%d\r\n%s\r\n" % (len(text), text)
        if name == b"CLUSTER" and args[1].upper() == b"SLOTS":
            host, port = self.names
            node = b"*3\r\n$%d\r\n%s\r\n:%d\r\n$40\r\n%s\r\n" % (
                len(host),
                host.encode(),
                port,
                b"e" * 40,
            )
            return b"*1\r\n*3\r\n:0\r\n:16383\r\n" + node
        if name in (b"CLUSTER", b"COMMAND", b"CONFIG", b"AUTH", b"SELECT"):
            return b"-ERR not here\r\n"
        if self.moved_to is not None:
            host, port = self.moved_to
            return b"-MOVED 0 %s:%d\r\n" % (host.encode(), port)
        return b"+OK\r\n"


@contextlib.contextmanager
def peer(*args: Any, **kwargs: Any) -> Iterator[Peer]:
    server = Peer(*args, **kwargs)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def fake_cluster(host: str = "127.0.0.1") -> Iterator[FakeClusterNode]:
    server = FakeClusterNode(host)
    try:
        yield server
    finally:
        server.close()


def http_answer(data: bytes) -> bytes:
    return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n"


# -- the services and their clients ------------------------------------------------------


def start_service(tmp: Path, env: dict[str, str] | None = None) -> Service:
    small = g.rdb(g.key(b"imported", g.string(b"v")), version=9)
    service = Service(env=env, log_path=tmp / "service.log").start()
    service.bucket("bucket", P1, P2).joinpath("small.rdb").write_bytes(small)
    return service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start_service(tmp_path_factory.mktemp("service"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service whose allowed networks leave 127.0.0.1 out (127.0.0.2 only)."""
    env = {"DCS_MIGRATION_ALLOWED_NETWORKS": "127.0.0.2/32"}
    running = start_service(tmp_path_factory.mktemp("narrow"), env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer("--repl-diskless-sync-delay", "0") as server:
        server.cli("SET", "p1-secret", "only p1 may read this")
        yield server


def key_of(service: Service, project: str) -> dict[str, Any]:
    return service.cli("keys", "create", "--project-id", project)


def sdk(service: Service, key: dict[str, Any]) -> DcsClient:
    return service.client(key["ak"], key["sk"], key["project_id"])


def register(service: Service, key: dict[str, Any], **body: Any) -> tuple[int, dict[str, Any]]:
    status, answer, _ = signed(
        service, key, "POST", f"/v2/{key['project_id']}/instances", {"name": "r", **body}
    )
    return status, answer


def refused(answer: tuple[int, dict[str, Any]]) -> bool:
    status, body = answer
    return (status, body.get("error_code"), body.get("error_msg")) == (400, "DCS.4800", NO_REDIS)


def cli(service: Service, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcs_migration", *args],
        env={**service.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_with_cli(service: Service, project: str, port: int, **env: str) -> str:
    done = cli(
        service,
        *("instances", "add", "--project-id", project, "--name", "shared"),
        *("--addrs", f"127.0.0.1:{port}"),
        **env,
    )
    assert done.returncode == 0, done.stderr
    instance_id: str = json.loads(done.stdout)["instance_id"]
    return instance_id


def import_task(client: DcsClient, instance_id: str) -> Any:
    """An import of small.rdb, named afresh each time: two identical creates signed within
    one second share a signature, and the second would be refused as a replay."""
    body = CreateMigrationTaskBody(
        task_name=f"import-{uuid4().hex[:8]}",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(
            file_source="self_build_obs", bucket_name="bucket", files=[Files(file_name="small.rdb")]
        ),
        target_instance=TargetInstanceBody(id=instance_id),
    )
    task_id = client.create_migration_task(CreateMigrationTaskRequest(body=body)).id

    def ended() -> Any:
        task = client.show_migration_task(ShowMigrationTaskRequest(task_id=task_id))
        return task if task.status in ("SUCCESS", "FAILED", "TERMINATED") else None

    return until(ended, f"task {task_id}", SECONDS)


def back_up(client: DcsClient, instance_id: str) -> Any:
    backup_id = client.copy_instance(
        CopyInstanceRequest(instance_id=instance_id, body=BackupInstanceBody(backup_format="rdb"))
    ).backup_id
    return finished_backup(client, instance_id, backup_id, SECONDS)


def connections(redis: RedisServer) -> int:
    """Connections the server accepted so far, this question's own included."""
    stats = redis.cli("INFO", "stats")
    line = next(x for x in stats.splitlines() if x.startswith("total_connections_received:"))
    return int(line.partition(":")[2])


def untouched_since(redis: RedisServer, before: int) -> bool:
    """Nobody connected since `before` was counted (the count itself is one)."""
    return connections(redis) == before + 1 and redis.cli("DBSIZE") == "1"


# -- the rule itself ---------------------------------------------------------------------


def test_link_local_and_metadata_addresses_are_refused_whatever_the_networks_say() -> None:
    everything = AddressPolicy(AllowedNetworks.parse("0.0.0.0/0, ::/0, 169.254.0.0/16"))
    for host in (
        "169.254.169.254",
        "169.254.0.23",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "::ffff:169.254.169.254",  # IPv4 spelt as IPv6
        "64:ff9b::a9fe:a9fe",  # the same through NAT64
        "0.0.0.0",  # this host
    ):
        with pytest.raises(AddressRefused):
            resolve(host, 6379, everything)
    assert [r.key for r in resolve("10.1.2.3", 6379, everything)] == ["10.1.2.3:6379"]


def test_the_default_networks_are_loopback_and_private_ranges() -> None:
    default = AddressPolicy()
    for host in ("127.0.0.1", "localhost", "10.0.0.5", "172.16.3.4", "192.168.1.1", "fd12::1"):
        assert resolve(host, 6379, default)
    for host in ("8.8.8.8", "100.64.0.1", "2001:db8::1", "169.254.169.254"):
        with pytest.raises(AddressRefused):
            resolve(host, 6379, default)


def test_every_loopback_spelling_is_one_address() -> None:
    keys = {
        r.key
        for h in ("localhost", "127.0.0.1", "127.0.0.2")
        for r in resolve(h, 1, AddressPolicy())
    }
    assert keys == {"127.0.0.1:1"}
    assert address_key(ipaddress.ip_address("::1"), 1) == "127.0.0.1:1"
    held = AddressPolicy(held_elsewhere=frozenset({"127.0.0.1:1"}))
    with pytest.raises(AddressRefused):
        resolve("localhost", 1, held)


def test_a_bad_networks_setting_names_the_entry() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8'"):
        AllowedNetworks.parse("127.0.0.0/8, 10.0.0.1/8", name="DCS_MIGRATION_ALLOWED_NETWORKS")
    with pytest.raises(ValueError, match="'nowhere'"):
        AllowedNetworks.parse("nowhere")


@pytest.mark.service
def test_a_bad_networks_setting_stops_the_service_at_start(tmp_path: Path) -> None:
    service = Service(tmp_path, env={"DCS_MIGRATION_ALLOWED_NETWORKS": "10.0.0.0/33"})
    done = cli(service, "serve", "--port", str(free_port()))
    assert done.returncode != 0
    assert "DCS_MIGRATION_ALLOWED_NETWORKS: '10.0.0.0/33'" in done.stderr


@pytest.mark.parametrize(
    "kind", ["closed port", "silent", "HTTP server", "SSH server", "answers PING with +OK"]
)
def test_a_connection_sends_the_password_only_after_redis_answered(kind: str) -> None:
    password = "spray-" + secrets.token_hex(8)
    answers: dict[str, Callable[[], Peer]] = {
        "silent": lambda: Peer(),
        "HTTP server": lambda: Peer(http_answer),
        "SSH server": lambda: Peer(greeting=SSH_BANNER),
        "answers PING with +OK": lambda: Peer(lambda data: b"+OK\r\n"),
    }
    server = answers[kind]() if kind in answers else None
    port = server.port if server is not None else free_port()
    try:
        conn = Connection(Endpoint("127.0.0.1", port, password=password), timeout=1.0)
        with pytest.raises((TargetError, ConnectionLost)):
            conn.connect()
        if server is not None:
            received = server.settled()
            assert received.startswith(b"*1\r\n$4\r\nPING\r\n")
            assert b"AUTH" not in received and password.encode() not in received
    finally:
        if server is not None:
            server.close()


@pytest.mark.redis
def test_a_redis_asking_for_a_password_gets_it_after_ping() -> None:
    with RedisServer("--requirepass", "pw-1") as locked:
        conn = Connection(Endpoint("127.0.0.1", locked.port, password="pw-1"))
        conn.connect()
        assert conn.call(b"DBSIZE") == 0
        conn.close()
        with pytest.raises(TargetError, match="asks for a password"):
            Connection(Endpoint("127.0.0.1", locked.port)).connect()


# -- registration ------------------------------------------------------------------------


def test_every_refused_registration_reads_the_same_and_the_log_says_why(
    service: Service,
) -> None:
    key = key_of(service, P1)
    password = "spray-" + secrets.token_hex(8)
    with (
        peer() as silent,
        peer(http_answer) as http,
        peer(greeting=SSH_BANNER) as ssh,
        RedisServer("--requirepass", "the-right-one") as locked,
    ):
        closed = free_port()
        targets = {
            "closed port": closed,
            "silent": silent.port,
            "HTTP server": http.port,
            "SSH server": ssh.port,
            "wrong password": locked.port,
        }
        answers = {
            name: register(service, key, addrs=f"127.0.0.1:{port}", password=password)
            for name, port in targets.items()
        }
        assert {name: refused(a) for name, a in answers.items()} == dict.fromkeys(targets, True)
        for server in (silent, http, ssh):
            received = server.settled()
            assert received.startswith(b"*1\r\n$4\r\nPING\r\n")  # asked as Redis is asked
            assert b"AUTH" not in received and password.encode() not in received
        assert service.log_path is not None
        log = service.log_path.read_text()
        for detail in (
            f"127.0.0.1:{closed}: [Errno 111] Connection refused",
            f"127.0.0.1:{silent.port} did not answer within",
            f'127.0.0.1:{http.port} does not speak the Redis protocol (Protocol error, got "H"',
            f'127.0.0.1:{ssh.port} does not speak the Redis protocol (Protocol error, got "S"',
            f"127.0.0.1:{locked.port} refused the login",
        ):
            assert detail in log
        assert password not in log
        # The right password registers it.
        assert (
            register(service, key, addrs=f"127.0.0.1:{locked.port}", password="the-right-one")[0]
            == 200
        )


def test_another_projects_address_is_refused_however_it_is_spelt(
    service: Service, redis: RedisServer
) -> None:
    key1, key2 = key_of(service, P1), key_of(service, P2)
    status, body = register(service, key1, addrs=f"127.0.0.1:{redis.port}")
    assert status == 200, body
    assert register(service, key1, addrs=f"localhost:{redis.port}")[0] == 200  # its own, again
    for spelling in (f"127.0.0.1:{redis.port}", f"localhost:{redis.port}"):
        assert refused(register(service, key2, addrs=spelling)), spelling
        assert refused(register(service, key2, ip=spelling.split(":")[0], port=redis.port))
    assert service.log_path is not None
    assert f"another project holds 127.0.0.1:{redis.port}" in service.log_path.read_text()
    # The operator shares it with the command line; then p2 may import into it.
    shared = add_with_cli(service, P2, redis.port)
    assert import_task(sdk(service, key2), shared).status == "SUCCESS"
    assert redis.cli("GET", "imported") == "v"


def test_a_cluster_cannot_lead_another_project_to_p1s_redis(
    service: Service, redis: RedisServer
) -> None:
    """p2 registers its own "cluster", which then names p1's Redis as the master of
    every slot (CLUSTER SLOTS), or answers every write MOVED there: neither the import,
    the backup nor a download of p2 reaches p1's Redis."""
    key1, key2 = key_of(service, P1), key_of(service, P2)
    assert register(service, key1, addrs=f"127.0.0.1:{redis.port}")[0] == 200
    p2 = sdk(service, key2)
    with fake_cluster() as fake:
        # A cluster naming p1's Redis already cannot be registered.
        fake.names = ("127.0.0.1", redis.port)
        assert refused(
            register(service, key2, addrs=f"127.0.0.1:{fake.port}", instance_type="cluster")
        )
        fake.names = (fake.host, fake.port)
        status, body = register(
            service, key2, addrs=f"127.0.0.1:{fake.port}", instance_type="cluster"
        )
        assert status == 200, body
        instance = body["instance_id"]
        before = connections(redis)

        fake.names = ("127.0.0.1", redis.port)  # a resharding, as p2 tells it
        task = import_task(p2, instance)
        assert task.status == "FAILED"
        assert f"127.0.0.1:{redis.port} is not an address" in task.raw_content.decode()
        backup = back_up(p2, instance)
        assert backup.status == "failed"
        with pytest.raises(ClientRequestException) as no_links:  # nothing to download
            p2.list_backup_file_links(
                ListBackupFileLinksRequest(
                    instance_id=instance,
                    backup_id=backup.backup_id,
                    body=DownloadBackupFilesReq(expiration=600),
                )
            )
        assert no_links.value.status_code == 400

        fake.names = (fake.host, fake.port)
        fake.moved_to = ("127.0.0.1", redis.port)  # every write: "ask p1's Redis"
        task = import_task(p2, instance)
        assert task.status == "FAILED"
        assert f"127.0.0.1:{redis.port} is not an address" in task.raw_content.decode()
        assert untouched_since(redis, before)
    assert redis.cli("GET", "p1-secret") == "only p1 may read this"


# -- the allowed networks ----------------------------------------------------------------


def test_an_address_outside_the_networks_is_refused_everywhere(
    narrow: Service, redis: RedisServer
) -> None:
    key = key_of(narrow, P1)
    before = connections(redis)
    # Registering, through the API and the command line.
    assert refused(register(narrow, key, addrs=f"127.0.0.1:{redis.port}"))
    done = cli(
        narrow,
        *("instances", "add", "--project-id", P1, "--name", "r"),
        *("--addrs", f"127.0.0.1:{redis.port}"),
    )
    assert done.returncode == 1
    assert "is not an address the service may connect to" in done.stderr
    # The command line's import: the operator's tool keeps the service's rule.
    small = str(narrow.bucket("bucket") / "small.rdb")
    done = cli(narrow, "import", "--target", f"redis://127.0.0.1:{redis.port}", small)
    assert done.returncode != 0
    assert "is not an address the service may connect to" in done.stdout + done.stderr
    assert untouched_since(redis, before)

    # An instance registered while the networks held it: its imports and backups stop.
    instance = add_with_cli(narrow, P1, redis.port, DCS_MIGRATION_ALLOWED_NETWORKS="")
    before = connections(redis)
    client = sdk(narrow, key)
    task = import_task(client, instance)
    assert task.status == "FAILED"
    assert "is not an address the service may connect to" in task.raw_content.decode()
    assert back_up(client, instance).status == "failed"
    assert untouched_since(redis, before)
    assert narrow.log_path is not None
    assert "outside the allowed networks" in narrow.log_path.read_text()


def test_a_cluster_node_outside_the_networks_is_never_contacted(
    narrow: Service, redis: RedisServer
) -> None:
    key = key_of(narrow, P2)
    with fake_cluster("127.0.0.2") as fake:
        fake.names = ("127.0.0.1", redis.port)
        assert refused(
            register(narrow, key, addrs=f"127.0.0.2:{fake.port}", instance_type="cluster")
        )
        fake.names = (fake.host, fake.port)
        status, body = register(
            narrow, key, addrs=f"127.0.0.2:{fake.port}", instance_type="cluster"
        )
        assert status == 200, body
        before = connections(redis)
        fake.names = ("127.0.0.1", redis.port)
        task = import_task(sdk(narrow, key), body["instance_id"])
        assert task.status == "FAILED"
        assert f"127.0.0.1:{redis.port} is not an address" in task.raw_content.decode()
        assert back_up(sdk(narrow, key), body["instance_id"]).status == "failed"
        assert untouched_since(redis, before)
