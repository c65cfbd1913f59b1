"""The pubsub app's command parser (``aiotcp.apps.pubsub.parse``).

The input is what line framing hands the app: the bytes split at ``\\n`` (a trailing
``\\r`` stripped), each line decoded as UTF-8 (a line that is not is answered by the
codec and never parsed). Asserts, for every line: ``parse`` never raises and returns a
Command or a BadCommand with a one-line reason; a Command's verb is the line's first
word in any ASCII case (the protocol's words are ASCII, as Redis's), its topic passes
``topic_error``, a ``FROM`` entry ID is two 64-bit numbers at most, a PUB's text is the
rest of the line; and the Command written back as a line parses as the same Command.
"""

from __future__ import annotations

from aiotcp.apps.pubsub import MAX_ID_PART, BadCommand, Command, parse, topic_error


def lines(data: bytes) -> list[str]:
    """The messages line framing makes of ``data`` (valid UTF-8 lines only)."""
    out = []
    for raw in data.split(b"\n"):
        try:
            out.append(raw.removesuffix(b"\r").decode())
        except UnicodeDecodeError:
            continue
    return out


def written(cmd: Command) -> str:
    if cmd.verb == "PUB":
        return f"PUB {cmd.topic} {cmd.text}"
    if cmd.after:
        return f"SUB {cmd.topic} FROM {cmd.after}"
    return f"{cmd.verb} {cmd.topic}"


def check(data: bytes) -> None:
    for line in lines(data):
        cmd = parse(line)
        if isinstance(cmd, BadCommand):
            assert cmd.why and "\n" not in cmd.why and "\r" not in cmd.why, cmd
            continue
        assert isinstance(cmd, Command), cmd
        word = line.split(" ", 1)[0]
        assert word.isascii() and word.upper() == cmd.verb, (line, cmd)
        assert cmd.verb in ("SUB", "UNSUB", "PUB") and topic_error(cmd.topic) is None, cmd
        if cmd.after:
            assert cmd.verb == "SUB"
            assert all(int(part) <= MAX_ID_PART for part in cmd.after.split("-")), cmd
        if cmd.verb == "PUB":
            assert line == f"{word} {cmd.topic} {cmd.text}", (line, cmd)
        assert parse(written(cmd)) == cmd, (written(cmd), cmd)
