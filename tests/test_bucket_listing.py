"""Listing buckets and their objects (`GET /v2/{project_id}/buckets` and `.../objects`),
this service's extension for the console's import form: only the buckets granted to the
project that are there; objects in key order, a page at a time (S3's StartAfter and
MaxKeys), in the shape of a task's `files`; a bucket the project may not read answers as
a missing one. Folder mode and S3 mode alike, against the service as a user runs it."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dcs_migration.api.schemas import Files
from dcs_migration.sources.listing import ObjectQuery, folder_page
from tests.support.servers import free_port
from tests.support.service import Service, signed

FIXTURE_MARKERS = {"service": "service", "p1": "service", "p2": "service", "s3": "s3"}

P1 = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"
P2 = "6c5b4a3f2e1d40c9b8a7f6e5d4c3b2a1"
WHEN = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)  # a time of every file written here
SHOWN = "2024-02-29 23:59:58"

# Keys whose order is not the walk's folder by folder: "a.rdb" < "a/..." < "a0" as
# "." < "/" < "0", and "b/x" comes after "b.rdb" but before "b0".
TREE = {
    "a.rdb": b"1",
    "a/1.rdb": b"22",
    "a/sub/deep.rdb": b"333",
    "a/sub/zz.aof": b"4444",
    "a0": b"55555",
    "b.rdb": b"666666",
    "b/x": b"7",
    "b0/y": b"88",
    "c.rdb": b"999",
}


class Project:
    """A project's key, and signed calls on its own paths."""

    def __init__(self, service: Service, project_id: str) -> None:
        self.service = service
        self.project_id = project_id
        self.key = service.cli("keys", "create", "--project-id", project_id)

    def get(self, path: str, **query: str | int) -> tuple[int, dict[str, Any]]:
        return self.get_in(self.project_id, path, **query)

    def get_in(self, project_id: str, path: str, **query: str | int) -> tuple[int, dict[str, Any]]:
        """A GET on the paths of `project_id`, signed with this project's key."""
        params = [(name, str(value)) for name, value in query.items()]
        code, body, _ = signed(
            self.service, self.key, "GET", f"/v2/{project_id}{path}", query=params
        )
        return code, body

    def buckets(self) -> list[str]:
        code, body = self.get("/buckets")
        assert code == 200, body
        assert set(body) == {"buckets"}
        return [b["bucket_name"] for b in body["buckets"]]

    def page(self, bucket: str, **query: str | int) -> dict[str, Any]:
        code, body = self.get(f"/buckets/{bucket}/objects", **query)
        assert code == 200, body
        assert set(body) == {"bucket_name", "prefix", "objects", "next_marker"}, body
        return body

    def keys(self, bucket: str, limit: int, prefix: str = "") -> list[str]:
        """Every key of the bucket under `prefix`, page after page of `limit`."""
        keys: list[str] = []
        marker = ""
        for _ in range(1000):
            body = self.page(bucket, prefix=prefix, marker=marker, limit=limit)
            assert len(body["objects"]) <= limit
            keys += [o["file_name"] for o in body["objects"]]
            marker = body["next_marker"]
            if not marker:
                return keys
            assert marker == keys[-1]
        raise AssertionError("the pages never ended")


def write_tree(root: Path, tree: dict[str, bytes]) -> None:
    for key, data in tree.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (WHEN.timestamp(), WHEN.timestamp()))


def missing(project: Project, bucket: str) -> tuple[int, dict[str, Any]]:
    """The answer to listing `bucket`'s objects, its name in the message replaced."""
    code, body = project.get(f"/buckets/{bucket}/objects")
    return code, {**body, "error_msg": body["error_msg"].replace(bucket, "<bucket>")}


MISSING = (
    404,
    {
        "error_code": "DCS.4800",
        "error_msg": "bucket <bucket> does not exist",
        "error_ext_msg": None,
    },
)


# -- the walk of a folder bucket, on real folders ----------------------------------------------


