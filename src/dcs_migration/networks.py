"""The networks the service may connect to, and addresses as projects hold them: plain
values with no I/O, which the settings (`config`) and the store's migrations take as
they are; `client/addresses.py` applies them to every connection.

Link-local, unspecified and cloud metadata addresses are never allowed, whatever the
configured networks say: a metadata service answers anyone on the host, and 0.0.0.0
reaches this host itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

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
        ip = unmapped(ip)
        if never_allowed(ip):
            return False
        return any(ip.version == n.version and ip in n for n in self.networks)

    def __str__(self) -> str:
        """The form `parse` reads (a worker process gets the setting this way)."""
        return ",".join(str(n) for n in self.networks)


def address_key(ip: Address, port: int) -> str:
    """An address as projects hold it: "ip:port" ("[ip]:port" for IPv6), IPv4 spelt as
    IPv4 however it came, and every loopback address as 127.0.0.1 (a server listening
    on all of them answers at each, so they are one address)."""
    ip = unmapped(ip)
    if ip.is_loopback:
        return f"{LOOPBACK_KEY}:{port}"
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def unmapped(ip: Address) -> Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def never_allowed(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64:
        return never_allowed(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(ip.version == n.version and ip in n for n in NEVER)
