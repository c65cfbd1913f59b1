"""The gRPC upstream: one ``grpc.aio`` channel per process, one unary call per message.

The method is called through the channel's generic ``unary_unary(path, ...)`` with
``google.protobuf.StringValue`` as request and response (:func:`string_values`), so any
service with that signature works, and standard gRPC tools (grpcurl, a health check)
can talk to it. :func:`bytes_values` is the same with ``BytesValue``, for bytes messages.

Health (:meth:`GrpcUpstream.probe`) is the gRPC health-checking protocol,
``grpc.health.v1.Health/Check``, for the URL's service (then for the server as a whole,
``""``, if the health service does not know that one); an upstream without the health
service is healthy while its channel is connected (``READY``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiotcp.upstream import (
    BadReply,
    DeadlineExceeded,
    Settings,
    Unavailable,
    UpstreamError,
    UpstreamURL,
    UpstreamURLError,
    quoted,
)

# How soon the channel tries again after a failed connect: gRPC's defaults (1 s, then up
# to 120 s) would leave the gateway answering ERR unavailable for up to two minutes
# after its upstream is back; a refused connect is cheap to repeat.
INITIAL_RECONNECT_BACKOFF_MS = 200
MAX_RECONNECT_BACKOFF_MS = 2000
# A StringValue/BytesValue adds a tag and a length (at most 6 bytes) to its payload.
VALUE_OVERHEAD = 16
# UNAVAILABLE with these details was decided by the channel before the call had a
# stream (no address could be connected to, or the name did not resolve): the call never
# reached the upstream, so it is safe to retry. Any other UNAVAILABLE may have.
NOT_SENT = ("failed to connect to all addresses", "DNS resolution failed", "empty address list")


@dataclass(frozen=True)
class WireValues:
    """How a message goes on the wire and how the answer comes back."""

    serialize: Callable[[Any], bytes]
    deserialize: Callable[[bytes], Any]


def string_values() -> WireValues:
    """str messages as ``google.protobuf.StringValue`` both ways."""
    return WireValues(
        serialize=lambda m: wrappers_pb2.StringValue(value=m).SerializeToString(),
        deserialize=lambda b: wrappers_pb2.StringValue.FromString(b).value,
    )


def bytes_values() -> WireValues:
    """bytes messages as ``google.protobuf.BytesValue`` both ways (for ``--binary``)."""
    return WireValues(
        serialize=lambda m: wrappers_pb2.BytesValue(value=m).SerializeToString(),
        deserialize=lambda b: wrappers_pb2.BytesValue.FromString(b).value,
    )


class GrpcUpstream:
    """See the module doc. ``values`` says how messages are encoded."""

    def __init__(self, url: UpstreamURL, settings: Settings, values: WireValues) -> None:
        self.url = url
        self.values = values
        self.max_reply = settings.max_reply
        self.credentials: grpc.ChannelCredentials | None = None
        if url.tls:
            root = None
            if settings.ca:
                try:
                    with open(settings.ca, "rb") as f:
                        root = f.read()
                except OSError as e:
                    raise UpstreamURLError(
                        f"upstream CA {settings.ca}: {e.strerror or e}"
                    ) from None
            self.credentials = grpc.ssl_channel_credentials(root_certificates=root)
        elif settings.ca:
            raise UpstreamURLError("--upstream-ca is for a TLS upstream (grpcs:// or https://)")
        self.channel: grpc.aio.Channel | None = None
        self._method: Any = None
        self._health: Any = None

    async def open(self) -> None:
        options = [
            ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
            ("grpc.max_receive_message_length", self.max_reply + VALUE_OVERHEAD),
        ]
        if self.credentials is not None:
            channel = grpc.aio.secure_channel(self.url.target, self.credentials, options)
        else:
            channel = grpc.aio.insecure_channel(self.url.target, options)
        self.channel = channel
        self._method = channel.unary_unary(
            self.url.method,
            request_serializer=self.values.serialize,
            response_deserializer=self.values.deserialize,
        )
        self._health = health_pb2_grpc.HealthStub(channel)

    async def call(self, message: str, timeout: float | None) -> str:
        try:
            reply: str = await self._method(message, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise self._failure(e, timeout) from None
        return reply

    def _failure(self, e: grpc.aio.AioRpcError, timeout: float | None) -> Exception:
        code, details = e.code(), e.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            sent = not details.startswith(NOT_SENT)
            return Unavailable(f"grpc {self.url.target}: {quoted(details)}", sent=sent)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
            return DeadlineExceeded()
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(
            "Received message larger than max"
        ):
            return BadReply(f"reply over {self.max_reply} bytes")
        return UpstreamError(f"{code.name} {quoted(details)}".rstrip())

    async def probe(self, timeout: float) -> tuple[bool, str]:
        for service in dict.fromkeys((self.url.service, "")):
            request = health_pb2.HealthCheckRequest(service=service)
            try:
                answer = await self._health.Check(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    continue  # the health service does not know it: ask about the server
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    return self._channel_state()
                return False, f"health check {code.name}: {quoted(e.details() or '')}"
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            return answer.status == health_pb2.HealthCheckResponse.SERVING, (
                f"health of {service or 'the server'}: {status}"
            )
        return False, f"the health service knows neither {self.url.service} nor the server"

    def _channel_state(self) -> tuple[bool, str]:
        assert self.channel is not None
        state = self.channel.get_state(try_to_connect=True)
        return state == grpc.ChannelConnectivity.READY, f"no health service; channel {state.name}"

    async def close(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()


def make_upstream(url: UpstreamURL, settings: Settings) -> GrpcUpstream:
    if settings.health_url:
        raise UpstreamURLError(
            "--upstream-health is for an http(s) upstream; a gRPC upstream is asked with "
            "grpc.health.v1.Health/Check"
        )
    return GrpcUpstream(url, settings, bytes_values() if settings.binary else string_values())
