"""The gateway's upstreams as a child process to start, kill and restart (see
``upstream_server.py`` for what they serve), and the URLs a gateway calls them by.

``Upstream.url(kind, method)`` is the ``--upstream`` of one method: kind ``grpc``,
``grpcs``, ``http`` or ``https``. ``stats(key)`` is what the process saw of the calls
under ``key``; ``kill()`` is SIGKILL, ``start()`` again serves on the same ports.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .process import child_env
from .waiting import HANG_GUARD

SERVER = Path(__file__).resolve().parent / "upstream_server.py"
KINDS = ("grpc", "grpcs", "http", "https")
SERVICE = "aiotcp.test.Upstream"


def new_key() -> str:
    """A key of the test's own: what the upstream saw under it is the test's alone."""
    return "k" + uuid.uuid4().hex[:12]


class Upstream:
    """The upstream process; ``ports`` are fixed once it first listened."""

    def __init__(self, cert: Path, health: bool = True) -> None:
        self.cert = cert
        self.health = health
        self.ports = dict.fromkeys(KINDS, 0)
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        """Start the process (on the ports it had before) and wait until it listens."""
        args = [sys.executable, str(SERVER), "--cert", str(self.cert)]
        for kind in KINDS:
            args += [f"--{kind}-port", str(self.ports[kind])]
        if not self.health:
            args.append("--no-health")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env()
        )
        line = self._first_line()
        assert line.startswith("upstream "), f"the upstream did not start: {line!r}"
        for part in line.split()[1:]:
            kind, _, port = part.partition("=")
            self.ports[kind] = int(port)

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(HANG_GUARD)
        if not got:
            self.kill()
            raise AssertionError(f"the upstream printed nothing within {HANG_GUARD:g}s")
        return got[0]

    def kill(self) -> None:
        """SIGKILL: its connections die with it, as a crashed upstream's do."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(HANG_GUARD)
            if proc.stdout is not None:
                proc.stdout.close()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as a hung upstream's."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def url(self, kind: str, method: str) -> str:
        """The ``--upstream`` of ``method`` (``Echo``, ``Slow``, ...) over ``kind``."""
        port = self.ports[kind]
        if kind in ("grpc", "grpcs"):
            return f"{kind}://127.0.0.1:{port}/{SERVICE}/{method}"
        return f"{kind}://127.0.0.1:{port}/{method.lower()}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}/health"

    def _control(self, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['http']}{path}", data=body)
        with urllib.request.urlopen(req, timeout=HANG_GUARD) as r:
            return json.loads(r.read()) if body is None else r.read().decode()

    def stats(self, key: str) -> dict[str, int]:
        """What the upstream saw under ``key``: calls, in_flight, max_in_flight, cancelled."""
        stats: dict[str, int] = self._control(f"/stats/{key}")
        return stats

    def set_health(self, status: str) -> None:
        """``SERVING`` or ``NOT_SERVING``: the gRPC health service and ``GET /health``."""
        self._control("/control/health", status.encode())


@contextmanager
def upstream_process(cert: Path, health: bool = True) -> Iterator[Upstream]:
    up = Upstream(cert, health)
    try:
        yield up
    finally:
        up.kill()


def run_gateway(run_server: Any, url: str, check: Any, **settings: Any) -> Any:
    """Serve the gateway app calling ``url`` in this process, on the test's loop (the
    ``run_server`` fixture), with ``settings`` as Config fields; return what
    ``await check(server, port)`` returns."""
    from aiotcp.apps import load_app
    from aiotcp.config import Config

    settings = {"app": "gateway", "upstream": url, **settings}
    return run_server(load_app(Config(**settings)), check, **settings)
