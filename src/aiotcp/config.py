"""One Config, one name per setting.

The flag ``--idle-timeout`` is ``Config.idle_timeout`` is the environment variable
``AIOTCP_IDLE_TIMEOUT`` is the TOML key ``idle_timeout``. Precedence: flag > env >
file > default. The CLI only parses and builds a Config; everything else reads it.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# The ingest app's network stores: a connect or commit slower than this fails (ERR
# unavailable). The stores' own default, where its reason is given.
from aiotcp.stores import DEFAULT_TIMEOUT as DEFAULT_STORE_TIMEOUT

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

# Worker processes per core at most. One asyncio worker keeps a core busy on its own;
# gunicorn's "2 x cores + 1" is for workers that block. Past a few per core more workers
# only add memory (a process, a loop, a lifespan each) and context switches, and a typo
# such as --workers 100000 would fork the machine to a halt.
MAX_WORKERS_PER_CORE = 4

DEFAULT_STREAM_MAXLEN = 100_000
# A Redis broker link that answers nothing (not even its heartbeat PING, sent every third
# of this) for this many seconds is down: /readyz 503 and PUB ERR unavailable. Redis
# answers in well under a millisecond; 3 s rides out a loaded machine's hiccups and is
# within HAProxy's usual check bound (inter 1s, fall 2).
DEFAULT_BROKER_TIMEOUT = 3.0
DEFAULT_MAX_SUBSCRIPTIONS = 100

# The gateway app. Calls in flight at the upstream per process: aiohttp's connection pool
# holds 100 by default, and a gRPC server commonly allows 100 streams per connection.
DEFAULT_UPSTREAM_CONCURRENCY = 100
# Seconds between health probes of the upstream (HAProxy's default check interval is 2 s).
DEFAULT_UPSTREAM_HEALTH_INTERVAL = 1.0

ENV_PREFIX = "AIOTCP_"

# The built-in framings (aiotcp.codecs.BUILTIN; a test checks they agree).
FRAMINGS = ("line", "length", "varint", "raw")
APIS = ("handler", "streams")
LOOPS = ("auto", "uvloop", "asyncio")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CLIENT_CERT_MODES = ("none", "optional", "required")
BROKER_MODES = ("pubsub", "streams")
# Mozilla's server-side TLS guidelines (v5.7): intermediate is TLS 1.2 + 1.3 with AEAD
# suites only; modern is TLS 1.3 only.
TLS_PROFILES = ("intermediate", "modern")

# Settings that may be given several times (``--bind A --bind B``), or as one
# comma-separated value (flag, ``AIOTCP_BIND``), or as a TOML list.
REPEATABLE = ("bind", "fd")

# A Unix socket file is readable and writable by its owner and group: a proxy on the same
# host joins the group (uvicorn's 0o666 lets every local user connect).
DEFAULT_UDS_MODE = "660"


class ConfigError(ValueError):
    """A setting has a value it cannot take.

    The message is a template naming each setting it is about as ``{field_name}``, so
    that whoever knows where the values came from (:func:`build`) can name each by its
    source: ``--idle-timeout``, ``AIOTCP_IDLE_TIMEOUT`` or ``idle_timeout in FILE``.
    ``str()`` gives the plain field names.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render(lambda name: name))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str]]:
        return (ConfigError, (self.template,))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each ``{setting}`` replaced by ``name(setting)``."""
        return self.template.format_map(_Names(name))


class _Names(dict[str, str]):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self._name = name

    def __missing__(self, key: str) -> str:
        return self._name(key)


def escape(text: str) -> str:
    """``text`` made literal inside a ConfigError template."""
    return text.replace("{", "{{").replace("}", "}}")


def shown(value: Any) -> str:
    """``value`` as an error message shows it (safe inside a ConfigError template)."""
    return escape(repr(value))


def _opt(help: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"help": help, "choices": choices}


@dataclass
class Config:
    """Every setting of an aiotcp server. Field metadata carries the CLI help text."""

    host: str = field(default="127.0.0.1", metadata=_opt("address to listen on"))
    port: int = field(default=8888, metadata=_opt("TCP port (0 picks a free one)"))
    framing: str = field(default="line", metadata=_opt("message framing", FRAMINGS))
    codec: str = field(
        default="",
        metadata=_opt("a codec of your own, 'module:attr' (a class or factory called with "
                      "max_line, one codec per connection); overrides --framing"),
    )
    binary: bool = field(
        default=False,
        metadata=_opt("built-in framings deliver bytes and take bytes-like replies (no UTF-8)"),
    )
    app: str = field(
        default="ack",
        metadata=_opt("'ack', 'echo', 'ingest', 'kv', 'pubsub', 'gateway', 'redis' or 'module:attr'"),
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
    log_level: str = field(default="info", metadata=_opt("logging level: " + ", ".join(LOG_LEVELS)))
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
    workers: str = field(
        default="0",
        metadata=_opt("worker processes under a supervisor ('auto' = one per core; "
                      "0 = no supervisor: this process serves)"),
    )
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
    # Rate limits (aiotcp.limits): per connection by pausing reading; per IP by refusal.
    rate_limit: str = field(
        default="0",
        metadata=_opt("messages per second per connection, MSGS[/BURST]; over it reading "
                      "pauses (nothing is lost) (0 = off)"),
    )
    byte_rate_limit: int = field(
        default=0, metadata=_opt("bytes per second read per connection (0 = off)")
    )
    max_connection_rate_per_ip: float = field(
        default=0.0,
        metadata=_opt("new connections per second from one IP; over it ERR busy (0 = off)"),
    )
    tcp_keepalive: str = field(
        default="300",
        metadata=_opt("TCP keepalive: IDLE[,INTERVAL,COUNT] seconds, or 0 (off); a vanished "
                      "peer is dropped after IDLE + INTERVAL*COUNT (default: IDLE/3, 3)"),
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
    store_timeout: float = field(
        default=DEFAULT_STORE_TIMEOUT,
        metadata=_opt("ingest app: seconds a PostgreSQL/MySQL connect or commit may take "
                      "before its messages get ERR unavailable"),
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
    broker_timeout: float = field(
        default=DEFAULT_BROKER_TIMEOUT,
        metadata=_opt("pubsub app: seconds without an answer from Redis (heartbeat PING every "
                      "third of it) before the broker is down: /readyz 503, PUB ERR unavailable"),
    )
    # ---- operations: listeners, deploys, TLS profile -------------------------------------
    # Any of bind, uds, fd (or systemd socket activation) replaces --host/--port.
    bind: str = field(
        default="",
        metadata=_opt("listen on HOST:PORT or [IPV6]:PORT; repeatable (replaces --host/--port)"),
    )
    uds: str = field(
        default="", metadata=_opt("listen on a Unix socket at PATH (replaces --host/--port)")
    )
    uds_mode: str = field(
        default=DEFAULT_UDS_MODE, metadata=_opt("permissions of the --uds socket file, octal")
    )
    fd: str = field(
        default="",
        metadata=_opt("serve the inherited listening socket N; repeatable (replaces --host/--port)"),
    )
    reload: bool = field(
        default=False,
        metadata=_opt("development: restart when the app's source or the config file changes"),
    )
    tls_profile: str = field(
        default="intermediate",
        metadata=_opt("TLS protocols, suites and curves: Mozilla's profile", TLS_PROFILES),
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
            ("tls_profile", TLS_PROFILES),
        ):
            _one_of(name, getattr(self, name), choices)
        _one_of("log_level", self.log_level.lower(), LOG_LEVELS)  # logging takes any case
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{{{name}}} must be 0..65535, not {getattr(self, name)}")
        if self.max_line < 1:
            raise ConfigError(f"{{max_line}} must be >= 1, not {self.max_line}")
        for name in ("max_connections", "max_connections_per_ip", "threads", "byte_rate_limit"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{{{name}}} must be >= 0, not {getattr(self, name)}")
        for name in ("max_pipeline", "handler_concurrency", "stream_maxlen", "max_subscriptions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{{{name}}} must be >= 1, not {getattr(self, name)}")
        if self.binary and self.codec:
            raise ConfigError(
                "{binary} applies to the built-in framings; a {codec} decides its own "
                "message types"
            )
        for name, kind in field_types().items():
            value = getattr(self, name)
            if kind is float and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{{{name}}} must be a finite number >= 0, not {value!r}")
        if "\n" in self.ack_prefix or "\r" in self.ack_prefix:
            raise ConfigError(
                f"{{ack_prefix}} must not contain a line break (each reply would become "
                f"two lines and break line framing), not {shown(self.ack_prefix)}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("{tls_cert} and {tls_key} must be given together")
        if self.tls_client_cert != "none" and not self.tls_ca:
            raise ConfigError(
                "{tls_client_cert} needs {tls_ca} (the CA that signs client certificates)"
            )
        if self.tls_ca and not self.tls_cert:
            raise ConfigError("{tls_ca} needs {tls_cert} and {tls_key}")
        if self.broker_mode == "streams" and not self.broker:
            raise ConfigError(
                "{broker_mode} streams needs {broker} (the Redis that holds the streams)"
            )
        self.trusted_networks()
        from aiotcp.keepalive import parse_keepalive
        from aiotcp.limits import parse_rate

        try:
            parse_rate(self.rate_limit)
        except ValueError as e:
            raise ConfigError(f"{{rate_limit}} {escape(str(e))}") from None
        try:
            parse_keepalive(self.tcp_keepalive)
        except ValueError as e:
            raise ConfigError(f"{{tcp_keepalive}} {escape(str(e))}") from None
        # the gateway app
        if self.upstream_concurrency < 1:
            raise ConfigError(f"{{upstream_concurrency}} must be >= 1, not {self.upstream_concurrency}")
        if self.upstream_retries < 0:
            raise ConfigError(f"{{upstream_retries}} must be >= 0, not {self.upstream_retries}")
        if self.store_timeout <= 0:
            raise ConfigError(f"{{store_timeout}} must be > 0, not {self.store_timeout}")
        if self.broker_timeout <= 0:
            raise ConfigError(f"{{broker_timeout}} must be > 0, not {self.broker_timeout}")
        if self.upstream_health_interval <= 0:
            raise ConfigError(
                f"{{upstream_health_interval}} must be > 0, not {self.upstream_health_interval}")
        self.worker_count()
        self.bind_addresses()
        self.inherited_fds()
        self.uds_permissions()
        if self.reload and self.worker_count() > 1:
            raise ConfigError("reload is for development: it cannot be used with workers")
        if self.app == "redis" and self.worker_count() > 1:
            # Each worker would hold a keyspace of its own: a client would see its keys
            # come and go with the worker its connection lands on.
            raise ConfigError("the redis app keeps its data in one process: {workers} must "
                              f"be 0 or 1, not {self.workers}")
        return self

    def bind_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each ``bind`` entry. Raises ConfigError for a malformed one."""
        out: list[tuple[str, int]] = []
        for entry in _entries(self.bind):
            host, sep, port = entry.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            elif ":" in host:
                host = ""  # an IPv6 address must be bracketed: [::1]:8888
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"bind: {entry!r} is not HOST:PORT or [IPV6]:PORT")
            out.append((host, int(port)))
        return out

    def inherited_fds(self) -> list[int]:
        """The file descriptors ``fd`` lists. Raises ConfigError for one that is not a number."""
        fds: list[int] = []
        for entry in _entries(self.fd):
            if not entry.isdigit():
                raise ConfigError(f"fd: {entry!r} is not a file descriptor number")
            fds.append(int(entry))
        return fds

    def uds_permissions(self) -> int:
        """``uds_mode`` as a number (``660``, ``0660`` and ``0o660`` alike)."""
        text = self.uds_mode.strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError(f"uds_mode: {self.uds_mode!r} is not an octal mode like 660")
        return mode

    def worker_count(self) -> int:
        """The number of worker processes ``workers`` asks a supervisor for (``auto`` =
        cores); 0: no supervisor, the server is this process.

        Raises ConfigError for a value that is not a whole number or ``auto``, is below 0,
        or is over :data:`MAX_WORKERS_PER_CORE` per core.
        """
        cores = os.cpu_count() or 1
        if self.workers == "auto":
            return cores
        try:
            n = int(self.workers)
        except ValueError:
            raise ConfigError(
                f"{{workers}} must be a whole number or 'auto', not {shown(self.workers)}"
            ) from None
        if n < 0:
            raise ConfigError(f"{{workers}} must be >= 0, not {n}")
        most = MAX_WORKERS_PER_CORE * cores
        if n > most:
            raise ConfigError(
                f"{{workers}} must be at most {most} ({MAX_WORKERS_PER_CORE} per core on "
                f"this {cores}-core machine), not {n}"
            )
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
                raise ConfigError(f"{{proxy_trusted}}: {shown(part)} is not a CIDR") from None
        return nets

    @property
    def tls(self) -> bool:
        """True when the server speaks TLS."""
        return bool(self.tls_cert)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def join_repeated(argv: list[str]) -> list[str]:
    """``argv`` with each :data:`REPEATABLE` flag given several times folded into one
    comma-separated flag at its first place (``--bind A --bind B`` -> ``--bind A,B``)."""
    flags = {"--" + name.replace("_", "-") for name in REPEATABLE}
    values: dict[str, list[str]] = {}
    place: dict[str, int] = {}  # where each flag's value goes in ``out``
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in flags and (eq or i + 1 < len(argv)):
            if not eq:
                i += 1
                value = argv[i]
            if flag not in values:
                values[flag] = []
                place[flag] = len(out) + 1
                out += [flag, ""]  # the value is filled in below
            values[flag].append(value)
        else:
            out.append(arg)
        i += 1
    for flag, given in values.items():
        out[place[flag]] = ",".join(given)
    return out


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{{{name}}} must be one of {', '.join(choices)}, not {shown(value)}")


