"""Fixtures of the whole suite. The code behind them is in ``tests/support/``.

- ``loop``: "asyncio" or "uvloop"; a test that takes it (directly or through
  ``spawn_server`` / ``run_server``) runs once on each event loop.
- ``spawn_server``: starts ``aiotcp serve --loop LOOP ...`` processes; kills them at teardown.
- ``run_server``: runs a Server in this process on the ``loop`` event loop.
- ``clock``: a FakeClock the test advances.
- ``upstream``, ``own_upstream``: the gateway's gRPC and HTTP upstreams (a child process).
- ``netns``: test hosts in network namespaces (``support.netns.Hosts``), all deleted at
  teardown, failure or not.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.certs import Certs, make_certs
from support.fakes import FakeClock
from support.inprocess import run_server as run_server_in_process
from support.netns import Hosts, hosts
from support.process import ServerProcess
from support.services import STORES, execute, service_url, with_table
from support.upstreams import Upstream, upstream_process

LOOPS = ("asyncio", "uvloop")


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop a test's server runs on: every such test runs on both."""
    return str(request.param)


@pytest.fixture
def spawn_server(loop: str) -> Iterator[Callable[..., ServerProcess]]:
    """``spawn_server(args, preexec_fn=None, env=None)``: an ``aiotcp serve`` process on
    127.0.0.1, a free port and the ``loop`` event loop (``--workers N`` too: every worker
    runs that loop). Every process it started is killed at teardown."""
    servers: list[ServerProcess] = []

    def spawn(args: Sequence[str] = (), **kw: Any) -> ServerProcess:
        server = ServerProcess(args, loop=loop, **kw)
        servers.append(server)
        return server

    yield spawn
    for server in servers:
        server.kill()


@pytest.fixture
def run_server(loop: str) -> Callable[..., Any]:
    """``run_server(handler, client, **settings)``: see ``support.inprocess.run_server``."""
    return functools.partial(run_server_in_process, loop)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """One CA and its server and client certificates (trustme) for the whole session."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL with a table of this test's own, on each kind of store in turn."""
    kind = str(request.param)
    table = "t_" + uuid.uuid4().hex[:16]
    if kind == "sqlite":
        url = with_table(f"sqlite:///{tmp_path / 'ingest.db'}", table)
    else:
        url = with_table(service_url(kind), table)
    yield url
    if kind != "sqlite":
        execute(url, f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def redis_url() -> str:
    return service_url("redis")


@pytest.fixture(scope="session")
def upstream(certs: Certs) -> Iterator[Upstream]:
    """The gateway tests' upstreams (gRPC, gRPC over TLS, HTTP, HTTPS), one process shared
    by the session: each test's calls carry a key of its own (``support.upstreams.new_key``)."""
    with upstream_process(certs.server) as up:
        yield up


@pytest.fixture
def own_upstream(certs: Certs) -> Iterator[Upstream]:
    """Upstreams of this test alone: it may kill, restart or make them unhealthy."""
    with upstream_process(certs.server) as up:
        yield up


@pytest.fixture
def netns() -> Iterator[Hosts]:
    """Hosts in network namespaces for this test; fails (never skips) without root or ``ip``."""
    with hosts() as made:
        yield made
