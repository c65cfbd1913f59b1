"""``aiotcp.resp``: serve your own commands over the Redis protocol (RESP2 and RESP3).

Every Redis client and tool (redis-cli, redis-py, redis-benchmark, any language's
client) then talks to your service. The pieces:

- :class:`RespCodec`: the protocol as an aiotcp codec (commands in, replies out, Redis's
  limits and error words), usable alone with any handler;
- :class:`Commands`: a registry of commands (name, arity, sync or async handler) that
  serves them with pipelining, per-connection :class:`Client` state and the connection
  commands clients expect (PING, HELLO, CLIENT, COMMAND...);
- reply types: :class:`Simple` (``+OK``), :class:`RespError` (``-ERR ...``),
  :class:`Encoded`, :data:`NULL`, :data:`NULL_ARRAY`, :data:`OK`, :data:`PONG`.

The ``redis`` app (``aiotcp serve --app redis``) is built on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aiotcp._speedups import twin
from aiotcp.resp.commands import Client, Command, Commands
from aiotcp.resp.inline import split_args
from aiotcp.resp.values import NO_REPLY, NULL, NULL_ARRAY, OK, PONG, Encoded, RespError, Simple

if TYPE_CHECKING:
    from aiotcp.resp import codec as _codec
else:  # the compiled twin, unless the pure core runs (aiotcp.core)
    _codec = importlib.import_module(twin("aiotcp.resp.codec"))

MAX_BULK_LEN = _codec.MAX_BULK_LEN
MAX_COMMAND_BYTES = _codec.MAX_COMMAND_BYTES
MAX_INLINE = _codec.MAX_INLINE
MAX_MULTIBULK_LEN = _codec.MAX_MULTIBULK_LEN
PROTOCOL_ERROR = _codec.PROTOCOL_ERROR
RespCodec = _codec.RespCodec
encode_reply = _codec.encode_reply
string2ll = _codec.string2ll

__all__ = [
    "MAX_BULK_LEN", "MAX_COMMAND_BYTES", "MAX_INLINE", "MAX_MULTIBULK_LEN", "NO_REPLY",
    "NULL", "NULL_ARRAY", "OK", "PONG", "PROTOCOL_ERROR", "Client", "Command", "Commands",
    "Encoded", "RespCodec", "RespError", "Simple", "encode_reply", "split_args", "string2ll",
]
