"""Encryption of stored secrets (SKs, Redis passwords) with Fernet from `cryptography`.

The keys come from the settings (`DCS_MIGRATION_SECRET_KEY`, keys separated by commas) or else
from `<data dir>/secret.key`, which is created with mode 0600 the first time it is needed. Of
several keys the first encrypts and all of them decrypt, so a key can be rotated. A key is a
Fernet key: 32 random bytes in URL-safe base64, as printed by
`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
Every service process that shares one database must use the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dcs_migration.config import SECRET_KEY_ENV

SECRET_KEY_FILE = "secret.key"


class SecretKeyError(Exception):
    """The secret key is malformed, or is not the one that encrypted a stored secret."""


class SecretBox:
    """Encrypts text to an ASCII token and back."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        self._first = keys[0]
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                "a secret key must be a Fernet key (32 bytes in URL-safe base64)"
            ) from exc

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def derive_key(self, purpose: str) -> bytes:
        """A key for another use (signing download links), derived from the first key so
        that the one secret covers everything; a different purpose gives another key."""
        return hmac.new(self._first, purpose.encode(), hashlib.sha256).digest()

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted: the secret key "
                f"({SECRET_KEY_ENV} or {SECRET_KEY_FILE} in the data dir) "
                "is not the one it was encrypted with"
            ) from exc


def load_secret_box(data_dir: Path, keys: Sequence[str] = ()) -> SecretBox:
    """`keys` when given (the settings' secret keys, the first encrypting), else the data
    dir's key file (made if missing)."""
    if keys:
        return SecretBox([key.encode("ascii") for key in keys])
    return SecretBox([_key_file(data_dir)])


def _key_file(data_dir: Path) -> bytes:
    path = data_dir / SECRET_KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written whole under a temporary name, then linked into place: a process racing to
    # create the same file either wins or reads the complete key the winner wrote.
    temporary = data_dir / f".{SECRET_KEY_FILE}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise SecretKeyError(f"the secret key file {path} is empty")
    return key
