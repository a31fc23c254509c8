"""Buckets belong to the projects the operator granted them to (`buckets grant`), in
folder and S3 modes alike: a bucket a project was not granted answers exactly as one
that does not exist; a bucket folder that is a link, or an object that leads out of its
bucket, is refused; errors and logs name objects as `bucket/key`, never by a path of the
server. All against the service as a user runs it."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcs_migration.formats.errors import FormatError
from dcs_migration.sources import find_inputs
from dcs_migration.sources.bucket import (
    BadBucketName,
    BadObjectKey,
    BucketNotFound,
    LocalObject,
    bucket_dir,
)
from tests.support import rdbgen as g
from tests.support.flavours import RedisServerFactory
from tests.support.servers import RedisServer
from tests.support.service import Service, signed

pytestmark = [pytest.mark.service, pytest.mark.redis]

P1 = "b0c1d2e3f4a5469788796a5b4c3d2e1f"
P2 = "0f1e2d3c4b5a49687786950a1b2c3d4e"
GOOD = g.rdb(g.key(b"k", g.string(b"v")), g.key(b"other", g.string(b"value")), version=9)
SECONDS = 30


# -- helpers ----------------------------------------------------------------------------


class Project:
    """A project's key and its own target instance."""

    def __init__(self, service: Service, project_id: str, target: RedisServer) -> None:
        self.service = service
        self.project_id = project_id
        self.key = service.cli("keys", "create", "--project-id", project_id)
        code, body, _ = self.call(
            "POST", "/instances", {"name": "target", "addrs": f"127.0.0.1:{target.port}"}
        )
        assert code == 200, body
        self.instance_id: str = body["instance_id"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any], float]:
        return signed(self.service, self.key, method, f"/v2/{self.project_id}{path}", body)

    def create(self, bucket: str, *files: str) -> tuple[int, dict[str, Any]]:
        """(status, body) of a create-task call reading `files` of `bucket`."""
        code, answer, _ = self.call(
            "POST",
            "/migration-task",
            {
                "task_name": "import",
                "migration_type": "backupfile_import",
                "migration_method": "full_amount_migration",
                "backup_files": {
                    "file_source": "self_build_obs",
                    "bucket_name": bucket,
                    "files": [{"file_name": f} for f in files],
                },
                "target_instance": {"id": self.instance_id},
            },
        )
        return code, answer

    def refusal(self, bucket: str, *files: str) -> tuple[int, str, str]:
        """(status, error_code, error_msg) of a create refused, the bucket's name in the
        message replaced, so that answers about different buckets compare."""
        code, answer = self.create(bucket, *files)
        assert code != 200, answer
        return code, answer["error_code"], answer["error_msg"].replace(bucket, "<bucket>")

    def finished(self, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + SECONDS
        while True:
            code, task, _ = self.call("GET", f"/migration-task/{task_id}")
            assert code == 200, task
            if task["status"] in ("SUCCESS", "FAILED", "TERMINATED"):
                return task
            assert time.monotonic() < deadline, f"task {task_id} stayed {task['status']}"
            time.sleep(0.05)

    def run(self, bucket: str, *files: str) -> dict[str, Any]:
        code, answer = self.create(bucket, *files)
        assert code == 200, answer
        return self.finished(answer["id"])

    def resume(self, task_id: str) -> None:
        code, answer, _ = self.call("PUT", f"/migration-task/{task_id}", {"resume_mode": "auto"})
        assert code == 200, answer

    def logs(self, task_id: str) -> list[str]:
        code, body, _ = self.call("GET", f"/migration-task/{task_id}/logs")
        assert code == 200, body
        return [entry["message"] for entry in body["migration_logs"]]


def buckets_cli(service: Service, *args: str) -> dict[str, Any]:
    return service.cli("buckets", *args)


def granted_to(service: Service, project_id: str) -> list[str]:
    listed = buckets_cli(service, "list", "--project-id", project_id)["grants"]
    assert all(grant["project_id"] == project_id for grant in listed)
    return [grant["bucket_name"] for grant in listed]


MISSING = (
    400,
    "DCS.4800",
    "Invalid parameter: backup_files.bucket_name: bucket <bucket> does not exist",
)


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    with Service() as running:
        yield running


@pytest.fixture(scope="module")
def targets() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A target of each project's own (an address belongs to one project)."""
    first = RedisServer().start()
    try:
        second = RedisServer().start()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture(scope="module")
def p1(service: Service, targets: tuple[RedisServer, RedisServer]) -> Project:
    return Project(service, P1, targets[0])


@pytest.fixture(scope="module")
def p2(service: Service, targets: tuple[RedisServer, RedisServer]) -> Project:
    return Project(service, P2, targets[1])


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder beside the data dir, holding a good backup: what a link could lead to."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "dump.rdb").write_bytes(GOOD)
    return folder


# -- the rules, on real folders ------------------------------------------------------------


def test_a_bucket_folder_must_be_a_real_folder_right_under_buckets(tmp_path: Path) -> None:
    buckets = tmp_path / "data" / "buckets"
    (buckets / "real").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (buckets / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (buckets / "alias").symlink_to(buckets / "real", target_is_directory=True)
    (buckets / "file").write_bytes(GOOD)
    assert bucket_dir(tmp_path / "data", "real") == (buckets / "real").resolve()
    for name in ("link", "alias", "file", "absent"):
        with pytest.raises(BucketNotFound, match=f"^bucket {name} does not exist$"):
            bucket_dir(tmp_path / "data", name)
    for name in ("..", ".", "a/b", "", "a\\b", "tab\there"):
        with pytest.raises(BadBucketName):
            bucket_dir(tmp_path / "data", name)


def test_an_object_is_named_by_bucket_and_key_and_stays_in_its_bucket(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "b1"
    (root / "dir").mkdir(parents=True)
    (root / "dump.rdb").write_bytes(GOOD)
    (root / "dir" / "dump.rdb").write_bytes(GOOD)
    (root / "dir" / "out.rdb").symlink_to(outside / "dump.rdb")  # skipped in a walk
    (root / "in.rdb").symlink_to(root / "dump.rdb")
    (root / "out.rdb").symlink_to(outside / "dump.rdb")
    (root / "away").symlink_to(outside, target_is_directory=True)

    assert LocalObject(root, "b1", "in.rdb").path() == (root / "dump.rdb").resolve()
    [found] = find_inputs(LocalObject(root, "b1", "dump.rdb").path(), name="b1/dump.rdb")
    assert found.name == "b1/dump.rdb"
    walked = find_inputs(LocalObject(root, "b1", "dir").path(), name="b1/dir")
    assert [i.name for i in walked] == ["b1/dir/dump.rdb"]
    for key in ("out.rdb", "away", "away/dump.rdb", "../b1/dump.rdb", "/etc/passwd"):
        with pytest.raises(BadObjectKey, match=f"leaves its bucket \\(file b1/{re.escape(key)}\\)"):
            LocalObject(root, "b1", key).path()
    with pytest.raises(FormatError, match=r"^no such file or folder \(file b1/nope.rdb\)$"):
        find_inputs(root / "nope.rdb", name="b1/nope.rdb")


# -- folder mode --------------------------------------------------------------------------


def test_another_projects_bucket_answers_as_one_that_does_not_exist(
    service: Service, p1: Project, p2: Project
) -> None:
    (service.bucket("p1-only", P1) / "dump.rdb").write_bytes(GOOD)
    assert p1.run("p1-only", "dump.rdb")["status"] == "SUCCESS"

    seen = p2.refusal("p1-only", "dump.rdb")
    assert seen == MISSING
    assert seen == p2.refusal("no-such-bucket", "dump.rdb")
    # Granted but not there: the same answer again.
    service.grant("granted-not-there", P2)
    assert seen == p2.refusal("granted-not-there", "dump.rdb")
    # Exactly the same body, name included, for a bucket granted to nobody and then gone.
    folder = service.bucket("nobodys")
    (folder / "dump.rdb").write_bytes(GOOD)
    before = p2.create("nobodys", "dump.rdb")
    shutil.rmtree(folder)
    assert before == p2.create("nobodys", "dump.rdb")
    # Its files are not even looked at: a missing object answers the same.
    assert seen == p2.refusal("p1-only", "no-such-file.rdb")


def test_a_grant_opens_a_bucket_and_a_revoke_closes_it_again(
    service: Service, p1: Project, p2: Project, targets: tuple[RedisServer, RedisServer]
) -> None:
    target = targets[1]
    (service.bucket("shared", P1) / "dump.rdb").write_bytes(GOOD)
    assert p2.refusal("shared", "dump.rdb") == MISSING

    granted = buckets_cli(service, "grant", "--project-id", P2, "--bucket", "shared")
    assert granted == {"project_id": P2, "bucket_name": "shared", "granted": True, "new": True}
    assert "shared" in granted_to(service, P2)
    target.cli("FLUSHALL")
    assert p2.run("shared", "dump.rdb")["status"] == "SUCCESS"
    assert target.cli("GET", "k") == "v"

    revoked = buckets_cli(service, "revoke", "--project-id", P2, "--bucket", "shared")
    assert revoked == {"project_id": P2, "bucket_name": "shared", "revoked": True}
    assert "shared" not in granted_to(service, P2)
    assert p2.refusal("shared", "dump.rdb") == MISSING
    assert p1.run("shared", "dump.rdb")["status"] == "SUCCESS"  # P1's grant stands


def test_a_revoked_bucket_fails_a_resumed_task_as_a_missing_bucket(
    service: Service, p2: Project
) -> None:
    folder = service.bucket("lent", P2)
    failed = p2.run("lent", "later.rdb")  # not there yet: FAILED
    assert failed["status"] == "FAILED"
    (folder / "later.rdb").write_bytes(GOOD)
    buckets_cli(service, "revoke", "--project-id", P2, "--bucket", "lent")
    p2.resume(failed["task_id"])
    again = p2.finished(failed["task_id"])
    assert again["status"] == "FAILED"
    assert again["error_message"] == "bucket lent does not exist"


def test_a_bucket_folder_that_is_a_link_is_no_bucket(
    service: Service, p1: Project, outside: Path
) -> None:
    buckets = service.data_dir / "buckets"
    (service.bucket("real", P1) / "dump.rdb").write_bytes(GOOD)
    (buckets / "elsewhere").symlink_to(outside, target_is_directory=True)
    (buckets / "alias").symlink_to(buckets / "real", target_is_directory=True)
    for name in ("elsewhere", "alias"):
        service.grant(name, P1)
        assert p1.refusal(name, "dump.rdb") == MISSING, name


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../buckets", "a\\b"])
def test_a_bucket_name_that_is_a_path_is_refused(service: Service, p1: Project, name: str) -> None:
    code, answer = p1.create(name, "dump.rdb")
    assert (code, answer["error_code"]) == (400, "DCS.4800")
    assert "backup_files.bucket_name must" in answer["error_msg"]
    done = service_cli_status(service, "grant", "--project-id", P1, "--bucket", name)
    assert done == 2


def service_cli_status(service: Service, *args: str) -> int:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "dcs_migration", "buckets", *args],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode


def test_an_object_that_leads_out_of_its_bucket_is_refused(
    service: Service, p1: Project, outside: Path
) -> None:
    folder = service.bucket("links", P1)
    (folder / "dump.rdb").write_bytes(GOOD)
    (folder / "evil.rdb").symlink_to(outside / "dump.rdb")
    (folder / "away").symlink_to(outside, target_is_directory=True)
    (folder / "same.rdb").symlink_to(folder / "dump.rdb")  # stays inside: an object
    for n, key in enumerate(("evil.rdb", "away/dump.rdb", "away")):
        code, answer = p1.create("links", "dump.rdb", key)
        assert (code, answer["error_code"]) == (400, "DCS.4800"), key
        assert answer["error_msg"] == (
            "Invalid parameter: backup_files.files[1].file_name: "
            f"object key {key!r} leaves its bucket"
        ), n
    assert p1.run("links", "same.rdb")["status"] == "SUCCESS"


def test_errors_and_logs_name_objects_by_bucket_never_by_server_path(
    service: Service, p1: Project
) -> None:
    folder = service.bucket("named", P1)
    (folder / "dump.rdb").write_bytes(GOOD)
    (folder / "cut.rdb").write_bytes(GOOD[:-20])
    (folder / "dir").mkdir()
    (folder / "dir" / "dump.rdb").write_bytes(GOOD)
    server_path = str(service.data_dir)

    done = p1.run("named", "dump.rdb", "dir")
    assert done["status"] == "SUCCESS"
    logs = p1.logs(done["task_id"])
    assert "reading named/dump.rdb" in logs and "reading named/dir/dump.rdb" in logs, logs

    missing = p1.run("named", "nope.rdb")
    assert missing["status"] == "FAILED"
    assert missing["error_message"] == "no such file or folder (file named/nope.rdb)"

    cut = p1.run("named", "cut.rdb")
    assert cut["status"] == "FAILED"
    assert "file named/cut.rdb, offset" in cut["error_message"], cut["error_message"]

    for task in (done, missing, cut):
        assert server_path not in (task["error_message"] or "")
        for line in p1.logs(task["task_id"]):
            assert server_path not in line and "/buckets/" not in line, line


def test_a_file_replaced_by_a_link_before_a_resume_fails_the_task_saying_so(
    service: Service, p1: Project, outside: Path
) -> None:
    folder = service.bucket("swapped", P1)
    (folder / "dump.rdb").write_bytes(GOOD[:-20])  # cut short: the run fails
    failed = p1.run("swapped", "dump.rdb")
    assert failed["status"] == "FAILED"
    (folder / "dump.rdb").unlink()
    (folder / "dump.rdb").symlink_to(outside / "dump.rdb")
    p1.resume(failed["task_id"])
    again = p1.finished(failed["task_id"])
    assert again["status"] == "FAILED"
    message = again["error_message"]
    assert message == "object key 'dump.rdb' leaves its bucket (file swapped/dump.rdb)"
    assert "without a result" not in " ".join(p1.logs(failed["task_id"]))


# -- S3 mode --------------------------------------------------------------------------------


def test_s3_buckets_need_a_grant_as_folders_do(redis_server: RedisServerFactory) -> None:
    from dcs_migration.sources.s3 import S3Settings, make_s3_client
    from tests.support.s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    with MotoServer() as moto:
        env = {
            "DCS_MIGRATION_OBS_ENDPOINT": moto.endpoint,
            "DCS_MIGRATION_OBS_ACCESS_KEY": ACCESS_KEY,
            "DCS_MIGRATION_OBS_SECRET_KEY": SECRET_KEY,
        }
        s3 = make_s3_client(S3Settings(moto.endpoint, ACCESS_KEY, SECRET_KEY))
        for bucket in ("s3-p1", "s3-nobody"):
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="dump.rdb", Body=GOOD)
        target = redis_server()
        with Service(env=env) as service:
            p1, p2 = Project(service, P1, redis_server()), Project(service, P2, target)
            service.grant("s3-p1", P1)
            assert p1.run("s3-p1", "dump.rdb")["status"] == "SUCCESS"
            # The bucket of the service's own backups is read through backup_record only.
            assert p1.refusal("dcs-backups", "dump.rdb") == (
                400,
                "DCS.4800",
                "Invalid parameter: backup_files.bucket_name: bucket <bucket> holds the backups "
                "this service makes; import one with file_source backup_record",
            )

            seen = p2.refusal("s3-p1", "dump.rdb")
            assert seen == MISSING
            assert seen == p2.refusal("s3-no-such-bucket", "dump.rdb")
            service.grant("s3-granted-not-there", P2)
            assert seen == p2.refusal("s3-granted-not-there", "dump.rdb")
            before = p2.create("s3-nobody", "dump.rdb")
            s3.delete_object(Bucket="s3-nobody", Key="dump.rdb")
            s3.delete_bucket(Bucket="s3-nobody")
            assert before == p2.create("s3-nobody", "dump.rdb")

            buckets_cli(service, "grant", "--project-id", P2, "--bucket", "s3-p1")
            target.cli("FLUSHALL")
            assert p2.run("s3-p1", "dump.rdb")["status"] == "SUCCESS"
            assert target.cli("GET", "k") == "v"
            buckets_cli(service, "revoke", "--project-id", P2, "--bucket", "s3-p1")
            assert p2.refusal("s3-p1", "dump.rdb") == MISSING
