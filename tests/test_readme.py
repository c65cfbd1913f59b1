"""The README's examples, run as written: a reader who copies them gets what it says."""

from __future__ import annotations

import re
from pathlib import Path

from support.clients import LineClient
from support.process import SRC, SpawnServer
from support.waiting import wait_until

README = Path(__file__).resolve().parent.parent / "README.md"


def code_block(first_line: str) -> str:
    """The fenced Python block of the README that starts with ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"no README code block starts with {first_line!r}")


def test_the_netstring_codec_example_serves_as_the_readme_says(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    (tmp_path / "netstring.py").write_text(code_block("# netstring.py"))
    server = spawn_server(["--app", "netstring:app"],
                          env={"PYTHONPATH": f"{tmp_path}:{SRC}"})
    with LineClient(server.port) as c:
        c.send(b"5:hello,2:ok,")
        got = b""

        def replies() -> bytes:
            nonlocal got
            got += c.sock.recv(4096)
            return got if got.count(b",") >= 2 else b""

        assert wait_until(replies, what="two replies") == b"9:ack:hello,6:ack:ok,"
        c.send(b"x:")  # the error reply is written in the protocol too, then EOF
        assert c.line() == "37:ERR bad-length not a netstring length,"
    assert server.stop() == 0


def test_the_resp_commands_example_serves_redis_clients_as_the_readme_says(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    import subprocess

    import redis

    (tmp_path / "counters.py").write_text(code_block("# counters.py"))
    server = spawn_server(["--app", "counters:app"], env={"PYTHONPATH": f"{tmp_path}:{SRC}"})

    def cli(*args: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(server.port), *args],
                              capture_output=True, text=True, timeout=30, check=False)
        return done.stdout.strip()  # redis-cli ends an error with an empty line

    assert cli("hit", "/home") == "1"
    assert cli("top") == "/home"
    assert cli("top", "x") == "ERR value is not an integer or out of range"
    with redis.Redis(port=server.port, protocol=3) as r:
        assert r.execute_command("HIT", "/about") == 1
        assert r.execute_command("HIT", "/about") == 2
        assert r.execute_command("TOP", "1") == [b"/about"]
        try:
            r.execute_command("HIT")
        except redis.ResponseError as e:
            assert str(e) == "wrong number of arguments for 'hit' command"
        else:
            raise AssertionError("HIT without its argument was answered")
    assert server.stop() == 0
