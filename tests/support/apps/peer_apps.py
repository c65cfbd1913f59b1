"""Apps for the front-door tests, served with ``--app support.peer_app:NAME``."""

from __future__ import annotations

from typing import Any


def peer(message: str, conn: Any) -> str:
    """Replies with the client's address as the server sees it: ``HOST PORT``."""
    host, port = conn.peer[:2]
    return f"{host} {port}"


def subject(message: str, conn: Any) -> str:
    """Replies with the client certificate's commonName, or ``-`` without one."""
    cert = conn._transport.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "-"
