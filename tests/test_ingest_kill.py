"""kill -9 under load: every message that got an ack is in the store.

A real ``aiotcp serve --app ingest`` process is loaded from several pipelining client
connections and SIGKILLed once enough acks have come back, with more in flight. Then
the table must hold every acked message: an ack leaves only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib

from support.process import ServerProcess

from support.services import rows

ACK = "已收到: "
CLIENTS = 8
IN_FLIGHT = 16  # per client
KILL_AFTER_ACKS = 2000
# A hang guard: the load reaches KILL_AFTER_ACKS in well under a second when healthy.
LOAD_TIMEOUT = 60.0


async def load_until_killed(port: int, server: ServerProcess) -> tuple[set[str], int]:
    """Pipeline messages from CLIENTS connections; SIGKILL the server after
    KILL_AFTER_ACKS acks. Returns the acked bodies and the count sent."""
    acked: set[str] = set()
    sent = 0
    killed = asyncio.Event()

    async def client(i: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        window = asyncio.Semaphore(IN_FLIGHT)
        outstanding: list[str] = []

        async def send() -> None:
            nonlocal sent
            j = 0
            while not killed.is_set():
                await window.acquire()
                body = f"c{i}-{j}"
                j += 1
                outstanding.append(body)
                writer.write(body.encode() + b"\n")
                sent += 1
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break  # the server died
                reply = line[:-1].decode()
                body = outstanding.pop(0)
                assert reply == ACK + body, (reply, body)  # in order, never an error
                acked.add(body)
                window.release()
                if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
                    killed.set()
                    server.proc.kill()  # SIGKILL, with messages in flight
        except ConnectionError:
            pass
        finally:
            killed.set()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            writer.close()

    async with asyncio.timeout(LOAD_TIMEOUT):
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return acked, sent


def test_every_acked_message_survives_kill_9(store_url: str) -> None:
    server = ServerProcess(
        ["--app", "ingest", "--store", store_url, "--handler-concurrency", "4",
         "--no-access-log"]
    )
    try:
        acked, sent = asyncio.run(load_until_killed(server.port, server))
        assert server.wait() == -9, server.log()
    finally:
        server.kill()
    assert len(acked) >= KILL_AFTER_ACKS
    assert sent > len(acked)  # it died with messages unanswered
    stored = {body for _, body in rows(store_url)}
    missing = acked - stored
    assert not missing, f"{len(missing)} acked messages lost, e.g. {sorted(missing)[:5]}"
