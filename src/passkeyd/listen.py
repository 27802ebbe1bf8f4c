"""Whether an address can be listened on, asked before anything else is done: a port in use
or a host that does not resolve then fails the start with a message that names the
setting, before a demo creates its service or a server migrates its database."""

from __future__ import annotations

import socket
from typing import Any


def listen_problem(
    host: str, port: int, *, reuse_port: bool = False, dual_stack: bool = False
) -> str | None:
    """Why `host`:`port` cannot be listened on (None: it can), binding sockets as uvicorn
    will and closing them. One process binds as asyncio's create_server does: every
    address the host resolves to, IPv6 ones IPv6-only. With `dual_stack` (uvicorn's
    supervisor of several workers) one socket, IPv6 for a host with a colon, which also
    takes IPv4 (an IPv4 listener on the port is then in the way)."""
    try:
        addresses: list[tuple[socket.AddressFamily, Any]]
        if dual_stack:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            addresses = [(family, (host, port))]
        else:
            found = socket.getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
            addresses = list(dict.fromkeys((info[0], info[4]) for info in found))
        for family, address in addresses:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6 and not dual_stack:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except socket.gaierror as exc:
        return f"the host {host!r} does not resolve ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
