"""The health of one dependency (a store, a Redis) as its calls report it, logged by change.

An app reports each call's outcome: :meth:`Outage.failed` with the reason, or
:meth:`Outage.succeeded`. The log says when the dependency goes down (once, with the
reason), reminds while it stays down (at most once per :data:`REMINDER_INTERVAL`, with
the failures since), and says when it is back (how long it was down). A thousand
clients failing at once make one line, not a thousand. ``up`` is the state a readiness
check reads: it costs an attribute read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# While a dependency stays down, one reminder a minute says it still is (and how many
# calls failed since the last line): an operator sees the outage has not ended without
# the log being flooded at the rate of the clients.
REMINDER_INTERVAL = 60.0


class Outage:
    """Up or down for ``what`` (``redis redis://host:6379/0``), from its calls' outcomes.

    ``failing`` words the down state in the log (``unreachable``, ``commits failing``).
    Every method is called on the loop; ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        what: str,
        failing: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.failing = failing
        self.log = log
        self.clock = clock
        self.up = True
        self._down_since = 0.0
        self._logged_at = 0.0
        self._failures = 0  # since the dependency went down
        self._unlogged = 0  # since the last line

    def failed(self, reason: str) -> None:
        """A call failed for ``reason`` (one line): log if it went down or a reminder is due."""
        now = self.clock()
        self._failures += 1
        self._unlogged += 1
        if self.up:
            self.up = False
            self._down_since = self._logged_at = now
            self._unlogged = 0
            self.log.error("%s %s: %s", self.what, self.failing, reason)
        elif now - self._logged_at >= REMINDER_INTERVAL:
            self.log.error(
                "%s still %s (%d failed in the last %.0fs, down %.0fs): %s",
                self.what, self.failing, self._unlogged, now - self._logged_at,
                now - self._down_since, reason,
            )  # fmt: skip
            self._logged_at = now
            self._unlogged = 0

    def succeeded(self) -> None:
        """A call succeeded: if the dependency was down, log that it recovered."""
        if self.up:
            return
        self.up = True
        self.log.info(
            "%s recovered after %.1fs down (%d failed)",
            self.what, self.clock() - self._down_since, self._failures,
        )  # fmt: skip
        self._failures = self._unlogged = 0
