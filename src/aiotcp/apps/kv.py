"""The ``kv`` app: a key-value service in Redis. ``aiotcp serve --app kv --redis URL``.

Commands, one per message (a key has no spaces; a value is the rest of the line):

``GET key``        -> ``VALUE <value>`` or ``NIL``
``SET key value``  -> ``OK``
``DEL key``        -> ``OK``
anything else      -> ``ERR bad-command <the message>``

Values live in Redis only, never in the process, so every worker and every instance
sees the same data. The commands of one read (or of whatever queued meanwhile) go to
Redis as one pipeline, one round trip, answered in order. A Redis error for one command
(a key holding a list, say) is ``ERR redis <its message>``; when Redis cannot be
reached each command is ``ERR unavailable <reason>``, and the next ones try again, so
the service recovers when Redis does. Redis unreachable at startup stops the server.

Every ``ERR`` reply is counted in the server's ``aiotcp_errors_total{code=...}``
(``bad-command``, ``unavailable``, ``redis``). Redis going away and coming back is
logged once each (a reminder a minute while it stays away), and ``/readyz`` answers 503
while Redis is unreachable: the last command's outcome says so at once, and a PING every
:data:`PING_INTERVAL` seconds notices an outage (and the recovery) with no traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from aiotcp.app import App, AppError, State
from aiotcp.apps import counting_app
from aiotcp.observe.outage import Outage
from aiotcp.observe.stats import Stats
from aiotcp.stores import one_line, redact

if TYPE_CHECKING:
    from aiotcp.config import Config

log = logging.getLogger("aiotcp.kv")

# Connections to Redis per process at most; more batches wait for one (up to
# POOL_TIMEOUT). Redis serves commands on one thread, so past a few dozen connections
# more only cost Redis memory and its maxclients (10,000, shared by every worker).
MAX_REDIS_CONNECTIONS = 32
POOL_TIMEOUT = 5.0
# Connect and reply timeouts: a Redis that does not answer within this is unavailable,
# and its clients are told so rather than kept waiting.
REDIS_TIMEOUT = 5.0
# A pooled connection that Redis closed (its timeout, CLIENT KILL, a restart) fails
# its first use: that use is retried once, at once, on a fresh connection. Beyond that
# the client gets ERR unavailable now rather than after a backoff.
REDIS_RETRIES = 1
# ERR bad-command quotes at most this much of the message (a frame may be 64 KiB).
BAD_COMMAND_QUOTE = 200
# Seconds between the PINGs that keep /readyz true to Redis when no command runs
# (HAProxy checks every 2 s by default): one command a second per process is nothing to
# Redis, and a load balancer that took the instance out of rotation sees it come back.
PING_INTERVAL = 1.0


class RedisUnavailable(Exception):
    """Redis cannot be reached: the message is one line naming it."""


def parse(message: str) -> tuple[str, ...] | None:
    """``("GET", key)``, ``("SET", key, value)``, ``("DEL", key)``, or None if malformed."""
    parts = message.split(" ", 2)
    # The verbs are ASCII in any case: str.upper() alone would also make "ſet" SET.
    cmd = parts[0].upper() if parts[0].isascii() else ""
    if cmd == "SET" and len(parts) == 3 and parts[1]:
        return ("SET", parts[1], parts[2])
    if cmd in ("GET", "DEL") and len(parts) == 2 and parts[1]:
        return (cmd, parts[1])
    return None


def bad_command(message: str) -> str:
    return "ERR bad-command " + message[:BAD_COMMAND_QUOTE]


def answer(cmd: str, result: Any) -> str:
    """The reply to one command from its pipeline result."""
    if isinstance(result, ResponseError):
        return "ERR redis " + one_line(result)
    if cmd == "GET":
        return "NIL" if result is None else "VALUE " + str(result)
    return "OK"


class KV:
    """The handler: see the module doc."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis: aioredis.Redis | None = None
        # The serving server's counters once the app runs (see make_app).
        self.stats = Stats()
        self.health = Outage(f"redis {redact(url)}", "unreachable", log)

    async def lifespan(self, state: State) -> AsyncGenerator[None, None]:
        """One connection pool per process; PING it, so a Redis that is not there stops
        the startup; close the pool after the drain."""
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=MAX_REDIS_CONNECTIONS, timeout=POOL_TIMEOUT,
            decode_responses=True, socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), REDIS_RETRIES),
        )
        client = aioredis.Redis(connection_pool=pool)
        try:
            await client.ping()
        except (RedisError, OSError) as e:
            await client.aclose()
            await pool.aclose()
            raise RedisUnavailable(
                f"redis {redact(self.url)} cannot be reached: {one_line(e)}"
            ) from None
        self.redis = client
        pinger = asyncio.get_running_loop().create_task(self._ping_forever(client))
        try:
            yield
        finally:
            self.redis = None
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            await client.aclose()
            await pool.aclose()

    async def _ping_forever(self, client: aioredis.Redis) -> None:
        """PING every PING_INTERVAL: the health of Redis when no command tells it."""
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                await client.ping()
            except (RedisError, OSError) as e:
                self.health.failed(one_line(e))
            else:
                self.health.succeeded()

    async def batch(self, messages: list[str], conn: Any) -> list[str]:
        """The valid commands of ``messages`` as one pipeline; replies in order."""
        commands = [parse(m) for m in messages]
        bad = commands.count(None)
        if bad:
            self.stats.error("bad-command", bad)
        client = self.redis
        if client is None:
            self.stats.error("unavailable", len(messages) - bad)
            return [
                "ERR unavailable the app is not running" if c is not None else bad_command(m)
                for c, m in zip(commands, messages)
            ]
        pipe = client.pipeline(transaction=False)
        for c in commands:
            if c is not None:
                pipe.execute_command(*c)
        if not len(pipe):
            return [bad_command(m) for m in messages]
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as e:
            why = one_line(e)
            self.health.failed(why)
            self.stats.error("unavailable", len(messages) - bad)
            down = "ERR unavailable " + why
            return [down if c is not None else bad_command(m) for c, m in zip(commands, messages)]
        self.health.succeeded()
        refused = sum(isinstance(r, ResponseError) for r in results)
        if refused:
            self.stats.error("redis", refused)
        answers = iter(results)
        return [
            answer(c[0], next(answers)) if c is not None else bad_command(m)
            for c, m in zip(commands, messages)
        ]

    async def __call__(self, message: str, conn: Any) -> str:
        return (await self.batch([message], conn))[0]


def make_app(config: Config) -> App:
    """The kv app for ``config.redis``. Raises AppError for a URL redis-py cannot use."""
    url = config.redis
    try:
        aioredis.ConnectionPool.from_url(url)  # checks the URL; connects to nothing
    except ValueError as e:
        raise AppError(f"redis {redact(url)}: {one_line(e)}") from None
    handler = KV(url)
    app = counting_app(handler)
    app.lifespan(handler.lifespan)

    @app.readiness
    def redis_reachable() -> bool:
        return handler.health.up

    return app
