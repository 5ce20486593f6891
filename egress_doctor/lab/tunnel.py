"""An HTTP CONNECT tunnel that sends every AWS host name to one loopback server (the fake AWS).

With `HTTPS_PROXY=<tunnel.proxy_url>`, botocore keeps the real URL, SNI and Host
(`https://sts.us-east-1.amazonaws.com/`) and verifies the certificate against that name, but
the bytes land on `FakeAws` on 127.0.0.1: real AWS names without DNS tricks, root or Envoy.
Every client honours it, including the nested STS client of IRSA. (IMDS follows HTTP_PROXY
and the container-credentials fetch ignores proxies, so neither is affected.)
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
from dataclasses import dataclass

from .serving import LoopbackFake, LoopbackTCPServer, QuietHTTPHandler, RequestLog

CONNECT_TIMEOUT = 2.0  # seconds to reach the loopback target
_CHUNK = 65536


@dataclass(frozen=True)
class TunnelRequest:
    """One CONNECT the tunnel received: the authority the client asked for, and the answer."""

    authority: str  # "sts.us-east-1.amazonaws.com:443"
    status: int


class ConnectTunnel(LoopbackFake):
    """An HTTP CONNECT proxy on 127.0.0.1 that tunnels every authority to one loopback `target`."""

    thread_name = "lab-connect-tunnel"

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise ValueError(f"the lab tunnel only reaches loopback addresses, not {target[0]}")
        self.target = target
        self._requests: RequestLog[TunnelRequest] = RequestLog()

    @property
    def proxy_url(self) -> str:
        """`http://127.0.0.1:<port>`, the value for HTTPS_PROXY."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[TunnelRequest]:
        """Every CONNECT received so far, oldest first."""
        return self._requests.snapshot()

    def record(self, request: TunnelRequest) -> None:
        self._requests.append(request)

    def _make_server(self) -> LoopbackTCPServer:
        return LoopbackTCPServer(_TunnelHandler, owner=self)


class _TunnelHandler(QuietHTTPHandler):
    """Answers CONNECT with 200 and splices the client to the target until either side closes."""

    rbufsize = 0  # unbuffered: no byte after the CONNECT head may sit in a buffer we never forward

    @property
    def fake(self) -> ConnectTunnel:
        return self.server.owner  # type: ignore[no-any-return]

    def do_CONNECT(self) -> None:
        self.close_connection = True
        try:
            upstream = socket.create_connection(self.fake.target, timeout=CONNECT_TIMEOUT)
        except OSError:
            self._answer(502)
            return
        with upstream:
            upstream.settimeout(None)
            self._answer(200)
            splice(self.connection, upstream)

    def _answer(self, status: int) -> None:
        self.fake.record(TunnelRequest(authority=self.path, status=status))
        self.send_response(status)
        if status != 200:
            self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()


def splice(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until one side closes or fails (the server cuts `client` on stop)."""
    peers = {client: upstream, upstream: client}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                if not _forward(source, peers[source]):
                    return


def _forward(source: socket.socket, destination: socket.socket) -> bool:
    """Move one chunk; False once `source` is closed or either side fails."""
    try:
        data = source.recv(_CHUNK)
        if data:
            destination.sendall(data)
    except OSError:
        return False
    return bool(data)
