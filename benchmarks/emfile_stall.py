"""Round trips of an open client while the server is out of fds and connects keep coming.

The server runs on asyncio's loop with RLIMIT_NOFILE 64; 200 connects exhaust its fds
and wait in the backlog. asyncio's accept loop retries up to ``backlog`` accepts per
turn on EMFILE, so the accepts per turn (not the kernel backlog) decide how long every
open connection stalls.

    .venv/bin/python benchmarks/emfile_stall.py [SRC_DIR]   # SRC_DIR: an aiotcp src/ to test
"""
import os, re, resource, socket, subprocess, sys, time, statistics
PY = sys.executable
src = sys.argv[1] if len(sys.argv) > 1 else ""
def limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
p = subprocess.Popen([PY, "-m", "aiotcp", "serve", "--port", "0", "--loop", "asyncio", "--no-access-log", "--block-threshold", "0", "--max-connections", "1000"], stderr=subprocess.PIPE, text=True, env=env, preexec_fn=limit)
for line in p.stderr:
    m = re.search(r"listening on \S+:(\d+)", line)
    if m: port = int(m.group(1)); break
probe = socket.create_connection(("127.0.0.1", port)); f = probe.makefile("rb")
held = []
for _ in range(200):  # exhaust the server's fds; the rest wait in the backlog
    try: held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError: break
time.sleep(1.5)
rtts = []
end = time.monotonic() + 6
i = 0
while time.monotonic() < end:
    t0 = time.perf_counter(); probe.sendall(b"p%d\n" % i); f.readline(); rtts.append(time.perf_counter() - t0); i += 1
    time.sleep(0.01)
rtts.sort()
print(src or "aiotcp", "round trips:", len(rtts), "p50 %.2f ms p99 %.2f ms max %.2f ms" % (rtts[len(rtts)//2]*1e3, rtts[int(len(rtts)*.99)]*1e3, rtts[-1]*1e3))
p.kill()
