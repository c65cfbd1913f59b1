"""Every kind of listener with real sockets: ``--uds``, ``--fd``, systemd socket
activation (the real ``systemd-socket-activate``), repeated ``--bind`` (IPv4 and IPv6),
each served alike, one process or workers; and the settings that describe them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
from pathlib import Path

import pytest

from aiotcp.config import Config, ConfigError, join_repeated
from support.clients import ACK, LineClient
from support.process import SRC, SpawnServer, child_env, run_aiotcp
from support.waiting import wait_until

UNIX = re.compile(r"aiotcp listening on unix:(\S+)")
TCP = re.compile(r"aiotcp listening on (\S+):(\d+)$")


def sock_path(tmp_path: Path, name: str = "s") -> str:
    """A socket path short enough for sun_path (108 bytes), whatever pytest's tmp dir."""
    path = tmp_path / f"{name}.sock"
    return str(path) if len(str(path)) < 100 else f"/tmp/aiotcp-{os.getpid()}-{name}.sock"


def asks_on_unix(path: str, text: str = "你好") -> str | None:
    with LineClient(unix=path) as client:
        return client.ask(text)


def listening_unix(server: object, path: str) -> None:
    server.wait_for_log(re.escape(f"aiotcp listening on unix:{path}"))  # type: ignore[attr-defined]


# ---- --uds ---------------------------------------------------------------------------


