"""PROXY protocol v1 and v2 headers, sans-I/O (HAProxy's proxy-protocol.txt).

A proxy in front of the server (HAProxy ``send-proxy`` / ``send-proxy-v2``, AWS NLB,
nginx ``proxy_protocol on``) opens each connection with one header naming the client's
real address. ``ProxyHeaderParser.feed(bytes)`` returns ``None`` (need more bytes), a
``ProxyHeader`` (with the bytes after it, which belong to the application), or a
``ProxyRejection`` with a reason. No sockets, no clocks and no asyncio here: whether
the sender is trusted and how long it may take are the caller's business.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

# The spec: a v1 header is at most 107 bytes, CRLF included ("PROXY UNKNOWN" plus the
# longest TCP6 line). A receiver must not read past it looking for the end.
V1_MAX_LENGTH = 107

# v2: the 12-byte signature, version/command, family/transport and a 16-bit length.
V2_FIXED_LENGTH = 16
_V2_LENGTH = struct.Struct("!H")
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")

V2_CMD_LOCAL = 0x0
V2_CMD_PROXY = 0x1
V2_FAM_UNSPEC = 0x0
V2_FAM_INET = 0x1
V2_FAM_INET6 = 0x2
V2_FAM_UNIX = 0x3
V2_PROTO_UNSPEC = 0x0
V2_PROTO_STREAM = 0x1

# Reasons a header is refused (the ``reason`` label of aiotcp_proxy_rejected_total).
BAD_SIGNATURE = "bad-signature"
TOO_LONG = "too-long"
MALFORMED = "malformed"
UNTRUSTED = "untrusted"  # decided by the caller, from the peer's address
TIMEOUT = "timeout"  # decided by the caller: the header did not arrive in time
REASONS = (BAD_SIGNATURE, TOO_LONG, MALFORMED, UNTRUSTED, TIMEOUT)

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header.

    ``source``/``dest`` are the client's and the proxy's listening address; both are
    None for a v2 ``LOCAL`` header (the proxy's own health check) and for v1
    ``UNKNOWN`` or a v2 family the server cannot represent: such connections are
    served with the addresses of the socket itself. ``rest`` is what followed the
    header in the bytes fed so far: application data.
    """

    version: int
    source: Address | None
    dest: Address | None
    rest: bytes

    @property
    def local(self) -> bool:
        return self.source is None


@dataclass(frozen=True, slots=True)
class ProxyRejection:
    """A header that must not be believed: close the connection without a reply."""

    reason: str
    detail: str


ProxyResult = ProxyHeader | ProxyRejection


