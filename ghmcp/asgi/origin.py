"""Who is asking, as the per-address caps count it: an IPv4 address, an IPv6 /64, an IPv6 site (/48).

web/ratelimit.py decides the address for the requests it counts or bounds and sets `client_origin`;
the sign-in caps (upstream/login.py, github_provider.py) read it.
"""

from __future__ import annotations

import contextvars
import ipaddress

# The client address (IPv6 grouped by /64) of the request being served, for per-address caps.
client_origin: contextvars.ContextVar[str] = contextvars.ContextVar("client_origin", default="unknown")


def origin_key(address: str) -> str:
    """One key per client: an IPv4 address, or an IPv6 /64 (one subscriber's usual allocation)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def wide_origin_key(origin: str) -> str:
    """The site an `origin_key` belongs to, for the cap that a site's many /64s cannot multiply.

    IPv6: the /48, one end site's usual allocation (RFC 6177), which holds 65,536 /64s. IPv4: the address
    itself. Each address is already scarce and bought on its own, and the neighbours in a /24 (a hosting
    provider's or an ISP's pool) are usually unrelated customers, whom one cap would make pay for each other.
    """
    try:
        network = ipaddress.ip_network(origin)
    except ValueError:
        return origin
    if network.version == 6 and network.prefixlen > 48:
        return str(network.supernet(new_prefix=48))
    return origin
