"""What a RESP command handler returns besides plain Python values (see ``aiotcp.resp.codec``)."""

from __future__ import annotations

__all__ = ["NO_REPLY", "NULL", "NULL_ARRAY", "OK", "PONG", "Encoded", "RespError", "Simple"]


class Simple(str):
    """A simple string reply (``+OK``): a str without line breaks."""

    __slots__ = ()


class Encoded(bytes):
    """Bytes already in RESP, written as they are (a cached reply, a proxied one)."""

    __slots__ = ()


class _Null:
    """The type of :data:`NULL` and :data:`NULL_ARRAY`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# The null reply: what a handler's None becomes (``$-1`` in RESP2, ``_`` in RESP3). The
# server reads a None among replies as "no reply", so handlers' Nones are made this.
NULL = _Null("NULL")
# The null array (``*-1`` in RESP2, ``_`` in RESP3).
NULL_ARRAY = _Null("NULL_ARRAY")
OK = Simple("OK")
PONG = Simple("PONG")


class RespError(Exception):
    """An error reply: ``RespError("ERR syntax error")`` is ``-ERR syntax error``.

    ``message`` starts with the error's code word, as Redis's do (``ERR``,
    ``WRONGTYPE``, ``NOSCRIPT``...). Return it as a reply, or raise it from a command
    handler: the client gets that reply and the connection goes on. A line break in the
    message is written as a space (Redis does the same), so it stays one reply.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"

# Nothing at all: the place of a command that gets no reply (after QUIT in one read).
NO_REPLY = Encoded(b"")
