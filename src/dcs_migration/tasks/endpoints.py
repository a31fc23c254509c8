"""The endpoint a job connects to for a registered instance: its first address, the
password to use, and the address rule of its project."""

from __future__ import annotations

from dcs_migration.client.addresses import AddressPolicy
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.networks import AllowedNetworks
from dcs_migration.store import InstanceRecord, Store


def instance_endpoint(
    store: Store, instance: InstanceRecord, networks: AllowedNetworks, *, password: str | None
) -> Endpoint:
    """Connections go only where `networks` allow and no other project's address is."""
    return Endpoint(
        host=instance.ip,
        port=instance.port,
        username=instance.username,
        password=password,
        policy=AddressPolicy(networks, store.addresses_held_elsewhere(instance.project_id)),
    )
