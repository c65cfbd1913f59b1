"""The core that runs is the one asked for, and a compiled core is built from today's
sources. ``make test`` runs the suite once per core and says which it expects in
``AIOTCP_EXPECT_CORE``."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import aiotcp.core as core

ROOT = Path(__file__).resolve().parent.parent


def test_the_core_running_is_the_one_make_test_installed() -> None:
    expected = os.environ.get("AIOTCP_EXPECT_CORE")
    assert expected in ("compiled", "pure"), (
        "run the suite with `make test` (it sets AIOTCP_EXPECT_CORE), or set it yourself")
    assert core.CORE == expected, (
        f"the {core.CORE} core runs where {expected} was expected"
        + (": the compiled core was not built (is a C compiler there?)"
           if expected == "compiled" else ""))


def test_the_compiled_core_is_built_from_todays_sources() -> None:
    assert core.stale() == [], "the compiled core is stale: run `make dev` to rebuild it"


def test_setup_compiles_exactly_the_hot_modules() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    hot = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT"
    )
    assert tuple(ast.literal_eval(hot)) == core.HOT


def test_connections_and_codecs_come_from_the_same_core() -> None:
    from aiotcp.codecs import LineCodec, VarintCodec
    from aiotcp.resp import RespCodec
    from aiotcp.server import Server

    server = Server(lambda m, c: m, __import__("aiotcp").Config())
    compiled = core.CORE == "compiled"
    for obj in (server.connection_class.__mro__[1], LineCodec, VarintCodec, RespCodec,
                type(server.dispatch)):
        assert obj.__module__.startswith("aiotcp._speedups") == compiled, obj


def test_the_startup_log_line_names_the_core(spawn_server: Any) -> None:
    server = spawn_server(["--log-level", "info"])
    line = server.wait_for_log(r"serving app .*")
    assert line.endswith(f", {core.CORE} core"), line
