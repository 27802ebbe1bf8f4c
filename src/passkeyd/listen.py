"""Whether an address can be listened on, asked before anything else is done: a port in use
or a host that does not resolve then fails the start with a message that names the
setting, before a demo creates its service or a server migrates its database."""

from __future__ import annotations

import socket


def listen_problem(host: str, port: int, *, reuse_port: bool = False) -> str | None:
    """Why `host`:`port` cannot be listened on (None: it can), binding a socket as uvicorn
    binds its own (SO_REUSEADDR, IPv6 for an address with a colon) and closing it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((host, port))
    except socket.gaierror as exc:
        return f"the host {host!r} does not resolve ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
