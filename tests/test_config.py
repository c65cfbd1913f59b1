"""One name per setting, and the precedence flag > env > file > default."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest

from aiotcp.cli import serve_parser
from aiotcp.config import MAX_WORKERS_PER_CORE, Config, ConfigError, build, field_types
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


# A bad value of each kind, as a user types it: (setting, text, what the error says).
BAD_VALUES = [
    ("log_level", "loud", "must be one of debug, info, warning, error, critical, not 'loud'"),
    ("max_line", "0", "must be >= 1, not 0"),
    ("port", "70000", "must be 0..65535, not 70000"),
    ("metrics_port", "99999", "must be 0..65535, not 99999"),
    ("metrics_port", "-1", "must be 0..65535, not -1"),
    ("idle_timeout", "nan", "must be a finite number >= 0, not nan"),
    ("write_timeout", "inf", "must be a finite number >= 0, not inf"),
    ("handler_timeout", "-0.5", "must be a finite number >= 0, not -0.5"),
    ("block_threshold", "-inf", "must be a finite number >= 0, not -inf"),
    ("workers", "100000", f"must be at most {MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)} "),
    ("workers", "many", "must be a whole number or 'auto', not 'many'"),
    ("ack_prefix", "got\n", "must not contain a line break"),
    ("max_pipeline", "0", "must be >= 1, not 0"),
    ("broker_timeout", "0", "must be > 0, not 0.0"),
    ("store_timeout", "0", "must be > 0, not 0.0"),
]
# Every float setting must be finite and >= 0, whatever it is.
FLOAT_SETTINGS = [name for name, kind in field_types().items() if kind is float]


def given_as(source: str, setting: str, text: str, tmp_path: Path) -> tuple[str, Config]:
    """Build a Config with ``setting`` given as ``text`` by ``source``; return the name
    the error must use for it and the Config (if the value was accepted)."""
    if source == "flag":
        flag = "--" + setting.replace("_", "-")
        args = vars(serve_parser().parse_args([f"{flag}={text}"]))
        del args["config_file"], args["print_config"]
        return flag, build(args, environ={})
    if source == "env":
        key = "AIOTCP_" + setting.upper()
        return key, build({}, environ={key: text})
    toml = tmp_path / "aiotcp.toml"
    kind = field_types()[setting]
    literal = text if kind in (int, float) else json.dumps(text)
    toml.write_text(f"{setting} = {literal}\n")
    return f"{setting} in {toml}", build({}, environ={}, config_file=str(toml))


@pytest.mark.parametrize("source", ["flag", "env", "file"])
@pytest.mark.parametrize("setting, text, words", BAD_VALUES)
def test_a_bad_value_is_one_line_naming_its_source(
    source: str, setting: str, text: str, words: str, tmp_path: Path
) -> None:
    where = {"flag": "--" + setting.replace("_", "-"), "env": "AIOTCP_" + setting.upper(),
             "file": f"{setting} in {tmp_path / 'aiotcp.toml'}"}[source]  # fmt: skip
    with pytest.raises(ConfigError) as e:
        given_as(source, setting, text, tmp_path)
    assert str(e.value).startswith(f"{where} {words}"), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("setting", FLOAT_SETTINGS)
@pytest.mark.parametrize("text", ["nan", "inf", "-1"])
def test_every_float_setting_is_finite_and_not_negative(setting: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"^{setting} must be a finite number >= 0"):
        Config(**{setting: float(text)}).validate()


def test_the_worker_cap_allows_a_few_per_core_and_auto() -> None:
    cores = os.cpu_count() or 1
    assert Config(workers=str(MAX_WORKERS_PER_CORE * cores)).validate().worker_count() > 1
    assert Config(workers="auto").worker_count() == cores


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_broker_mode_streams_without_a_broker_is_refused(source: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        given_as(source, "broker_mode", "streams", tmp_path)
    where = given_as("flag" if source == "flag" else source, "broker_mode", "pubsub", tmp_path)[0]
    assert str(e.value) == f"{where} streams needs --broker (the Redis that holds the streams)"
    env = {"AIOTCP_BROKER_MODE": "streams", "AIOTCP_BROKER": "redis://127.0.0.1:6379/0"}
    assert build({}, environ=env).broker_mode == "streams"


@pytest.mark.parametrize("source, setting, value, words", [
    ("env", "port", "eighty", "AIOTCP_PORT must be a whole number, not 'eighty'"),
    ("env", "access_log", "maybe", "AIOTCP_ACCESS_LOG must be true or false, not 'maybe'"),
    ("env", "idle_timeout", "soon", "AIOTCP_IDLE_TIMEOUT must be a number, not 'soon'"),
    ("file", "port", '"eighty"', "port in {path} must be a whole number, not 'eighty'"),
    ("file", "port", "8.5", "port in {path} must be a whole number, not 8.5"),
    ("file", "access_log", "1", "access_log in {path} must be true or false, not 1"),
    ("file", "idle_timeout", "true", "idle_timeout in {path} must be a number, not True"),
    ("file", "ack_prefix", "3.5", "ack_prefix in {path} must be text, not 3.5"),
])  # fmt: skip
def test_a_value_of_the_wrong_type_names_where_it_came_from(
    source: str, setting: str, value: str, words: str, tmp_path: Path
) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f"{setting} = {value}\n")
    with pytest.raises(ConfigError) as e:
        if source == "env":
            build({}, environ={"AIOTCP_" + setting.upper(): value})
        else:
            build({}, environ={}, config_file=str(toml))
    assert str(e.value) == words.format(path=toml)


def test_whole_numbers_in_the_file_are_taken_for_number_and_text_settings(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("idle_timeout = 7\nworkers = 2\n")
    c = build({}, environ={}, config_file=str(toml))
    assert (c.idle_timeout, c.workers) == (7.0, "2")


@pytest.mark.parametrize("keys, words", [
    (["idle_timout"], "unknown setting in {path}: idle_timout (did you mean idle_timeout?)"),
    (["ack-prefix"], "unknown setting in {path}: ack-prefix (did you mean ack_prefix?)"),
    (["max-connections-per-ip", "colour"],
     ("unknown settings in {path}: colour, max-connections-per-ip "
      "(did you mean max_connections_per_ip?)")),
])  # fmt: skip
def test_unknown_key_in_file_is_an_error_with_a_hint(
    keys: list[str], words: str, tmp_path: Path
) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("".join(f"{k} = 3\n" for k in keys))
    with pytest.raises(ConfigError) as e:
        build({}, environ={}, config_file=str(toml))
    assert str(e.value) == words.format(path=toml)


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
