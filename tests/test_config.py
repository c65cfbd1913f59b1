"""One name per setting, and the precedence flag > env > file > default."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from aiotcp.cli import serve_parser
from aiotcp.config import Config, ConfigError, build
from support.process import run_aiotcp


def test_every_field_is_a_flag_of_the_same_name() -> None:
    parser = serve_parser()
    dests = {a.dest: a.option_strings for a in parser._actions}
    for f in fields(Config):
        assert dests[f.name][0] == "--" + f.name.replace("_", "-")


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    toml = tmp_path / "aiotcp.toml"
    toml.write_text('idle_timeout = 11\nport = 1111\nframing = "length"\n')
    env = {"AIOTCP_PORT": "2222", "AIOTCP_FRAMING": "raw"}
    c = build({"framing": "line"}, environ=env, config_file=str(toml))
    assert c.framing == "line"  # flag beats env and file
    assert c.port == 2222  # env beats file
    assert c.idle_timeout == 11.0  # file beats default
    assert c.write_timeout == Config().write_timeout  # default


def test_config_file_from_env_and_aiotcp_table(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[aiotcp]\naccess_log = false\nmax_connections = 7\n")
    c = build({}, environ={"AIOTCP_CONFIG": str(toml)})
    assert (c.access_log, c.max_connections) == (False, 7)


@pytest.mark.parametrize(
    "flags, env, message",
    [
        ({"framing": "morse"}, {}, "framing"),
        ({}, {"AIOTCP_PORT": "eighty"}, "port"),
        ({}, {"AIOTCP_ACCESS_LOG": "maybe"}, "access_log"),
        ({"idle_timeout": -1}, {}, "idle_timeout"),
        ({"workers": "many"}, {}, "workers"),
    ],
)
def test_bad_values_name_the_setting(flags: dict, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(flags, environ=env)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("idle_timout = 3\n")
    with pytest.raises(ConfigError, match="idle_timout"):
        build({}, environ={}, config_file=str(toml))


def test_print_config_shows_the_merged_result(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("write_timeout = 9\nhandler_timeout = 4\n")
    r = run_aiotcp(
        "serve",
        "--config",
        str(toml),
        "--handler-timeout",
        "2",
        "--print-config",
        env={"AIOTCP_IDLE_TIMEOUT": "5"},
    )
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert (shown["handler_timeout"], shown["idle_timeout"], shown["write_timeout"]) == (
        2.0,
        5.0,
        9.0,
    )
    assert set(shown) == {f.name for f in fields(Config)}


LIMIT_FLAGS = {
    "max_connections": ("--max-connections", "123", 123),
    "max_connections_per_ip": ("--max-connections-per-ip", "7", 7),
    "idle_timeout": ("--idle-timeout", "12.5", 12.5),
    "write_timeout": ("--write-timeout", "3.5", 3.5),
    "handler_timeout": ("--handler-timeout", "0.25", 0.25),
    "shutdown_timeout": ("--shutdown-timeout", "4", 4.0),
    "max_line": ("--max-line", "1024", 1024),
}


def _print_config(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    r = run_aiotcp("serve", *args, "--print-config", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_every_limit_flag_and_variable_reaches_the_config_field_of_its_name() -> None:
    args = [a for flag, value, _ in LIMIT_FLAGS.values() for a in (flag, value)]
    printed = _print_config(args)
    for name, (flag, _, expected) in LIMIT_FLAGS.items():
        assert flag == "--" + name.replace("_", "-")
        assert printed[name] == expected, name
    env = {"AIOTCP_" + name.upper(): value for name, (_, value, _) in LIMIT_FLAGS.items()}
    from_env = _print_config([], env)
    for name, (_, _, expected) in LIMIT_FLAGS.items():
        assert from_env[name] == expected, name
