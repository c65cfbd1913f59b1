"""One worker process: how the supervisor starts it, how it gets its Config, and the
supervisor's record of it (its generation, its restart backoff, its stop signals).

A worker is ``python -c BOOT`` with no arguments: its Config arrives as JSON on a pipe
(its stdin), never in argv, so no setting (a store or Redis password, say) can be read
in ``/proc/PID/cmdline``, which every local user may read. The environment it gets is
the supervisor's less every ``AIOTCP_*`` setting (the whole Config came through the
pipe), plus the few variables of the worker contract (stats directory, serial, index).

Its listeners are the supervisor's, inherited by number (``fd`` in its Config), so every
worker of every generation accepts from the same kernel queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys

from aiotcp.config import ENV_PREFIX, Config, ConfigError, field_types
from aiotcp.listeners import SYSTEMD_VARIABLES
from aiotcp.observe.logs import ENV_WORKER_INDEX
from aiotcp.observe.snapshots import ENV_DIR, ENV_SERIAL, ENV_TIMED, write_failure

BOOT = "from aiotcp.workerprocess import worker_main; raise SystemExit(worker_main())"

# First restart after 0.1 s (systemd's default RestartSec), doubling per quick failure up
# to 10 s, so a crash loop neither spins the CPU nor leaves a slot dead for long.
RESTART_BACKOFF_INITIAL = 0.1
RESTART_BACKOFF_MAX = 10.0
# A worker that ran this long before dying was healthy: its next restart is immediate-ish.
STABLE_AFTER = 10.0
# A generation's life: booting -> serving -> retiring, or booting -> failed.
BOOTING, SERVING, RETIRING, FAILED = "booting", "serving", "retiring", "failed"

# The supervisor's pid, so that a worker can tell it has already lost its parent.
ENV_SUPERVISOR = "AIOTCP_WORKER_SUPERVISOR"

# Settings a worker must not take from the supervisor's Config: it serves the inherited
# listeners, runs alone, and leaves metrics, reloading and rolling to the supervisor.
WORKER_ONLY = {"workers": "0", "reuse_port": False, "metrics_port": 0, "reload": False,
               "bind": "", "uds": ""}  # fmt: skip


def restart_backoff(failures: int, uptime: float) -> tuple[int, float]:
    """(quick failures so far, seconds to wait) after a worker died after ``uptime`` s.

    A worker that stayed up ``STABLE_AFTER`` seconds resets the count, so one crash of a
    healthy worker restarts it after ``RESTART_BACKOFF_INITIAL``.
    """
    failures = 1 if uptime >= STABLE_AFTER else failures + 1
    return failures, min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_INITIAL * 2 ** (failures - 1))


def other_stop_signal(sig: int) -> int:
    """The stop signal that forces a worker that got ``sig``: two signals of one kind can
    merge into one while the worker has not handled the first (POSIX does not queue them)."""
    return signal.SIGINT if sig == signal.SIGTERM else signal.SIGTERM


@dataclasses.dataclass(eq=False)
class Worker:
    """One worker process of one generation."""

    slot: int
    generation: Generation
    serial: int
    proc: asyncio.subprocess.Process
    started_at: float
    ready: bool = False
    stop_sig: int = 0  # the first stop signal it was sent (0: none yet)
    forced: bool = False

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


@dataclasses.dataclass(eq=False)
class Generation:
    """The workers started together from one Config; a slot's dead worker is replaced."""

    number: int
    config: Config
    state: str = BOOTING
    workers: list[Worker | None] = dataclasses.field(default_factory=list)
    failures: list[int] = dataclasses.field(default_factory=list)

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.alive]

    def pids(self) -> str:
        return " ".join(str(w.proc.pid) for w in self.live())


def worker_config(config: Config, fds: list[int]) -> Config:
    """The Config a worker runs: ``config`` serving the inherited listening ``fds``."""
    return config.replace(**WORKER_ONLY, fd=",".join(str(fd) for fd in fds))


def worker_environment(
    config: Config, env: dict[str, str], stats_dir: str, serial: int, index: int
) -> dict[str, str]:
    """``env`` less every ``AIOTCP_*`` setting and systemd's variables, plus where to write
    stats, the worker's serial and index, and whether to time ack latency (only when the
    supervisor exports it)."""
    settings = {ENV_PREFIX + name.upper() for name in field_types()} | {ENV_PREFIX + "CONFIG"}
    for name in (*settings, *SYSTEMD_VARIABLES):
        env.pop(name, None)
    env[ENV_DIR] = stats_dir
    env[ENV_SERIAL] = str(serial)
    env[ENV_WORKER_INDEX] = str(index)
    env[ENV_SUPERVISOR] = str(os.getpid())
    if config.metrics_port:
        env[ENV_TIMED] = "1"
    else:
        env.pop(ENV_TIMED, None)
    # Make the child import this very aiotcp, installed or not (src/ layout, tests).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


async def start_process(env: dict[str, str], fds: list[int]) -> asyncio.subprocess.Process:
    """Start a worker process that waits for its Config on stdin (see :func:`send_config`).

    It runs in its own process group, so a terminal's Ctrl-C reaches only the supervisor.
    """
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", BOOT, stdin=asyncio.subprocess.PIPE, env=env, pass_fds=fds,
        process_group=0,
    )  # fmt: skip


async def send_config(proc: asyncio.subprocess.Process, config: Config) -> None:
    """Write ``config`` to the worker's stdin and close it. A worker already gone is not
    an error here: whoever waits for its exit sees it."""
    assert proc.stdin is not None
    payload = json.dumps(dataclasses.asdict(config)).encode()
    with contextlib.suppress(ConnectionError):
        proc.stdin.write(payload)
        await proc.stdin.drain()
    proc.stdin.close()
    with contextlib.suppress(ConnectionError):
        await proc.stdin.wait_closed()


class _LastError(logging.Handler):
    """Keeps the last ERROR line aiotcp logged: the reason a worker failed to start."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage().splitlines()[0] if record.getMessage() else ""


def worker_main() -> int:
    """Entry point of a worker process: the Config is JSON on stdin."""
    _die_with_parent()
    try:
        config = Config(**json.loads(sys.stdin.buffer.read())).validate()
    except (ValueError, TypeError, ConfigError) as e:
        write_failure(f"bad worker config: {e}")
        print(f"aiotcp worker: bad config from the supervisor: {e}", file=sys.stderr)
        return 2
    _stdin_from_devnull()
    last = _LastError()
    logging.getLogger("aiotcp").addHandler(last)
    from aiotcp.runner import run

    code = run(config, shared=True)  # every worker accepts from the supervisor's sockets
    if code != 0 and last.message:
        write_failure(last.message)
    return code


def _stdin_from_devnull() -> None:
    """The config pipe is read: an app reading stdin gets EOF, not the supervisor's pipe."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    supervisor = os.environ.get(ENV_SUPERVISOR, "")
    if supervisor.isdigit() and os.getppid() != int(supervisor):
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor died before prctl took effect
