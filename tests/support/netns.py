"""Test hosts in network namespaces the test makes itself, and faults made as Jepsen makes
them: a link gone silent (partition), a process frozen (SIGSTOP), a process killed.

A :class:`Host` is a namespace (``ip netns add``) joined to this machine's own namespace
by veth pairs, one per :meth:`Host.link`. Each link is a /30 of 198.51.100.0/24
(TEST-NET-2, RFC 5737: documentation only, routed nowhere), used only on the pair's two
ends: the host end gets the first address of the /30, the namespace end the second. The aiotcp
instances of a test run in this namespace, bind 127.0.0.1 as usual, and reach a service
in the Host over the link's namespace address.

A partition sets the namespace end of the link down. The host end then has no carrier:
its route stays (so nothing to the address follows the default route out of the
machine) and whatever is sent into it is dropped, in both directions, without a reset
or an ICMP error: TCP neither delivers nor fails, and a new connect hangs. (Setting the
host end down too would remove that route: connects would fail at once with "network
unreachable", which is not a silent partition.) :meth:`Link.heal` brings it back.

Names carry this process's PID and a random part (``at<pid><rand>``), so runs in
parallel never share a namespace, device or address (a /30 already on a device of this
machine is never taken). :func:`hosts` (and the ``netns`` fixture in ``conftest.py``)
deletes every namespace it made, with the processes inside, even when the test fails;
deleting a namespace deletes its veth pairs.

Without root or ``ip`` the test fails saying so (never skipped): the suite runs as root,
as CI does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
import redis

from support.waiting import wait_until

# TEST-NET-2 (RFC 5737): addresses for documentation, never routed.
TEST_NET = ipaddress.ip_network("198.51.100.0/24")
LINK_PREFIX = 30  # two usable addresses per link: host end .1, namespace end .2
# ``ip`` commands are local and quick; longer than this is a wedged kernel or tool.
IP_TIMEOUT = 10.0
# A service started in a namespace answers within this (a hang guard, not a wait).
START_TIMEOUT = 20.0
MISSING = (
    "network namespace tests need root and iproute2 (`ip netns`); {why}. Run the suite as "
    "root (as CI does) with iproute2 installed: apt-get install iproute2"
)


def require_netns() -> str:
    """The path of ``ip``; fails the test (saying why) without root or ``ip netns``."""
    ip = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)
    if ip is None:
        pytest.fail(MISSING.format(why="`ip` is not installed"), pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(MISSING.format(why=f"running as uid {os.geteuid()}, not root"),
                    pytrace=False)
    done = subprocess.run([ip, "netns", "list"], capture_output=True, text=True,
                          timeout=IP_TIMEOUT, check=False)
    if done.returncode != 0:
        pytest.fail(MISSING.format(why=f"`ip netns list` failed: {done.stderr.strip()}"),
                    pytrace=False)
    return ip


def ip(*args: str) -> str:
    """Run ``ip ARGS``; its stdout. Raises RuntimeError with stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True,
                          timeout=IP_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks on this namespace's devices now."""
    out = []
    for line in ip("-o", "-4", "addr", "show").splitlines():
        parts = line.split()
        if "inet" in parts:
            out.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return out


