"""``aiotcp check``: a real process with serve's flags prints what would be served and
exits 0, or one line and a non-zero exit; it binds and connects to nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.certs import Certs
from support.ports import taken_port
from support.process import child_env, run_aiotcp


def test_check_prints_what_would_be_served(certs: Certs, tmp_path: Path) -> None:
    with taken_port() as port:  # a running server's port: check must not bind it
        r = run_aiotcp(
            "check", "--port", str(port), "--workers", "2", "--uds", str(tmp_path / "s.sock"),
            "--bind", "[::1]:0", "--tls-cert", str(certs.server), "--tls-key", str(certs.server),
            "--tls-profile", "modern", "--redis", "redis://:hunter2@127.0.0.1:6379/0",
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("aiotcp check: ok\n")
    assert "'ack' (handler api, codec line, frames up to 65536 bytes)" in out
    assert f"unix:{tmp_path / 's.sock'}, [::1]:0" in out  # --uds and --bind replace --port
    assert "a supervisor and 2 worker(s); SIGHUP rolls them" in out
    assert f"modern profile, certificate {certs.server}" in out
    assert "redis://:***@127.0.0.1:6379/0" in out and "hunter2" not in out
    assert not (tmp_path / "s.sock").exists()
    assert r.stderr == ""


BROKEN_APP = "raise RuntimeError('not deployable')\n"


@pytest.mark.parametrize("args, code, line", [
    (["--idle-timeout", "-1"], 2, "--idle-timeout must be a finite number >= 0, not -1.0"),
    (["--bind", "nowhere"], 2, "bind: 'nowhere' is not HOST:PORT or [IPV6]:PORT"),
    (["--app", "no_such_module_here:app"], 1, "cannot import app module 'no_such_module_here'"),
    (["--app", "check_broken:app"], 1,
     "cannot import app module 'check_broken': RuntimeError: not deployable"),
    (["--tls-cert", "/no/cert.pem", "--tls-key", "/no/cert.pem"], 1,
     "cannot read TLS certificate /no/cert.pem: No such file or directory"),
    (["--store", "oracle://db/x"], 1, "store oracle://db/x: unknown scheme 'oracle'"),
    (["--codec", "check_broken:Codec"], 1,
     "cannot import codec module 'check_broken': RuntimeError: not deployable"),
    (["--broker", "http://u:secret@h/"], 1, "broker http://u:***@h/: Redis URL must specify"),
])  # fmt: skip
def test_check_fails_with_one_line(
    tmp_path: Path, args: list[str], code: int, line: str
) -> None:
    (tmp_path / "check_broken.py").write_text(BROKEN_APP)
    paths = f"{tmp_path}:{child_env()['PYTHONPATH']}"
    r = run_aiotcp("check", *args, env={"PYTHONPATH": paths})
    assert r.returncode == code, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"aiotcp check: error: {line}"), r.stderr
    assert r.stdout == ""
