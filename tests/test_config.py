"""The settings: every variable read in one place, handed to a task's process whole, and
no module below the processes' entry points reading the environment itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dcs_migration
from dcs_migration import config
from dcs_migration.config import ExecutorKind, S3Settings, Settings
from dcs_migration.networks import AllowedNetworks

EVERY_VARIABLE = {
    config.DATA_DIR_ENV: "/srv/dcs",
    config.DATABASE_URL_ENV: "postgresql+psycopg://dcs@127.0.0.1/dcs",
    config.SQLITE_BUSY_ENV: "7.5",
    config.SECRET_KEY_ENV: "first-key, second-key",
    config.WORKERS_ENV: "9",
    config.MAX_TASKS_ENV: "11",
    config.ALLOWED_NETWORKS_ENV: "127.0.0.0/8, 10.1.0.0/16",
    config.OBS_ENDPOINT_ENV: "http://127.0.0.1:9000",
    config.OBS_ACCESS_KEY_ENV: "ak",
    config.OBS_SECRET_KEY_ENV: "sk",
    config.OBS_REGION_ENV: "cn-north-4",
    config.BACKUP_BUCKET_ENV: "our-backups",
    config.PUBLIC_URL_ENV: "https://dcs.example.com/",
    config.HEADER_TIMEOUT_ENV: "3",
    config.BODY_TIMEOUT_ENV: "4",
    config.BODY_BUDGET_ENV: "64",
    config.REPLY_TIMEOUT_ENV: "5",
    config.HANDOFF_ADDR_ENV: "10.1.2.3",
    config.HANDOFF_BIND_ENV: "0.0.0.0",
    config.EXECUTOR_ENV: "Celery",
    config.BROKER_URL_ENV: "redis://127.0.0.1:6379/0",
    config.LEASE_SECONDS_ENV: "20",
    config.SPOOL_MAX_BYTES_ENV: "2097152",
    config.SYNC_STOP_SECONDS_ENV: "7.5",
}
EVERY_SETTING = Settings(
    data_dir=Path("/srv/dcs"),
    database_url="postgresql+psycopg://dcs@127.0.0.1/dcs",
    sqlite_busy_timeout=7.5,
    secret_keys=("first-key", "second-key"),
    workers=9,
    max_tasks_per_project=11,
    allowed_networks=AllowedNetworks.parse("127.0.0.0/8 10.1.0.0/16"),
    s3=S3Settings("http://127.0.0.1:9000", "ak", "sk", "cn-north-4"),
    backup_bucket="our-backups",
    public_url="https://dcs.example.com",
    header_timeout=3.0,
    body_timeout=4.0,
    body_budget=64 << 20,
    reply_timeout=5.0,
    handoff_addr="10.1.2.3",
    handoff_bind="0.0.0.0",
    executor=ExecutorKind.CELERY,
    broker_url="redis://127.0.0.1:6379/0",
    lease_seconds=20.0,
    spool_max_bytes=2 << 20,
    sync_stop_seconds=7.5,
)

# Where a process starts, and so may read its environment: the settings' one reader, and
# the task process's entry, which reads the service's pid (not a setting) to die with it.
ROOTS = {"config.py", "tasks/worker.py"}
PACKAGE = Path(dcs_migration.__file__).resolve().parent


def test_every_variable_is_a_setting() -> None:
    assert Settings.from_env(EVERY_VARIABLE) == EVERY_SETTING
    names = {v for k, v in vars(config).items() if k.endswith("_ENV")}
    assert names - {config.SERVICE_PID_ENV} == set(EVERY_VARIABLE)


def test_the_readme_tells_users_every_variable() -> None:
    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert sorted(name for name in EVERY_VARIABLE if f"`{name}`" not in table) == []


def test_every_variable_in_the_code_is_named_in_config() -> None:
    """A `DCS_MIGRATION_*` name spelt out anywhere but config.py would be a variable
    that something reads, or a message naming one that nothing does."""
    spelt: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith("DCS_MIGRATION_") and text.isupper():
                    spelt.add(f"{path.relative_to(PACKAGE)}: {text}")
    assert spelt == set()


def test_defaults_of_an_empty_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path)
    assert settings == Settings(data_dir=tmp_path.resolve())
    assert settings.object_store is None  # buckets and backups are folders of the data dir
    assert settings.s3 == S3Settings()  # s3:// sources: AWS, boto3's own credentials


def test_the_object_store_is_chosen_by_its_endpoint_only(tmp_path: Path) -> None:
    with_endpoint = Settings.from_env({config.OBS_ENDPOINT_ENV: "http://127.0.0.1:9"})
    assert with_endpoint.object_store == S3Settings("http://127.0.0.1:9")
    keys_only = {config.OBS_ACCESS_KEY_ENV: "ak", config.OBS_SECRET_KEY_ENV: "sk"}
    assert Settings.from_env(keys_only, data_dir=tmp_path).object_store is None


def test_settings_travel_to_a_task_process_as_json_whole() -> None:
    assert Settings.from_json(EVERY_SETTING.to_json()) == EVERY_SETTING
    plain = Settings(data_dir=Path("/d"))
    assert Settings.from_json(plain.to_json()) == plain


def test_secrets_stay_out_of_the_repr() -> None:
    shown = repr(EVERY_SETTING)
    assert "first-key" not in shown and "'sk'" not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (config.SQLITE_BUSY_ENV, "soon"),
        (config.SQLITE_BUSY_ENV, "0"),
        (config.ALLOWED_NETWORKS_ENV, "10.0.0.0/33"),
        (config.PUBLIC_URL_ENV, "ftp://a.example"),
        (config.BODY_BUDGET_ENV, "1"),
        (config.REPLY_TIMEOUT_ENV, "-1"),
        (config.SPOOL_MAX_BYTES_ENV, "1048575"),
        (config.SPOOL_MAX_BYTES_ENV, "1GB"),
        (config.SYNC_STOP_SECONDS_ENV, "0.5"),
        (config.SYNC_STOP_SECONDS_ENV, "3601"),
        (config.SYNC_STOP_SECONDS_ENV, "soon"),
    ],
)
def test_a_value_that_cannot_be_used_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read the process environment: `os.environ`, `os.getenv`, `environ.get`,
    or importing `environ` / `getenv` from os."""
    names = ("environ", "environb", "getenv")
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, attr = node.value.id, node.attr
            if (owner == "os" and attr in names) or (owner == "environ" and attr == "get"):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in names][:1]
    return lines


