"""Handlers of each shape the CLI must load: ``--app cli_apps:NAME``.

``shout`` (a sync handler), ``handle_client`` (the article's streams coroutine, for
``--api streams``), ``not_callable`` (an attribute that is no handler: a clear error).
"""

import asyncio


def shout(message: str, conn: object) -> str:
    return message.upper()


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The article's coroutine, as written there (prints removed)."""
    while True:
        data = await reader.read(100)
        if not data:
            break
        message = data.decode()
        writer.write(f"已收到: {message}".encode())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


not_callable = 42