def all_pages(root: Path, limit: int, prefix: str = "", marker: str = "") -> list[str]:
    keys: list[str] = []
    while True:
        page = folder_page(root, ObjectQuery(prefix, marker, limit))
        keys += [o.key for o in page.objects]
        if not page.next_marker:
            return keys
        marker = page.next_marker


def test_a_folder_is_listed_in_key_order_whatever_the_page_size(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    for n in range(12):  # folders with nothing listed in them fill no page
        (tmp_path / f"a/empty{n:02}").mkdir()
    rng = random.Random(7)
    names = ("a", "a.b", "a-b", "a0", "b", "-", "é")  # "-" < "." < "/" < "0" < "a" < "é"
    for _ in range(60):
        key = "w/" + "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
        with contextlib.suppress(FileExistsError, NotADirectoryError, IsADirectoryError):
            write_tree(tmp_path, {key: b"x"})  # unless a file is where a folder goes, or so
    expected = sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
    )
    for limit in (1, 2, 3, 7, 100):
        assert all_pages(tmp_path, limit) == expected, limit
    for marker in ("", "a", "a/", "a/sub/deep.rdb", "a0", "b", "b/", "zzz"):
        for prefix in ("", "a", "a/", "a/s", "b", "w/"):
            wanted = [k for k in expected if k > marker and k.startswith(prefix)]
            assert all_pages(tmp_path, 2, prefix, marker) == wanted, (prefix, marker)


def test_a_wide_folder_pages_from_its_marker(tmp_path: Path) -> None:
    for n in range(3000):
        (tmp_path / f"{n:05}.rdb").touch()
    page = folder_page(tmp_path, ObjectQuery(marker="01000.rdb", limit=3))
    assert [o.key for o in page.objects] == ["01001.rdb", "01002.rdb", "01003.rdb"]
    assert page.next_marker == "01003.rdb"


# -- folder mode, through the service ------------------------------------------------------------


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with Service() as running:
        yield running


@pytest.fixture(scope="module")
def p1(service: Service) -> Project:
    return Project(service, P1)


