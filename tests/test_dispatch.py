"""Handler kinds and where ack latency is timed."""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

import pytest

import aiotcp
from aiotcp.codecs import LineCodec
from aiotcp.config import Config
from aiotcp.dispatch import KIND_BATCH, KIND_INLINE, KIND_PREFIX, KIND_QUEUED, Dispatch, kind_of
from aiotcp.observe.snapshots import ENV_TIMED
from aiotcp.observe.stats import Stats


def sync(message: str, conn: Any) -> str:
    return message


async def coro(message: str, conn: Any) -> str:
    return message


class WithBatch:
    def __call__(self, message: str, conn: Any) -> str:
        return message

    def batch(self, messages: list[str], conn: Any) -> list[str]:
        return messages


class WithAsyncBatch(WithBatch):
    async def batch(self, messages: list[str], conn: Any) -> list[str]:  # type: ignore[override]
        return messages


def test_kinds() -> None:
    assert kind_of(sync) == KIND_INLINE
    assert kind_of(coro) == KIND_QUEUED
    assert kind_of(functools.partial(coro)) == KIND_QUEUED
    assert kind_of(functools.partial(functools.partial(coro), "m")) == KIND_QUEUED
    assert kind_of(functools.partial(sync)) == KIND_INLINE
    assert kind_of(aiotcp.blocking(lambda m, c: m)) == KIND_QUEUED
    assert kind_of(WithBatch()) == KIND_BATCH
    assert kind_of(WithAsyncBatch()) == KIND_QUEUED
    assert kind_of(aiotcp.Ack()) == KIND_PREFIX


def test_ack_latency_is_timed_only_where_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TIMED, raising=False)
    assert not Dispatch(sync, Config(), Stats()).timed
    assert Dispatch(sync, Config(metrics_port=9100), Stats()).timed
    monkeypatch.setenv(ENV_TIMED, "1")  # a worker whose supervisor serves metrics
    assert Dispatch(sync, Config(), Stats()).timed


def test_worker_environment_asks_for_timing_only_with_metrics() -> None:
    from aiotcp.workerprocess import worker_environment

    plain = worker_environment(Config(), {ENV_TIMED: "1"}, "/tmp/x", 1, 0)
    assert ENV_TIMED not in plain  # not inherited from the supervisor's own environment
    assert worker_environment(Config(metrics_port=9100), {}, "/tmp/x", 1, 0)[ENV_TIMED] == "1"


class FakeConn:
    """What dispatch needs of a connection: its codec (for the protocol's error replies)."""

    codec = LineCodec(64)


def test_call_turns_timeouts_and_errors_into_err_replies() -> None:
    async def slow(message: str, conn: Any) -> str:
        await asyncio.sleep(10)
        return message

    async def boom(message: str, conn: Any) -> str:
        raise ValueError("no")

    async def wrong(message: str, conn: Any) -> Any:
        return 42

    async def main() -> list[Any]:
        stats = Stats()
        out = []
        for h in (slow, boom, wrong):
            d = Dispatch(h, Config(handler_timeout=0.01), stats)
            out.append(await d.call(FakeConn(), "m"))
        assert stats.errors == {"timeout": 1, "internal": 1}
        return out

    replies = asyncio.run(main())
    assert replies[0] == "ERR timeout handler took over 0.01s"
    assert replies[1] == "ERR internal handler failed"
    assert replies[2] == 42  # a reply the protocol cannot carry is caught when encoded


async def raises_own_timeout(message: str, conn: Any) -> str:
    raise TimeoutError("the driver's own timeout")


@aiotcp.blocking
def blocking_raises_socket_timeout(message: str, conn: Any) -> str:
    raise socket.timeout("timed out")


class AsyncBatchRaisesTimeout(WithBatch):
    async def batch(self, messages: list[str], conn: Any) -> list[str]:  # type: ignore[override]
        raise TimeoutError("the driver's own timeout")


@pytest.mark.parametrize("handler_timeout", [0.0, 30.0])
@pytest.mark.parametrize("metrics_port", [0, 9100])
@pytest.mark.parametrize(
    "handler", [raises_own_timeout, blocking_raises_socket_timeout, AsyncBatchRaisesTimeout()],
    ids=["async", "blocking", "async-batch"],
)
def test_a_handlers_own_timeout_error_is_the_handler_failing(
    handler: Any, handler_timeout: float, metrics_port: int
) -> None:
    """Only the server's own deadline answers ERR timeout; a TimeoutError the handler
    raised (with the timeout off or not yet due, timed or not) is ERR internal, and the
    call returns a reply: it never escapes into the worker."""

    async def main() -> tuple[list[Any], dict[str, int]]:
        stats = Stats()
        d = Dispatch(handler, Config(handler_timeout=handler_timeout,
                                     metrics_port=metrics_port), stats)
        d.start()
        try:
            if d.async_batch is not None:
                replies = await d.call_batch(FakeConn(), ["a", "b"])
            else:
                replies = [await d.call(FakeConn(), "a")]
        finally:
            d.stop()
        return replies, stats.errors

    replies, errors = asyncio.run(main())
    assert set(replies) == {"ERR internal handler failed"}
    assert errors == {"internal": 1}
