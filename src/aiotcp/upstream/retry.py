"""Retries of calls that never reached the upstream: backoff with jitter, and a budget.

Pure: no clock, no I/O. The gateway asks :meth:`RetryThrottle.allows_retry` before each
retry and sleeps :func:`backoff` first.

The budget is gRPC's retry throttling (gRFC A6, ``retryThrottling``): a token count per
upstream starts at ``max_tokens``; every call that fails as unavailable takes one token,
every call the upstream answered gives back ``token_ratio``; retries are allowed only
while the count is above half of ``max_tokens``. With gRPC's example values (10 and 0.1),
retrying stops once more than about one call in ten fails, so an upstream that is down
gets each call once rather than ``1 + retries`` times; it starts again as answers come
back. (Finagle's RetryBudget bounds retries to a share of calls in a window the same way.)
"""

from __future__ import annotations

import random

# gRFC A6's example throttling policy: retries stop when failures pass ~10% of calls.
MAX_TOKENS = 10.0
TOKEN_RATIO = 0.1
# Exponential backoff (gRFC A6: the n-th retry waits random(0, min(initial * m**(n-1),
# max)), "full jitter"). A retried call was refused at connect, so the first retry may
# come soon; a restarting upstream is usually back within a second or two.
INITIAL_BACKOFF = 0.05
BACKOFF_MULTIPLIER = 2.0
MAX_BACKOFF = 1.0


class RetryThrottle:
    """gRPC's retry throttling for one upstream: see the module doc."""

    __slots__ = ("max_tokens", "token_ratio", "tokens")

    def __init__(self, max_tokens: float = MAX_TOKENS, token_ratio: float = TOKEN_RATIO) -> None:
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens

    def failed(self) -> None:
        """A call (or a retry) failed as unavailable."""
        self.tokens = max(0.0, self.tokens - 1.0)

    def answered(self) -> None:
        """The upstream answered a call (any answer, an error status included)."""
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2


def backoff(retry: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first), with full jitter."""
    ceiling = min(INITIAL_BACKOFF * BACKOFF_MULTIPLIER ** (retry - 1), MAX_BACKOFF)
    uniform = rng.uniform if rng is not None else random.uniform
    return uniform(0.0, ceiling)
