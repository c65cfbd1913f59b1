"""Listening sockets, made by aiotcp rather than by the loop, so both loops get the same.

:func:`open_listeners` turns a Config into every socket the server listens on, each
with the name it is announced by (``aiotcp listening on 127.0.0.1:8888``, ``[::1]:8888``
or ``unix:/run/aiotcp.sock``):

- ``--bind HOST:PORT`` (repeatable; ``[::1]:8888`` for IPv6), each address a host
  resolves to;
- ``--uds PATH``: a Unix socket, its file given ``--uds-mode`` before it listens. A socket
  file nobody listens on (a server that was killed) is removed; one a server answers on
  is an error, as is a path that is not a socket;
- ``--fd N`` (repeatable): a listening socket inherited from the parent process;
- systemd socket activation: ``LISTEN_FDS`` sockets from fd 3 when ``LISTEN_PID`` is
  this process (the variables are then removed, as ``sd_listen_fds(1)`` does, so that a
  child does not take them too);
- ``--host``/``--port`` when none of the above is given (uvicorn's ``--uds``/``--fd`` and
  gunicorn's ``--bind`` replace the default address the same way).

Every listener is served alike: the same limits, front door (TLS, PROXY) and drain. A
worker supervisor opens them once and its workers inherit them (``--fd``), so every
worker of every generation shares each listener's one accept queue.

Binding here (not in ``loop.create_server(host, port)``) also lets the server choose the
kernel's accept queue and the loop's accepts per turn separately: asyncio's selector
loop calls ``accept()`` up to ``backlog`` times per turn and, on EMFILE, keeps trying
for the rest of that count (logging and re-arming a retry timer each time), so a deep
backlog there turns fd exhaustion into tens of milliseconds of stall per turn for every
open connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from aiotcp.config import Config

# The kernel's accept queue: a storm of a thousand connects must not overflow it (the
# kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096

# accept() calls per loop turn on asyncio's selector loop (its own default is 100).
ASYNCIO_ACCEPTS_PER_TURN = 100

# With port 0 on several addresses, each later address must get the port the first one
# picked; another process may hold it on that family, so try a few times.
PORT_ATTEMPTS = 10

# systemd's socket-activation protocol (sd_listen_fds(3)): passed sockets start at fd 3.
SD_LISTEN_FDS_START = 3
SYSTEMD_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")

# How long to wait for a server on an existing socket file to answer: one that does not
# answer within this time is busy, not gone (a gone one refuses at once).
STALE_PROBE_TIMEOUT = 1.0

# Socket files this process created: path -> inode, so that only our own file is removed
# at exit, never one another server has put at the same path since.
_created: dict[str, int] = {}


class ListenerError(OSError):
    """A listener cannot be opened; the message is one line naming it and why."""


@dataclass(frozen=True)
class Listener:
    """One listening socket and the name it is announced by."""

    sock: socket.socket
    name: str

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of a TCP listener; None for a Unix socket."""
        if self.sock.family == socket.AF_UNIX:
            return None
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)


@dataclass(frozen=True)
class Planned:
    """A listener ``config`` asks for, before it is opened: ``kind`` is ``systemd`` or
    ``fd`` (``fd``), ``unix`` (``path``) or ``tcp`` (``host``, ``port``)."""

    kind: str
    name: str
    fd: int = -1
    path: str = ""
    host: str = ""
    port: int = 0


def plan(config: Config, environ: Mapping[str, str] | None = None) -> list[Planned]:
    """The listeners ``config`` (and systemd, through ``environ``) asks for, in order;
    opens nothing. Raises ConfigError for a malformed setting."""
    env = os.environ if environ is None else environ
    out = [Planned("systemd", f"systemd socket {fd}", fd=fd) for fd in systemd_fds(env)]
    out += [Planned("fd", f"--fd {fd}", fd=fd) for fd in config.inherited_fds()]
    if config.uds:
        out.append(Planned("unix", f"unix:{config.uds}", path=config.uds))
    addresses = config.bind_addresses()
    if not out and not addresses:
        addresses = [(config.host, config.port)]
    out += [Planned("tcp", tcp_name(h, p), host=h, port=p) for h, p in addresses]
    return out


def open_listeners(
    config: Config, environ: MutableMapping[str, str] | None = None
) -> list[Listener]:
    """Every listening socket :func:`plan` names, open and listening.

    Takes systemd's sockets (removing its variables from ``environ``). Raises
    ListenerError naming the first listener that cannot be opened, after closing those
    already opened.
    """
    env = os.environ if environ is None else environ
    planned = plan(config, env)
    if any(p.kind == "systemd" for p in planned):
        for name in SYSTEMD_VARIABLES:
            env.pop(name, None)  # as sd_listen_fds(1): no child takes them as well
    opened: list[Listener] = []
    try:
        for p in planned:
            if p.kind in ("systemd", "fd"):
                opened.append(inherited(p.fd, p.name))
            elif p.kind == "unix":
                opened.append(unix_listener(p.path, config.uds_permissions()))
            else:
                opened += tcp_listeners(p.host, p.port, config.reuse_port)
    except BaseException:
        close_listeners(opened)
        raise
    return opened


