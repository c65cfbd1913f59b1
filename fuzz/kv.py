"""The kv app's command parser (``aiotcp.apps.kv.parse``) and its ``bad-command`` reply.

The input is split into messages as line framing does (fuzz/pubsub.py's ``lines``).
Asserts, for every message: ``parse`` never raises; a command is GET, SET or DEL named
by the message's first word in any ASCII case, its key is non-empty without a space,
a SET's value is the rest of the message; the command written back parses as itself;
anything else gets one ``ERR bad-command`` line quoting at most ``BAD_COMMAND_QUOTE``
characters of it.
"""

from __future__ import annotations

from aiotcp.apps.kv import BAD_COMMAND_QUOTE, bad_command, parse
from fuzz.pubsub import lines


def check(data: bytes) -> None:
    for message in lines(data):
        cmd = parse(message)
        if cmd is None:
            reply = bad_command(message)
            assert reply.startswith("ERR bad-command ") and "\n" not in reply
            assert len(reply) <= len("ERR bad-command ") + BAD_COMMAND_QUOTE
            continue
        word = message.split(" ", 1)[0]
        assert word.isascii() and word.upper() == cmd[0], (message, cmd)
        key = cmd[1]
        assert key and " " not in key, cmd
        if cmd[0] == "SET":
            assert len(cmd) == 3 and message == f"{word} {key} {cmd[2]}", (message, cmd)
        else:
            assert cmd[0] in ("GET", "DEL") and len(cmd) == 2, cmd
        assert parse(" ".join(cmd)) == cmd, cmd
