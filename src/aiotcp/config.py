"""One Config, one name per setting.

The flag ``--idle-timeout`` is ``Config.idle_timeout`` is the environment variable
``AIOTCP_IDLE_TIMEOUT`` is the TOML key ``idle_timeout``. Precedence: flag > env >
file > default. The CLI only parses and builds a Config; everything else reads it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# 64 KiB: Redis rejects an inline request over 64 KiB and closes; h11 and asyncio streams
# use limits of the same order. A frame longer than this is an attack or a bug.
DEFAULT_MAX_LINE = 64 * 1024

# A connection that completes no message for five minutes is almost certainly dead or
# hostile (nginx client_body_timeout and HAProxy timeout client are commonly 60-300 s).
DEFAULT_IDLE_TIMEOUT = 300.0

# A client that keeps its output above the high-water mark this long is not reading.
DEFAULT_WRITE_TIMEOUT = 30.0

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_BLOCK_THRESHOLD_MS = 100.0

# Messages received and not yet answered, per connection, before the server stops
# reading from it (asyncio streams pause at twice their buffer limit; uvicorn pauses
# reads while one request is in progress). 128 keeps a fast pipelining client busy
# while bounding what one client can make the server hold.
DEFAULT_MAX_PIPELINE = 128

# A client must finish its PROXY header and TLS handshake within this many seconds
# (AnyIO's TLSListener waits 30 s, asyncio 60 s; a slow-handshake flood needs less).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

# PROXY headers are believed only from these sources (the spec: never guess, only
# from trusted proxies); loopback by default, where a local HAProxy runs.
DEFAULT_PROXY_TRUSTED = "127.0.0.0/8,::1/128"

DEFAULT_STREAM_MAXLEN = 100_000
DEFAULT_MAX_SUBSCRIPTIONS = 100

# The gateway app. Calls in flight at the upstream per process: aiohttp's connection pool
# holds 100 by default, and a gRPC server commonly allows 100 streams per connection.
DEFAULT_UPSTREAM_CONCURRENCY = 100
# Seconds between health probes of the upstream (HAProxy's default check interval is 2 s).
DEFAULT_UPSTREAM_HEALTH_INTERVAL = 1.0

ENV_PREFIX = "AIOTCP_"

FRAMINGS = ("line", "length", "raw")
APIS = ("handler", "streams")
LOOPS = ("auto", "uvloop", "asyncio")
LOG_FORMATS = ("text", "json")
CLIENT_CERT_MODES = ("none", "optional", "required")
BROKER_MODES = ("pubsub", "streams")


class ConfigError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def _opt(help: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"help": help, "choices": choices}


@dataclass
class Config:
    """Every setting of an aiotcp server. Field metadata carries the CLI help text."""

    host: str = field(default="127.0.0.1", metadata=_opt("address to listen on"))
    port: int = field(default=8888, metadata=_opt("TCP port (0 picks a free one)"))
    framing: str = field(default="line", metadata=_opt("message framing", FRAMINGS))
    app: str = field(
        default="ack",
        metadata=_opt("'ack', 'echo', 'ingest', 'kv', 'pubsub', 'gateway' or 'module:attr'"),
    )
    api: str = field(
        default="handler",
        metadata=_opt("app shape: message handler, or a streams handle_client(reader, writer)", APIS),
    )
    ack_prefix: str = field(default="已收到: ", metadata=_opt("reply prefix of the ack app"))
    loop: str = field(default="auto", metadata=_opt("event loop (auto = uvloop if installed)", LOOPS))
    max_line: int = field(
        default=DEFAULT_MAX_LINE, metadata=_opt("largest frame in bytes; longer -> ERR too-long")
    )
    log_level: str = field(default="info", metadata=_opt("logging level"))
    log_format: str = field(default="text", metadata=_opt("log format", LOG_FORMATS))
    access_log: bool = field(
        default=True, metadata=_opt("log each connection's close at INFO (aiotcp.access)")
    )
    max_connections: int = field(
        default=0, metadata=_opt("connection cap (0 = derived from the fd limit)")
    )
    max_connections_per_ip: int = field(
        default=0, metadata=_opt("connection cap per client IP (0 = off)")
    )
    idle_timeout: float = field(
        default=DEFAULT_IDLE_TIMEOUT,
        metadata=_opt("close a connection that completes no message for S seconds (0 = off)"),
    )
    write_timeout: float = field(
        default=DEFAULT_WRITE_TIMEOUT,
        metadata=_opt("drop a client whose output stays above the high-water mark S seconds"),
    )
    handler_timeout: float = field(
        default=0.0, metadata=_opt("cancel an async/blocking handler after S seconds (0 = off)")
    )
    shutdown_timeout: float = field(
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metadata=_opt("seconds to drain on SIGTERM before aborting what is left"),
    )
    threads: int = field(
        default=0, metadata=_opt("threads for blocking handlers (0 = Python's default)")
    )
    workers: str = field(default="1", metadata=_opt("worker processes ('auto' = one per core)"))
    reuse_port: bool = field(default=False, metadata=_opt("bind with SO_REUSEPORT"))
    metrics_port: int = field(
        default=0, metadata=_opt("serve /metrics, /healthz, /readyz on this port (0 = off)")
    )
    metrics_host: str = field(default="127.0.0.1", metadata=_opt("address of the metrics server"))
    block_threshold: float = field(
        default=DEFAULT_BLOCK_THRESHOLD_MS,
        metadata=_opt("log the stack when the loop is blocked longer than MS (0 = off)"),
    )
    max_pipeline: int = field(
        default=DEFAULT_MAX_PIPELINE,
        metadata=_opt("unanswered messages per connection before reading pauses"),
    )
    handler_concurrency: int = field(
        default=1,
        metadata=_opt("messages of one connection an async/blocking handler runs at once"),
    )
    tls_cert: str = field(default="", metadata=_opt("TLS certificate chain (PEM); enables TLS"))
    tls_key: str = field(default="", metadata=_opt("TLS private key (PEM)"))
    tls_ca: str = field(default="", metadata=_opt("CA bundle (PEM) to verify client certificates"))
    tls_client_cert: str = field(
        default="none", metadata=_opt("client certificates", CLIENT_CERT_MODES)
    )
    handshake_timeout: float = field(
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metadata=_opt("seconds to finish the PROXY header and TLS handshake (0 = off)"),
    )
    proxy_protocol: bool = field(
        default=False, metadata=_opt("require a PROXY protocol v1/v2 header on every connection")
    )
    proxy_trusted: str = field(
        default=DEFAULT_PROXY_TRUSTED,
        metadata=_opt("comma-separated CIDRs allowed to send a PROXY header"),
    )
    store: str = field(
        default="sqlite:///aiotcp-ingest.db",
        metadata=_opt("ingest app: sqlite:///PATH, postgresql://..., mysql://..."),
    )
    redis: str = field(default="redis://127.0.0.1:6379/0", metadata=_opt("kv app: Redis URL"))
    broker: str = field(
        default="", metadata=_opt("pubsub app: redis://HOST:PORT/DB ('' = this process only)")
    )
    broker_mode: str = field(default="pubsub", metadata=_opt("pubsub app delivery", BROKER_MODES))
    stream_maxlen: int = field(
        default=DEFAULT_STREAM_MAXLEN, metadata=_opt("pubsub streams mode: MAXLEN ~ per topic")
    )
    message_ids: bool = field(
        default=False, metadata=_opt("pubsub streams mode: MSG lines carry the entry ID")
    )
    max_subscriptions: int = field(
        default=DEFAULT_MAX_SUBSCRIPTIONS, metadata=_opt("pubsub app: topics per connection")
    )
    # The gateway app: each message one call to a gRPC or HTTP upstream.
    upstream: str = field(
        default="",
        metadata=_opt("gateway app: grpc://HOST:PORT/package.Service/Method, grpcs://..., "
                      "http://... or https://..."),
    )
    upstream_ca: str = field(
        default="", metadata=_opt("gateway app: CA bundle (PEM) to verify a TLS upstream")
    )
    upstream_concurrency: int = field(
        default=DEFAULT_UPSTREAM_CONCURRENCY,
        metadata=_opt("gateway app: calls in flight at the upstream per process"),
    )
    upstream_retries: int = field(
        default=0, metadata=_opt("gateway app: retries of a call that never reached the upstream")
    )
    upstream_health: str = field(
        default="", metadata=_opt("gateway app: http(s) URL whose 2xx makes /readyz ready")
    )
    upstream_health_interval: float = field(
        default=DEFAULT_UPSTREAM_HEALTH_INTERVAL,
        metadata=_opt("gateway app: seconds between health probes of the upstream"),
    )

    def validate(self) -> Config:
        """Return self if every setting is in range; raise ConfigError naming the first bad one."""
        for name, choices in (
            ("framing", FRAMINGS),
            ("api", APIS),
            ("loop", LOOPS),
            ("log_format", LOG_FORMATS),
            ("tls_client_cert", CLIENT_CERT_MODES),
            ("broker_mode", BROKER_MODES),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be 0..65535")
        if self.max_line < 1:
            raise ConfigError("max_line must be >= 1")
        for name in ("max_connections", "max_connections_per_ip", "threads", "metrics_port"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("max_pipeline", "handler_concurrency", "stream_maxlen", "max_subscriptions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be given together")
        if self.tls_client_cert != "none" and not self.tls_ca:
            raise ConfigError("tls_client_cert needs tls_ca (the CA that signs client certificates)")
        if self.tls_ca and not self.tls_cert:
            raise ConfigError("tls_ca needs tls_cert and tls_key")
        self.trusted_networks()
        for name in (
            "idle_timeout",
            "write_timeout",
            "handler_timeout",
            "shutdown_timeout",
            "block_threshold",
            "handshake_timeout",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        # the gateway app
        if self.upstream_concurrency < 1:
            raise ConfigError("upstream_concurrency must be >= 1")
        if self.upstream_retries < 0:
            raise ConfigError("upstream_retries must be >= 0")
        if self.upstream_health_interval <= 0:
            raise ConfigError("upstream_health_interval must be > 0")
        self.worker_count()
        return self

    def worker_count(self) -> int:
        """The number of worker processes ``workers`` asks for (``auto`` = cores)."""
        if self.workers == "auto":
            return os.cpu_count() or 1
        try:
            n = int(self.workers)
        except ValueError:
            raise ConfigError("workers must be a whole number or 'auto'") from None
        if n < 1:
            raise ConfigError("workers must be >= 1")
        return n

    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks ``proxy_trusted`` lists. Raises ConfigError for a bad CIDR."""
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for part in self.proxy_trusted.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(f"proxy_trusted: {part!r} is not a CIDR") from None
        return nets

    @property
    def tls(self) -> bool:
        """True when the server speaks TLS."""
        return bool(self.tls_cert)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def field_types() -> dict[str, type]:
    """Map each Config field name to its Python type (str, int, float or bool)."""
    types = {"str": str, "int": int, "float": float, "bool": bool}
    return {f.name: types[str(f.type)] for f in fields(Config)}


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` (a string from env/flags, or a TOML value) to the type of ``name``."""
    kind = field_types()[name]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    if kind is str:
        return str(value)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {kind.__name__}, not {value!r}") from None


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``AIOTCP_<NAME>`` environment variables."""
    out: dict[str, Any] = {}
    for name in field_types():
        key = ENV_PREFIX + name.upper()
        if key in environ:
            out[name] = coerce(name, environ[key])
    return out


def from_toml(path: str) -> dict[str, Any]:
    """The settings in a TOML file (top level, or under a ``[aiotcp]`` table)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    table = data.get("aiotcp", data)
    known = field_types()
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return {name: coerce(name, value) for name, value in table.items()}


def build(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Merge defaults < TOML file < environment < flags into a validated Config."""
    env = os.environ if environ is None else environ
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    if path:
        merged.update(from_toml(path))
    merged.update(from_env(env))
    merged.update({k: coerce(k, v) for k, v in flags.items() if v is not None})
    return Config(**merged).validate()
