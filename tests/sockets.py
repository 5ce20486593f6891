"""Misbehaving servers on 127.0.0.1 for tests: real sockets, real TLS (trustme), no mocks.

Every server listens on 127.0.0.1 with an OS-chosen port, is a context manager, and on exit
stops its threads and closes its sockets (it raises if a thread refuses to stop, so a leak
shows up in the test that caused it).

Transport failures, in the order a client meets them:

- `refused_port()`: nothing listens (ECONNREFUSED).
- `BacklogFullServer`: the accept queue is full, SYNs are dropped (connect timeout).
- `CloseServer(when="accept" | "client_hello", how="fin" | "rst")`: accepts, optionally reads
  the TLS ClientHello, then closes with FIN or resets (SO_LINGER 0).
- `TlsStallServer`: reads the ClientHello and never answers (TLS handshake timeout).

HTTP(S) replies come from `tests.canned.CannedServer`, built on `Acceptor` here.

To reach a server under a real AWS name, steer the connection with a --connect-to rule:
`dial_scope(connect_to=ConnectToMap([server.rule("sts.us-east-1.amazonaws.com")]))`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal, Self

import trustme

from egress_doctor.net.connect_to import ConnectTo

LOOPBACK = "127.0.0.1"
# How long a stopping server waits for each of its threads before calling it a leak.
_JOIN_TIMEOUT = 5.0


class Pki:
    """Two throwaway CAs: `ca` (trusted: `ca_file` holds its PEM) and `rogue_ca` (trusted by
    nobody, as an intercepting proxy's CA would be)."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.rogue_ca = trustme.CA()
        path = directory / "trusted-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        self.ca_file = str(path)


def server_context(ca: trustme.CA, hostnames: Iterable[str]) -> ssl.SSLContext:
    """A server-side TLS context with a certificate from `ca` for `hostnames` (names or IPs)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hostnames).configure_cert(context)
    return context


def _raw_shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: works on the descriptor while another
    # thread is blocked in the TLS object, without tearing that object down under it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def close_with_reset(sock: socket.socket) -> None:
    """Close so that the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain(sock: socket.socket, stop: threading.Event) -> None:
    """Read and discard until the peer closes or the server stops."""
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            if not sock.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _read_tls_record(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read one whole TLS record (the ClientHello); b'' if the peer closed first."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < 5 or len(data) < 5 + struct.unpack("!H", data[3:5])[0]:
            more = sock.recv(65536)
            if not more:
                return data
            data += more
    except OSError:
        return data
    return data


Handler = Callable[[socket.socket, threading.Event], None]


class Acceptor:
    """A listening socket on 127.0.0.1 whose connections are served, each in a thread, by
    `self._handle(conn, stop_event)`. Stopping shuts every live connection down."""

    name = "server"

    def __init__(self, backlog: int = 64) -> None:
        self._backlog = backlog
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self._port: int | None = None
        self.connections = 0  # connections accepted so far

    # -- to override --------------------------------------------------------------------------
    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def rule(self, host: str = "", port: int | None = 443) -> ConnectTo:
        """A --connect-to rule sending connections for host:port (default any host, :443) here."""
        return ConnectTo(match_host=host, match_port=port, target_host=LOOPBACK, target_port=self.port)

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(self._backlog)
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join(_JOIN_TIMEOUT)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _raw_shutdown(conn)
        leaked = []
        for thread in self._threads + ([self._acceptor] if self._acceptor else []):
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():
                leaked.append(thread.name)
        for conn in conns:
            conn.close()
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        if leaked:
            raise RuntimeError(f"{self.name}: threads did not stop: {leaked}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop.is_set():
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready or self._stop.is_set():
                    return
                try:
                    conn, _peer = self._listener.accept()
                except OSError:
                    continue
                self.connections += 1
                with self._lock:
                    self._conns.add(conn)
                thread = threading.Thread(
                    target=self._serve, args=(conn,), name=f"{self.name}-conn", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handle(conn, self._stop)
        except (OSError, ValueError):
            pass  # the client went away or the server is stopping: nothing to report
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _track(self, old: socket.socket, new: socket.socket) -> None:
        """Replace a tracked connection by its TLS-wrapped successor."""
        with self._lock:
            self._conns.discard(old)
            self._conns.add(new)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port where nothing listens: connect() fails with ECONNREFUSED.

    The port stays bound (not listening) for the duration, so no other test can take it.
    """
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind((LOOPBACK, 0))
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


class BacklogFullServer:
    """A listener that never accepts and whose accept queue is full: new SYNs are dropped, so
    connect() times out (the client's first SYN retransmission comes after 1 s; keep client
    connect timeouts below that or expect them to be hit)."""

    def __init__(self, max_fillers: int = 16) -> None:
        self._max_fillers = max_fillers
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._fillers: list[socket.socket] = []

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    def rule(self, host: str = "", port: int | None = 443) -> ConnectTo:
        return ConnectTo(match_host=host, match_port=port, target_host=LOOPBACK, target_port=self.port)

    def start(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(0)
        self._port = int(self._listener.getsockname()[1])
        for _ in range(self._max_fillers):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.1)
            try:
                filler.connect((LOOPBACK, self.port))
            except TimeoutError:
                filler.close()
                return  # this SYN was dropped: the queue is full
            self._fillers.append(filler)
        self.stop()
        raise RuntimeError(f"accept queue still not full after {self._max_fillers} connections")

    def stop(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class CloseServer(Acceptor):
    """Accepts, then closes: `when="accept"` at once, `when="client_hello"` after reading the
    whole first TLS record; `how="fin"` with an orderly FIN (what real Envoy tcp_proxy to
    BlackHoleCluster usually does), `how="rst"` with a reset (SO_LINGER 0).

    The FIN variant half-closes and then discards what the client sends until it goes away, so
    unread data can never turn the FIN into a RST.
    """

    def __init__(
        self,
        when: Literal["accept", "client_hello"] = "accept",
        how: Literal["fin", "rst"] = "fin",
    ) -> None:
        super().__init__()
        self.when = when
        self.how = how
        self.name = f"close-{when}-{how}"
        self.client_hellos: list[bytes] = []

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        if self.when == "client_hello":
            self.client_hellos.append(_read_tls_record(conn))
        if self.how == "rst":
            close_with_reset(conn)
            return
        conn.shutdown(socket.SHUT_WR)
        drain(conn, stop)


class TlsStallServer(Acceptor):
    """Reads the ClientHello and never answers; holds the connection until the client leaves."""

    name = "tls-stall"

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        _read_tls_record(conn)
        drain(conn, stop)
