"""Instances: the Redis servers a project registered, and the addresses each one holds.

An address (resolved, `address_key` form) belongs to one project: a registration that
would hold another project's address is refused (`AddressHeld`), so that no project's
connections reach another's servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import Session

from dcs_migration.store.base import Repository, page_limit, page_offset, require
from dcs_migration.store.models import Instance, InstanceAddress, utcnow
from dcs_migration.store.records import INSTANCE_TYPES, InstanceRecord


class AddressHeld(Exception):
    """Another project holds an address that an instance would hold."""

    def __init__(self, addresses: Iterable[str]) -> None:
        super().__init__(f"another project holds {', '.join(sorted(addresses))}")


# Registrations take it (PostgreSQL) so that two projects cannot claim an address at
# once; SQLite writes are one at a time already.
_ADDRESS_LOCK_ID = 0x44435302


class Instances(Repository):
    """Register, find and list a project's instances; their passwords stay encrypted."""

    def add_instance(
        self,
        project_id: str,
        name: str,
        addrs: str | Sequence[str],
        password: str | None = None,
        instance_type: str = "single",
        username: str | None = None,
        *,
        engine_version: str | None = None,
        addresses: Iterable[str] = (),
        exclusive: bool = True,
    ) -> InstanceRecord:
        """Register a Redis (`addrs`: "host:port[,host:port...]" or a list of "host:port")
        holding `addresses` (resolved, `address_key` form). An address belongs to one
        project: AddressHeld when another project holds one, unless `exclusive` is False
        (the operator's command line, sharing an address between projects)."""
        require(project_id, "project_id")
        require(name, "name")
        if instance_type not in INSTANCE_TYPES:
            raise ValueError(f"instance_type must be one of {sorted(INSTANCE_TYPES)}")
        row = Instance(
            instance_id=str(uuid.uuid4()),
            project_id=project_id,
            name=name,
            instance_type=instance_type,
            addrs=normalize_addrs(addrs),
            username=username or None,
            password_encrypted=self._box.encrypt(password) if password else None,
            engine="Redis",
            engine_version=engine_version,
            status="RUNNING",
            created_at=utcnow(),
        )
        held = sorted(set(addresses))
        with self._write() as s:
            if exclusive and held:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADDRESS_LOCK_ID})
                taken = s.scalars(
                    select(InstanceAddress.address).where(
                        InstanceAddress.address.in_(held), InstanceAddress.project_id != project_id
                    )
                ).all()
                if taken:
                    raise AddressHeld(taken)
            s.add(row)
            s.flush()
            s.add_all(
                InstanceAddress(instance_id=row.instance_id, address=a, project_id=project_id)
                for a in held
            )
            return instance_record(row)

    def addresses_held_elsewhere(self, project_id: str) -> frozenset[str]:
        """The addresses other projects hold and this one does not: its connections may
        not go there, wherever a cluster points them."""
        own = select(InstanceAddress.address).where(InstanceAddress.project_id == project_id)
        with self._read() as s:
            return frozenset(
                s.scalars(
                    select(InstanceAddress.address)
                    .where(InstanceAddress.project_id != project_id)
                    .where(InstanceAddress.address.not_in(own))
                    .distinct()
                )
            )

    def get_instance(self, project_id: str, instance_id: str) -> InstanceRecord | None:
        with self._read() as s:
            row = scoped_instance(s, project_id, instance_id)
            return None if row is None else instance_record(row)

    def list_instances(
        self, project_id: str, offset: int = 0, limit: int = 100, name: str | None = None
    ) -> tuple[int, list[InstanceRecord]]:
        """(how many match, one page of them), newest first; `name` matches a part, any case."""
        where: list[ColumnElement[bool]] = [Instance.project_id == project_id]
        if name:
            where.append(func.lower(Instance.name).contains(name.lower(), autoescape=True))
        with self._read() as s:
            count = s.scalar(select(func.count()).select_from(Instance).where(*where)) or 0
            rows = s.scalars(
                select(Instance)
                .where(*where)
                .order_by(Instance.created_at.desc(), Instance.instance_id.desc())
                .offset(page_offset(offset))
                .limit(page_limit(limit))
            )
            return count, [instance_record(r) for r in rows]

    def instance_password(self, project_id: str, instance_id: str) -> str | None:
        with self._read() as s:
            row = scoped_instance(s, project_id, instance_id)
            if row is None or row.password_encrypted is None:
                return None
            return self._box.decrypt(row.password_encrypted)


def normalize_addrs(addrs: str | Sequence[str]) -> str:
    """ "host:port,host:port" from a string or a list; each port checked."""
    parts = addrs.split(",") if isinstance(addrs, str) else list(addrs)
    cleaned = [p.strip() for p in parts if p.strip()]
    if not cleaned:
        raise ValueError("addrs must name at least one host:port")
    for addr in cleaned:
        host, sep, port = addr.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"addrs: {addr!r} is not host:port")
    return ",".join(cleaned)


def scoped_instance(s: Session, project_id: str, instance_id: str) -> Instance | None:
    row = s.get(Instance, instance_id)
    return row if row is not None and row.project_id == project_id else None


def instance_record(row: Instance) -> InstanceRecord:
    return InstanceRecord(
        instance_id=row.instance_id,
        project_id=row.project_id,
        name=row.name,
        instance_type=row.instance_type,
        addrs=row.addrs,
        username=row.username,
        has_password=row.password_encrypted is not None,
        engine=row.engine,
        engine_version=row.engine_version,
        status=row.status,
        created_at=row.created_at,
    )
