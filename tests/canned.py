"""A canned HTTP(S) server on 127.0.0.1 for tests, and the replies it serves.

`CannedServer(responder, tls=ca_or_None, hostnames=[...])` answers each request with a `Reply`.
Factories below build Envoy's local replies, AWS error bodies, slow, dripping, huge and garbage
replies. A CannedServer without TLS reached by a TLS client is the "plain HTTP on a TLS port"
case; with `tls=Pki.rogue_ca` it is the "untrusted CA" case; with
`hostnames=["wrong.example.com"]` the "certificate for another name" case.

Like the servers of `tests.sockets` it listens on an OS-chosen port, is a context manager, and
raises on exit if a thread refuses to stop. Reach it under a real AWS name with `server.rule(...)`.
"""

from __future__ import annotations

import http
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import trustme

from tests.sockets import LOOPBACK, Acceptor, close_with_reset, drain, server_context

# A request head larger than this is answered with 431 and the connection closed.
_MAX_HEAD = 65536
# Bytes handed to one sendall() when streaming a generated body.
CHUNK = 65536


@dataclass(frozen=True)
class Request:
    """One request as the server read it (header names lower-cased)."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes


BodySource = bytes | Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class Reply:
    """What a CannedServer sends for one request.

    `body` is bytes, or a zero-argument callable returning an iterable of chunks (generated
    lazily, never held in memory; give `content_length` then, or the body ends with the
    connection). `delay` waits before the status line; `drip` waits between body chunks.
    `action="close"`/`"reset"` reads the request and closes (FIN) / resets without answering;
    `raw` sends those bytes instead of an HTTP response. `close=True` closes after replying
    (and says so in a `connection: close` header unless headers set one).
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: BodySource = b""
    content_length: int | None = None
    reason: str | None = None
    delay: float = 0.0
    drip: float = 0.0
    close: bool = False
    action: Literal["reply", "close", "reset"] = "reply"
    raw: bytes | None = None

    def head(self) -> bytes:
        reason = self.reason if self.reason is not None else _reason(self.status)
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        names = {name.lower() for name, _ in self.headers}
        lines += [f"{name}: {value}" for name, value in self.headers]
        if "content-length" not in names:
            length = len(self.body) if isinstance(self.body, bytes) else self.content_length
            if length is not None:
                lines.append(f"content-length: {length}")
        if self.close and "connection" not in names:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def chunks(self) -> Iterable[bytes]:
        if isinstance(self.body, bytes):
            if not self.drip:
                return [self.body] if self.body else []
            return [self.body[i : i + 1] for i in range(len(self.body))]
        return self.body()

    @property
    def closes(self) -> bool:
        """The connection ends after this reply (explicitly, or the body length is unknown)."""
        unknown_length = not isinstance(self.body, bytes) and self.content_length is None
        names = {name.lower(): value.lower() for name, value in self.headers}
        return self.close or unknown_length or names.get("connection") == "close"


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


Responder = Reply | Callable[[Request], Reply]

_METHOD_PREFIX = re.compile(rb"[A-Z]{1,16}( |$)")


class CannedServer(Acceptor):
    """An HTTP/1.1 server (TLS when `tls` is a CA) answering every request with a canned Reply.

    `responder` is a Reply, or a function of the Request returning one. `hostnames` are the
    names (and IPs) on the certificate (default localhost and 127.0.0.1). Requests are kept in
    `requests`; body bytes sent in `bytes_sent`. Keep-alive is honoured unless the reply closes.
    Bytes that do not start like an HTTP request (a TLS ClientHello, say) get a 400 and a close,
    as a real plaintext listener would answer.
    """

    name = "canned"

    def __init__(
        self,
        responder: Responder,
        tls: trustme.CA | None = None,
        hostnames: Iterable[str] = ("localhost", LOOPBACK),
    ) -> None:
        super().__init__()
        self.responder = responder
        self.hostnames = list(hostnames)
        self._context = server_context(tls, self.hostnames) if tls is not None else None
        self.requests: list[Request] = []
        self.bytes_sent = 0

    @property
    def scheme(self) -> str:
        return "https" if self._context else "http"

    def url(self, path: str = "/", host: str = LOOPBACK) -> str:
        """URL of this server under `host` (a name other than 127.0.0.1 needs a --connect-to rule)."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        if self._context is not None:
            conn.settimeout(5.0)
            tls = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            self._track(conn, tls)
            try:
                tls.do_handshake()
            except (OSError, ssl.SSLError):
                tls.close()
                return  # the client rejected us (untrusted, wrong name): that is the point
            conn = tls
        conn.settimeout(None)
        buffer = b""
        while not stop.is_set():
            request, buffer = _read_request(conn, buffer)
            if request is None:
                if buffer:  # not HTTP: answer like a plaintext server, then hang up
                    conn.sendall(Reply(400, body=b"Bad Request\n", close=True).head() + b"Bad Request\n")
                    _finish(conn, stop)
                return
            self.requests.append(request)
            reply = self.responder if isinstance(self.responder, Reply) else self.responder(request)
            if not self._send(conn, reply, stop):
                return
            if reply.closes or request.headers.get("connection", "").lower() == "close":
                _finish(conn, stop)
                return

    def _send(self, conn: socket.socket, reply: Reply, stop: threading.Event) -> bool:
        """Send one reply; False when the connection must end now."""
        if reply.delay and stop.wait(reply.delay):
            return False
        if reply.action == "reset":
            close_with_reset(conn)
            return False
        if reply.action == "close":
            _finish(conn, stop)
            return False
        if reply.raw is not None:
            conn.sendall(reply.raw)
            _finish(conn, stop)
            return False
        conn.sendall(reply.head())
        for chunk in reply.chunks():
            if reply.drip and stop.wait(reply.drip):
                return False
            conn.sendall(chunk)
            self.bytes_sent += len(chunk)
        return True


def _finish(conn: socket.socket, stop: threading.Event) -> None:
    """Orderly close: FIN, then discard what the client still sends until it leaves."""
    if isinstance(conn, ssl.SSLSocket):
        # No close_notify: most proxies just close, and the client must cope with that.
        socket.socket.shutdown(conn, socket.SHUT_WR)
    else:
        conn.shutdown(socket.SHUT_WR)
    drain(conn, stop)


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[Request | None, bytes]:
    """Read one request. (None, b'') when the client closed; (None, junk) when it is not HTTP."""
    while b"\r\n\r\n" not in buffer:
        if buffer and not _METHOD_PREFIX.match(buffer[:17]) and not buffer.isalpha():
            return None, buffer
        if len(buffer) > _MAX_HEAD:
            return None, buffer
        more = conn.recv(65536)
        if not more:
            return None, b""
        buffer += more
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None, buffer
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            return None, b""
        rest += more
    request = Request(parts[0], parts[1], parts[2], headers, rest[:length])
    return request, rest[length:]


# --------------------------------------------------------------------------------------------
# Reply factories


def envoy_headers(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Headers of an Envoy local reply: `server: envoy`, and no x-envoy-upstream-service-time."""
    return (("server", "envoy"), ("date", "Thu, 01 Jan 2026 00:00:00 GMT"), *extra)