class ProxyHeaderParser:
    """Accumulates bytes until a whole header is there, then parses it once.

    Returns the same verdict whatever the chunking: a wrong signature is rejected
    as soon as its first wrong byte arrives, a v1 line as soon as it passes 107
    bytes without CRLF. After a verdict the parser must not be fed again.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    @property
    def buffered(self) -> int:
        """Bytes received so far of a header not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> ProxyResult | None:
        buf = self._buf = self._buf + data if self._buf else data
        n = len(buf)
        if n == 0:
            return None
        if buf[0] == 0x0D:  # v2 (its signature starts with CR; v1 with 'P')
            head = buf[:12]
            if not V2_SIGNATURE.startswith(head):
                return ProxyRejection(BAD_SIGNATURE, "not a PROXY v2 signature")
            if n > 12 and buf[12] >> 4 != 2:
                return ProxyRejection(MALFORMED, f"v2 header has version {buf[12] >> 4}")
            if n < V2_FIXED_LENGTH:
                return None
            (length,) = _V2_LENGTH.unpack_from(buf, 14)
            if n < V2_FIXED_LENGTH + length:
                return None
            return _parse_v2(buf, length)
        head = buf[:6]
        if not V1_PREFIX.startswith(head):
            return ProxyRejection(BAD_SIGNATURE, "not a PROXY header")
        # The first LF within the limit ends the line; it must follow a CR.
        end = buf.find(b"\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if n >= V1_MAX_LENGTH:
                return ProxyRejection(TOO_LONG, f"v1 header over {V1_MAX_LENGTH} bytes")
            return None
        if buf[end - 1] != 0x0D:
            return ProxyRejection(MALFORMED, "v1 header ends without CRLF")
        return _parse_v1(buf[: end - 1], buf[end + 1 :])


def _parse_v1(line: bytes, rest: bytes) -> ProxyResult:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return ProxyRejection(MALFORMED, "v1 header is not ASCII")
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        # The spec: the receiver must ignore everything after UNKNOWN.
        return ProxyHeader(1, None, None, rest)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        return ProxyRejection(MALFORMED, "v1 header is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    version = 4 if parts[1] == "TCP4" else 6
    src = _v1_address(parts[2], parts[4], version)
    dst = _v1_address(parts[3], parts[5], version)
    if src is None or dst is None:
        return ProxyRejection(MALFORMED, "v1 header has a bad address or port")
    return ProxyHeader(1, src, dst, rest)


def _v1_address(host: str, port: str, version: int) -> Address | None:
    # Ports are 0..65535 in decimal without leading zeros (as HAProxy writes them).
    if not port.isdigit() or not port.isascii() or len(port) > 5:
        return None
    if len(port) > 1 and port[0] == "0":
        return None
    number = int(port)
    if number > 65535:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != version:
        return None
    return (str(ip), number)


def _parse_v2(buf: bytes, length: int) -> ProxyResult:
    command = buf[12] & 0x0F
    family, proto = buf[13] >> 4, buf[13] & 0x0F
    end = V2_FIXED_LENGTH + length
    rest = buf[end:]
    if command == V2_CMD_LOCAL:
        # The proxy's own connection (a health check): the addresses, if any, are
        # ignored and the connection is served as it came.
        return ProxyHeader(2, None, None, rest)
    if command != V2_CMD_PROXY:
        return ProxyRejection(MALFORMED, f"v2 header has command {command}")
    if family > V2_FAM_UNIX or proto > 0x2:
        return ProxyRejection(MALFORMED, "v2 header has an unknown family or transport")
    if family in (V2_FAM_UNSPEC, V2_FAM_UNIX) or proto == V2_PROTO_UNSPEC:
        # The spec: for UNSPEC the receiver must use the real connection's addresses;
        # a UNIX address cannot stand for a TCP peer, so the same applies.
        return ProxyHeader(2, None, None, rest)
    if proto != V2_PROTO_STREAM:
        return ProxyRejection(MALFORMED, "v2 header announces a datagram transport")
    layout = _V2_INET if family == V2_FAM_INET else _V2_INET6
    if length < layout.size:
        return ProxyRejection(MALFORMED, "v2 address block shorter than its family")
    src, dst, sport, dport = layout.unpack_from(buf, V2_FIXED_LENGTH)
    # Whatever follows the addresses (TLVs) is skipped: nothing here needs them.
    return ProxyHeader(
        2,
        (str(ipaddress.ip_address(src)), sport),
        (str(ipaddress.ip_address(dst)), dport),
        rest,
    )


def encode_v1(source: Address, dest: Address) -> bytes:
    """A v1 header for ``source`` -> ``dest`` (both IPv4 or both IPv6), as a proxy sends it."""
    tcp = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {tcp} {source[0]} {dest[0]} {source[1]} {dest[1]}\r\n".encode("ascii")


def encode_v2(source: Address | None, dest: Address | None, tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY for ``source`` -> ``dest``, or LOCAL when ``source`` is None."""
    if source is None or dest is None:
        return V2_SIGNATURE + bytes([0x20 | V2_CMD_LOCAL, 0]) + _V2_LENGTH.pack(len(tlvs)) + tlvs
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(dest[0])
    if src.version == 4:
        family, body = V2_FAM_INET, _V2_INET.pack(src.packed, dst.packed, source[1], dest[1])
    else:
        family, body = V2_FAM_INET6, _V2_INET6.pack(src.packed, dst.packed, source[1], dest[1])
    body += tlvs
    head = bytes([0x20 | V2_CMD_PROXY, (family << 4) | V2_PROTO_STREAM])
    return V2_SIGNATURE + head + _V2_LENGTH.pack(len(body)) + body
