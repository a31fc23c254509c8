"""Resuming an import from its checkpoint: nothing before it is written again, and the
result is exact."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    ListMigrationTaskLogsRequest,
    ListMigrationTaskRequest,
    MigrationUpdateRequestEntity,
    ShowMigrationTaskStatsRequest,
    UpdateMigrationTaskRequest,
)

from dcs_migration import importer
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.importer import Checkpoint, ImportHooks, resolve_inputs, run_import
from dcs_migration.writer.options import WriteOptions
from tests.support import rdbgen as g
from tests.support.backups import big_rdb as big_dump
from tests.support.flavours import RedisServerFactory
from tests.support.sdk import PROJECT, create, minted, register, wait_for
from tests.support.service import Service

pytestmark = [pytest.mark.service, pytest.mark.redis]

KEYS = 120_000


@pytest.fixture(autouse=True)
def frequent_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "CHECKPOINT_SECONDS", 0.0)


def big_rdb(path: Path) -> Path:
    body = b"".join(g.key(b"key:%06d" % n, g.string(b"value-%d" % n)) for n in range(KEYS))
    path.write_bytes(g.rdb(body, version=9))
    return path


def stopped_import(source: Path, target: Endpoint, chunks: int) -> list[Checkpoint]:
    """Import `source` and stop it after `chunks` chunks read: its checkpoints."""
    checkpoints: list[Checkpoint] = []
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > chunks

    result = run_import(
        resolve_inputs([str(source)]),
        target,
        WriteOptions(),
        hooks=ImportHooks(should_stop=should_stop, on_checkpoint=checkpoints.append),
    )
    assert result.status == "TERMINATED"
    assert checkpoints[-1].keys_written == result.stats.keys_written
    return checkpoints


def test_a_stopped_import_resumes_where_the_target_acknowledged(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    source = big_rdb(tmp_path / "dump.rdb")
    server = redis_server()
    target = Endpoint("127.0.0.1", server.port)
    last = stopped_import(source, target, chunks=2)[-1]
    assert 0 < last.keys_written < KEYS
    client = redis.Redis(port=server.port)
    assert client.dbsize() == last.keys_written
    client.flushall()  # what the resume writes again shows here
    resumed = run_import(resolve_inputs([str(source)]), target, WriteOptions(), resume_from=last)
    assert resumed.status == "SUCCESS", resumed.error
    assert resumed.stats.keys_written == KEYS
    assert client.dbsize() == KEYS - last.keys_written
    assert client.get(b"key:%06d" % (KEYS - 1)) == b"value-%d" % (KEYS - 1)
    assert client.get(b"key:000000") is None  # before the checkpoint: not written again


def test_a_resumed_aof_applies_each_command_once(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    commands = KEYS // 2
    one = b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n"
    push = b"*3\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$%d\r\n%d\r\n"
    path = tmp_path / "appendonly.aof"
    path.write_bytes(b"".join(one + push % (len(str(n)), n) for n in range(commands)))
    server = redis_server()
    target = Endpoint("127.0.0.1", server.port)
    checkpoints = stopped_import(path, target, chunks=1)
    client = redis.Redis(port=server.port)
    assert 0 < int(client.get(b"counter") or 0) < commands
    resumed = run_import(
        resolve_inputs([str(path)]), target, WriteOptions(), resume_from=checkpoints[-1]
    )
    assert resumed.status == "SUCCESS", resumed.error
    assert int(client.get(b"counter") or 0) == commands
    assert client.lrange(b"list", 0, -1) == [b"%d" % n for n in range(commands)]


def test_inputs_before_the_checkpoint_are_not_read_again(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    one = tmp_path / "one.rdb"
    one.write_bytes(g.rdb(g.key(b"a", g.string(b"1")), version=9))
    two = tmp_path / "two.rdb"
    two.write_bytes(g.rdb(g.key(b"b", g.string(b"2")), version=9))
    server = redis_server()
    resumed = run_import(
        resolve_inputs([str(one), str(two)]),
        Endpoint("127.0.0.1", server.port),
        WriteOptions(flush=True),
        resume_from=Checkpoint(input_index=1, records_done=0, keys_written=1),
    )
    assert resumed.status == "SUCCESS", resumed.error
    assert resumed.stats.keys_written == 2
    client = redis.Redis(port=server.port)
    assert client.keys() == [b"b"]  # no flush on a resume, and input one was done


def sealed_import(path: Path, port: int) -> subprocess.Popen[bytes]:
    """`path` imported with a marker key (as a task imports) by a process of its own."""
    code = (
        "import sys\n"
        "from dcs_migration.client.endpoint import Endpoint\n"
        "from dcs_migration.importer import resolve_inputs, run_import\n"
        "from dcs_migration.writer.options import WriteOptions\n"
        "result = run_import(resolve_inputs([sys.argv[1]]), Endpoint('127.0.0.1', "
        "int(sys.argv[2])), WriteOptions(marker_key=b'marker'))\n"
        "sys.exit(result.status != 'SUCCESS')\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(port)])


@pytest.mark.parametrize("blocks", [False, True], ids=["commands", "multi-blocks"])
def test_a_sealed_aof_import_killed_anywhere_resumes_exactly_once(
    tmp_path: Path, redis_server: RedisServerFactory, blocks: bool
) -> None:
    """SIGKILLed while commands are in flight, with no checkpoint kept anywhere but the
    target's marker: the resume applies every command once (counters, lists, and the
    AOF's own MULTI blocks, which a batch may cut)."""
    commands = 150_000
    incr = b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n"
    push = b"*3\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$%d\r\n%d\r\n"
    select = b"*2\r\n$6\r\nSELECT\r\n$1\r\n%d\r\n"
    parts = []
    for n in range(commands):
        one = incr + push % (len(str(n)), n)
        if blocks and n % 3 == 0:  # a block, in db 1 and back
            one = b"*1\r\n$5\r\nMULTI\r\n" + select % 1 + one + select % 0 + b"*1\r\n$4\r\nEXEC\r\n"
        parts.append(one)
    path = tmp_path / "appendonly.aof"
    path.write_bytes(b"".join(parts))
    server = redis_server()
    client = redis.Redis(port=server.port)
    process = sealed_import(path, server.port)
    deadline = time.monotonic() + 60
    while int(client.get(b"counter") or 0) < commands // 3:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert int(client.get(b"counter") or 0) < commands, "killed too late to tell"
    resumed = run_import(
        resolve_inputs([str(path)]),
        Endpoint("127.0.0.1", server.port),
        WriteOptions(marker_key=b"marker"),
    )
    assert resumed.status == "SUCCESS", resumed.error
    in_blocks = len(range(0, commands, 3)) if blocks else 0
    assert int(client.get(b"counter") or 0) == commands - in_blocks
    assert int(redis.Redis(port=server.port, db=1).get(b"counter") or 0) == in_blocks
    assert client.exists(b"marker") == 0  # done: the marker is gone
    expected = [b"%d" % n for n in range(commands) if not (blocks and n % 3 == 0)]
    assert client.lrange(b"list", 0, -1) == expected


