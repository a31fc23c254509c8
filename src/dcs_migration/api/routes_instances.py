"""Instances: the Redis servers a project may import into (list, show, register)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dcs_migration.api.app import Signed, body_of, iso, json_model, request_body_model, service_of
from dcs_migration.api.errors import DCS_INSTANCE_NOT_FOUND, DcsError, invalid_parameter
from dcs_migration.api.schemas import (
    MAX_OFFSET,
    InstanceDetail,
    InstanceListInfo,
    ListInstancesResponse,
    RegisterInstanceBody,
    RegisterInstanceResponse,
    parse_body,
)
from dcs_migration.store.records import InstanceRecord
from dcs_migration.target.endpoint import Endpoint, TargetError
from dcs_migration.target.probe import probe_redis

router = APIRouter(prefix="/v2/{project_id}")


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
    request: Request,
    auth: Signed,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    name: str | None = None,
) -> dict[str, Any]:
    count, found = service_of(request).store.list_instances(project_id, offset, limit, name)
    return {
        "instance_num": count,
        "instances": [json_model(InstanceListInfo(**_common(i))) for i in found],
    }


@router.get("/instances/{instance_id}", response_model=InstanceDetail)
def show_instance(
    project_id: str, instance_id: str, request: Request, auth: Signed
) -> dict[str, Any]:
    i = service_of(request).store.get_instance(project_id, instance_id)
    if i is None:
        raise DcsError(404, DCS_INSTANCE_NOT_FOUND, f"instance {instance_id} does not exist")
    return json_model(InstanceDetail(**_common(i), backend_addrs=i.addrs))


@router.post("/instances", response_model=RegisterInstanceResponse)
@request_body_model(RegisterInstanceBody)
def register_instance(project_id: str, request: Request, auth: Signed) -> dict[str, Any]:
    """Register an existing Redis (this service's extension); it must answer as Redis."""
    body = parse_body(RegisterInstanceBody, body_of(request))
    addresses = body.addresses()
    password = body.password.get_secret_value() if body.password else None
    host, port = addresses[0]
    try:
        version = probe_redis(Endpoint(host, port, password=password))
    except TargetError as exc:
        raise invalid_parameter(f"addrs: {exc}") from None
    instance = service_of(request).store.add_instance(
        project_id,
        body.name,
        [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses],
        password=password,
        instance_type=body.instance_type,
        engine_version=version,
    )
    return {"instance_id": instance.instance_id}
