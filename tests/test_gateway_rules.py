"""The gateway's rules on one layer: its handler over a scripted upstream, no network.

Which line a late call gets whichever deadline fires first, and which failures are
retried; the real upstreams are in test_gateway.py and test_gateway_failures.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiotcp.apps.gateway import Gateway
from aiotcp.codecs import make_codec
from aiotcp.config import Config
from aiotcp.dispatch import Dispatch
from aiotcp.observe.stats import Stats
from aiotcp.upstream import DeadlineExceeded, Unavailable, UpstreamURL

URL = UpstreamURL("grpc://127.0.0.1:1/S/M", "grpc", "127.0.0.1", 1, "/S/M", "S")


class ScriptedUpstream:
    """An upstream whose calls go as scripted: each outcome is an exception to raise,
    ``"hang"`` (never answers) or the answer; it records the timeouts it was given."""

    def __init__(self, *outcomes: Any) -> None:
        self.url = URL
        self.outcomes = list(outcomes)
        self.timeouts: list[float | None] = []

    async def call(self, message: str, timeout: float | None) -> str:
        self.timeouts.append(timeout)
        outcome = self.outcomes.pop(0)
        if outcome == "hang":
            await asyncio.Event().wait()
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)


def gateway(upstream: ScriptedUpstream, **settings: Any) -> Gateway:
    return Gateway(upstream, Config(app="gateway", upstream=URL.url, **settings))  # type: ignore[arg-type]


class Conn:
    """What the call path needs of a connection: its codec (for the error line)."""

    def __init__(self, framing: str) -> None:
        self.codec = make_codec(framing, 1)


async def through_dispatch(g: Gateway, config: Config) -> tuple[str | None, Stats]:
    """One message through the server's own call path (its handler timeout included)."""
    stats = Stats()
    g.stats = stats
    g.places = asyncio.Semaphore(1)
    dispatch = Dispatch(g, config, stats)
    return await dispatch.call(Conn(config.framing), "m"), stats


# Both deadlines are --handler-timeout: the server's (asyncio.timeout around the handler)
# and the call's own (the gRPC deadline, the HTTP timeout). Either may fire first.
@pytest.mark.parametrize("first", ["the server's", "the call's own"])
@pytest.mark.parametrize("framing", ["line", "length"])
def test_a_late_call_gets_the_same_timeout_line_whichever_deadline_fires_first(
    first: str, framing: str
) -> None:
    outcome = "hang" if first == "the server's" else DeadlineExceeded()
    config = Config(handler_timeout=0.05, framing=framing)
    upstream = ScriptedUpstream(outcome)
    reply, stats = asyncio.run(through_dispatch(gateway(upstream, handler_timeout=0.05,
                                                        framing=framing), config))
    assert reply == "ERR timeout handler took over 0.05s"
    assert stats.errors == {"timeout": 1}
    assert upstream.timeouts[0] is not None and 0 < upstream.timeouts[0] <= 0.05


NOT_SENT = Unavailable("refused", sent=False)
SENT = Unavailable("reset", sent=True)


@pytest.mark.parametrize("outcomes, settings, reply, calls, retries", [
    # a call that never reached the upstream is retried, and the retry answers
    ([NOT_SENT, "ok"], {"upstream_retries": 1}, "ok", 2, 1),
    ([NOT_SENT, NOT_SENT, "ok"], {"upstream_retries": 2}, "ok", 3, 2),
    # ... but no more often than --upstream-retries
    ([NOT_SENT, NOT_SENT], {"upstream_retries": 1}, "ERR unavailable refused", 2, 1),
    ([NOT_SENT], {}, "ERR unavailable refused", 1, 0),
    # a call that may have reached it is never retried
    ([SENT, "ok"], {"upstream_retries": 3}, "ERR unavailable reset", 1, 0),
    # a retry whose backoff (10 s here) would end past the deadline is not made
    ([NOT_SENT, "ok"], {"upstream_retries": 1, "handler_timeout": 5.0},
     "ERR unavailable refused", 1, 0),
])
def test_which_failed_calls_are_retried(
    outcomes: list[Any], settings: dict[str, Any], reply: str, calls: int, retries: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pause = 10.0 if settings.get("handler_timeout") else 0.0
    monkeypatch.setattr("aiotcp.apps.gateway.backoff", lambda retry: pause)
    upstream = ScriptedUpstream(*outcomes)
    g = gateway(upstream, **settings)

    async def one() -> str:
        g.places = asyncio.Semaphore(1)
        return await g("m", Conn("line"))

    assert asyncio.run(one()) == reply
    assert len(upstream.timeouts) == calls
    assert g.stats.upstream_retries == retries
