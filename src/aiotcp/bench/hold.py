"""The connections one client process holds for ``aiotcp bench --mode hold``.

One process holds its share of the connections (a process has an fd limit; loopback gives
one source address about 28k ephemeral ports, so the share spreads over several source
addresses of 127.0.0.0/8). :class:`Holder` opens them with non-blocking connects, at most
``in_progress`` at a time, each socket bound to its source address with
``IP_BIND_ADDRESS_NO_PORT`` (the port is chosen at connect, per 4-tuple); then, per round,
closes and reopens a ``churn`` fraction of them, and pings every connection once, the sends
paced evenly over ``round_seconds``: each sends one line and waits up to ``ping_timeout``
for its reply ``<prefix><line>``. A reply late, wrong or missing, or a connection lost, is
a failure of that round. Latency goes to an HDR histogram (µs) sent back to the parent.

:func:`child_main` is the process's entry point: it obeys commands from the parent
(:mod:`aiotcp.bench.holdrun`) on a pipe: ``ready``, ``connect``, ``held``, ``round``,
``close``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any, cast

from aiotcp.bench.results import MAX_LATENCY_US, add_error, new_histogram

#: Seconds between paced sends in a round (each tick sends the connections now due).
PACE_TICK = 0.01
#: Linux's option (``<linux/in.h>``) leaving the port of a bound socket to connect().
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass(frozen=True)
class HoldConfig:
    """One hold run: ``connections`` over ``procs`` processes and ``sources`` addresses."""

    host: str = "127.0.0.1"
    port: int = 8888
    connections: int = 1000
    procs: int = 1
    source_base: str = "127.0.0.1"
    sources: int = 1
    in_progress: int = 256
    rounds: int = 3
    round_seconds: float = 5.0
    ping_timeout: float = 5.0
    churn: float = 0.0
    server_pid: int = 0
    connect_timeout: float = 10.0
    prefix: str = "已收到: "

    def share(self, index: int) -> tuple[int, int]:
        """(first global connection index, count) of client process ``index``."""
        base, extra = divmod(self.connections, self.procs)
        return index * base + min(index, extra), base + (1 if index < extra else 0)

    def source(self, n: int) -> str:
        """The source address of global connection ``n`` (round-robin over the addresses)."""
        return str(ipaddress.IPv4Address(self.source_base) + n % self.sources)


class Held(asyncio.Protocol):
    """One held connection: at most one ping outstanding."""

    __slots__ = ("buf", "expect", "lost", "outcome", "sent_at", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.expect = b""
        self.sent_at = 0.0
        self.lost = False
        self.outcome: asyncio.Future[float | str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def ping(self, line: bytes, reply: bytes, fut: asyncio.Future[float | str]) -> None:
        """Send ``line``; ``fut`` gets the seconds until ``reply`` came, or why it failed."""
        self.expect, self.outcome = reply, fut
        if self.lost or self.transport is None:
            self._settle("closed")
            return
        self.sent_at = time.perf_counter()
        self.transport.write(line)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" not in self.buf:
            return
        line, _, self.buf = self.buf.partition(b"\n")
        if self.outcome is None:
            return
        if line + b"\n" == self.expect:
            self._settle(time.perf_counter() - self.sent_at)
        else:
            self._settle("wrong reply: " + line[:60].decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._settle("closed")

    def _settle(self, value: float | str) -> None:
        fut, self.outcome = self.outcome, None
        if fut is not None and not fut.done():
            fut.set_result(value)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _errname(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class Holder:
    """The connections of one client process (see the module docstring)."""

    def __init__(self, cfg: HoldConfig, index: int) -> None:
        self.cfg = cfg
        self.first, self.count = cfg.share(index)
        self.conns: dict[int, Held] = {}  # global index -> connection
        self.gate = asyncio.Semaphore(cfg.in_progress)

    async def _open(self, n: int, errors: dict[str, int], samples: list[str]) -> None:
        loop = asyncio.get_running_loop()
        async with self.gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.cfg.source(n), 0))
                async with asyncio.timeout(self.cfg.connect_timeout):
                    await loop.sock_connect(sock, (self.cfg.host, self.cfg.port))
                _, proto = await loop.create_connection(Held, sock=sock)
            except (OSError, TimeoutError) as exc:
                sock.close()
                source = self.cfg.source(n)
                add_error(errors, samples, "connect " + _errname(exc), f"{source}: {exc!r}")
                return
        self.conns[n] = proto

    async def open(self, indexes: list[int]) -> dict[str, Any]:
        """Open a connection for each global index; what it took and what failed."""
        errors: dict[str, int] = {}
        samples: list[str] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(self._open(n, errors, samples) for n in indexes))
        return {"seconds": time.perf_counter() - t0, "errors": errors, "samples": samples}

    async def connect(self) -> dict[str, Any]:
        out = await self.open(list(range(self.first, self.first + self.count)))
        out["held"] = len(self.conns)
        return out

    async def round(self, number: int) -> dict[str, Any]:
        """One round: churn, then one paced ping over every held connection."""
        cfg = self.cfg
        churned: dict[str, Any] = {"closed": 0, "errors": {}, "samples": []}
        if cfg.churn > 0 and self.conns:
            k = max(1, round(len(self.conns) * cfg.churn))
            start = (number * k) % len(self.conns)
            order = sorted(self.conns)
            victims = (order[start:] + order[:start])[:k]
            for n in victims:
                self.conns.pop(n).close()
            await asyncio.sleep(0)  # let the aborts go out before the reconnects
            churned = await self.open(victims)
            churned["closed"] = len(victims)
        errors: dict[str, int] = {}
        samples: list[str] = []
        hist = new_histogram()
        loop = asyncio.get_running_loop()
        items = sorted(self.conns.items())
        # Lost connections (churn failures) are failures of the round too.
        missing = self.count - len(items)
        if missing:
            errors["not held"] = missing
        futs: list[asyncio.Future[float | str]] = []
        t0 = loop.time()
        pace = PACE_TICK / cfg.round_seconds if cfg.round_seconds > 0 else 1.0
        per_tick = max(1, round(len(items) * pace))
        for i in range(0, len(items), per_tick):
            for n, conn in items[i : i + per_tick]:
                fut: asyncio.Future[float | str] = loop.create_future()
                line = f"r{number}c{n}".encode()
                conn.ping(line + b"\n", cfg.prefix.encode() + line + b"\n", fut)
                futs.append(fut)
            due = t0 + (i + per_tick) / max(1, len(items)) * cfg.round_seconds
            await asyncio.sleep(max(0.0, due - loop.time()))
        if futs:
            await asyncio.wait(futs, timeout=cfg.ping_timeout)
        answered = 0
        for fut, (n, conn) in zip(futs, items):
            value = fut.result() if fut.done() else "timeout"
            if isinstance(value, float) and value > cfg.ping_timeout:
                value = "timeout"
            if isinstance(value, str):
                kind = value.split(":")[0]
                add_error(errors, samples, kind, f"connection {n} from {cfg.source(n)}: {value}")
                conn.outcome = None  # a reply still to come is not this round's
                continue
            answered += 1
            hist.record_value(min(max(1, round(value * 1e6)), MAX_LATENCY_US))
        return {
            "pings": len(items), "answered": answered, "errors": errors, "samples": samples,
            "histogram": hist.encode().decode() if hist.get_total_count() else "",
            "churn": churned, "held": self.held(),
        }  # fmt: skip

    def held(self) -> int:
        """Connections open now (the server may have closed some after their connect)."""
        return sum(1 for c in self.conns.values() if not c.lost)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


def child_main(cfg_dict: dict[str, Any], index: int, pipe: Any) -> None:
    """Client process ``index``: obey ``connect``/``round N``/``close`` from ``pipe``."""
    cfg = HoldConfig(**cfg_dict)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        holder = Holder(cfg, index)
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "ready":
                pipe.send({})
            elif command == "connect":
                pipe.send(await holder.connect())
            elif command == "held":
                pipe.send({"held": holder.held()})
            elif isinstance(command, tuple) and command[0] == "round":
                pipe.send(await holder.round(command[1]))
            else:
                holder.close()
                await asyncio.sleep(0)
                pipe.send({"closed": True})
                return

    try:
        try:
            import uvloop

            uvloop.run(serve())
        except ImportError:
            asyncio.run(serve())
    except BaseException as exc:  # noqa: BLE001 - report, never hang the parent
        pipe.send({"failed": f"client process {index}: {exc!r}"})