@pytest.fixture(scope="module")
def p2(service: Service) -> Project:
    return Project(service, P2)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder beside the data dir: what a link could lead to."""
    folder = tmp_path_factory.mktemp("outside")
    write_tree(folder, {"secret.rdb": b"s", "nested/secret.rdb": b"s"})
    return folder


def test_the_buckets_granted_that_are_there_are_listed_by_name(
    service: Service, p1: Project, p2: Project, outside: Path
) -> None:
    buckets = service.data_dir / "buckets"
    for name in ("zeta", "alpha", "mid"):
        service.bucket(name, P1)
    service.bucket("p2-only", P2)
    service.bucket("nobodys")
    service.grant("granted-not-there", P1)
    (buckets / "link").symlink_to(outside, target_is_directory=True)
    (buckets / "alias").symlink_to(buckets / "alpha", target_is_directory=True)
    (buckets / "a-file").write_bytes(b"not a folder")
    for name in ("link", "alias", "a-file"):
        service.grant(name, P1)

    assert p1.buckets() == ["alpha", "mid", "zeta"]
    assert "p2-only" in p2.buckets() and "alpha" not in p2.buckets()


def test_objects_come_page_by_page_across_nested_folders(service: Service, p1: Project) -> None:
    write_tree(service.bucket("tree", P1), TREE)
    for limit in (1, 2, 4, 100):
        assert p1.keys("tree", limit) == sorted(TREE), limit

    first = p1.page("tree", limit=3)
    assert first["bucket_name"] == "tree" and first["prefix"] == ""
    assert first["next_marker"] == "a/sub/deep.rdb"
    after = p1.page("tree", marker="a/sub/deep.rdb", limit=2)
    assert [o["file_name"] for o in after["objects"]] == ["a/sub/zz.aof", "a0"]
    last = p1.page("tree", marker="b0/y")
    assert [o["file_name"] for o in last["objects"]] == ["c.rdb"]
    assert last["next_marker"] == ""
    assert p1.page("tree", marker="c.rdb") == {
        "bucket_name": "tree",
        "prefix": "",
        "objects": [],
        "next_marker": "",
    }
    assert len(p1.page("tree")["objects"]) == len(TREE)  # limit 100 when not given


def test_objects_have_their_size_and_time_in_the_shape_of_a_tasks_files(
    service: Service, p1: Project
) -> None:
    write_tree(service.bucket("shapes", P1), TREE)
    objects = p1.page("shapes")["objects"]
    assert objects == [
        {"file_name": key, "size": str(len(data)), "update_at": SHOWN}
        for key, data in sorted(TREE.items())
    ]
    for obj in objects:  # what the console passes on into backup_files.files
        assert Files.model_validate(obj).size_bytes == len(TREE[obj["file_name"]])


def test_a_prefix_lists_only_the_keys_that_start_with_it(service: Service, p1: Project) -> None:
    write_tree(service.bucket("prefixed", P1), TREE)
    assert p1.keys("prefixed", 1, prefix="a/") == ["a/1.rdb", "a/sub/deep.rdb", "a/sub/zz.aof"]
    assert p1.keys("prefixed", 2, prefix="a") == [k for k in sorted(TREE) if k[0] == "a"]
    assert p1.keys("prefixed", 5, prefix="b") == ["b.rdb", "b/x", "b0/y"]
    assert p1.keys("prefixed", 5, prefix="nothing") == []
    assert p1.page("prefixed", prefix="a/sub/")["prefix"] == "a/sub/"


def test_a_link_in_a_bucket_folder_is_neither_listed_nor_followed(
    service: Service, p1: Project, outside: Path
) -> None:
    folder = service.bucket("with-links", P1)
    write_tree(folder, {"dump.rdb": b"d", "dir/dump.rdb": b"d"})
    (folder / "out.rdb").symlink_to(outside / "secret.rdb")
    (folder / "away").symlink_to(outside, target_is_directory=True)
    (folder / "dir" / "away").symlink_to(outside, target_is_directory=True)
    (folder / "same.rdb").symlink_to(folder / "dump.rdb")
    os.mkfifo(folder / "fifo")

    assert p1.keys("with-links", 100) == ["dir/dump.rdb", "dump.rdb"]
    assert p1.keys("with-links", 1, prefix="away") == []
    assert p1.keys("with-links", 1, prefix="dir/away/") == []


def test_a_bucket_the_project_may_not_read_answers_404_as_a_missing_one(
    service: Service, p1: Project, p2: Project
) -> None:
    write_tree(service.bucket("p1-objects", P1), TREE)
    service.grant("p2-granted-not-there", P2)
    write_tree(service.bucket("nobodys-objects"), TREE)
    buckets = service.data_dir / "buckets"
    (buckets / "p2-alias").symlink_to(buckets / "p1-objects", target_is_directory=True)
    service.grant("p2-alias", P2)

    seen = missing(p2, "p1-objects")
    assert seen == MISSING
    for name in ("no-such-bucket", "p2-granted-not-there", "nobodys-objects", "p2-alias", ".."):
        assert missing(p2, name) == seen, name
    code, body = p2.get("/buckets/a%5Cb/objects")  # a name no bucket can have
    assert (code, body["error_code"]) == (404, "DCS.4800"), body


def test_a_bad_limit_prefix_or_marker_is_a_400_naming_it(service: Service, p1: Project) -> None:
    service.bucket("params", P1)
    for query, name in (
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"prefix": "a\x00b"}, "prefix"),
        ({"marker": "m" * 1025}, "marker"),
    ):
        code, body = p1.get("/buckets/params/objects", **query)
        assert (code, body["error_code"]) == (400, "DCS.4800"), body
        assert body["error_msg"].startswith(f"Invalid parameter: {name}"), body
    assert p1.page("params", limit=1000, marker="m" * 1024)["objects"] == []


def test_another_projects_key_is_refused(service: Service, p1: Project, p2: Project) -> None:
    service.bucket("p1-private", P1)
    for path in ("/buckets", "/buckets/p1-private/objects", "/buckets/nope/objects"):
        code, body = p2.get_in(P1, path)
        assert (code, body["error_code"]) == (403, "APIGW.0302"), (path, body)


# -- S3 mode ------------------------------------------------------------------------------------


@pytest.mark.service
@pytest.mark.s3
def test_s3_buckets_and_objects_are_listed_as_folders_are() -> None:
    pytest.importorskip("moto")
    from dcs_migration.sources.s3 import S3Settings, make_s3_client
    from tests.support.s3server import ACCESS_KEY, SECRET_KEY, MotoServer

    with MotoServer() as moto:
        s3: Any = make_s3_client(S3Settings(moto.endpoint, ACCESS_KEY, SECRET_KEY))
        for bucket in ("s3-zeta", "s3-alpha", "s3-nobody", "dcs-backups"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="dcs-backups", Key="backups/x/dump.rdb", Body=b"x")
        for key, data in TREE.items():
            s3.put_object(Bucket="s3-alpha", Key=key, Body=data)
        s3.put_object(Bucket="s3-alpha", Key="a/sub/", Body=b"")  # a folder marker: not listed
        s3.put_object(Bucket="s3-nobody", Key="dump.rdb", Body=b"x")
        env = {
            "DCS_MIGRATION_OBS_ENDPOINT": moto.endpoint,
            "DCS_MIGRATION_OBS_ACCESS_KEY": ACCESS_KEY,
            "DCS_MIGRATION_OBS_SECRET_KEY": SECRET_KEY,
        }
        with Service(env=env) as service:
            p1, p2 = Project(service, P1), Project(service, P2)
            # The service's own backups, every project's, are no bucket a grant opens.
            for bucket in ("s3-zeta", "s3-alpha", "s3-granted-not-there", "dcs-backups"):
                service.grant(bucket, P1)
            assert p1.buckets() == ["s3-alpha", "s3-zeta"]
            assert p2.buckets() == []

            for limit in (1, 3, 100):
                assert p1.keys("s3-alpha", limit) == sorted(TREE), limit
            assert p1.keys("s3-alpha", 2, prefix="a/") == [k for k in sorted(TREE) if k[:2] == "a/"]
            page = p1.page("s3-alpha", marker="a0", limit=2)
            assert [o["file_name"] for o in page["objects"]] == ["b.rdb", "b/x"]
            assert page["next_marker"] == "b/x"
            for obj in p1.page("s3-alpha")["objects"]:
                head = s3.head_object(Bucket="s3-alpha", Key=obj["file_name"])
                stored = head["LastModified"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                assert obj["size"] == str(len(TREE[obj["file_name"]]))
                assert obj["update_at"] == stored
                Files.model_validate(obj)

            seen = missing(p2, "s3-alpha")
            assert seen == MISSING
            for name in ("s3-nobody", "s3-no-such-bucket", "dcs-backups"):
                assert missing(p2, name) == seen, name
            assert missing(p1, "s3-granted-not-there") == seen
            assert missing(p1, "dcs-backups") == seen
            code, body = p1.get("/buckets/s3-alpha/objects", limit=0)
            assert (code, body["error_code"]) == (400, "DCS.4800"), body
            assert "limit" in body["error_msg"]


@pytest.mark.service
def test_an_object_store_that_cannot_be_reached_answers_503() -> None:
    pytest.importorskip("boto3")
    env = {
        "DCS_MIGRATION_OBS_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nobody listens
        "DCS_MIGRATION_OBS_ACCESS_KEY": "ak",
        "DCS_MIGRATION_OBS_SECRET_KEY": "sk",
    }
    with Service(env=env) as service:
        p1 = Project(service, P1)
        service.grant("somewhere", P1)
        for path in ("/buckets", "/buckets/somewhere/objects"):
            code, body = p1.get(path)
            assert code == 503, body
            assert body == {
                "error_code": "DCS.4842",
                "error_msg": "the object store is unavailable: retry",
                "error_ext_msg": None,
            }
            assert "127.0.0.1" not in body["error_msg"]
