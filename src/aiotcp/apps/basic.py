"""The built-in apps that need nothing but the server: ``ack`` (the article's) and ``echo``."""

from __future__ import annotations

from typing import Any


class Ack:
    """The article's server: reply ``<prefix><message>`` (default ``已收到: ``); with
    ``binary``, messages and replies are bytes."""

    __slots__ = ("prefix", "_prefix")

    def __init__(self, prefix: str = "已收到: ", binary: bool = False) -> None:
        self.prefix = prefix
        self._prefix: str | bytes = prefix.encode() if binary else prefix

    @property
    def reply_prefix(self) -> str:
        """Every reply is this prefix + the message: the server may answer on bytes."""
        return self.prefix

    def __call__(self, message: Any, conn: object) -> Any:
        return self._prefix + message

    def batch(self, messages: list[Any], conn: object) -> list[Any]:
        prefix = self._prefix
        return [prefix + m for m in messages]


class Echo:
    """Reply with the message itself."""

    __slots__ = ()
    reply_prefix = ""

    def __call__(self, message: str, conn: object) -> str:
        return message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        return messages
