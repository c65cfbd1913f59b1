"""Rate limits that lose nothing: token buckets, enforced by pausing reading.

``--rate-limit MSGS[/BURST]`` (messages per second per connection) and
``--byte-rate-limit BYTES`` (bytes per second per connection) shape a client as Netty's
traffic shaping does: what was read is handled and answered; when the client has spent
its budget the server stops reading from it until the budget refills, so the client is
slowed by TCP's own flow control, never answered with an error and never loses data.
``--max-connection-rate-per-ip N`` (new connections per second from one IP) refuses
the excess with ``ERR busy``, counted as ``aiotcp_connections_refused_total{reason="rate"}``.

Limits apply per process (per worker), as the other limits do.
"""

from __future__ import annotations

import math


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; pure in ``now``."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def take(self, n: float, now: float) -> float:
        """Spend ``n`` tokens (the debt may go below zero); the seconds until the bucket
        is out of debt again (0.0: not in debt)."""
        self._refill(now)
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def allows(self, now: float) -> bool:
        """Take one token if there is one (for admission: refuse rather than owe)."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


def parse_rate(spec: str) -> tuple[float, float] | None:
    """``MSGS[/BURST]`` -> (rate, burst); ``0`` or ``""`` -> None (off).

    The burst defaults to one second's worth (the rate). Raises ValueError.
    """
    text = spec.strip()
    if text in ("", "0"):
        return None
    rate_text, _, burst_text = text.partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else rate
    except ValueError:
        raise ValueError(f"must be MSGS or MSGS/BURST, not {spec!r}") from None
    if not (math.isfinite(rate) and math.isfinite(burst)) or rate <= 0 or burst < 1:
        raise ValueError(f"needs a rate > 0 and a burst >= 1, not {spec!r}")
    return rate, burst
