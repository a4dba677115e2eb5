"""Which client a request comes from, for the per-address limit and the log.

The TCP peer, unless it is one of the trusted proxies (`--api-trusted-proxies`): then the
right-most address of X-Forwarded-For that is not itself a trusted proxy, the one the
outermost trusted proxy saw connect. Addresses left of it were written by the client and
prove nothing. An IPv6 client is counted by its /64, the block one subscriber gets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS = 32
"""X-Forwarded-For entries looked at, from the right."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8,fd00::/8` (a bare address is its /32 or /128); raises ValueError."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        networks.append(ipaddress.ip_network(part, strict=True))
    if not networks:
        raise ValueError("no CIDR given")
    return tuple(networks)


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted: Sequence[Network]) -> str:
    """The client's address as a text, or `unknown`."""
    address = _address(peer)
    if address is None:
        return "unknown"
    if _trusted(address, trusted):
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops[-MAX_HOPS:]):
            forwarded = _address(hop)
            if forwarded is None:
                break  # a trusted proxy wrote nothing we can read: stay with the last known
            address = forwarded
            if not _trusted(address, trusted):
                break
    return str(address)


def limit_key(address: str) -> str:
    """What the per-address limit counts by: an IPv4 address, or an IPv6 /64."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network
               for network in trusted)
