"""Logging: JSON and text records, the access log, worker tags, rate-limited tracebacks,
and nothing logged per message (in-process units, then a served process on both loops)."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from aiotcp.observe import logs
from support.clients import ACK, LineClient
from support.process import SpawnServer
from support.waiting import wait_until

# ---- records, in-process -----------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield stream
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_json_log_is_one_object_per_line_with_extras(captured: io.StringIO) -> None:
    logs.configure_logging("info", "json", stream=captured)
    logs.configure_logging("info", "json", stream=captured)  # replaces, does not duplicate
    logging.getLogger("aiotcp.x").info("hello %s", "世界", extra={"n": 3, "obj": object()})
    logging.getLogger("aiotcp.x").debug("not at info")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "hello 世界"
    assert record["level"] == "info" and record["logger"] == "aiotcp.x"
    assert record["n"] == 3 and record["obj"].startswith("<object")
    assert record["time"].endswith("Z")


def test_access_log_fields_and_off_switch(captured: io.StringIO) -> None:
    logs.configure_logging("info", "json", stream=captured)
    logs.log_access(("::1", 5000, 0, 0), 0.25, 2, 10, 30, "eof")
    record = json.loads(captured.getvalue())
    assert record["logger"] == "aiotcp.access"
    assert record["peer"] == "[::1]:5000"
    assert (record["messages"], record["bytes_in"], record["bytes_out"]) == (2, 10, 30)
    assert record["reason"] == "eof" and record["duration_s"] == 0.25
    logs.configure_logging("info", "text", access_log=False, stream=captured)
    before = captured.getvalue()
    logs.log_access(("127.0.0.1", 1), 0.1, 1, 1, 1, "eof")
    assert captured.getvalue() == before


def test_worker_records_carry_worker_index_and_pid(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(logs.ENV_WORKER_INDEX, "1")
    logs.configure_logging("info", "json", stream=captured)
    logging.getLogger("aiotcp").info("up")
    record = json.loads(captured.getvalue())
    assert (record["worker"], record["pid"]) == (1, os.getpid())
    logs.configure_logging("info", "text", stream=captured)
    logging.getLogger("aiotcp").info("up")
    assert f"aiotcp [worker 1 pid {os.getpid()}]: up" in captured.getvalue()


def test_text_format_and_bad_settings(captured: io.StringIO) -> None:
    logs.configure_logging("warning", "text", stream=captured)
    logging.getLogger("aiotcp").warning("careful")
    assert " WARNING aiotcp: careful" in captured.getvalue()
    with pytest.raises(ValueError, match="level"):
        logs.configure_logging("loud", "text")
    with pytest.raises(ValueError, match="format"):
        logs.configure_logging("info", "xml")


# ---- a served process ----------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_access_fields(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--log-format", "json"])
    client = LineClient(server.port)
    assert client.ask("hi") == ACK + "hi"
    client.close()
    wait_until(lambda: "aiotcp.access" in server.log, what="the access log entry")
    assert server.stop() == 0
    records = [json.loads(line) for line in server.log.splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    access = [r for r in records if r["logger"] == "aiotcp.access"]
    assert len(access) == 1
    assert access[0]["messages"] == 1
    assert access[0]["bytes_in"] == 3
    assert "127.0.0.1" in access[0]["peer"]


def test_nothing_is_logged_per_message(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--log-level", "info"])
    before = len(server.lines)
    with LineClient(server.port) as client:
        client.send(b"m\n" * 200)
        assert client.lines(200)[-1] == ACK + "m"
    assert server.stop() == 0
    # One access-log line for the connection, the shutdown lines; never one per message.
    assert len(server.lines) - before < 10, server.log


@pytest.mark.parametrize("app", ["fault_apps:slow", "fault_apps:sync_boom"])
def test_raising_handler_gets_err_internal_and_one_traceback(
    app: str, spawn_server: SpawnServer
) -> None:
    server = spawn_server(["--app", app])
    c = LineClient(server.port)
    assert c.ask("boom") == "ERR internal handler failed"
    assert c.ask("next") == ACK + "next"
    c.send("boom\nafter\n")
    assert c.lines(2) == ["ERR internal handler failed", ACK + "after"]
    c.close()
    assert server.stop() == 0
    log = server.log
    # Two failures, two tracebacks: exactly one per failure, none doubled.
    assert log.count("Traceback (most recent call last)") == 2, log
    assert log.count("FaultAppError: boom on purpose") == 2, log
