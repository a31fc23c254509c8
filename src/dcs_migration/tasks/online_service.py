"""The online-migration use-cases: create, configure, restart, and the sync-stop's
request and outcome. The engine that runs a configured task is `tasks/online.py`.

Every address a configuration names passes the rule every connection of the project
passes (`client/addresses.py`: the allowed networks, and no address another project
holds), checked here so that the answer names the field; the engine's connections are
checked again when they are made. A use-case the rules refuse raises `Refused`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dcs_migration.client.addresses import AddressPolicy, AddressRefused, resolve
from dcs_migration.client.addresses import Refusal as AddressRefusal
from dcs_migration.config import ALLOWED_NETWORKS_ENV, Settings
from dcs_migration.store import LogLevel, OnlineConfig, Store, TaskRecord, TaskStatus
from dcs_migration.store.records import ONLINE_RESTARTABLE
from dcs_migration.tasks.executor import Executor, Work
from dcs_migration.tasks.refusals import Refusal, Refused
from dcs_migration.tasks.service import TaskService

log = logging.getLogger(__name__)

JOB_TYPE = "createMigrationTask"  # the managed service's job of a new online migration
NO_IP_TO_SWITCH = (
    "a self-hosted service has no IP address to switch: point your clients at the target "
    "instance ({target}) once the migration is stopped in sync (sync-stop)"
)


@dataclass(frozen=True, slots=True)
class OnlineSide:
    """A source or a target as the configuration names it: a registered instance (`id`)
    or addresses (every master of a cluster), and maybe a password."""

    id: str | None
    addresses: tuple[tuple[str, int], ...]  # (host, port); empty when `id` is given
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class OnlineRequest:
    """A configuration as the request asks for it (its body already validated)."""

    migration_method: str  # full_amount_migration | incremental_migration
    resume_mode: str  # auto | manual
    bandwidth_limit_mb: int | None
    source: OnlineSide
    target: OnlineSide


@dataclass(frozen=True, slots=True)
class _Resolved:
    addrs: str
    instance_id: str | None
    name: str
    password: str | None
    cluster: bool
    keys: frozenset[str]  # the addresses as projects hold them


class SyncStopOutcome(StrEnum):
    """Where a sync-stop stands, from the task's row."""

    WAITING = "waiting"  # the target catches up
    STOPPED = "stopped"  # caught up and TERMINATED
    FAILED = "failed"  # the task failed meanwhile (its error says why)
    REFUSED = "refused"  # the engine refused it (`sync_stop_error`); the task runs on
    GONE = "gone"  # deleted meanwhile


