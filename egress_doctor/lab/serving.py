"""Loopback server plumbing shared by the lab's fakes: stop promptly, leave nothing behind.

Every fake runs in-process on 127.0.0.1, port 0, one thread per connection. Stopping must work
even while a handler deliberately never answers (the IMDS hop-limit symptom) and while clients
still hold keep-alive connections, so the server tracks each connection and cuts it on stop,
and handler threads are joined (non-daemon) instead of being abandoned.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar, Generic, Self, TypeVar

LOOPBACK = "127.0.0.1"
LOG = logging.getLogger("egress_doctor.lab")
HANG_POLL_INTERVAL = 0.1  # seconds between checks whether a deliberately unanswered client left

T = TypeVar("T")


class RequestLog(Generic[T]):
    """A thread-safe, append-only list of what a fake saw; tests read snapshots of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[T] = []

    def append(self, item: T) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[T]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class StoppableServerMixin(socketserver.ThreadingMixIn):
    """Per-connection threads that the server joins, and open connections it cuts when stopping.

    Mix in before a `socketserver.TCPServer` subclass and call `init_stopping()` from `__init__`.
    `open_connection` wraps an accepted socket (TLS, no I/O yet) and `accept_connection`
    finishes setting it up (the handshake). Both run on the connection's own thread, so a
    client that stalls its handshake never blocks the accept loop or `shutdown()`.
    """

    daemon_threads = False  # joined by server_close(): no thread survives stop()
    block_on_close = True

    def init_stopping(self) -> None:
        """Set up the stop flag and the registry of open connections."""
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        """Bind without `HTTPServer.server_bind`'s reverse lookup of the address (a DNS query)."""
        socketserver.TCPServer.server_bind(self)  # type: ignore[arg-type]
        host, port = self.server_address[:2]  # type: ignore[attr-defined]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Register the connection on the accept thread, before its handler thread starts."""
        self._track(request)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run the handler on the (possibly TLS-wrapped) connection unless the server is stopping."""
        connection = None if self.stopping.is_set() else self.open_connection(request)
        if connection is None:
            return
        if connection is not request:
            self._untrack(request)
            self._track(connection)
        try:
            if not self.stopping.is_set() and self.accept_connection(connection):
                self.RequestHandlerClass(connection, client_address, self)  # type: ignore[attr-defined]
        finally:
            if connection is not request:
                self._untrack(connection)
                connection.close()

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it as TCPServer does."""
        self._untrack(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def open_connection(self, sock: socket.socket) -> socket.socket | None:
        """The socket the handler talks to (no I/O here); None drops the connection. Plain TCP by default."""
        return sock

    def accept_connection(self, connection: socket.socket) -> bool:
        """Connection set-up that may block (a TLS handshake), run once it is tracked; False drops it."""
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler's exception at DEBUG instead of printing a traceback to stderr."""
        LOG.debug("lab server: error on a connection from %s", client_address, exc_info=True)

    def cut_connections(self) -> None:
        """Shut down every open connection so blocked reads and handshakes return at once."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # OSError: already closed by its handler, or detached by a TLS wrap.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        if self.stopping.is_set():
            self.cut_connections()

    def _untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)


class LoopbackTCPServer(StoppableServerMixin, socketserver.TCPServer):
    """A threaded TCP server on 127.0.0.1 whose stop leaves no thread or socket behind."""

    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], owner: Any) -> None:
        self.init_stopping()
        self.owner = owner  # the fake whose behaviour the handlers read
        super().__init__((LOOPBACK, 0), handler)


class QuietHTTPHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 keep-alive request handler that logs to `egress_doctor.lab` at DEBUG, not stderr."""

    protocol_version = "HTTP/1.1"
    server: LoopbackTCPServer

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s: " + format, type(self).__name__, *args)

    def read_body(self) -> bytes:
        """The request body as announced by Content-Length (empty without one)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a complete response with Content-Length, so the connection can be kept alive."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def hang(self) -> None:
        """Never answer: hold the request until the client gives up or the server stops, then drop it."""
        while not self.server.stopping.wait(HANG_POLL_INTERVAL):
            if peer_closed(self.connection):
                break
        self.close_connection = True


def peer_closed(connection: socket.socket) -> bool:
    """Whether the client has closed its side (readable, and a peek returns end of stream)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class ServerThread:
    """Runs one stoppable server's accept loop on its own thread, and stops it without leftovers."""

    def __init__(self, server: StoppableServerMixin, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=self._serve, name=name, daemon=False)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[attr-defined]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, release hung handlers, cut open connections, join every thread."""
        self.server.stopping.set()
        self.server.cut_connections()
        if self._thread.is_alive():
            self.server.shutdown()  # type: ignore[attr-defined]
            self._thread.join(timeout=5.0)  # serve_forever polls every 50 ms: this returns at once
        self.server.server_close()  # type: ignore[attr-defined] # closes the listener, joins handlers

    def _serve(self) -> None:
        self.server.serve_forever(poll_interval=0.05)  # type: ignore[attr-defined]


class LoopbackFake:
    """Base of the lab's fakes: a context manager around one `ServerThread` on 127.0.0.1."""

    thread_name: ClassVar[str] = "lab-fake"

    def __init__(self) -> None:
        self._runner: ServerThread | None = None

    def _make_server(self) -> StoppableServerMixin:
        raise NotImplementedError

    def start(self) -> None:
        """Bind to 127.0.0.1 on a free port and start serving (idempotent)."""
        if self._runner is None:
            self._runner = ServerThread(self._make_server(), self.thread_name)
            self._runner.start()

    def stop(self) -> None:
        """Stop serving and release the port; hung requests are dropped (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (only while running)."""
        if self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._runner.port

    @property
    def address(self) -> tuple[str, int]:
        """`("127.0.0.1", port)`."""
        return (LOOPBACK, self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
