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

Link-local, unspecified and cloud metadata addresses are never allowed, whatever the
configured networks say: a metadata service answers anyone on the host, and 0.0.0.0
reaches this host itself.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field

from dcs_migration.client.endpoint import TargetError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, and the usual metadata address 169.254.169.254
        "fe80::/10",  # link-local
        "0.0.0.0/8",  # "this host": a connection to 0.0.0.0 reaches this machine
        "::/128",
        "224.0.0.0/4",  # multicast and broadcast: never a Redis
        "255.255.255.255/32",
        "ff00::/8",
        "100.100.100.200/32",  # metadata services outside link-local
        "168.63.129.16/32",
        "fd00:ec2::254/128",
        "fd20:ce::254/128",
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses spelt as IPv6
LOOPBACK_KEY = "127.0.0.1"  # every loopback address reaches the same host's servers


class AddressRefused(TargetError):
    """An address the service may not connect to for this project."""


@dataclass(frozen=True)
class AllowedNetworks:
    """The networks every address the service connects to must lie in."""

    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str, *, name: str = "allowed networks") -> AllowedNetworks:
        """CIDRs (or single addresses) separated by commas or spaces; ValueError naming
        the entry that is not one."""
        networks = []
        for entry in text.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                raise ValueError(f"{name}: {entry!r} is not a network: {exc}") from None
        if not networks:
            raise ValueError(f"{name}: no network given")
        return cls(tuple(networks))

    @classmethod
    def default(cls) -> AllowedNetworks:
        """Loopback and the private ranges."""
        return cls.parse(" ".join(DEFAULT_NETWORKS))

    def allows(self, ip: Address) -> bool:
        ip = _unmapped(ip)
        if _never(ip):
            return False
        return any(ip.version == n.version and ip in n for n in self.networks)

    def __str__(self) -> str:
        """The form `parse` reads (a worker process gets the setting this way)."""
        return ",".join(str(n) for n in self.networks)


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


def address_key(ip: Address, port: int) -> str:
    """An address as projects hold it: "ip:port" ("[ip]:port" for IPv6), IPv4 spelt as
    IPv4 however it came, and every loopback address as 127.0.0.1 (a server listening
    on all of them answers at each, so they are one address)."""
    ip = _unmapped(ip)
    if ip.is_loopback:
        return f"{LOOPBACK_KEY}:{port}"
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip}:{port}"


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
        if _never(_unmapped(ip)):
            cause = "never allowed (link-local, metadata, unspecified or multicast)"
        elif not policy.networks.allows(ip):
            cause = "outside the allowed networks (DCS_MIGRATION_ALLOWED_NETWORKS)"
        elif key in policy.held_elsewhere:
            cause = "held by another project"
        else:
            if all(r.sockaddr != sockaddr for r in found):
                # A TCP address is never getaddrinfo's (int, bytes) form.
                found.append(Resolved(family, sockaddr, key))  # type: ignore[arg-type]
            continue
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.warning("refused to connect to %s (%s): %s", where, text, cause)
        raise AddressRefused(
            f"{where} is not an address the service may connect to for this project"
        )
    return found


def check_host(host: str, networks: AllowedNetworks) -> None:
    """AddressRefused unless every address `host` resolves to is allowed (for an
    address the service hands out rather than connects to: the hand-off's)."""
    resolve(host, 0, AddressPolicy(networks))


def _unmapped(ip: Address) -> Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _never(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64:
        return _never(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(ip.version == n.version and ip in n for n in NEVER)


DEFAULT_POLICY = AddressPolicy()
