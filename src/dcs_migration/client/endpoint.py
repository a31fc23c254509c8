"""Where a target Redis is and how to log in: parsed from `redis://[user:password@]host:port[/db]`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from dcs_migration.client.errors import TargetError as TargetError

if TYPE_CHECKING:
    from dcs_migration.client.addresses import AddressPolicy


def _default_policy() -> AddressPolicy:
    """Loopback and the private ranges, nothing held elsewhere."""
    from dcs_migration.client.addresses import DEFAULT_POLICY  # it resolves names: loaded late

    return DEFAULT_POLICY


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    # Where connections may go (addresses.py): it travels to every node learnt from here.
    policy: AddressPolicy = field(default_factory=_default_policy, repr=False)

    def at(self, host: str, port: int) -> Endpoint:
        """The same credentials, and the same policy, at another address (another node
        of a cluster)."""
        return replace(self, host=host, port=port)

    def __str__(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_target_url(url: str, policy: AddressPolicy | None = None) -> Endpoint:
    """Parse a redis:// or rediss:// URL; errors name the part that is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise TargetError(f"target URL must start with redis:// or rediss://, not {url!r}")
    if not parts.hostname:
        raise TargetError(f"target URL {url!r} has no host")
    try:
        port = parts.port or 6379
    except ValueError:
        raise TargetError(f"target URL {url!r} has an invalid port") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise TargetError(f"target URL database must be a number, not {path!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None:
        # redis://:password@host and redis://password@host both mean a password alone
        username, password = None, username
    return Endpoint(
        host=parts.hostname,
        port=port,
        username=username or None,
        password=password,
        db=int(path) if path else 0,
        tls=parts.scheme == "rediss",
        policy=policy or _default_policy(),
    )
