"""The server's SSLContext: built from the Config, rebuilt on reload (SIGHUP).

A context is built whole and swapped in one assignment: connections accepted after a
reload use the new certificate; open connections keep the context they were made
with, so nothing open is dropped.
"""

from __future__ import annotations

import logging
import ssl

from aiotcp.config import Config

log = logging.getLogger("aiotcp")

VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


class TLSSetupError(ValueError):
    """The certificate, key or CA cannot be loaded; the message is one line naming the file."""


def build_server_context(config: Config) -> ssl.SSLContext:
    """An SSLContext for the server side of ``config``; TLS 1.2 or newer only.

    Raises TLSSetupError if a file is missing or not a matching PEM certificate/key.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996).
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Client-initiated renegotiation is a CPU-exhaustion vector and nothing here needs it.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except FileNotFoundError as e:
        raise TLSSetupError(f"cannot read TLS certificate or key: {e.filename}") from None
    except (ssl.SSLError, OSError) as e:
        raise TLSSetupError(
            f"cannot load TLS certificate {config.tls_cert} with key {config.tls_key}: "
            f"{_reason(e)}"
        ) from None
    if config.tls_ca:
        try:
            ctx.load_verify_locations(cafile=config.tls_ca)
        except FileNotFoundError:
            raise TLSSetupError(f"cannot read TLS CA file: {config.tls_ca}") from None
        except (ssl.SSLError, OSError) as e:
            raise TLSSetupError(f"cannot load TLS CA {config.tls_ca}: {_reason(e)}") from None
    ctx.verify_mode = VERIFY_MODES[config.tls_client_cert]
    return ctx


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None)
    return str(reason or e).replace("\n", " ")


class ServerContext:
    """Holds the current server SSLContext; ``reload()`` swaps in a fresh one."""

    __slots__ = ("_config", "current")

    def __init__(self, config: Config) -> None:
        """Build the first context. Raises TLSSetupError as ``build_server_context``."""
        self._config = config
        self.current = build_server_context(config)

    def reload(self) -> bool:
        """Re-read certificate, key and CA for new connections; open ones keep theirs.

        Returns True if the new files were loaded; on error logs it (one line) and keeps
        serving with the previous context.
        """
        try:
            self.current = build_server_context(self._config)
        except TLSSetupError as e:
            log.error("TLS reload failed, keeping the previous certificate: %s", e)
            return False
        log.info("TLS certificate reloaded from %s", self._config.tls_cert)
        return True