def field_types() -> dict[str, type]:
    """Map each Config field name to its Python type (str, int, float or bool)."""
    types = {"str": str, "int": int, "float": float, "bool": bool}
    return {f.name: types[str(f.type)] for f in fields(Config)}


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` to the type of the field ``name``; raise ConfigError if it cannot be.

    A string (a flag, an environment variable, a quoted TOML value) is parsed; any other
    value (from TOML)
    must already be of the field's type (an int is taken for a float or a text setting,
    never for a bool).
    """
    kind = field_types()[name]
    if name in REPEATABLE and isinstance(value, list):  # TOML: bind = ["a:1", "b:2"]
        return ",".join(str(v) for v in value)
    if not isinstance(value, str):
        if type(value) is kind:
            return value
        if type(value) is int and kind in (float, str):  # port = 8 as a float; workers = 4
            return kind(value)
        raise ConfigError(f"{{{name}}} must be {_kind_name(kind)}, not {shown(value)}")
    if kind is bool:
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{{{name}}} must be true or false, not {shown(value)}")
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{{{name}}} must be {_kind_name(kind)}, not {shown(value)}") from None


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "text")


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from, named as the user wrote it."""

    kind: str  # "flag", "env", "file" or "default"
    path: str = ""

    def name(self, setting: str) -> str:
        """``--idle-timeout``, ``AIOTCP_IDLE_TIMEOUT``, ``idle_timeout in PATH``; a setting
        left at its default is named by its flag (what the user would add)."""
        if self.kind == "env":
            return ENV_PREFIX + setting.upper()
        if self.kind == "file":
            return f"{setting} in {self.path}"
        return "--" + setting.replace("_", "-")


FLAG = Source("flag")
ENV = Source("env")
DEFAULT = Source("default")


def unknown_settings_error(keys: list[str], path: str) -> ConfigError:
    """The error for TOML keys that are no setting, with a hint for each near miss."""
    known = list(field_types())
    described = []
    for key in keys:
        dashless = key.replace("-", "_")
        near = [dashless] if dashless in known else difflib.get_close_matches(key, known, n=1)
        described.append(f"{key} (did you mean {near[0]}?)" if near else key)
    noun = "setting" if len(keys) == 1 else "settings"
    return ConfigError(f"unknown {noun} in {escape(path)}: {', '.join(described)}")


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``AIOTCP_<NAME>`` environment variables (still strings)."""
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in field_types()
        if ENV_PREFIX + name.upper() in environ
    }


def from_toml(path: str) -> dict[str, Any]:
    """The settings in a TOML file (top level, or under a ``[aiotcp]`` table), unconverted.

    Raises ConfigError if the file cannot be read, is not TOML, or has a key that is no
    setting (with ``did you mean`` for a near miss such as ``ack-prefix``).
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {escape(path)}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"config file {escape(path)} is not valid TOML: {escape(str(e))}"
        ) from None
    table = data.get("aiotcp", data)
    unknown = sorted(set(table) - set(field_types()))
    if unknown:
        raise unknown_settings_error(unknown, path)
    return dict(table)


def build(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Merge defaults < TOML file < environment < flags into a validated Config.

    Raises ConfigError whose message names each bad setting by where its value came from
    (``--idle-timeout``, ``AIOTCP_IDLE_TIMEOUT`` or ``idle_timeout in FILE``).
    """
    env = os.environ if environ is None else environ
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    given: dict[str, tuple[Any, Source]] = {}
    if path:
        file = Source("file", path)
        given.update((k, (v, file)) for k, v in from_toml(path).items())
    given.update((k, (v, ENV)) for k, v in from_env(env).items())
    given.update((k, (v, FLAG)) for k, v in flags.items() if v is not None)

    def name(setting: str) -> str:
        return given.get(setting, (None, DEFAULT))[1].name(setting)

    try:
        merged = {k: coerce(k, v) for k, (v, _) in given.items()}
        return Config(**merged).validate()
    except ConfigError as e:
        raise ConfigError(escape(e.render(name))) from None
