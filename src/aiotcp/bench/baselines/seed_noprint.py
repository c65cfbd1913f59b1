"""The article's server with its ``print`` calls removed; otherwise exactly as written."""

# mypy: disable-error-code="no-untyped-def,no-untyped-call"
# fmt: off
import asyncio

from aiotcp.bench.baselines.entry import announce, parse_args, run_until_signalled

ARGS = parse_args("aiotcp.bench.baselines.seed_noprint")


async def handle_client(reader, writer):
    while True:
        data = await reader.read(100)
        if not data:
            break
        message = data.decode()
        response = f"已收到: {message}"
        writer.write(response.encode())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(handle_client, ARGS.host, ARGS.port)
    addr = server.sockets[0].getsockname()
    announce(addr)
    async with server:
        await server.serve_forever()


run_until_signalled(main)  # asyncio.run(main()), ended by SIGTERM/SIGINT