# -- through the service ---------------------------------------------------------------


def digest(server: Any) -> str:
    return str(server.cli("DEBUG", "DIGEST"))


@pytest.fixture
def running_service() -> Iterator[Service]:
    service = Service().start()
    try:
        yield service
    finally:
        service.stop()


def kill_mid_task(service: Service, client: Any, task_id: str) -> None:
    """SIGKILL the service once the task is well under way (a checkpoint has been made)."""

    def under_way() -> bool:
        stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))
        return int(stats.full_migration_progress) >= 15

    deadline = time.monotonic() + 60
    while not under_way():
        assert time.monotonic() < deadline, "the task made no progress"
        time.sleep(0.05)
    service.kill()


def error_of(client: Any, task_id: str) -> str:
    listed = client.list_migration_task(ListMigrationTaskRequest())
    message: str = next(t for t in listed.migration_tasks if t.task_id == task_id).error_message
    return message


def update(client: Any, task_id: str, mode: str) -> Any:
    return client.update_migration_task(
        UpdateMigrationTaskRequest(
            task_id=task_id, body=MigrationUpdateRequestEntity(resume_mode=mode)
        )
    )


def a_big_task(service: Service, redis_server: RedisServerFactory) -> tuple[Any, Any, Path, str]:
    """A task importing a few seconds' worth of keys: (client, target, file, task id)."""
    client = minted(service)
    target = redis_server("--enable-debug-command", "yes")
    instance_id = register(service, target)
    path = service.bucket("bucket", PROJECT) / "big.rdb"
    big_dump(path, redis_server)
    task_id: str = create(client, instance_id, ["big.rdb"]).id
    return client, target, path, task_id


