"""Handlers written the way the README teaches a user to write them; compare serves them.

``aiotcp serve --app aiotcp.bench.userapp:handle`` is a user's sync handler (no
``reply_prefix``, no ``batch``: the server decodes every message and calls it), and
``--app aiotcp.bench.userapp:handle_async`` the same reply from an ``async def`` that
returns at once, and ``--binary --app aiotcp.bench.userapp:handle_binary`` the same on
bytes (no decoding, no encoding). Against the built-in ``ack`` app they show what the handler path costs.
"""

from __future__ import annotations


def handle(message: str, conn: object) -> str:
    """Reply to every message, as in the README's Handler API section."""
    return "已收到: " + message


async def handle_async(message: str, conn: object) -> str:
    """The same reply from a coroutine that never awaits."""
    return "已收到: " + message


PREFIX = "已收到: ".encode()


def handle_binary(message: bytes, conn: object) -> bytes:
    """The same reply on bytes, as a ``--binary`` handler writes it."""
    return PREFIX + message