def close_listeners(listeners: list[Listener]) -> None:
    """Close the sockets and remove the socket files this process created for them."""
    for listener in listeners:
        listener.sock.close()
    remove_socket_files()


def tcp_listeners(host: str, port: int, reuse_port: bool) -> list[Listener]:
    """Listening sockets on every address of ``host``. Raises ListenerError."""
    try:
        socks = bind_sockets(host, port, reuse_port)
    except OSError as e:
        raise ListenerError(f"cannot listen on {tcp_name(host, port)}: {_why(e)}") from None
    return [Listener(sock, describe(sock)) for sock in socks]


def bind_sockets(host: str, port: int, reuse_port: bool, listen: bool = True) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` at one ``port`` (0 picks one for all).

    ``listen=False`` binds without listening (connects are refused until something
    listens). Raises OSError if an address cannot be bound.
    """
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    addrs = list(dict.fromkeys((info[0], info[4]) for info in infos))
    for _attempt in range(PORT_ATTEMPTS):
        socks: list[socket.socket] = []
        chosen = port
        try:
            for family, sockaddr in addrs:
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((sockaddr[0], chosen, *sockaddr[2:]))
                chosen = sock.getsockname()[1]
                if listen:
                    sock.listen(LISTEN_BACKLOG)
            return socks
        except OSError:
            for sock in socks:
                sock.close()
            if port != 0 or len(addrs) <= 1:
                raise
    raise OSError(f"could not find one free port on every address of {host!r}")


def unix_listener(path: str, mode: int) -> Listener:
    """A Unix socket listening at ``path`` with permissions ``mode``. Raises ListenerError.

    The mode is set before ``listen()``, so no one connects through looser permissions.
    """
    name = f"unix:{path}"
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        inode = os.stat(path).st_ino
        _created[path] = inode
        os.chmod(path, mode)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        _remove_own(path)
        raise ListenerError(f"cannot listen on {name}: {_why(e)}") from None
    return Listener(sock, name)


def remove_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket file no server answers on.

    Raises ListenerError if a server answers there, or the path is something else.
    """
    name = f"unix:{path}"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ListenerError(f"cannot listen on {name}: {_why(e)}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenerError(f"cannot listen on {name}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: its server is gone
        return
    except OSError as e:  # a full backlog or a slow server: someone is there
        raise ListenerError(f"cannot listen on {name}: a server is there ({_why(e)})") from None
    finally:
        probe.close()
    raise ListenerError(f"cannot listen on {name}: another server is listening there")


def remove_socket_files() -> None:
    """Remove the socket files this process created that are still its own."""
    for path in list(_created):
        _remove_own(path)


def _remove_own(path: str) -> None:
    inode = _created.pop(path, None)
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if st.st_ino == inode and stat.S_ISSOCK(st.st_mode):
            os.unlink(path)


def inherited(fd: int, where: str) -> Listener:
    """The listening stream socket open at ``fd`` (``where`` names it in errors). Raises
    ListenerError if it is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise ListenerError(f"cannot listen on {where}: {_why(e)}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or not listening:
            raise ListenerError(f"cannot listen on {where}: not a listening stream socket")
        sock.set_inheritable(False)  # children get it only when passed on purpose
    except OSError as e:
        sock.detach()  # not ours to close: leave the descriptor as it was
        if isinstance(e, ListenerError):
            raise
        raise ListenerError(f"cannot listen on {where}: {_why(e)}") from None
    return Listener(sock, describe(sock))


def systemd_fds(environ: Mapping[str, str]) -> list[int]:
    """The sockets systemd passed to this process (none if it passed none, or passed
    them to another process: ``LISTEN_PID`` is the pid they are for)."""
    count, pid = environ.get("LISTEN_FDS", ""), environ.get("LISTEN_PID", "")
    if not count.isdigit() or not pid.isdigit() or int(pid) != os.getpid():
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def describe(sock: socket.socket) -> str:
    """How a listening socket is announced: ``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``."""
    if sock.family == socket.AF_UNIX:
        path = sock.getsockname()
        if isinstance(path, bytes):  # the abstract namespace
            path = "@" + path[1:].decode(errors="replace")
        return f"unix:{path}"
    host, port = sock.getsockname()[:2]
    return tcp_name(host, port)


def tcp_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(e: OSError) -> str:
    return str(e.strerror or e)