def test_no_module_below_the_roots_reads_the_environment() -> None:
    readers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        lines = _environment_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            readers[where] = lines
    assert set(readers) <= ROOTS, readers
    assert "config.py" in readers  # the scan does see a read


def test_the_scan_sees_every_spelling() -> None:
    code = "import os\nfrom os import environ\nos.environ['A']\nos.getenv('B')\nenviron.get('C')\n"
    assert _environment_reads(ast.parse(code)) == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({config.BROKER_URL_ENV: ""}, config.BROKER_URL_ENV),
        ({config.BROKER_URL_ENV: "http://127.0.0.1:1"}, config.BROKER_URL_ENV),
        ({config.DATABASE_URL_ENV: ""}, "SQLite"),
        ({config.DATABASE_URL_ENV: "sqlite:////srv/dcs/db"}, "SQLite"),
        ({config.OBS_ENDPOINT_ENV: ""}, config.OBS_ENDPOINT_ENV),
    ],
)
def test_the_celery_executor_refuses_what_other_machines_cannot_share(
    changes: dict[str, str], named: str
) -> None:
    assert Settings.from_env(EVERY_VARIABLE).distribution_problem() is None
    problem = Settings.from_env({**EVERY_VARIABLE, **changes}).distribution_problem()
    assert problem is not None and named in problem
    inline = {**EVERY_VARIABLE, **changes, config.EXECUTOR_ENV: "inline"}
    assert Settings.from_env(inline).distribution_problem() is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (config.EXECUTOR_ENV, "threads"),
        (config.LEASE_SECONDS_ENV, "1"),
        (config.LEASE_SECONDS_ENV, "x"),
    ],
)
def test_a_distributed_setting_that_cannot_be_used_is_named(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
