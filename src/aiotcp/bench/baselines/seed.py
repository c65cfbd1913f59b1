"""The article's server, as written; only host/port come from argv and it announces readiness.

The body of ``handle_client`` and ``main`` is the article's code unchanged: it reads up to 100
bytes, prints every message to stdout, and replies ``已收到: <what was read>`` without splitting
lines. compare sends its stdout to /dev/null (the prints still cost CPU, which is the point).
"""

# mypy: disable-error-code="no-untyped-def,no-untyped-call"
# fmt: off
import asyncio

from aiotcp.bench.baselines.entry import announce, parse_args, run_until_signalled

ARGS = parse_args("aiotcp.bench.baselines.seed")


async def handle_client(reader, writer):
    addr = writer.get_extra_info('peername')
    print(f"连接来自 {addr}")
    while True:
        data = await reader.read(100)
        if not data:
            break
        message = data.decode()
        print(f"收到消息: {message}")
        response = f"已收到: {message}"
        writer.write(response.encode())
        await writer.drain()
    print(f"连接关闭 {addr}")
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(handle_client, ARGS.host, ARGS.port)
    addr = server.sockets[0].getsockname()
    print(f'服务器运行在 {addr}')
    announce(addr)
    async with server:
        await server.serve_forever()


run_until_signalled(main)  # asyncio.run(main()), ended by SIGTERM/SIGINT
