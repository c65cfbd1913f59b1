"""The built-in apps that need nothing but the server: ``ack`` (the article's) and ``echo``."""

from __future__ import annotations


class Ack:
    """The article's server: reply ``<prefix><message>`` (default ``已收到: ``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "已收到: ") -> None:
        self.prefix = prefix

    @property
    def reply_prefix(self) -> str:
        """Every reply is this prefix + the message: the server may answer on bytes."""
        return self.prefix

    def __call__(self, message: str, conn: object) -> str:
        return self.prefix + message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        prefix = self.prefix
        return [prefix + m for m in messages]


class Echo:
    """Reply with the message itself."""

    __slots__ = ()
    reply_prefix = ""

    def __call__(self, message: str, conn: object) -> str:
        return message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        return messages
