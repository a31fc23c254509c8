"""Buckets: the ones a project may import from, and their objects (this service's
extension, for the console's "create a backup import" form).

An object is answered in the shape of a task's ``backup_files.files`` item, so that a
client passes it on unchanged. A bucket the project was not granted, or that is not
there, answers exactly as a missing one (404, the message of a task naming it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dcs_migration.api.deps import BucketsDep, Signed
from dcs_migration.api.errors import invalid_parameter
from dcs_migration.api.render import json_model
from dcs_migration.api.schemas import (
    UPDATE_AT_FORMAT,
    BucketInfo,
    BucketObject,
    ListBucketObjectsResponse,
    ListBucketsResponse,
)
from dcs_migration.sources.keys import key_part_problem
from dcs_migration.tasks.buckets import MAX_LIST_KEYS, ObjectQuery

router = APIRouter(prefix="/v2/{project_id}")


@router.get("/buckets", response_model=ListBucketsResponse)
def list_buckets(project_id: str, auth: Signed, buckets: BucketsDep) -> dict[str, Any]:
    """The buckets the project may import from that are there, by name."""
    names = buckets.listed(project_id)
    return json_model(ListBucketsResponse(buckets=[BucketInfo(bucket_name=n) for n in names]))


@router.get("/buckets/{bucket_name}/objects", response_model=ListBucketObjectsResponse)
def list_bucket_objects(
    project_id: str,
    bucket_name: str,
    auth: Signed,
    buckets: BucketsDep,
    prefix: str = "",
    marker: str = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_KEYS)] = 100,
) -> dict[str, Any]:
    """A page of the bucket's objects in key order: keys under `prefix`, strictly after
    `marker` (S3's StartAfter), at most `limit`."""
    for name, value in (("prefix", prefix), ("marker", marker)):
        problem = key_part_problem(value)
        if problem is not None:
            raise invalid_parameter(f"{name} {problem}")
    page = buckets.list_objects(project_id, bucket_name, ObjectQuery(prefix, marker, limit))
    objects = [
        BucketObject(
            file_name=o.key, size=str(o.size), update_at=o.modified.strftime(UPDATE_AT_FORMAT)
        )
        for o in page.objects
    ]
    return json_model(
        ListBucketObjectsResponse(
            bucket_name=bucket_name, prefix=prefix, objects=objects, next_marker=page.next_marker
        )
    )