def test_uds_serves_with_its_mode_caps_unix_clients_and_removes_its_file(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    path = sock_path(tmp_path)
    server = spawn_server(
        ["--uds", path, "--max-connections-per-ip", "1"], listening=False
    )
    listening_unix(server, path)
    assert "aiotcp listening on 127.0.0.1" not in server.log  # --uds replaces --host/--port
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with LineClient(unix=path) as first:
        assert first.ask("你好") == ACK + "你好"
        # The per-IP cap counts Unix clients as one client "unix", and does not crash.
        with LineClient(unix=path) as second:
            # Refused on accept, before it sends anything: its send could meet a closed
            # Unix socket (EPIPE), so it only reads.
            assert second.line() == "ERR busy too many connections from unix (limit 1)"
        assert first.ask("still") == ACK + "still"
    wait_until(lambda: "aiotcp.access: unix " in server.log, what="the access line of a unix peer")
    assert server.stop() == 0
    assert not os.path.exists(path)
    assert "Traceback" not in server.log


def test_uds_mode_is_set_before_anyone_can_connect(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    path = sock_path(tmp_path)
    server = spawn_server(["--uds", path, "--uds-mode", "0o600"], listening=False)
    listening_unix(server, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert asks_on_unix(path) == ACK + "你好"


def test_a_stale_socket_file_is_replaced(tmp_path: Path, spawn_server: SpawnServer) -> None:
    path = sock_path(tmp_path)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)  # the file of a server that was killed: nobody listens
    dead.close()
    server = spawn_server(["--uds", path], listening=False)
    listening_unix(server, path)
    assert asks_on_unix(path) == ACK + "你好"


@pytest.mark.parametrize("occupant, message", [
    ("listener", "another server is listening there"),
    ("file", "the path exists and is not a socket"),
])  # fmt: skip
def test_a_live_socket_or_another_file_is_an_error(
    tmp_path: Path, occupant: str, message: str
) -> None:
    """Before any loop runs: once is enough."""
    path = sock_path(tmp_path)
    live = socket.socket(socket.AF_UNIX)
    if occupant == "listener":
        live.bind(path)
        live.listen()
    else:
        Path(path).write_text("not a socket")
    try:
        r = run_aiotcp("serve", "--uds", path)
    finally:
        live.close()
    assert r.returncode == 1
    assert f"cannot listen on unix:{path}: {message}" in r.stderr
    assert "Traceback" not in r.stderr
    assert os.path.exists(path)  # someone else's: left alone


# ---- --bind ----------------------------------------------------------------------------


def test_repeated_bind_serves_ipv4_and_ipv6(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--bind", "127.0.0.1:0", "--bind", "[::1]:0"], listening=False)
    server.wait_for_log(r"aiotcp listening on \[::1\]:\d+")
    server.wait_for_log(r"aiotcp listening on 127\.0\.0\.1:\d+")
    found = dict(TCP.search(line).groups() for line in server.lines if TCP.search(line))  # type: ignore[union-attr]
    assert set(found) == {"127.0.0.1", "[::1]"}  # --bind replaces --host/--port's address
    with LineClient(int(found["127.0.0.1"])) as v4, LineClient(int(found["[::1]"]), host="::1") as v6:
        assert v4.ask("four") == ACK + "four"
        assert v6.ask("six") == ACK + "six"


# ---- --fd and systemd socket activation ------------------------------------------------


def test_an_inherited_fd_is_served_and_left_listening(spawn_server: SpawnServer) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = spawn_server(["--fd", str(fd)], pass_fds=[fd], listening=False)
    server.wait_for_log(rf"aiotcp listening on 127\.0\.0\.1:{port}")
    with LineClient(port) as client:
        assert client.ask("inherited") == ACK + "inherited"
    assert server.stop() == 0
    # The parent's copy still listens: the kernel queues for whoever serves it next.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    listener.close()


def test_an_fd_that_is_not_a_listening_socket_is_one_line() -> None:
    r = run_aiotcp("serve", "--fd", "0")  # stdin: not a socket
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith("cannot listen on --fd 0: Socket operation on non-socket")
    assert "Traceback" not in r.stderr


def test_systemd_socket_activation(tmp_path: Path, spawn_server: SpawnServer) -> None:
    """systemd-socket-activate listens, starts the server on the first connection and
    passes the socket as fd 3 with LISTEN_FDS/LISTEN_PID: that connection is served."""
    assert shutil.which("systemd-socket-activate"), "missing: `make test-programs` installs it"
    path = sock_path(tmp_path)
    env = child_env()
    activate = ["systemd-socket-activate", "-l", path]
    for name in ("PYTHONPATH", "PYTHONUNBUFFERED", "PATH"):
        activate += ["-E", f"{name}={env[name]}"]
    server = spawn_server([], prefix=activate, listening=False)
    server.wait_for_log(re.escape(f"Listening on {path} as 3."))
    with LineClient(unix=path) as client:  # queued in the backlog until the server starts
        client.send("activated\n")
        assert client.line() == ACK + "activated"
    server.wait_for_log(re.escape(f"aiotcp listening on unix:{path}"))
    assert "aiotcp listening on 127.0.0.1" not in server.log
    assert SRC.exists()  # the child imported this very aiotcp through PYTHONPATH
    assert server.stop() == 0


# ---- workers share every listener --------------------------------------------------------


def test_workers_share_unix_and_tcp_listeners(tmp_path: Path, spawn_server: SpawnServer) -> None:
    path = sock_path(tmp_path)
    server = spawn_server(
        ["--workers", "2", "--app", "probe_apps:probe", "--uds", path, "--bind", "127.0.0.1:0"],
        listening=False,
    )
    server.wait_for_log(r"\d+ workers serving: pids")
    pids = {int(p) for p in re.search(r"pids ([\d ]+)", server.log).group(1).split()}  # type: ignore[union-attr]
    port = int(TCP.search(server.wait_for_log(r"INFO aiotcp.workers: aiotcp listening on 127")).group(2))  # type: ignore[union-attr]

    def pids_on(ask: object) -> bool:
        seen: set[int] = set()
        for _ in range(300):
            seen.add(int(ask() or 0))  # type: ignore[operator]
            if seen == pids:
                return True
        return False

    assert pids_on(lambda: asks_on_unix(path, "pid"))
    assert pids_on(lambda: LineClient(port).ask("pid"))
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not os.path.exists(path)


# ---- the settings ----------------------------------------------------------------------


@pytest.mark.parametrize("bind, want", [
    ("127.0.0.1:8888", [("127.0.0.1", 8888)]),
    ("[::1]:0", [("::1", 0)]),
    ("[::]:8888,0.0.0.0:8888", [("::", 8888), ("0.0.0.0", 8888)]),
    ("localhost:1", [("localhost", 1)]),
    ("", []),
])  # fmt: skip
def test_bind_addresses(bind: str, want: list[tuple[str, int]]) -> None:
    assert Config(bind=bind).bind_addresses() == want


@pytest.mark.parametrize("field, value", [
    ("bind", "::1:8888"),  # IPv6 unbracketed
    ("bind", "127.0.0.1"),
    ("bind", ":8888"),
    ("bind", "h:99999"),
    ("fd", "three"),
    ("uds_mode", "999"),
    ("uds_mode", "rw-rw----"),
])  # fmt: skip
def test_bad_listener_settings_name_the_setting(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        Config(**{field: value}).validate()


def test_a_bad_bind_is_one_line_and_exit_2() -> None:
    r = run_aiotcp("serve", "--bind", "::1:8888")
    assert r.returncode == 2
    assert r.stderr.strip() == "aiotcp serve: error: bind: '::1:8888' is not HOST:PORT or [IPV6]:PORT"


def test_repeated_flags_fold_into_one_value() -> None:
    argv = ["--bind", "a:1", "--port", "0", "--bind=[::1]:2", "--fd", "3", "--fd", "4"]
    assert join_repeated(argv) == ["--bind", "a:1,[::1]:2", "--port", "0", "--fd", "3,4"]