def spelt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OnlineTasks:
    """What the API asks of online migrations, over the store and the executor."""

    def __init__(
        self, store: Store, tasks: TaskService, executor: Executor, settings: Settings
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.executor = executor
        self.settings = settings

    # -- finding --------------------------------------------------------------------------

    def task(self, project_id: str, task_id: str) -> TaskRecord:
        """The project's online migration; refused for any other task."""
        task = self.tasks.task(project_id, task_id)
        if not task.is_online:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is a {task.migration_type} task, "
                "not an online migration",
            )
        return task

    def job(self, project_id: str, job_id: str) -> TaskRecord:
        """The task a job of the project made (a job's id is its task's)."""
        try:
            return self.task(project_id, job_id)
        except Refused:
            raise Refused(Refusal.TASK_NOT_FOUND, f"job {job_id} does not exist") from None

    # -- creating and configuring ---------------------------------------------------------

    def create(
        self,
        project_id: str,
        *,
        name: str,
        description: str,
        vpc_id: str | None,
        subnet_id: str | None,
        security_group_id: str | None,
    ) -> TaskRecord:
        """A new online migration, RUNNING until it is configured."""
        limit = self.tasks.max_tasks_per_project
        if self.store.count_running(project_id) >= limit:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"project {project_id} already has {limit} tasks running or waiting, "
                "its limit: stop some, or wait for them to finish",
            )
        task = self.store.create_online_task(
            project_id,
            task_name=name,
            description=description,
            vpc_id=vpc_id,
            subnet_id=subnet_id,
            security_group_id=security_group_id,
        )
        self.store.add_log(
            task.task_id, LogLevel.INFO, "online migration task created: waiting to be configured"
        )
        return task

    def configure(self, project_id: str, task_id: str, request: OnlineRequest) -> TaskRecord:
        """Configure a RUNNING online migration and submit it: FULLMIGRATING."""
        task = self.task(project_id, task_id)
        if task.status is not TaskStatus.RUNNING:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {task.status.value}: only a RUNNING task "
                "(created, not configured yet) can be configured",
            )
        policy = AddressPolicy(
            self.settings.allowed_networks, self.store.addresses_held_elsewhere(project_id)
        )
        source = self._side(project_id, "source_instance", request.source, policy)
        target = self._side(project_id, "target_instance", request.target, policy)
        shared = sorted(source.keys & target.keys)
        if shared:
            raise Refused(
                Refusal.INVALID_PARAMETER,
                f"target_instance: {shared[0]} is also the source's address: "
                "the source and the target must be two Redis",
            )
        config = OnlineConfig(
            migration_method=request.migration_method,
            resume_mode=request.resume_mode,
            bandwidth_limit_mb=request.bandwidth_limit_mb,
            source_addrs=source.addrs,
            source_instance_id=source.instance_id,
            source_instance_name=source.name,
            source_password=source.password,
            source_cluster=source.cluster,
            target_addrs=target.addrs,
            target_instance_id=target.instance_id,
            target_instance_name=target.name,
            target_password=target.password,
            target_cluster=target.cluster,
        )
        configured = self.store.configure_online_task(project_id, task_id, config)
        if configured is None:  # configured (or deleted) by another call meanwhile
            now = self.tasks.task(project_id, task_id)
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {now.status.value}: only a RUNNING task "
                "(created, not configured yet) can be configured",
            )
        limit = (
            "no bandwidth limit"
            if request.bandwidth_limit_mb is None
            else f"bandwidth limit {request.bandwidth_limit_mb} MB/s"
        )
        self.store.add_log(
            task_id,
            LogLevel.INFO,
            f"configured: {request.migration_method} from {_kind(source)} {source.addrs} "
            f"into {_kind(target)} {target.addrs}, resume_mode {request.resume_mode}, {limit}",
        )
        self.executor.submit(Work.online_migration(project_id, task_id))
        return configured

    def _side(
        self, project_id: str, name: str, side: OnlineSide, policy: AddressPolicy
    ) -> _Resolved:
        """The side's addresses, each checked; its instance's when it names one."""
        if side.id is not None:
            instance = self.store.get_instance(project_id, side.id)
            if instance is None:
                raise Refused(
                    Refusal.INSTANCE_NOT_FOUND, f"{name}.id: instance {side.id} does not exist"
                )
            field_name = f"{name}.id"
            addrs = instance.addr_list
            instance_id: str | None = instance.instance_id
            instance_name = instance.name
            cluster = instance.instance_type == "cluster"
        else:
            field_name = f"{name}.addrs"
            addrs = [spelt(host, port) for host, port in side.addresses]
            instance_id, instance_name = None, ""
            cluster = len(addrs) > 1
        keys: set[str] = set()
        for addr in addrs:
            host, _, port = addr.rpartition(":")
            keys |= _checked(field_name, host.strip("[]"), int(port), policy)
        return _Resolved(
            addrs=",".join(addrs),
            instance_id=instance_id,
            name=instance_name,
            password=side.password,
            cluster=cluster,
            keys=frozenset(keys),
        )

    # -- restarting -----------------------------------------------------------------------

    def restart_many(self, project_id: str, task_ids: Sequence[str]) -> list[Refused | None]:
        """Restart each TERMINATED or MIGRATION_FAILED online migration (FULLMIGRATING, by
        partial resync where the source still holds its offset); for each id in turn,
        None when it restarts or why it was refused."""
        outcomes: list[Refused | None] = []
        for task_id in task_ids:
            try:
                self._restart(project_id, task_id)
            except Refused as refusal:
                outcomes.append(refusal)
            else:
                outcomes.append(None)
        return outcomes

    def _restart(self, project_id: str, task_id: str) -> None:
        task = self.task(project_id, task_id)
        if task.status is TaskStatus.RUNNING:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is RUNNING: it is not configured yet",
            )
        if task.status not in ONLINE_RESTARTABLE:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {task.status.value}: only a TERMINATED or "
                "MIGRATION_FAILED task can be restarted",
            )
        if self.store.restart_online(project_id, task_id) is None:
            now = self.tasks.task(project_id, task_id)
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {now.status.value}: it cannot be restarted now",
            )
        self.store.add_log(
            task_id,
            LogLevel.INFO,
            "restart asked: the task goes on by partial resync where the source still holds "
            "its offset, else by a full sync",
        )
        self.executor.submit(Work.online_migration(project_id, task_id))

    # -- the sync-stop --------------------------------------------------------------------

    def request_sync_stop(self, project_id: str, task_id: str) -> None:
        """Ask an INCRMIGEATING online migration to stop once its target caught up."""
        task = self.task(project_id, task_id)
        if task.status is not TaskStatus.INCRMIGEATING or not self.store.request_sync_stop(
            project_id, task_id
        ):
            now = self.tasks.task(project_id, task_id).status
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {now.value}: only a task in its incremental "
                f"sync ({TaskStatus.INCRMIGEATING.value}) can be stopped in sync",
            )
        self.store.add_log(
            task_id, LogLevel.INFO, "sync-stop asked: the task stops once its target caught up"
        )

    def sync_stop_outcome(self, project_id: str, task_id: str) -> tuple[SyncStopOutcome, str]:
        """Where the sync-stop stands, and the message that goes with it (the task's
        error, or why the engine refused)."""
        task = self.store.get_task(project_id, task_id)
        if task is None:
            return SyncStopOutcome.GONE, f"migration task {task_id} was deleted"
        if task.status is TaskStatus.TERMINATED:
            return SyncStopOutcome.STOPPED, ""
        if task.status is TaskStatus.MIGRATION_FAILED:
            return SyncStopOutcome.FAILED, task.error_message
        online = task.online
        if online is not None and online.sync_stop_error:
            return SyncStopOutcome.REFUSED, online.sync_stop_error
        return SyncStopOutcome.WAITING, ""

    def give_up_sync_stop(self, task_id: str, seconds: float) -> str:
        """The sync-stop took longer than it may: the request is withdrawn (the task runs
        on) and the message says so."""
        message = (
            f"the target did not catch up within {seconds:g} seconds: the task runs on, "
            "in its incremental sync"
        )
        self.store.refuse_sync_stop(task_id, message)
        return message

    # -- the IP switch --------------------------------------------------------------------

    def refuse_ip_switch(self, project_id: str, task_id: str) -> None:
        """exchange-ip and rollback-ip: there is no IP address to switch here."""
        task = self.tasks.task(project_id, task_id)
        target = task.target_instance_addrs or "not configured yet"
        raise Refused(Refusal.STATE_NOT_ALLOWED, NO_IP_TO_SWITCH.format(target=target))


def _kind(side: _Resolved) -> str:
    what = "cluster" if side.cluster else "Redis"
    return f"{what} {side.name}" if side.name else what


def _checked(name: str, host: str, port: int, policy: AddressPolicy) -> set[str]:
    """The keys of the addresses `host` resolves to, each allowed for the project;
    refused naming the field (and, for the networks, the setting) otherwise."""
    where = spelt(host, port)
    try:
        return {found.key for found in resolve(host, port, policy)}
    except AddressRefused as exc:
        if exc.refusal is AddressRefusal.HELD:
            reason = "is not an address the service may connect to for this project"
        elif exc.refusal is AddressRefusal.NEVER:
            reason = (
                f"is outside {ALLOWED_NETWORKS_ENV} (link-local, metadata, unspecified and "
                "multicast addresses never are inside)"
            )
        else:
            reason = f"is outside {ALLOWED_NETWORKS_ENV}"
        raise Refused(Refusal.INVALID_PARAMETER, f"{name}: {where} {reason}") from None
    except (OSError, UnicodeError):
        raise Refused(Refusal.INVALID_PARAMETER, f"{name}: {where} does not resolve") from None
