"""Certificates for the TLS tests, made with trustme (a throwaway CA per test session)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certs:
    """PEM files: ``ca`` signs ``server`` (localhost, 127.0.0.1, ::1) and ``client``;
    ``server2`` is a second server certificate from the same CA (for reloads);
    ``stranger`` is a client certificate from a CA the server does not trust."""

    ca: Path
    server: Path
    server2: Path
    client: Path
    stranger: Path

    def client_context(self, with_cert: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if with_cert is not None:
            ctx.load_cert_chain(str(with_cert))
        return ctx

    def serve_args(self, *extra: str) -> list[str]:
        """``aiotcp serve`` flags for TLS with the server certificate."""
        return ["--tls-cert", str(self.server), "--tls-key", str(self.server), *extra]


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    other_ca = trustme.CA()
    paths = {name: directory / f"{name}.pem" for name in Certs.__dataclass_fields__}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    for name in ("server", "server2"):
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(paths[name]))
    ca.issue_cert("client@aiotcp.test", common_name="client.aiotcp.test") \
        .private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    other_ca.issue_cert("stranger@aiotcp.test") \
        .private_key_and_cert_chain_pem.write_to_path(str(paths["stranger"]))
    return Certs(**paths)
