"""``aiotcp check``: load what ``aiotcp serve`` would serve with the same flags, say what
that is, and exit 0; or one line naming what is wrong and a non-zero exit.

Checked, in order: the settings (flags, environment, config file; exit 2 as ``serve``
does), the libraries they need, the app (imported and built, as a worker would), the
codec, the TLS certificate, key and CA (loaded under the chosen profile), the listener
settings, and the syntax of the store, Redis and broker URLs. Nothing is bound and
nothing is connected to, so it can run beside the server it is about to roll, as
``nginx -t`` does before a reload.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from aiotcp import config as configmod
from aiotcp.config import Config, ConfigError

# What the app's lifespan opens is not checked: it would connect, and a check must not.


class CheckError(Exception):
    """What ``aiotcp check`` found wrong, in one line (exit 1)."""


def check_main(argv: list[str], parser_factory: Callable[[], argparse.ArgumentParser]) -> int:
    """``aiotcp check [serve flags]``; ``parser_factory`` is ``aiotcp serve``'s parser."""
    parser = parser_factory()
    parser.prog = "aiotcp check"
    parser.description = "Check what 'aiotcp serve' would serve with these flags, and exit."
    args = vars(parser.parse_args(configmod.join_repeated(argv)))
    config_file = args.pop("config_file")
    args.pop("print_config", None)
    try:
        config = configmod.build(args, config_file=config_file)
    except ConfigError as e:
        print(f"aiotcp check: error: {e}", file=sys.stderr)
        return 2
    try:
        lines = check(config)
    except CheckError as e:
        print(f"aiotcp check: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(["aiotcp check: ok", *(f"  {k:<10} {v}" for k, v in lines)]))
    return 0


def check(config: Config) -> list[tuple[str, str]]:
    """(what, how it would be served) for ``config``; raises CheckError for the first
    thing that would stop ``aiotcp serve``."""
    from aiotcp.runner import missing_extra

    missing = missing_extra(config)
    if missing is not None:
        raise CheckError(missing)
    return [
        ("app", _app(config)),
        ("listeners", _listeners(config)),
        ("processes", _processes(config)),
        ("tls", _tls(config)),
        ("proxy", f"PROXY v1/v2 from {config.proxy_trusted}" if config.proxy_protocol else "off"),
        *_urls(config),
        ("metrics", f"http://{config.metrics_host}:{config.metrics_port}/metrics"
         if config.metrics_port else "off"),
    ]  # fmt: skip


def _app(config: Config) -> str:
    from aiotcp.app import AppError
    from aiotcp.apps import load_app
    from aiotcp.codecs import CodecError, checked_factory
    from aiotcp.server import codec_factory

    try:
        app = load_app(config)
        factory, codec = codec_factory(config, app)
        checked_factory(factory, config.max_line, codec)  # makes one, as the server does
    except (AppError, CodecError) as e:
        raise CheckError(str(e)) from None
    return f"{config.app!r} ({config.api} api, codec {codec}, frames up to {config.max_line} bytes)"


def _listeners(config: Config) -> str:
    from aiotcp.listeners import plan

    return ", ".join(p.name for p in plan(config))


def _processes(config: Config) -> str:
    if config.reload:
        return "one worker under the reloader (development): a source change rolls it"
    n = config.worker_count()
    if n == 0:
        return "this process (no supervisor); SIGHUP reloads the TLS certificate"
    return f"a supervisor and {n} worker(s); SIGHUP rolls them"


def _tls(config: Config) -> str:
    if not config.tls:
        return "off"
    from aiotcp.frontdoor import TLSSetupError
    from aiotcp.frontdoor.context import build_server_context

    try:
        build_server_context(config)
    except TLSSetupError as e:
        raise CheckError(str(e)) from None
    client = f", client certificates {config.tls_client_cert}" if config.tls_ca else ""
    return f"{config.tls_profile} profile, certificate {config.tls_cert}{client}"


def _urls(config: Config) -> list[tuple[str, str]]:
    from aiotcp.stores import StoreError, parse_store_url, redact

    try:
        store = parse_store_url(config.store).shown
    except StoreError as e:
        raise CheckError(str(e)) from None
    out = [("store", store), ("redis", _redis_url("redis", config.redis))]
    broker = _redis_url("broker", config.broker) if config.broker else "this process only"
    out.append(("broker", f"{broker} ({config.broker_mode})"))
    return [(k, redact(v)) for k, v in out]


def _redis_url(setting: str, url: str) -> str:
    try:
        from redis.connection import parse_url
    except ImportError:
        return f"{url} (not checked: pip install 'aiotcp[redis]')"
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as e:
        from aiotcp.stores import redact

        raise CheckError(f"{setting} {redact(url)}: {e}") from None
    return url