def _free_subnet(used: set[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    taken = set(_taken_networks()) | used
    candidates = list(TEST_NET.subnets(new_prefix=LINK_PREFIX))
    random.shuffle(candidates)  # runs in parallel rarely race for the same one
    for net in candidates:
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError(f"no free /{LINK_PREFIX} left in {TEST_NET}")


@dataclass
class Link:
    """A veth pair between this namespace (``host_dev``, ``host_addr``) and a Host's
    (``ns_dev``, ``ns_addr``)."""

    netns: str
    host_dev: str
    ns_dev: str
    host_addr: str
    ns_addr: str
    partitioned: bool = False

    def partition(self) -> None:
        """Make the link silent: everything sent either way is dropped (see the module doc)."""
        ip("-n", self.netns, "link", "set", self.ns_dev, "down")
        self.partitioned = True

    def heal(self) -> None:
        """Carry traffic again; established connections go on where they were."""
        ip("-n", self.netns, "link", "set", self.ns_dev, "up")
        self.partitioned = False


@dataclass
class Host:
    """A network namespace standing for another machine. Made by :func:`hosts`."""

    name: str
    links: list[Link] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    _used: set[ipaddress.IPv4Network] = field(default_factory=set)

    def link(self) -> Link:
        """A new veth pair to this namespace, both ends up, with a /30 of its own."""
        net = _free_subnet(self._used)
        self._used.add(net)
        host_addr, ns_addr = (str(a) for a in list(net.hosts())[:2])
        tag = uuid.uuid4().hex[:6]
        host_dev, ns_dev = f"{self.name[:7]}{tag}h", f"{self.name[:7]}{tag}n"
        ip("link", "add", host_dev, "type", "veth", "peer", "name", ns_dev, "netns", self.name)
        link = Link(self.name, host_dev, ns_dev, host_addr, ns_addr)
        self.links.append(link)
        ip("addr", "add", f"{host_addr}/{LINK_PREFIX}", "dev", host_dev)
        ip("link", "set", host_dev, "up")
        ip("-n", self.name, "addr", "add", f"{ns_addr}/{LINK_PREFIX}", "dev", ns_dev)
        ip("-n", self.name, "link", "set", ns_dev, "up")
        wait_until(lambda: self._carrier(host_dev), START_TIMEOUT, f"carrier on {host_dev}")
        return link

    @staticmethod
    def _carrier(dev: str) -> bool:
        return "LOWER_UP" in ip("link", "show", dev)

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``args`` inside this namespace (``ip netns exec``); killed at cleanup."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.name, *args], **kwargs)
        self.procs.append(proc)
        return proc

    def redis_server(self, *links: Link) -> NsRedis:
        """A private ``redis-server`` in this namespace, bound to the links' namespace
        addresses (every link when none is named), answering PING."""
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not on PATH; install it: apt-get install redis-server",
                        pytrace=False)
        chosen = links or tuple(self.links)
        assert chosen, "make a link first: host.link()"
        port = random.randint(20000, 30000)  # a namespace of our own: no one else binds
        workdir = tempfile.mkdtemp(prefix="aiotcp-nsredis-")
        self.dirs.append(workdir)
        proc = self.popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
             "--protected-mode", "no", "--dir", workdir,
             "--bind", *(link.ns_addr for link in chosen)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        r = NsRedis(proc, port, [link.ns_addr for link in chosen])
        wait_until(r.answers, START_TIMEOUT, f"redis-server in {self.name} on port {port}")
        return r

    def postgres(self, link: Link) -> NsPostgres:
        """A private PostgreSQL cluster in this namespace (``initdb``, then ``postgres``
        as the postgres user, as asyncpg's test cluster starts one), listening on the
        link's namespace address, trusting the test network; answering once returned."""
        initdb, server = (shutil.which(b) for b in ("initdb", "postgres"))
        if initdb is None or server is None or shutil.which("pg_isready") is None:
            pytest.fail("PostgreSQL's initdb/postgres/pg_isready are not on PATH; install "
                        "it: apt-get install postgresql", pytrace=False)
        data = tempfile.mkdtemp(prefix="aiotcp-nspg-")
        self.dirs.append(data)
        shutil.chown(data, "postgres", "postgres")
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", initdb, "-D", data, "-A", "trust", "-U",
             "postgres", "--no-sync"],
            capture_output=True, text=True, timeout=START_TIMEOUT * 3, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        with open(os.path.join(data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {TEST_NET} trust\n")
        port = random.randint(20000, 30000)
        self.popen(
            ["runuser", "-u", "postgres", "--", server, "-D", data, "-p", str(port),
             "-c", f"listen_addresses={link.ns_addr}", "-c", f"unix_socket_directories={data}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        pg = NsPostgres(link.ns_addr, port, data)
        wait_until(pg.answers, START_TIMEOUT, f"postgres in {self.name} on port {port}")
        return pg

    def close(self) -> None:
        """Kill what runs inside, delete the namespace (and so its veth pairs). Idempotent."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a frozen process cannot die
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(IP_TIMEOUT)
        self.procs.clear()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            for pid in ip("netns", "pids", self.name).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            ip("netns", "del", self.name)
        for link in self.links:  # normally gone with the namespace
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                if link.host_dev in ip("-o", "link", "show"):
                    ip("link", "del", link.host_dev)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class NsRedis:
    """A redis-server in a Host: its process, port and the addresses it is bound to."""

    proc: subprocess.Popen[bytes]
    port: int
    addrs: list[str]

    def url(self, addr: str | None = None) -> str:
        return f"redis://{addr or self.addrs[0]}:{self.port}/0"

    def client(self, addr: str | None = None) -> redis.Redis:
        return redis.Redis(host=addr or self.addrs[0], port=self.port,
                           socket_connect_timeout=1, socket_timeout=5)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return self.proc.poll() is not None  # exited: stop waiting, fail below

    def freeze(self) -> None:
        """SIGSTOP: the peer is there (the kernel still ACKs) but answers nothing."""
        freeze(self.proc.pid)

    def thaw(self) -> None:
        thaw(self.proc.pid)


@dataclass
class NsPostgres:
    """A PostgreSQL in a Host: where it listens and its data directory."""

    addr: str
    port: int
    data: str

    def url(self, table: str) -> str:
        return f"postgresql://postgres@{self.addr}:{self.port}/postgres?table={table}"

    def answers(self) -> bool:
        done = subprocess.run(["pg_isready", "-q", "-h", self.addr, "-p", str(self.port)],
                              timeout=IP_TIMEOUT, check=False)
        return done.returncode == 0


def freeze(pid: int) -> None:
    """SIGSTOP ``pid``: a frozen peer (its sockets stay open, nothing is answered)."""
    os.kill(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    """SIGCONT ``pid``."""
    os.kill(pid, signal.SIGCONT)


class Hosts:
    """Makes Hosts for one test and deletes them all at :meth:`close`."""

    def __init__(self) -> None:
        require_netns()
        self._made: list[Host] = []
        self._run = f"at{os.getpid() % 100000:05d}{uuid.uuid4().hex[:3]}"

    def host(self) -> Host:
        name = f"{self._run}{len(self._made)}"
        h = Host(name)
        self._made.append(h)  # before it exists: a failure half-way is still cleaned up
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        return h

    def close(self) -> None:
        for h in reversed(self._made):
            h.close()
        self._made.clear()


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    """A :class:`Hosts` whose namespaces are all deleted on the way out, failure or not."""
    made = Hosts()
    try:
        yield made
    finally:
        made.close()
