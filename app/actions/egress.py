"""Where a webhook may connect: one resolution per attempt, every address checked public.

A name that resolves to any non-public address is refused as a whole (a receiver that also
answers on a private address is refused rather than raced), unless the operator allows
private networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from app import errors

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# resolve(host, port) -> every address the name has; raises OSError when it has none.
Resolver = Callable[[str, int], list[str]]

# errors.Refused whatever `is_global` says: CPython's view of some of these has changed between
# patch releases (cpython #119812, gh-117566, CVE-2024-4032), and several are "global" yet
# lead back inside (multicast, site-local, the IPv6 forms that embed an IPv4 address).
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches localhost
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/96",  # unspecified, loopback and IPv4-compatible (::7f00:1)
        "::ffff:0:0/96",  # IPv4-mapped (unwrapped and judged as IPv4 before this)
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/32",  # Teredo
        "2001:db8::/32",
        "2002::/16",  # 6to4
        "fc00::/7",  # unique local (fd00:ec2::254, the AWS metadata address)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)


def address_problem(address: Address) -> str | None:
    """Why the scheduler must not connect to `address`, or None when it is public.

    1. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as its IPv4 address.
    2. The explicit deny-list first, then `is_global` for whatever else is not routable.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in DENIED_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address} is in {network}"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver: /etc/hosts, then DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def resolve(host: str, port: int, *, resolver: Resolver, allow_private_networks: bool) -> Address:
    """The one address to connect to for `host`, resolved once.

    Raises errors.Unresolvable when the name has no address, errors.Refused when any of its
    addresses is not public (one bad address refuses the whole answer: a receiver that also
    answers on a private address is refused rather than raced), unless
    `allow_private_networks`.
    Numeric forms (`2130706433`, `0x7f.1`, `127.1`, `0`) are judged by what they resolve
    to, never by the string.
    """
    name = host[1:-1] if host.startswith("[") else host
    try:
        answers = resolver(name, port)
    except (OSError, UnicodeError) as exc:
        raise errors.Unresolvable(f"cannot resolve {host}") from exc
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
    if not addresses:
        raise errors.Unresolvable(f"cannot resolve {host}")
    if not allow_private_networks:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise errors.Refused(problem)
    return addresses[0]
