"""Registering an instance: the Redis is checked before it is saved (its addresses are
allowed, it answers as Redis with the credentials given), the one use-case behind the
API's `POST /instances` and the command line's `instances add`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dcs_migration.client.endpoint import TargetError
from dcs_migration.client.probe import probe_instance
from dcs_migration.networks import AllowedNetworks
from dcs_migration.store import Store
from dcs_migration.store.records import InstanceRecord


class RegistrationRefused(Exception):
    """No Redis may be registered there: the message names the cause (an address not
    allowed, a closed or silent port, a server that is not Redis, wrong credentials), for
    the operator or the service's log, never for a project's answer."""


@dataclass(frozen=True, slots=True)
class NewInstance:
    """An instance as a registration asks for it."""

    project_id: str
    name: str
    addresses: Sequence[tuple[str, int]]  # (host, port); a cluster: any of its nodes
    password: str | None = None
    username: str | None = None
    instance_type: str = "single"  # single | cluster
    # False: the address may be one another project holds (the operator's command line
    # only: the API refuses it, so that no project reaches another's Redis).
    exclusive: bool = True

    def spelt(self) -> list[str]:
        """The addresses as "host:port" ("[host]:port" for IPv6)."""
        return [
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.addresses
        ]


def register_instance(
    store: Store, networks: AllowedNetworks, new: NewInstance
) -> tuple[InstanceRecord, str | None]:
    """The instance saved, and the server's version. RegistrationRefused when it does
    not answer as Redis where it may be reached; AddressHeld when another project holds
    one of its addresses."""
    try:
        probed = probe_instance(
            list(new.addresses),
            networks,
            username=new.username,
            password=new.password,
            cluster=new.instance_type == "cluster",
        )
    except TargetError as exc:
        raise RegistrationRefused(str(exc)) from exc
    instance = store.add_instance(
        new.project_id,
        new.name,
        new.spelt(),
        password=new.password,
        instance_type=new.instance_type,
        username=new.username,
        engine_version=probed.version,
        addresses=probed.addresses,
        exclusive=new.exclusive,
    )
    return instance, probed.version
