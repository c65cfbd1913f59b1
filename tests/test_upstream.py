"""aiotcp.upstream without a network: URLs, the retry budget and backoff, wire values."""

from __future__ import annotations

import random

import pytest
from google.protobuf import wrappers_pb2

from aiotcp.upstream import UpstreamURLError, parse_upstream, quoted
from aiotcp.upstream.grpc_client import bytes_values, string_values
from aiotcp.upstream.retry import (
    BACKOFF_MULTIPLIER,
    INITIAL_BACKOFF,
    MAX_BACKOFF,
    MAX_TOKENS,
    RetryThrottle,
    backoff,
)


@pytest.mark.parametrize("url, target, method, service", [
    ("grpc://127.0.0.1:50051/pkg.Echo/Say", "127.0.0.1:50051", "/pkg.Echo/Say", "pkg.Echo"),
    ("grpcs://api.example:443/a.b.C/D", "api.example:443", "/a.b.C/D", "a.b.C"),
    ("grpc://[::1]:9/S/M", "[::1]:9", "/S/M", "S"),
    ("http://127.0.0.1:8080/v1/echo?x=1", "127.0.0.1:8080", "", ""),
    ("https://user:pw@api.example/echo", "api.example:443", "", ""),
    ("http://api.example/", "api.example:80", "", ""),
])
def test_upstream_urls(url: str, target: str, method: str, service: str) -> None:
    u = parse_upstream(url)
    assert (u.target, u.method, u.service) == (target, method, service)
    assert u.tls == url.startswith(("grpcs:", "https:"))


@pytest.mark.parametrize("url, words", [
    ("ftp://host/x", "must be grpc://"),
    ("127.0.0.1:50051", "must be grpc://"),
    ("grpc://127.0.0.1/pkg.S/M", "needs a port"),
    ("grpc://:50051/pkg.S/M", "has no host"),
    ("grpc://127.0.0.1:50051/pkg.S", "must name one method"),
    ("grpc://127.0.0.1:50051/pkg.S/M/extra", "must name one method"),
    ("grpc://127.0.0.1:50051//M", "must name one method"),
    ("grpc://127.0.0.1:99999/pkg.S/M", "out of range"),
    ("https://user:s3cret@host:notaport/x", "Port could not be cast"),
])
def test_bad_upstream_urls_are_one_line_without_the_password(url: str, words: str) -> None:
    with pytest.raises(UpstreamURLError) as e:
        parse_upstream(url)
    assert words in str(e.value) and "\n" not in str(e.value) and "s3cret" not in str(e.value)


def test_upstream_text_in_an_err_line_is_one_short_line() -> None:
    assert quoted("a\nb\r\n  c") == "a b c"
    assert len(quoted("x" * 100_000)) == 200


def test_the_retry_budget_is_grpc_retry_throttling() -> None:
    throttle = RetryThrottle()
    # retries are allowed while the token count is above half of max_tokens
    for _ in range(int(MAX_TOKENS / 2) - 1):
        throttle.failed()
        assert throttle.allows_retry()
    throttle.failed()
    assert not throttle.allows_retry()  # 5 of 10 tokens: no more retries
    for _ in range(10):  # ten answers give back one token (token_ratio 0.1)
        throttle.answered()
    assert throttle.allows_retry()
    for _ in range(1000):
        throttle.answered()
    assert throttle.tokens == MAX_TOKENS  # never more than max_tokens
    for _ in range(1000):
        throttle.failed()
    assert throttle.tokens == 0.0


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(7)
    for retry in range(1, 12):
        ceiling = min(INITIAL_BACKOFF * BACKOFF_MULTIPLIER ** (retry - 1), MAX_BACKOFF)
        waits = [backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling  # spread, not fixed


@pytest.mark.parametrize("values, message, wire", [
    (string_values, "你好", wrappers_pb2.StringValue(value="你好")),
    (bytes_values, b"\x00\xff\n", wrappers_pb2.BytesValue(value=b"\x00\xff\n")),
])
def test_messages_go_as_protobuf_wrappers(values: object, message: object, wire: object) -> None:
    v = values()  # type: ignore[operator]
    data = v.serialize(message)
    assert data == wire.SerializeToString()  # type: ignore[attr-defined]
    assert v.deserialize(data) == message
