"""Which addresses the service may connect to (DESIGN §7), decided in one function.

A project names the Redis it imports into, so without a rule it could point the service
at any host and port (a port scanner, a password sprayer) or at another project's Redis.
Every connection goes through `Connection.connect`, which asks `resolve()` for the
addresses of its endpoint's host and connects only to those: every address the host
resolves to must lie in the allowed networks, none may be one that another project
holds, and the socket is opened to the address checked, not to the name again, so a
DNS answer cannot change between the check and the connect. The rule travels with the
endpoint (`Endpoint.policy`), so nodes learnt from a cluster (CLUSTER SLOTS, MOVED, ASK)
are checked as the registered address was; so will be an online migration's source
address, built as an `Endpoint` with the project's policy.

The networks themselves, and the form an address is held in, are plain values
(`dcs_migration.networks`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from enum import StrEnum

from dcs_migration.client.errors import TargetError
from dcs_migration.config import ALLOWED_NETWORKS_ENV
from dcs_migration.networks import AllowedNetworks, address_key, never_allowed, unmapped

log = logging.getLogger(__name__)


class Refusal(StrEnum):
    """Why an address is refused (for a caller that may say it, such as a project's own
    configuration naming its networks: never to another project)."""

    NEVER = "never allowed (link-local, metadata, unspecified or multicast)"
    OUTSIDE = f"outside the allowed networks ({ALLOWED_NETWORKS_ENV})"
    HELD = "held by another project"


class AddressRefused(TargetError):
    """An address the service may not connect to for this project; `refusal` says why."""

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class AddressPolicy:
    """What one project's connections may reach: the allowed networks, less the
    addresses (`address_key` form) that other projects hold and this one does not."""

    networks: AllowedNetworks = field(default_factory=AllowedNetworks.default)
    held_elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Resolved:
    """One checked address of a host: where to connect, and the key it is held by."""

    family: socket.AddressFamily
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    key: str


def resolve(host: str, port: int, policy: AddressPolicy) -> list[Resolved]:
    """Every address `host` resolves to, each one checked; AddressRefused when any of
    them is not allowed (the cause goes to the log, not to the message), OSError when
    the name does not resolve."""
    found: list[Resolved] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    ):
        text = str(sockaddr[0])
        ip = ipaddress.ip_address(text.partition("%")[0])  # without an IPv6 scope
        key = address_key(ip, port)
        if never_allowed(unmapped(ip)):
            cause = Refusal.NEVER
        elif not policy.networks.allows(ip):
            cause = Refusal.OUTSIDE
        elif key in policy.held_elsewhere:
            cause = Refusal.HELD
        else:
            if all(r.sockaddr != sockaddr for r in found):
                # A TCP address is never getaddrinfo's (int, bytes) form.
                found.append(Resolved(family, sockaddr, key))  # type: ignore[arg-type]
            continue
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.warning("refused to connect to %s (%s): %s", where, text, cause.value)
        raise AddressRefused(
            f"{where} is not an address the service may connect to for this project", cause
        )
    return found


def check_host(host: str, networks: AllowedNetworks) -> None:
    """AddressRefused unless every address `host` resolves to is allowed (for an
    address the service hands out rather than connects to: the hand-off's)."""
    resolve(host, 0, AddressPolicy(networks))


DEFAULT_POLICY = AddressPolicy()
