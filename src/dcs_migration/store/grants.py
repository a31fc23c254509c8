"""Bucket grants: which buckets each project's tasks may read.

A repository of `Store`. Only the operator
changes grants (`dcs-migration buckets grant | revoke`); the service only asks whether a
project holds one, when a task is created and again when it runs.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dcs_migration.store.base import Repository
from dcs_migration.store.models import BucketGrant, utcnow
from dcs_migration.store.records import BucketGrantRecord


class BucketGrants(Repository):
    """Grant, revoke and check the buckets a project's tasks may read."""

    def grant_bucket(self, project_id: str, bucket_name: str) -> bool:
        """Let the project's tasks read the bucket; False when it already could."""
        if not project_id or not bucket_name:
            raise ValueError("a grant needs a project_id and a bucket name")
        try:
            with self._write() as s:
                if s.get(BucketGrant, (project_id, bucket_name)) is not None:
                    return False
                s.add(
                    BucketGrant(project_id=project_id, bucket_name=bucket_name, created_at=utcnow())
                )
        except IntegrityError:  # granted at the same moment by another process
            return False
        return True

    def revoke_bucket(self, project_id: str, bucket_name: str) -> bool:
        """Take the grant back (tasks not yet reading fail as for a missing bucket); False
        when there was none."""
        with self._write() as s:
            result = s.execute(
                delete(BucketGrant).where(
                    BucketGrant.project_id == project_id, BucketGrant.bucket_name == bucket_name
                )
            )
            return bool(getattr(result, "rowcount", 0))

    def bucket_granted(self, project_id: str, bucket_name: str) -> bool:
        with self._read() as s:
            return s.get(BucketGrant, (project_id, bucket_name)) is not None

    def list_bucket_grants(self, project_id: str | None = None) -> list[BucketGrantRecord]:
        """The grants of one project, or of every project, by project then bucket."""
        query = select(BucketGrant).order_by(BucketGrant.project_id, BucketGrant.bucket_name)
        if project_id is not None:
            query = query.where(BucketGrant.project_id == project_id)
        with self._read() as s:
            return [
                BucketGrantRecord(r.project_id, r.bucket_name, r.created_at)
                for r in s.scalars(query)
            ]
