"""Instances: the Redis servers a project may import into (list, show, register)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dcs_migration.api.deps import SettingsDep, Signed, StoreDep, body_of, request_body_model
from dcs_migration.api.errors import DCS_INSTANCE_NOT_FOUND, DcsError, invalid_parameter
from dcs_migration.api.render import iso, json_model
from dcs_migration.api.schemas import (
    MAX_OFFSET,
    InstanceDetail,
    InstanceListInfo,
    ListInstancesResponse,
    RegisterInstanceBody,
    RegisterInstanceResponse,
    parse_body,
)
from dcs_migration.store import AddressHeld
from dcs_migration.store.records import InstanceRecord
from dcs_migration.tasks import instances

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v2/{project_id}")

# One answer for every refused registration: a closed port, a silent one, a server that
# is not Redis, a wrong password, an address outside the allowed networks or another
# project's all read the same, so that registering is neither a port scanner nor a
# password oracle. The cause goes to the service's log.
NO_REDIS = "addrs: no Redis answered at that address with those credentials"


def _common(i: InstanceRecord) -> dict[str, Any]:
    """What the list and show shapes both say of an instance."""
    return {
        "instance_id": i.instance_id,
        "name": i.name,
        "engine": i.engine,
        "engine_version": i.engine_version,
        "ip": i.ip,
        "port": i.port,
        "status": i.status,
        "cache_mode": i.instance_type,
        "created_at": iso(i.created_at),
        "no_password_access": "false" if i.has_password else "true",
        "access_user": i.username,
    }


@router.get("/instances", response_model=ListInstancesResponse)
def list_instances(
    project_id: str,
    auth: Signed,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    name: str | None = None,
) -> dict[str, Any]:
    count, found = store.list_instances(project_id, offset, limit, name)
    return {
        "instance_num": count,
        "instances": [json_model(InstanceListInfo(**_common(i))) for i in found],
    }


@router.get("/instances/{instance_id}", response_model=InstanceDetail)
def show_instance(
    project_id: str, instance_id: str, auth: Signed, store: StoreDep
) -> dict[str, Any]:
    i = store.get_instance(project_id, instance_id)
    if i is None:
        raise DcsError(404, DCS_INSTANCE_NOT_FOUND, f"instance {instance_id} does not exist")
    return json_model(InstanceDetail(**_common(i), backend_addrs=i.addrs))


@router.post("/instances", response_model=RegisterInstanceResponse)
@request_body_model(RegisterInstanceBody)
def register_instance(
    project_id: str, request: Request, auth: Signed, store: StoreDep, settings: SettingsDep
) -> dict[str, Any]:
    """Register an existing Redis (this service's extension); it must answer as Redis."""
    body = parse_body(RegisterInstanceBody, body_of(request))
    new = instances.NewInstance(
        project_id,
        body.name,
        body.addresses(),
        password=body.password.get_secret_value() if body.password else None,
        instance_type=body.instance_type,
    )
    try:
        instance, _ = instances.register_instance(store, settings.allowed_networks, new)
    except (instances.RegistrationRefused, AddressHeld) as exc:
        spelt = ",".join(new.spelt())
        log.warning("project %s: registering %s refused: %s", project_id, spelt, exc)
        raise invalid_parameter(NO_REDIS) from None
    return {"instance_id": instance.instance_id}
