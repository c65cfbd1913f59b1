"""Upstreams for the gateway tests: a grpc.aio server and an aiohttp server in one process.

Run as a script (``python upstream_server.py --grpc-port 0 ...``); once every server
listens it prints one line ``upstream grpc=P grpcs=P http=P https=P`` (0 for one not
asked for) and serves until killed. :mod:`support.upstreams` starts, kills and restarts it.

The same methods on both (gRPC ``/aiotcp.test.Upstream/<Method>`` with StringValue both
ways; HTTP ``POST /<method>`` with a text body). The first word of every message is a
key the test chose, under which the process counts what it saw (``GET /stats/KEY``):

``Echo``   ``KEY ...``          -> ``echo KEY ...``
``Slow``   ``KEY SECONDS ...``  -> ``slow KEY SECONDS ...`` after SECONDS; a call cancelled
                                meanwhile (the client's deadline, a hang-up) is counted
``Fail``   ``KEY STATUS why``   gRPC: aborts with StatusCode STATUS; HTTP: answers STATUS
``Lines``  ``KEY a b``          -> ``KEY\\na\\nb\\n`` (one word a line)
``Drop``   ``KEY``              HTTP only: closes the connection without an answer

Control, on the HTTP port: ``GET /stats/KEY`` (JSON: calls, in_flight, max_in_flight,
cancelled, and for gRPC the deadline the last call came with), ``POST /control/health`` with ``SERVING`` or ``NOT_SERVING`` (the gRPC health
service's status for the server and for ``aiotcp.test.Upstream``, and ``GET /health``'s
200 or 503). ``--no-health`` leaves the gRPC health service out.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "aiotcp.test.Upstream"
StringValue = wrappers_pb2.StringValue


@dataclass
class Seen:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0
    deadline: float | None = None  # gRPC: seconds the last call had left when it came


class Failure(Exception):
    def __init__(self, status: str, why: str) -> None:
        self.status, self.why = status, why


SEEN: defaultdict[str, Seen] = defaultdict(Seen)


async def run_method(name: str, message: str, deadline: float | None = None) -> str:
    """One call of method ``name``: the reply, or Failure."""
    key, _, rest = message.partition(" ")
    seen = SEEN[key]
    seen.calls += 1
    seen.deadline = deadline
    seen.in_flight += 1
    seen.max_in_flight = max(seen.max_in_flight, seen.in_flight)
    try:
        if name == "echo":
            return "echo " + message
        if name == "slow":
            await asyncio.sleep(float(rest.split()[0]))
            return "slow " + message
        if name == "fail":
            status, _, why = rest.partition(" ")
            raise Failure(status, why)
        if name == "lines":
            return "\n".join(message.split()) + "\n"
        raise Failure("404", f"no method {name!r}")  # HTTP only: gRPC has just these
    except asyncio.CancelledError:
        seen.cancelled += 1
        raise
    finally:
        seen.in_flight -= 1


def grpc_handlers() -> grpc.GenericRpcHandler:
    def method(name: str) -> grpc.RpcMethodHandler:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                reply = await run_method(name, request.value, context.time_remaining())
                return StringValue(value=reply)
            except Failure as f:
                await context.abort(grpc.StatusCode[f.status], f.why)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )

    names = ("Echo", "Slow", "Fail", "Lines")
    return grpc.method_handlers_generic_handler(
        SERVICE, {n: method(n.lower()) for n in names}
    )


def key_and_chain(pem: bytes) -> tuple[bytes, bytes]:
    """The private key and the certificate chain of a PEM holding both (trustme's)."""
    key = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n?",
                    pem, re.DOTALL)
    assert key is not None, "no private key in the PEM"
    return key.group(0), pem.replace(key.group(0), b"")


def http_app(health_state: dict[str, str], on_health: Callable[[str], Awaitable[None]]) -> web.Application:
    async def method(request: web.Request) -> web.Response:
        if request.match_info["name"] == "drop":
            SEEN[(await request.text()).partition(" ")[0]].calls += 1
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPInternalServerError()  # never sent: the connection is gone
        try:
            reply = await run_method(request.match_info["name"], await request.text())
        except Failure as f:
            return web.Response(status=int(f.status), text=f.why)
        return web.Response(text=reply)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(asdict(SEEN[request.match_info["key"]]))

    async def get_health(request: web.Request) -> web.Response:
        status = health_state["status"]
        return web.Response(status=200 if status == "SERVING" else 503, text=status)

    async def set_health(request: web.Request) -> web.Response:
        status = (await request.text()).strip()
        health_state["status"] = status
        await on_health(status)
        return web.Response(text=status)

    app = web.Application()
    app.router.add_get("/stats/{key}", stats)
    app.router.add_get("/health", get_health)
    app.router.add_post("/control/health", set_health)
    app.router.add_post("/{name}", method)
    return app


async def main(args: argparse.Namespace) -> None:
    pem = Path(args.cert).read_bytes() if args.cert else b""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc_handlers(),))
    servicer = None
    if not args.no_health:
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        for name in ("", SERVICE):
            await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    ports = {"grpc": 0, "grpcs": 0, "http": 0, "https": 0}
    if args.grpc_port is not None:
        ports["grpc"] = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    if args.grpcs_port is not None:
        creds = grpc.ssl_server_credentials([key_and_chain(pem)])
        ports["grpcs"] = server.add_secure_port(f"127.0.0.1:{args.grpcs_port}", creds)
    await server.start()

    health_state = {"status": "SERVING"}

    async def on_health(status: str) -> None:
        if servicer is not None:
            value = health_pb2.HealthCheckResponse.ServingStatus.Value(status)
            for name in ("", SERVICE):
                await servicer.set(name, value)

    runner = web.AppRunner(http_app(health_state, on_health), handler_cancellation=True)
    await runner.setup()
    for scheme, port in (("http", args.http_port), ("https", args.https_port)):
        if port is None:
            continue
        context = None
        if scheme == "https":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.cert)
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, reuse_address=True)
        await site.start()
        ports[scheme] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print("upstream " + " ".join(f"{k}={v}" for k, v in ports.items()), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for scheme in ("grpc", "grpcs", "http", "https"):
        parser.add_argument(f"--{scheme}-port", type=int)
    parser.add_argument("--cert", help="PEM with the key and certificate chain (for TLS)")
    parser.add_argument("--no-health", action="store_true")
    asyncio.run(main(parser.parse_args()))