def text_reply(status: int, text: str, *headers: tuple[str, str], close: bool = False) -> Reply:
    return Reply(status, (("content-type", "text/plain"), *headers), text.encode(), close=close)


def envoy_block_all_502() -> Reply:
    """Istio REGISTRY_ONLY on an HTTP port (route `block_all`): 502, empty body, server: envoy."""
    return Reply(502, envoy_headers())


def envoy_upstream_connect_error_503() -> Reply:
    """Envoy UF: the upstream refused or reset the connection."""
    return text_reply(
        503,
        "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
        *envoy_headers(),
    )


def envoy_no_healthy_upstream_503() -> Reply:
    """Envoy UH: the cluster has no healthy endpoint (e.g. a route to BlackHoleCluster)."""
    return text_reply(503, "no healthy upstream", *envoy_headers())


def envoy_upstream_timeout_504() -> Reply:
    """Envoy UT: the route timeout expired."""
    return text_reply(504, "upstream request timeout", *envoy_headers())


def envoy_no_route_404() -> Reply:
    """Envoy NR: no route matched; 404 with an empty body."""
    return Reply(404, envoy_headers())


def envoy_rbac_403() -> Reply:
    """An Istio AuthorizationPolicy denied the request."""
    return text_reply(403, "RBAC: access denied", *envoy_headers())


def slow(reply: Reply, delay: float) -> Reply:
    """`reply`, sent only after `delay` seconds (a stalled upstream)."""
    return replace(reply, delay=delay)


def slow_drip(size: int = 4096, interval: float = 0.02) -> Reply:
    """A 200 whose body arrives one byte every `interval` seconds (each read succeeds in time)."""
    return Reply(200, (("content-type", "application/octet-stream"),), b"d" * size, drip=interval)


def huge_body(size: int = 100 * 2**20) -> Reply:
    """A 200 with a `size`-byte body generated chunk by chunk, never held in memory."""

    def chunks() -> Iterator[bytes]:
        block = b"x" * CHUNK
        left = size
        while left > 0:
            yield block[: min(left, CHUNK)]
            left -= CHUNK

    return Reply(200, (("content-type", "application/octet-stream"),), chunks, content_length=size)


def garbage() -> Reply:
    """Bytes that are not HTTP at all, then a close."""
    return Reply(raw=b"\x00\x17\x03junk that is not an HTTP response\r\n\r\n")


def close_after_request() -> Reply:
    """Read the request, then close without a response (FIN)."""
    return Reply(action="close")


def reset_after_request() -> Reply:
    """Read the request, then reset the connection without a response."""
    return Reply(action="reset")


# The x-amzn-RequestId of canned AWS answers.
REQUEST_ID = "c0ffee00-0000-4000-8000-000000000000"


def aws_xml_error(status: int, code: str, message: str, request_id: str = REQUEST_ID) -> Reply:
    """An STS-style (query protocol) XML error, with x-amzn-RequestId."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
        f"  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n"
        f"    <Message>{message}</Message>\n  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
    )
    headers = (("x-amzn-RequestId", request_id), ("content-type", "text/xml"))
    return Reply(status, headers, body.encode())


def aws_json_error(status: int, code: str, message: str, request_id: str = REQUEST_ID) -> Reply:
    """A DynamoDB-style (JSON 1.0 protocol) error, with x-amzn-RequestId."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    headers = (("x-amzn-RequestId", request_id), ("content-type", "application/x-amz-json-1.0"))
    return Reply(status, headers, body.encode())


def sts_get_caller_identity_ok(
    account: str = "111122223333",
    arn: str = "arn:aws:iam::111122223333:user/egress-doctor",
    request_id: str = REQUEST_ID,
) -> Reply:
    """A well-formed STS GetCallerIdentity answer."""
    body = (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
        f"  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n    <UserId>AIDAEXAMPLE</UserId>\n"
        f"    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n"
        f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n"
        "</GetCallerIdentityResponse>\n"
    )
    headers = (("x-amzn-RequestId", request_id), ("content-type", "text/xml"))
    return Reply(200, headers, body.encode())