def interrupted_big_task(
    service: Service, redis_server: RedisServerFactory
) -> tuple[Any, Any, Path, str]:
    """A big task cut short by a service SIGKILL and marked FAILED by the restart."""
    client, target, path, task_id = a_big_task(service, redis_server)
    kill_mid_task(service, client, task_id)
    service.start()
    wait_for(client, task_id, ("FAILED",), seconds=10)
    return client, target, path, task_id


def test_a_task_killed_with_the_service_resumes_exactly(
    running_service: Service, redis_server: RedisServerFactory
) -> None:
    client, target, path, task_id = interrupted_big_task(running_service, redis_server)
    assert "interrupted" in error_of(client, task_id)

    update(client, task_id, "auto")
    done = wait_for(client, task_id, ("SUCCESS", "FAILED"))
    assert done.status == "SUCCESS", error_of(client, task_id)
    native = redis_server("--enable-debug-command", "yes", rdb=path)
    assert digest(target) == digest(native)
    logs = client.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=task_id))
    messages = [entry.message for entry in logs.migration_logs]
    assert any("resumed from its checkpoint" in m for m in messages), messages


def test_a_task_set_to_auto_resumes_on_its_own_after_a_restart(
    running_service: Service, redis_server: RedisServerFactory
) -> None:
    service = running_service
    client, target, path, task_id = a_big_task(service, redis_server)
    update(client, task_id, "auto")  # while it runs: the policy for a restart
    kill_mid_task(service, client, task_id)
    service.start()
    done = wait_for(client, task_id, ("SUCCESS", "FAILED"))
    assert done.status == "SUCCESS", error_of(client, task_id)
    assert done.resume_mode == "auto"
    native = redis_server("--enable-debug-command", "yes", rdb=path)
    assert digest(target) == digest(native)


def test_a_task_whose_file_changed_refuses_to_resume(
    running_service: Service, redis_server: RedisServerFactory
) -> None:
    client, _, path, task_id = interrupted_big_task(running_service, redis_server)
    big_dump(path, redis_server, keys=1000)  # another backup under the same name
    with pytest.raises(ClientRequestException) as refused:
        update(client, task_id, "auto")
    assert refused.value.error_code == "DCS.4957"
    assert "big.rdb" in refused.value.error_msg and "cannot resume" in refused.value.error_msg
    assert wait_for(client, task_id, ("FAILED",)).status == "FAILED"


def test_a_file_replaced_by_a_link_fails_the_resumed_task_saying_so(
    running_service: Service, redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    client, _, path, task_id = interrupted_big_task(running_service, redis_server)
    outside = tmp_path / "big.rdb"
    path.rename(outside)
    path.symlink_to(outside)  # the same bytes, from outside the bucket
    update(client, task_id, "auto")
    done = wait_for(client, task_id, ("SUCCESS", "FAILED"))
    assert done.status == "FAILED"
    assert error_of(client, task_id) == (
        "object key 'big.rdb' leaves its bucket (file bucket/big.rdb)"
    )
