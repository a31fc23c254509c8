"""Request and response bodies of the HTTP API, mirroring the DCS v2 shapes.

Field names and JSON types follow the models of the official SDK (``huaweicloudsdkdcs.v2``),
so that what the SDK serializes validates here and what is answered here deserializes there.
Where the seed API page and the SDK differ, the page wins (the create response carries
``error``, which the SDK model lacks and ignores).

Request models are strict: a JSON value of the wrong type is refused, never coerced (a
number is not a ``task_name``). The few documented exceptions accept two JSON forms of
one value: ``size`` (digits, a human size, or a number of bytes), ``db`` (a decimal string
or an integer) and ``port`` (digits or an integer). Unknown fields are ignored, as the
SDK only sends known ones. Rules that concern the body alone are validators here; rules
that need the database (the target instance exists in the project, ...) belong to the
routers. Passwords are `SecretStr`: they print as stars and are absent from every
response model.

`parse_body` turns raw request bytes into a model or a `DcsError` (DCS.4004 for an empty
body, DCS.4800 naming the field otherwise).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dcs_migration.sizes import parse_size
from dcs_migration.sources.keys import bucket_name_problem, object_key_problem

from .errors import empty_body, from_validation_error, rule_error
from .links import MAX_EXPIRATION, MIN_EXPIRATION

MigrationType = Literal["backupfile_import", "online_migration"]
MigrationMethod = Literal["full_amount_migration", "incremental_migration"]
FileSource = Literal["self_build_obs", "backup_record"]
NetworkType = Literal["vpc", "vpn"]
InstanceType = Literal["single", "cluster"]
BackupFormat = Literal["rdb", "aof"]
ResumeMode = Literal["auto", "manual"]

ONLINE_MIGRATION_API: Final = "CreateOnlineMigrationTask (POST /v2/{project_id}/migration/instance)"

MAX_FILES: Final = 10_000
MAX_BATCH_IDS: Final = 1_000
MAX_OFFSET: Final = (1 << 31) - 1
"""The largest `offset` of a list query (the SDK's models hold it in a 32-bit integer)."""


class _Request(BaseModel):
    """Base of request bodies: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class _Response(BaseModel):
    """Base of response bodies: built by the service, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore")


# -- helpers -------------------------------------------------------------------------

_UPDATE_AT_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
UPDATE_AT_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
"""How a file's ``update_at`` is written (UTC when this service writes it)."""


def _check_object_key(key: str) -> str:
    problem = object_key_problem(key)
    if problem is not None:
        raise rule_error(str(problem))
    return key


def _check_bucket_name(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise rule_error(problem)
    return name


def _int_text(value: Any, *, what: str) -> Any:
    """Digits or an integer as an int; other values are left for the type check."""
    if isinstance(value, bool):
        raise rule_error(f"must be {what}")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise rule_error(f"must be {what}")
        return int(value)
    return value


def parse_addr(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6addr]:port"`` -> (host, port); ValueError if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not host:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{text!r} is not host:port")
    if not host or any(ch.isspace() for ch in host) or not host.isprintable():
        raise ValueError(f"{text!r} has no valid host")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return host, int(port)


# -- create migration task: request --------------------------------------------------


class Files(_Request):
    """One backup file: an object key in the bucket, with its advisory size and date."""

    file_name: str
    size: str | None = None
    update_at: str | None = None

    @field_validator("file_name")
    @classmethod
    def _file_name(cls, value: str) -> str:
        return _check_object_key(value)

    @field_validator("size", mode="before")
    @classmethod
    def _size_form(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if value is not None and not isinstance(value, str):
            raise rule_error("must be a string such as '754.0MB' or a number of bytes")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and parse_size(value) is None:
            raise rule_error("must be a number of bytes or a size such as '754.0MB'")
        return value

    @field_validator("update_at")
    @classmethod
    def _update_at(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ok = _UPDATE_AT_RE.fullmatch(value) is not None
        if ok:
            try:
                datetime.strptime(value, UPDATE_AT_FORMAT)
            except ValueError:
                ok = False
        if not ok:
            raise rule_error("must be a time in the format YYYY-MM-DD HH:MM:SS")
        return value

    @property
    def size_bytes(self) -> int | None:
        """`size` in bytes (advisory: the object's real size comes from the bucket)."""
        return None if self.size is None else parse_size(self.size)


class BackupFilesBody(_Request):
    """The files to import: objects of a bucket, or a backup made by this service.

    ``file_source`` may be left out; it then means ``self_build_obs``, the one source the
    managed service documents for its SDK.
    """

    file_source: FileSource = "self_build_obs"
    bucket_name: str | None = None
    files: list[Files] | None = Field(default=None, max_length=MAX_FILES)
    backup_id: str | None = None

    @field_validator("bucket_name")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_bucket_name(value)

    @model_validator(mode="after")
    def _by_source(self) -> BackupFilesBody:
        if self.file_source == "self_build_obs":
            if self.bucket_name is None:
                raise rule_error("is required when file_source is self_build_obs", "bucket_name")
            if not self.files:
                raise rule_error(
                    "is required and must not be empty when file_source is self_build_obs",
                    "files",
                )
        elif not self.backup_id:
            raise rule_error("is required when file_source is backup_record", "backup_id")
        return self


class _InstanceBody(_Request):
    password: SecretStr | None = None
    task_status: str | None = None
    id: str | None = None
    ip: str | None = None
    port: str | None = None
    name: str | None = None
    addrs: str | None = None
    proxy_multi_db: bool | None = None
    db: int | None = None

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if value is None:
            return None
        number = _int_text(value, what="a port number (1-65535)")
        if isinstance(number, int) and not 0 < number < 65536:
            raise rule_error("must be a port number (1-65535)")
        return str(number) if isinstance(number, int) else number

    @field_validator("db", mode="before")
    @classmethod
    def _db(cls, value: Any) -> Any:
        if value is None:
            return None
        number = _int_text(value, what="a database number (0-255)")
        if isinstance(number, int) and not 0 <= number <= 255:
            raise rule_error("must be a database number (0-255)")
        return number


class SourceInstanceBody(_InstanceBody):
    """The source Redis of an online migration (refused by this API, validated anyway)."""

    addrs: str = Field(min_length=1)


class TargetInstanceBody(_InstanceBody):
    """The target Redis: ``id`` names an instance registered in the same project.

    ``password``, when given, overrides the registered one for this task. ``db``, when
    given, sends every key to that database.
    """

    id: str = Field(min_length=1)


class CreateMigrationTaskBody(_Request):
    """Body of ``POST /v2/{project_id}/migration-task``."""

    task_name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=1024)
    migration_type: MigrationType
    migration_method: MigrationMethod
    backup_files: BackupFilesBody | None = None
    network_type: NetworkType | None = None
    source_instance: SourceInstanceBody | None = None
    target_instance: TargetInstanceBody
    # This service's extension: "auto" resumes the task from its checkpoint by itself
    # after a service restart; "manual" (the default) waits for an update call.
    resume_mode: ResumeMode | None = None
    # This service's extension: an AOF command the target does not know is skipped and
    # counted, rather than failing the task (Redis' own loader stops there).
    skip_unknown_commands: bool = False

    @model_validator(mode="after")
    def _rules(self) -> CreateMigrationTaskBody:
        if self.migration_type == "online_migration":
            raise rule_error(
                "must be backupfile_import: online migration tasks are not created through "
                f"this API, use {ONLINE_MIGRATION_API}",
                "migration_type",
            )
        if self.migration_method != "full_amount_migration":
            raise rule_error(
                "must be full_amount_migration for backupfile_import: "
                "a backup import is always a full import",
                "migration_method",
            )
        if self.backup_files is None:
            raise rule_error("is required when migration_type is backupfile_import", "backup_files")
        return self


class UpdateMigrationTaskBody(_Request):
    """Body of ``PUT /v2/{project_id}/migration-task/{task_id}`` (the SDK's
    MigrationUpdateRequestEntity): "auto" also resumes a FAILED or TERMINATED task from its
    checkpoint."""

    resume_mode: ResumeMode


# -- create migration task: response and shared response parts ------------------------


class CreateMigrationTaskResponse(_Response):
    id: str
    name: str
    status: str
    error: str = ""


class FilesInfo(_Response):
    file_name: str
    size: str | None = None
    update_at: str | None = None


class BackupFilesInfo(_Response):
    file_source: str | None = None
    bucket_name: str | None = None
    files: list[FilesInfo] | None = None
    backup_id: str | None = None


class _InstanceInfo(_Response):
    """An instance as a task shows it: the SDK's instance body without ``password``."""

    id: str | None = None
    name: str | None = None
    task_status: str | None = None
    ip: str | None = None
    port: str | None = None
    addrs: str | None = None
    proxy_multi_db: bool | None = None
    db: str | None = None


class SourceInstanceInfo(_InstanceInfo):
    pass


class TargetInstanceInfo(_InstanceInfo):
    pass


# -- other migration-task endpoints --------------------------------------------------


class MigrationTaskListItem(_Response):
    """One task in ``GET /v2/{project_id}/migration-tasks`` (the SDK's MigrationTaskList)."""

    task_id: str
    task_name: str
    status: str
    migration_type: str
    migration_method: str
    data_source: str | None = None
    source_instance_name: str | None = None
    source_instance_id: str | None = None
    target_instance_addrs: str | None = None
    target_instance_name: str | None = None
    target_instance_id: str | None = None
    created_at: str | None = None
    description: str | None = None
    error_message: str | None = None
    ecs_tenant_private_ip: str | None = None
    source_instance_status: str | None = None
    target_instance_status: str | None = None
    source_instance_subnet_id: str | None = None
    target_instance_subnet_id: str | None = None
    source_instance_spec_code: str | None = None
    target_instance_spec_code: str | None = None
    released_at: str | None = None
    version: str | None = None
    resume_mode: str | None = None
    supported_features: list[str] | None = None


class ListMigrationTasksResponse(_Response):
    count: int
    migration_tasks: list[MigrationTaskListItem]


class MigrationTaskDetail(_Response):
    """``GET /v2/{project_id}/migration-task/{task_id}`` (the SDK's ShowMigrationTaskResponse),
    also the answer of ``POST .../stop`` (status TERMINATING or TERMINATED).

    ``error_message`` is this service's addition (the SDK ignores it): for a FAILED task,
    what failed and where (file, byte offset, key).
    """

    task_id: str
    task_name: str
    description: str | None = None
    status: str
    migration_type: str
    migration_method: str
    ecs_tenant_private_ip: str | None = None
    backup_files: BackupFilesInfo | None = None
    network_type: str | None = None
    source_instance: SourceInstanceInfo | None = None
    target_instance: TargetInstanceInfo | None = None
    created_at: str | None = None
    updated_at: str | None = None
    released_at: str | None = None
    version: str | None = None
    resume_mode: str | None = None
    supported_features: list[str] | None = None
    tenant_vpc_id: str | None = None
    tenant_subnet_id: str | None = None
    tenant_security_group_id: str | None = None
    bandwidth_limit_mb: str | None = None
    task_status: str | None = None
    error_message: str | None = None


class MigrationTaskStats(_Response):
    """``GET .../migration-task/{task_id}/stats`` (the SDK's ShowMigrationTaskStatsResponse)."""

    full_migration_progress: str
    offset: str | None = None
    source_dbsize: str | None = None
    target_dbsize: str | None = None
    target_input_kbps: str | None = None
    target_ops: str | None = None
    is_migrating: bool
    # This service's extensions: AOF commands the target refused (skipped, as Redis'
    # loader skips them) and unknown ones skipped as the task asked.
    commands_refused: int | None = None
    commands_skipped_unknown: int | None = None


class OnlineMigrationTaskStats(MigrationTaskStats):
    """The stats of an online migration: ``offset`` is how many bytes of the source's
    stream the target has not applied yet (0: in sync); this service's extensions say
    where the replication stands."""

    lag_ms: int | None = None
    applied_offset: int | None = None
    source_offset: int | None = None
    resyncs_partial: int = 0
    resyncs_full: int = 0


class MigrationLog(_Response):
    created_at: str
    log_level: str
    message: str
    log_code: str | None = None
    keyword: list[str] | None = None


class ListMigrationTaskLogsResponse(_Response):
    log_num: int
    migration_logs: list[MigrationLog]


class BatchStopMigrationTasksBody(_Request):
    """Body of ``POST /v2/{project_id}/migration-task/batch-stop``."""

    migration_tasks: list[str] = Field(min_length=1, max_length=MAX_BATCH_IDS)


class StopMigrationTaskResult(_Response):
    task_id: str
    result: str
    error_code: str | None = None
    error_msg: str | None = None


class BatchStopMigrationTasksResponse(_Response):
    migration_tasks: list[StopMigrationTaskResult]


class DeleteMigrationTasksBody(_Request):
    """Body of ``DELETE /v2/{project_id}/migration-tasks/delete`` (DeleteMigrateTaskRequest)."""

    task_id_list: list[str] = Field(min_length=1, max_length=MAX_BATCH_IDS)


class DeleteMigrationTasksResponse(_Response):
    task_id_list: list[str]


# -- online migration ----------------------------------------------------------------

_ONLINE_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{3,63}")
MAX_BANDWIDTH_MB: Final = 10240


class CreateOnlineMigrationTaskBody(_Request):
    """Body of ``POST /v2/{project_id}/migration/instance``: a new online migration task,
    RUNNING until it is configured."""

    name: str
    description: str | None = Field(default=None, max_length=1024)
    vpc_id: str = Field(min_length=1, max_length=64)
    subnet_id: str = Field(min_length=1, max_length=64)
    security_group_id: str = Field(min_length=1, max_length=64)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ONLINE_NAME_RE.fullmatch(value):
            raise rule_error(
                "must be 4 to 64 characters, starting with a letter, of letters, digits, "
                "'_' and '-'"
            )
        return value


class CreateOnlineMigrationTaskResponse(_Response):
    """``instance_id`` is the new task's id (the SDK's model); ``job_id`` names the job that
    made it, which ``GET /v2/{project_id}/jobs/{job_id}`` shows."""

    instance_id: str
    job_id: str


class JobInfo(_Response):
    """``GET /v2/{project_id}/jobs/{job_id}`` (the SDK's ShowJobInfoResponse)."""

    job_id: str
    job_type: str
    status: str
    begin_time: str | None = None
    end_time: str | None = None
    fail_reason: str = ""


class ConfigMigrationInstanceBody(_Request):
    """A source or target of an online migration: a registered instance (``id``) or its
    addresses (``addrs``, comma separated; a cluster's every master), not both."""

    id: str | None = Field(default=None, min_length=1)
    addrs: str | None = Field(default=None, min_length=1, max_length=65536)
    password: SecretStr | None = None

    @field_validator("addrs")
    @classmethod
    def _check_addrs(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [part.strip() for part in value.split(",")]
        if not all(parts):
            raise rule_error("must be host:port addresses separated by commas")
        if len(parts) > 1000:
            raise rule_error("must hold at most 1000 addresses")
        for part in parts:
            try:
                parse_addr(part)
            except ValueError as exc:
                raise rule_error(f"must be host:port addresses: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ConfigMigrationInstanceBody:
        if self.id is not None and self.addrs is not None:
            raise rule_error("must not be given with id: give one or the other", "addrs")
        if self.id is None and self.addrs is None:
            raise rule_error("is required (or id, an instance of this project)", "addrs")
        return self

    def addresses(self) -> tuple[tuple[str, int], ...]:
        if self.addrs is None:
            return ()
        return tuple(parse_addr(part) for part in self.addrs.split(","))


class SetOnlineMigrationTaskBody(_Request):
    """Body of ``POST /v2/{project_id}/migration/{task_id}/task``: configure a RUNNING
    online migration task (it starts, FULLMIGRATING). ``bandwidth_limit_mb`` may be a
    string of digits, as the SDK's model holds it, or a number (MB/s, 1 to 10240)."""

    migration_method: MigrationMethod
    resume_mode: ResumeMode
    bandwidth_limit_mb: int | None = Field(
        default=None,
        json_schema_extra={
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_BANDWIDTH_MB},
                {"type": "string", "pattern": "^[0-9]+$"},
                {"type": "null"},
            ]
        },
    )
    source_instance: ConfigMigrationInstanceBody
    target_instance: ConfigMigrationInstanceBody

    @field_validator("bandwidth_limit_mb", mode="before")
    @classmethod
    def _bandwidth(cls, value: Any) -> Any:
        if value is None:
            return None
        what = f"a number of MB/s from 1 to {MAX_BANDWIDTH_MB}"
        number = _int_text(value, what=what)
        if not isinstance(number, int) or not 1 <= number <= MAX_BANDWIDTH_MB:
            raise rule_error(f"must be {what}")
        return number


class SetOnlineMigrationTaskResponse(_Response):
    id: str
    name: str
    status: str


class BatchRestartOnlineMigrationTasksBody(_Request):
    """Body of ``POST /v2/{project_id}/migration-tasks/batch-restart``."""

    migration_tasks: list[str] = Field(min_length=1, max_length=MAX_BATCH_IDS)


class BatchRestartMigrationTaskResult(_Response):
    task_id: str
    result: str
    error_code: str | None = None
    error_msg: str | None = None


class BatchRestartOnlineMigrationTasksResponse(_Response):
    migration_tasks: list[BatchRestartMigrationTaskResult]


# -- instances -----------------------------------------------------------------------


class InstanceListInfo(_Response):
    """One instance in ``GET /v2/{project_id}/instances`` (a subset of the SDK's fields).

    ``cache_mode`` (``single`` or ``cluster``) is not in the SDK's list model, which
    ignores it; the show model has it.
    """

    instance_id: str
    name: str
    engine: str = "Redis"
    engine_version: str | None = None
    ip: str | None = None
    port: int | None = None
    status: str
    cache_mode: str | None = None
    domain_name: str | None = None
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    capacity: int | None = None
    max_memory: int | None = None
    used_memory: int | None = None
    spec_code: str | None = None
    no_password_access: str | None = None
    access_user: str | None = None


class ListInstancesResponse(_Response):
    instance_num: int
    instances: list[InstanceListInfo]


class InstanceDetail(_Response):
    """``GET /v2/{project_id}/instances/{instance_id}`` (a subset of ShowInstanceResponse).

    ``backend_addrs`` lists every address, comma separated (the seed nodes of a cluster);
    ``ip`` and ``port`` are the first.
    """

    instance_id: str
    name: str
    engine: str = "Redis"
    engine_version: str | None = None
    ip: str | None = None
    port: int | None = None
    status: str
    cache_mode: str | None = None
    backend_addrs: str | None = None
    domain_name: str | None = None
    description: str | None = None
    created_at: str | None = None
    update_at: str | None = None
    capacity: int | None = None
    max_memory: int | None = None
    used_memory: int | None = None
    spec_code: str | None = None
    no_password_access: str | None = None
    access_user: str | None = None
    db_number: int | None = None
    sharding_count: int | None = None


class RegisterInstanceBody(_Request):
    """Body of ``POST /v2/{project_id}/instances``: this service's own extension.

    Registers an existing Redis, given by ``addrs`` (``"host:port"``, comma separated or a
    JSON array of such for a cluster's seed nodes) or by ``ip`` and ``port``.
    """

    name: str = Field(min_length=1, max_length=255)
    addrs: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    ip: str | None = Field(default=None, min_length=1)
    port: int | None = None
    password: SecretStr | None = None
    instance_type: InstanceType = "single"
    description: str | None = Field(default=None, max_length=1024)

    @field_validator("addrs", mode="before")
    @classmethod
    def _split_addrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("addrs")
    @classmethod
    def _check_addrs(cls, value: list[str] | None) -> list[str] | None:
        for addr in value or []:
            try:
                parse_addr(addr)
            except ValueError as exc:
                raise rule_error(f"must be host:port addresses: {exc}") from None
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if value is None:
            return None
        number = _int_text(value, what="a port number (1-65535)")
        if isinstance(number, int) and not 0 < number < 65536:
            raise rule_error("must be a port number (1-65535)")
        return number

    @model_validator(mode="after")
    def _where(self) -> RegisterInstanceBody:
        if self.addrs is not None and (self.ip is not None or self.port is not None):
            raise rule_error("must not be given with ip and port: give one or the other", "addrs")
        if self.addrs is None:
            if self.ip is None:
                raise rule_error("is required (or ip and port)", "addrs")
            if self.port is None:
                raise rule_error("is required with ip", "port")
            try:
                parse_addr(f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:1")
            except ValueError:
                raise rule_error("must be a host name or IP address", "ip") from None
        if self.instance_type == "single" and len(self.addresses()) != 1:
            raise rule_error("must hold one address for a single instance", "addrs")
        return self

    def addresses(self) -> list[tuple[str, int]]:
        """The addresses as (host, port) pairs."""
        if self.addrs is not None:
            return [parse_addr(addr) for addr in self.addrs]
        if self.ip is not None and self.port is not None:
            return [(self.ip, self.port)]
        return []


class RegisterInstanceResponse(_Response):
    instance_id: str


# -- backups and restores ------------------------------------------------------------


class BackupInstanceBody(_Request):
    """Body of ``POST /v2/{project_id}/instances/{instance_id}/backups``."""

    remark: str | None = Field(default=None, max_length=1024)
    backup_format: BackupFormat = "rdb"


class BackupInstanceResponse(_Response):
    """Answer of a backup request (the SDK's CopyInstanceResponse)."""

    backup_id: str


class BackupRecord(_Response):
    backup_id: str
    instance_id: str | None = None
    backup_name: str | None = None
    backup_type: str | None = None
    backup_format: str | None = None
    size: int | None = None
    status: str
    progress: str | None = None
    error_code: str | None = None
    remark: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    execution_at: str | None = None
    is_support_restore: str | None = None


class ListBackupRecordsResponse(_Response):
    total_num: int
    backup_record_response: list[BackupRecord]


class DownloadBackupFilesBody(_Request):
    """Body of ``POST .../backups/{backup_id}/links``: how long the links live, in seconds."""

    expiration: int = Field(ge=MIN_EXPIRATION, le=MAX_EXPIRATION)


class LinksItem(_Response):
    file_name: str
    link: str


class ListBackupFileLinksResponse(_Response):
    file_path: str
    bucket_name: str
    links: list[LinksItem]


class RestoreInstanceBody(_Request):
    """Body of ``POST /v2/{project_id}/instances/{instance_id}/restores``."""

    backup_id: str = Field(min_length=1)
    remark: str | None = Field(default=None, max_length=1024)


class RestoreInstanceResponse(_Response):
    restore_id: str


class RestoreRecord(_Response):
    restore_id: str
    backup_id: str | None = None
    backup_name: str | None = None
    restore_name: str | None = None
    status: str
    progress: str | None = None
    error_code: str | None = None
    restore_remark: str | None = None
    backup_remark: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ListRestoreRecordsResponse(_Response):
    total_num: int
    restore_record_response: list[RestoreRecord]


# -- buckets (this service's extension) ----------------------------------------------


class BucketInfo(_Response):
    bucket_name: str


class ListBucketsResponse(_Response):
    """``GET /v2/{project_id}/buckets``: the buckets the project may import from."""

    buckets: list[BucketInfo]


class BucketObject(_Response):
    """An object as a task's ``files`` names it: key, bytes as digits, UTC time."""

    file_name: str
    size: str
    update_at: str


class ListBucketObjectsResponse(_Response):
    """``GET /v2/{project_id}/buckets/{bucket_name}/objects``: a page of its objects.

    Each object has the shape of a task's ``backup_files.files`` item (``file_name``,
    ``size`` in bytes as digits, ``update_at`` in UTC), so that a client passes it on
    as it is. ``next_marker`` is the ``marker`` of the next page, empty after the last.
    """

    bucket_name: str
    prefix: str
    objects: list[BucketObject]
    next_marker: str


# -- parsing -------------------------------------------------------------------------

RequestModel = TypeVar("RequestModel", bound=BaseModel)


def parse_body(model: type[RequestModel], body: bytes | str) -> RequestModel:
    """Validate a raw JSON request body.

    Raises `DcsError`: DCS.4004 when the body is empty (or only whitespace), DCS.4800
    naming the field for malformed JSON, a non-object body, or any failed rule.
    """
    if not body or not body.strip():
        raise empty_body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
