"""The server's SSLContext: built from the Config, rebuilt on reload (SIGHUP).

A context is built whole and swapped in one assignment: connections accepted after a
reload use the new certificate; open connections keep the context they were made
with, so nothing open is dropped.

Protocols, cipher suites and groups follow Mozilla's server-side TLS guidelines (v5.7,
https://ssl-config.mozilla.org/guidelines/5.7.json), chosen by ``--tls-profile``:

- ``intermediate`` (the default): TLS 1.2 and 1.3; for TLS 1.2 only ECDHE/DHE with AES-GCM
  or ChaCha20-Poly1305 (no CBC, no RSA key exchange); groups X25519, P-256, P-384.
- ``modern``: TLS 1.3 only (its three suites, OpenSSL's defaults); the same groups.

Neither prefers the server's suite order (the guidelines' ``server_preferred_order:
false``: clients pick, e.g. ChaCha20 on hardware without AES instructions). The TLS 1.3
suites are OpenSSL's defaults, the three the guidelines list. Python's ``ssl`` has no
call to set the groups list (``set_ecdh_curve`` takes one curve), so the list is set
through OpenSSL's own ``SSL_CTX_ctrl`` on the context; where that is not reachable the
context is limited to P-256 alone, which stays within the profile.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
from dataclasses import dataclass

from aiotcp.config import Config

log = logging.getLogger("aiotcp")


@dataclass(frozen=True)
class Profile:
    """One of Mozilla's configurations, as OpenSSL settings."""

    minimum: ssl.TLSVersion
    ciphers: str  # TLS 1.2 suites, OpenSSL names (TLS 1.3 suites are OpenSSL's defaults)
    groups: str  # key-exchange groups, OpenSSL names


_GROUPS = "X25519:prime256v1:secp384r1"
PROFILES = {
    "intermediate": Profile(
        ssl.TLSVersion.TLSv1_2,
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305",
        _GROUPS,
    ),
    "modern": Profile(ssl.TLSVersion.TLSv1_3, "", _GROUPS),
}
# The fallback group when the list cannot be set: in both profiles, and every client has it.
FALLBACK_GROUP = "prime256v1"

# openssl/ssl.h: SSL_CTRL_SET_GROUPS_LIST (SSL_CTX_set1_groups_list is a macro over it).
_SSL_CTRL_SET_GROUPS_LIST = 92

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
    profile = PROFILES[config.tls_profile]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996); modern is TLS 1.3 only.
    ctx.minimum_version = profile.minimum
    if profile.ciphers:
        ctx.set_ciphers(profile.ciphers)
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    set_groups(ctx, profile.groups)
    # Client-initiated renegotiation is a CPU-exhaustion vector and nothing here needs it.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    for what, path in (("certificate", config.tls_cert), ("key", config.tls_key),
                       ("CA file", config.tls_ca)):  # fmt: skip
        _readable(what, path)
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as e:
        raise TLSSetupError(
            f"cannot load TLS certificate {config.tls_cert} with key {config.tls_key}: "
            f"{_reason(e)}"
        ) from None
    if config.tls_ca:
        try:
            ctx.load_verify_locations(cafile=config.tls_ca)
        except (ssl.SSLError, OSError) as e:
            raise TLSSetupError(f"cannot load TLS CA {config.tls_ca}: {_reason(e)}") from None
    ctx.verify_mode = VERIFY_MODES[config.tls_client_cert]
    return ctx


def _readable(what: str, path: str) -> None:
    """Raise TLSSetupError naming ``path`` and the OS error if it cannot be read."""
    if not path:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise TLSSetupError(f"cannot read TLS {what} {path}: {e.strerror or e}") from None


def set_groups(ctx: ssl.SSLContext, groups: str) -> None:
    """Limit ``ctx``'s key-exchange groups to ``groups`` (OpenSSL's colon list).

    Through ``SSL_CTX_ctrl`` on the ``SSL_CTX`` the CPython context object holds right
    after its object header; that pointer is trusted only if OpenSSL reads the context's
    options back from it. Otherwise (another Python, another OpenSSL) the context gets
    ``FALLBACK_GROUP`` alone, with ``set_ecdh_curve``.
    """
    if not _set_groups_list(ctx, groups):
        ctx.set_ecdh_curve(FALLBACK_GROUP)


def _set_groups_list(ctx: ssl.SSLContext, groups: str) -> bool:
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        get_options = lib.SSL_CTX_get_options
        ctrl = lib.SSL_CTX_ctrl
    except (OSError, AttributeError):
        return False
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or get_options(pointer) != int(ctx.options):
        return False
    return bool(ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) == 1)


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
