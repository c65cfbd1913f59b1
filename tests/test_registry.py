"""The registry: admission, caps, and the deadline sweep as a pure function of ``now``."""

from __future__ import annotations

from typing import Any

from aiotcp.config import Config
from aiotcp.observe.stats import Stats
from aiotcp.registry import CLOSE_GRACE, WRITE_HIGH_WATER, Registry, sweep_interval
from aiotcp.server import Server
from support.fakes import FakeTransport


class Member:
    """Just the fields the registry reads."""

    def __init__(self, last_message: float = 0.0, pending: int = 0,
                 busy: bool = False) -> None:
        self.slot = -1
        self.opened = 0.0
        self.last_message = last_message
        self.pending = pending  # output not taken by the client
        self.closing = False
        self.messages = self.acked = self.bytes_in = self.bytes_out = 0
        self.close_reason = "closed"
        self.ip: str | None = None
        self.busy = busy
        self.listening = False
        self.peer = ("127.0.0.1", 1)
        self.expired: list[str] = []

    def expire(self, code: str, text: str) -> None:
        self.expired.append(code)

    def output_pending(self) -> int:
        return self.pending


def registry(**settings: Any) -> Registry:
    return Registry(Config(access_log=False, **settings), Stats(), max_connections=3)


def test_due_is_a_pure_function_of_now() -> None:
    reg = registry(idle_timeout=10, write_timeout=5)
    step = reg.interval
    idle, paused, busy = Member(0.0), Member(0.0, pending=10), Member(0.0, busy=True)
    for m in (idle, paused, busy):
        assert reg.admit(m, None) is None  # type: ignore[arg-type]
    reg.watch_output(2.0)  # the sweep at 2.0 sees paused's output unflushed
    assert reg.due(5.0) == []
    assert [(id(m), c) for m, c, _ in reg.due(2.0 + 5 + step)] == [(id(paused), "write-timeout")]
    due = {id(m): c for m, c, _ in reg.due(10 + step)}
    assert due == {id(idle): "idle-timeout", id(paused): "write-timeout"}  # busy is never idle
    assert idle.expired == []  # due() only reports


def test_sweep_advances_the_clock_and_expires() -> None:
    reg = registry(idle_timeout=1, write_timeout=0)
    m = Member(0.0)
    reg.admit(m, None)  # type: ignore[arg-type]
    reg.sweep(0.5)
    assert reg.clock == 0.5 and m.expired == []
    reg.sweep(1.0 + reg.interval)
    assert m.expired == ["idle-timeout"]


def test_timeouts_off_never_expire() -> None:
    reg = registry(idle_timeout=0, write_timeout=0)
    m = Member(0.0, pending=1)
    reg.admit(m, None)  # type: ignore[arg-type]
    reg.watch_output(0.0)
    assert reg.due(1e9) == []
    assert sweep_interval(Config(idle_timeout=0, write_timeout=0)) == 1.0


def test_caps_and_forget_keep_slots_dense() -> None:
    reg = registry(max_connections_per_ip=2)
    a, b, c, d = Member(), Member(), Member(), Member()
    assert reg.admit(a, "1.1.1.1") is None  # type: ignore[arg-type]
    assert reg.admit(b, "1.1.1.1") is None  # type: ignore[arg-type]
    a.ip = b.ip = "1.1.1.1"
    refusal = reg.admit(c, "1.1.1.1")  # type: ignore[arg-type]
    assert refusal is not None and refusal[0] == "busy" and "1.1.1.1" in refusal[1]
    assert reg.admit(d, "2.2.2.2") is None  # type: ignore[arg-type]
    assert reg.admit(Member(), "3.3.3.3") == ("busy", "too many connections (limit 3)")  # type: ignore[arg-type]
    reg.forget(a)  # type: ignore[arg-type]
    assert [m.slot for m in reg.members] == [0, 1] and a.slot == -1
    assert reg.admit(c, "1.1.1.1") is None  # type: ignore[arg-type]
    assert reg.stats.connections_refused == {"busy-ip": 1, "busy": 1}


def test_a_connection_refused_during_shutdown_gets_err_shutdown_counted_once() -> None:
    """After the linger: until then, what the listeners accepted is admitted and served."""
    server = Server(lambda m, c: m, Config(access_log=False))
    server.registry.shutting_down = True
    server.registry.linger_over = True
    conn = server.connection_class()
    t = FakeTransport()
    t.connect(conn)
    assert t.data.decode() == "ERR shutdown server is shutting down\n"
    assert t.closing
    assert server.stats.connections_refused == {"shutdown": 1}
    assert server.stats.errors == {"shutdown": 1}  # no "busy" besides
    assert len(server.registry) == 0


def test_the_write_clock_restarts_on_progress_and_runs_above_the_high_water_mark() -> None:
    """No byte taken for write_timeout: dropped. Bytes taken: the stall clock restarts,
    but output kept above the high-water mark for write_timeout is dropped anyway."""
    reg = registry(idle_timeout=0, write_timeout=5)
    step = reg.interval
    slow, stuck, over = Member(0.0, pending=10), Member(0.0, pending=10), Member(0.0)
    for m in (slow, stuck, over):
        m.bytes_out = 10
        reg.admit(m, None)  # type: ignore[arg-type]
    over.pending = over.bytes_out = WRITE_HIGH_WATER + 1
    now = 0.0
    for _ in range(10):  # slow takes one byte per second and writes one more
        reg.sweep(now)
        slow.bytes_out += 1
        now += 1.0
    assert slow.expired == []
    assert stuck.expired[:1] == ["write-timeout"]
    assert over.expired[:1] == ["write-timeout"]


def test_a_closing_member_with_output_is_aborted_even_with_the_write_timeout_off() -> None:
    reg = registry(idle_timeout=0, write_timeout=0)
    m = Member(0.0, pending=10)
    reg.admit(m, None)  # type: ignore[arg-type]
    reg.sweep(0.0)
    reg.sweep(CLOSE_GRACE + 2 * reg.interval)
    assert m.expired == []  # open: the write timeout is off
    m.closing = True
    reg.sweep(CLOSE_GRACE + 3 * reg.interval)
    assert m.expired[:1] == ["write-timeout"]


def test_handshakes_hold_places_under_both_caps() -> None:
    reg = registry(max_connections_per_ip=1)
    assert reg.hold("1.1.1.1") is None
    assert reg.hold("1.1.1.1") == ("busy", "too many connections from 1.1.1.1 (limit 1)")
    assert reg.hold(None) is None and reg.hold(None) is None  # 3 places held
    assert reg.admit(Member(), "2.2.2.2") == ("busy", "too many connections (limit 3)")  # type: ignore[arg-type]
    reg.release("1.1.1.1")
    assert reg.admit(Member(), "1.1.1.1") is None  # type: ignore[arg-type]
    assert reg.stats.connections_refused == {"busy-ip": 1, "busy": 1}
