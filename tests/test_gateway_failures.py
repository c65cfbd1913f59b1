"""The gateway when its upstream fails: unreachable, killed and restarted, hung, unhealthy;
retries and their budget; readiness; settings it cannot serve."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiotcp.server import Server
from support.certs import Certs
from support.clients import AsyncLineClient, LineClient
from support.metrics import http_get, scrape
from support.ports import free_port
from support.process import SpawnServer, run_aiotcp, run_without
from support.upstreams import Upstream, new_key, run_gateway, upstream_process
from support.waiting import HANG_GUARD, POLL_INTERVAL, wait_until, wait_until_async

PLAIN = ["grpc", "http"]


def refused_url(kind: str) -> str:
    """An upstream URL on a port where nothing listens."""
    port = free_port()
    return f"grpc://127.0.0.1:{port}/p.S/M" if kind == "grpc" else f"http://127.0.0.1:{port}/m"


async def answered(client: AsyncLineClient, message: str, want: str) -> str:
    """Send ``message`` until its reply is ``want`` (while the gateway recovers), each
    reply in between an ERR unavailable; return the first of those (or ``want``)."""
    first = None
    deadline = time.monotonic() + HANG_GUARD
    while True:
        await client.send(message + "\n")
        reply = await client.line()
        if reply == want:
            return first or reply
        assert reply.startswith("ERR unavailable "), reply
        first = first or reply
        assert time.monotonic() < deadline, f"no {want!r} within {HANG_GUARD:g}s: {reply}"
        await asyncio.sleep(POLL_INTERVAL)


@pytest.mark.parametrize("kind", PLAIN)
def test_an_unreachable_upstream_is_err_unavailable_and_the_gateway_recovers_by_itself(
    kind: str, own_upstream: Upstream, run_server: Any
) -> None:
    key = new_key()

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(f"{key} before\n")
        assert await client.line() == f"echo {key} before"
        own_upstream.kill()
        await client.send(f"{key} during\n")
        down = await client.line()
        assert down.startswith(f"ERR unavailable {kind} 127.0.0.1:"), down
        own_upstream.start()  # the same ports
        await answered(client, f"{key} after", f"echo {key} after")
        assert server.stats.errors.get("unavailable", 0) >= 1
        await client.close()

    run_gateway(run_server, own_upstream.url(kind, "Echo"), check)


@pytest.mark.parametrize("kind", PLAIN)
def test_retries_stop_when_the_budget_is_spent(kind: str, run_server: Any) -> None:
    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send("m\n" * 20)
        replies = await client.lines(20)
        assert all(r.startswith(f"ERR unavailable {kind} 127.0.0.1:") for r in replies), replies
        # gRPC retry throttling, 10 tokens: 2 retries for the first call, 1 for the
        # second, then the count is at half and every later retry is refused
        assert (server.stats.upstream_retries, server.stats.upstream_retries_throttled) == (3, 19)
        assert server.stats.errors == {"unavailable": 20}
        await client.close()

    run_gateway(run_server, refused_url(kind), check, upstream_retries=2)


@pytest.mark.parametrize("kind, message", [
    ("grpc", "{key} UNAVAILABLE busy"),  # the upstream's own UNAVAILABLE: it got the call
    ("http", "{key}"),  # the upstream closed the connection after the request
])
def test_a_call_that_reached_the_upstream_is_never_retried(
    kind: str, message: str, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()
    method = "Fail" if kind == "grpc" else "Drop"

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(message.format(key=key) + "\n")
        assert (await client.line()).startswith(f"ERR unavailable {kind} 127.0.0.1:")
        assert server.stats.upstream_retries == 0
        await client.close()

    run_gateway(run_server, upstream.url(kind, method), check, upstream_retries=3)
    assert upstream.stats(key)["calls"] == 1


# How readiness learns the upstream's health, per kind of upstream.
READINESS = {
    "grpc health service": ("grpc", True),
    "grpc channel state": ("grpc", False),  # an upstream without grpc.health.v1
    "http health URL": ("http", True),
}


@pytest.mark.parametrize("how", list(READINESS))
def test_readiness_follows_the_upstreams_health(
    how: str, certs: Certs, run_server: Any
) -> None:
    kind, has_health = READINESS[how]

    def ready_is(server: Server, value: bool, why: str) -> Any:
        return wait_until_async(lambda: server.ready is value, what=why)

    with upstream_process(certs.server, health=has_health) as up:
        settings: dict[str, Any] = {"upstream_health_interval": 0.05}
        if kind == "http":
            settings["upstream_health"] = up.health_url

        async def check(server: Server, port: int) -> None:
            await ready_is(server, True, "ready with the upstream up")
            if has_health:
                up.set_health("NOT_SERVING")
                await ready_is(server, False, "not ready while the upstream says so")
                up.set_health("SERVING")
                await ready_is(server, True, "ready again")
                up.freeze()  # a probe that never answers times out
                try:
                    await ready_is(server, False, "not ready while the upstream hangs")
                finally:
                    up.thaw()
                await ready_is(server, True, "ready once it answers again")
            up.kill()
            await ready_is(server, False, "not ready with the upstream gone")
            up.start()
            await ready_is(server, True, "ready once it is back")

        run_gateway(run_server, up.url(kind, "Echo"), check, **settings)


@pytest.mark.parametrize("kind", PLAIN)
def test_readyz_and_metrics_of_a_gateway_process(
    kind: str, own_upstream: Upstream, spawn_server: SpawnServer
) -> None:
    """``aiotcp serve --app gateway`` as a user runs it: /readyz follows the upstream,
    /metrics counts retries, refused retries and ERR codes."""
    own_upstream.kill()
    metrics = free_port()
    args = ["--app", "gateway", "--upstream", own_upstream.url(kind, "Echo"),
            "--upstream-retries", "2", "--upstream-health-interval", "0.05",
            "--metrics-port", str(metrics)]
    if kind == "http":
        args += ["--upstream-health", own_upstream.health_url]
    server = spawn_server(args)
    wait_until(lambda: http_get(metrics, "/readyz")[0] == 503, what="/readyz 503")
    server.wait_for_log(r"WARNING aiotcp.gateway: upstream \S+ is not ready \(.+\)")
    with LineClient(server.port) as client:
        client.send("m\n" * 20)
        assert all(r and r.startswith("ERR unavailable ") for r in client.lines(20))
        samples = wait_until(lambda: scrape(metrics), what="/metrics")
        assert samples["aiotcp_upstream_retries_total"] == 3
        assert samples["aiotcp_upstream_retries_throttled_total"] == 19
        assert samples['aiotcp_errors_total{code="unavailable"}'] == 20
        own_upstream.start()
        wait_until(lambda: http_get(metrics, "/readyz")[0] == 200, what="/readyz 200")
        server.wait_for_log(r"INFO aiotcp.gateway: upstream \S+ is ready \(.+\)")
        assert client.ask("k after") == "echo k after"


@pytest.mark.parametrize("args, words", [
    ([], "the gateway app needs --upstream URL"),
    (["--upstream", "ftp://127.0.0.1/x"], "must be grpc://HOST:PORT/package.Service/Method"),
    (["--upstream", "grpc://127.0.0.1/p.S/M"], "needs a port"),
    (["--upstream", "grpc://127.0.0.1:1/p.S"], "must name one method"),
    (["--upstream", "grpc://127.0.0.1:1/p.S/M", "--upstream-health", "http://127.0.0.1:1/"],
     "--upstream-health is for an http(s) upstream"),
    (["--upstream", "http://127.0.0.1:1/", "--upstream-health", "grpc://127.0.0.1:1/p.S/M"],
     "--upstream-health 'grpc://127.0.0.1:1/p.S/M' must be http(s)"),
    (["--upstream", "grpcs://127.0.0.1:1/p.S/M", "--upstream-ca", "/nonexistent.pem"],
     "upstream CA /nonexistent.pem: No such file or directory"),
    (["--upstream", "https://127.0.0.1:1/", "--upstream-ca", "/nonexistent.pem"],
     "upstream CA /nonexistent.pem"),
    (["--upstream", "grpc://127.0.0.1:1/p.S/M", "--upstream-ca", "/etc/hostname"],
     "--upstream-ca is for a TLS upstream"),
    (["--upstream", "http://127.0.0.1:1/", "--framing", "raw"], "line or length framing"),
    (["--upstream", "http://127.0.0.1:1/", "--upstream-concurrency", "0"],
     "--upstream-concurrency must be >= 1"),
    (["--upstream", "http://127.0.0.1:1/", "--upstream-health-interval", "0"],
     "--upstream-health-interval must be > 0"),
])
def test_settings_the_gateway_cannot_serve_are_one_line_and_exit_non_zero(
    args: list[str], words: str
) -> None:
    done = run_aiotcp("serve", "--port", "0", "--app", "gateway", *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and words in lines[0], done.stderr


@pytest.mark.parametrize("module, upstream", [
    ("grpc", "grpc://127.0.0.1:1/p.S/M"),
    ("aiohttp", "http://127.0.0.1:1/"),
])
def test_a_missing_library_names_the_extra(module: str, upstream: str) -> None:
    done = run_without(module, "serve", "--port", "0", "--app", "gateway", "--upstream", upstream)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert f"app 'gateway' needs {module} (pip install 'aiotcp[gateway]')" in lines[0]
