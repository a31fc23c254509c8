"""Access keys (AK/SK pairs of a project) and the signatures of the calls they signed.

An SK is encrypted at rest and returned once, when it is made. A signature of a call that
changes something is remembered until its date can no longer be accepted, so that the
call is accepted once (`remember_signature`).
"""

from __future__ import annotations

import logging
import secrets
import string
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dcs_migration.store.base import Repository, require, rowcount
from dcs_migration.store.crypto import SecretBox
from dcs_migration.store.models import AcceptedSignature, AccessKey, utcnow
from dcs_migration.store.records import CreatedKey, KeyRecord, KeySecret

log = logging.getLogger(__name__)

AK_LENGTH = 20
SK_LENGTH = 40
_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits
SIGNATURE_PRUNE_EVERY = timedelta(minutes=1)


class AccessKeys(Repository):
    """The project's access keys, the keys the service signs with, and accepted signatures."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        super().__init__(engine, box)
        self._next_prune = utcnow()  # of expired signatures

    def signing_key(self, purpose: str) -> bytes:
        """A key derived from the secret key, for signing what the service hands out."""
        return self._box.derive_key(purpose)

    def create_key(self, project_id: str) -> CreatedKey:
        """A new AK/SK pair for the project; the SK is returned here and never again."""
        require(project_id, "project_id")
        ak = "".join(secrets.choice(_AK_ALPHABET) for _ in range(AK_LENGTH))
        sk = "".join(secrets.choice(_SK_ALPHABET) for _ in range(SK_LENGTH))
        with self._write() as s:
            s.add(
                AccessKey(
                    ak=ak,
                    project_id=project_id,
                    sk_encrypted=self._box.encrypt(sk),
                    created_at=utcnow(),
                    revoked_at=None,
                )
            )
        return CreatedKey(ak=ak, project_id=project_id, sk=sk)

    def secret_for(self, ak: str) -> KeySecret | None:
        """The project and SK of an access key; None when unknown or revoked."""
        with self._read() as s:
            row = s.get(AccessKey, ak)
            if row is None or row.revoked_at is not None:
                return None
            return KeySecret(project_id=row.project_id, sk=self._box.decrypt(row.sk_encrypted))

    def revoke_key(self, ak: str) -> bool:
        """False when there is no such key or it was already revoked."""
        with self._write() as s:
            result = s.execute(
                update(AccessKey)
                .where(AccessKey.ak == ak, AccessKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return rowcount(result) > 0

    def list_keys(self, project_id: str) -> list[KeyRecord]:
        with self._read() as s:
            rows = s.scalars(
                select(AccessKey)
                .where(AccessKey.project_id == project_id)
                .order_by(AccessKey.created_at, AccessKey.ak)
            )
            return [KeyRecord(r.ak, r.project_id, r.created_at, r.revoked_at) for r in rows]

    # -- signatures of accepted calls -------------------------------------------------------

    def remember_signature(self, signature: str, expires_at: datetime) -> bool:
        """Record the signature of an accepted call until `expires_at`: True the first
        time, False when it is already recorded (the call is a replay). Atomic across the
        processes that share the database; expired records are pruned now and then."""
        now = utcnow()
        try:
            with self._write() as s:
                if now >= self._next_prune:
                    s.execute(delete(AcceptedSignature).where(AcceptedSignature.expires_at < now))
                s.add(AcceptedSignature(signature=signature, expires_at=expires_at))
        except IntegrityError:
            return False
        if now >= self._next_prune:
            self._next_prune = now + SIGNATURE_PRUNE_EVERY
        return True

    def forget_signature(self, signature: str) -> None:
        """Let a recorded signature be used again (its call failed on the service's side
        and changed nothing). Best effort: a database that cannot take it now leaves the
        record, and the client signs its retry anew."""
        try:
            with self._write() as s:
                s.execute(delete(AcceptedSignature).where(AcceptedSignature.signature == signature))
        except SQLAlchemyError as exc:
            log.warning("a failed call's signature stays recorded: %s", exc)
