"""The one choke point every TCP connection of the process goes through.

`install()` replaces `urllib3.util.connection.create_connection`, which urllib3 2.x
`HTTPConnection._new_conn` calls with `(self._dns_host, self.port)`. botocore, requests and our
own urllib3 calls all open their sockets there, so one `dial_scope` decides, for every
connection made while it is active:

- where to dial (the `--connect-to` map; SNI and `Host` keep the original name because only the
  dialled address changes),
- how long a connect may take (never past the scope's deadline),
- what was seen (a `DialRecord` per connection: DNS and per-address TCP evidence),
- and how to stop it: `recorder.abort()` shuts down every socket opened in the scope, which is
  how a run's deadline unblocks a read stalled in another thread.

Outside any scope, `dial()` is urllib3's original function: nothing is recorded or changed.

The scope lives in a `contextvars.ContextVar`. A probe that runs in a worker thread under
`contextvars.copy_context().run(...)` sees the scope that was active where the context was copied;
a bare `threading.Thread` starts with an empty context and therefore outside any scope.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3.util.connection as urllib3_connection
from urllib3.exceptions import LocationParseError

from egress_doctor.model import DnsEvidence, TcpEvidence
from egress_doctor.net.connect_to import ConnectTo, ConnectToMap, format_host

SocketOptions = Sequence[tuple[int, int, int | bytes]]


class DeadlineExceeded(TimeoutError):
    """The scope's deadline expired (or the recorder was aborted) before the operation finished.

    A subclass of TimeoutError so that urllib3 wraps it like a timeout (ConnectTimeoutError while
    connecting); `classify` looks for it first and reports Symptom.DEADLINE.
    `partial` holds the bytes read before the deadline, when a body was being read.
    """

    def __init__(self, message: str = "the run's deadline expired", partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class DialRecord:
    """What one connection attempt did: the address asked for, where it went, and the evidence."""

    host: str  # as the caller asked (the URL's host)
    port: int
    dialled_host: str  # after the --connect-to map
    dialled_port: int
    rule: ConnectTo | None = None
    dns: DnsEvidence | None = None
    tcp: list[TcpEvidence] = field(default_factory=list)
    sock: socket.socket | None = field(default=None, repr=False)
    # What dial() raises: an OSError, or urllib3's LocationParseError for a name that cannot
    # be encoded (exactly as urllib3's own create_connection).
    error: Exception | None = field(default=None, repr=False)

    @property
    def connect_to(self) -> str | None:
        """`addr:port` actually dialled when a rule applied (model.Target.connect_to), else None."""
        if self.rule is None:
            return None
        return f"{format_host(self.dialled_host)}:{self.dialled_port}"


class DialRecorder:
    """Collects the DialRecords of a scope and can shut down every socket the scope opened.

    Thread-safe: a probe thread dials while the run's watchdog thread may call `abort()`.
    The recorder keeps a duplicate descriptor of each socket (TLS wrapping detaches the original
    socket object, the duplicate still reaches the connection). Consequence: a connection closed
    inside the scope only sends its FIN when `release()` runs, which `dial_scope` does on exit.
    """

    def __init__(self, parent: DialRecorder | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[DialRecord] = []
        self._dups: list[socket.socket] = []
        self._aborted = False
        # The enclosing scope's recorder (`abort_at`): it sees every record and socket too, so its
        # own abort() still reaches them and its evidence is complete.
        self._parent = parent

    @property
    def records(self) -> list[DialRecord]:
        with self._lock:
            return list(self._records)

    @property
    def aborted(self) -> bool:
        return self._aborted or (self._parent is not None and self._parent.aborted)

    def add(self, record: DialRecord) -> None:
        with self._lock:
            self._records.append(record)
        if self._parent is not None:
            self._parent.add(record)

    def register(self, sock: socket.socket) -> None:
        """Track `sock` for abort(); if the recorder was already aborted, shut it down now."""
        if self._parent is not None:
            self._parent.register(sock)
        dup = sock.dup()
        with self._lock:
            if not self._aborted:
                self._dups.append(dup)
                return
        _shutdown(dup)
        dup.close()
        raise DeadlineExceeded("the run was aborted while connecting")

    def abort(self) -> int:
        """Shut down (read and write) every socket opened in the scope; return how many.

        A read blocked in another thread returns at once (EOF, or ECONNRESET once the peer
        answers the FIN). Later dials in the scope fail with DeadlineExceeded.
        """
        with self._lock:
            self._aborted = True
            dups = list(self._dups)
        for dup in dups:
            _shutdown(dup)
        return len(dups)

    def release(self) -> None:
        """Close the duplicate descriptors (the caller's sockets stay as they are)."""
        with self._lock:
            dups, self._dups = self._dups, []
        for dup in dups:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class DialScope:
    connect_to: ConnectToMap
    recorder: DialRecorder
    deadline: float | None  # time.monotonic() value; None = no deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


_SCOPE: contextvars.ContextVar[DialScope | None] = contextvars.ContextVar(
    "egress_doctor_dial_scope", default=None
)


def current_scope() -> DialScope | None:
    return _SCOPE.get()


@contextlib.contextmanager
def dial_scope(
    connect_to: ConnectToMap | None = None,
    recorder: DialRecorder | None = None,
    deadline: float | None = None,
) -> Iterator[DialScope]:
    """Route, bound and record every connection made in this context (installs the hook).

    `deadline` is a `time.monotonic()` value (None: no deadline). A nested scope replaces the
    outer one until it exits. On exit the recorder's duplicate descriptors are released.
    """
    install()
    scope = DialScope(connect_to or ConnectToMap(), recorder or DialRecorder(), deadline)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
        scope.recorder.release()


def bound_timeout(timeout: float | None) -> float | None:
    """`timeout` bounded by the current scope's remaining deadline (None = no bound at all).

    Raises DeadlineExceeded when the deadline has already passed or the recorder was aborted.
    """
    scope = _SCOPE.get()
    if scope is None:
        return timeout
    remaining = scope.remaining()
    if scope.recorder.aborted or (remaining is not None and remaining <= 0):
        raise DeadlineExceeded()
    if remaining is None:
        return timeout
    return remaining if timeout is None else min(timeout, remaining)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _resolve(record: DialRecord) -> list[tuple[Any, ...]]:
    """getaddrinfo for the dialled host; fills record.dns. Raises socket.gaierror."""
    host = record.dialled_host
    if _is_ip_literal(host):
        skipped = f"--connect-to rule to {host}" if record.rule and record.rule.target_host else "ip literal"
        name = record.host if record.rule and record.rule.target_host else host
        record.dns = DnsEvidence(name=name, addresses=[host.split("%", 1)[0]], skipped=skipped)
        return socket.getaddrinfo(host, record.dialled_port, 0, socket.SOCK_STREAM)
    started = time.monotonic()
    try:
        infos = socket.getaddrinfo(
            host, record.dialled_port, urllib3_connection.allowed_gai_family(), socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        record.dns = DnsEvidence(
            name=host, error=str(exc), gai_errno=exc.errno, duration_ms=_elapsed_ms(started)
        )
        raise
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    record.dns = DnsEvidence(name=host, addresses=addresses, duration_ms=_elapsed_ms(started))
    return infos


def _connect_one(
    info: tuple[Any, ...],
    timeout: float | None,
    asked: float | None,
    source_address: tuple[str, int] | None,
    socket_options: SocketOptions | None,
) -> tuple[socket.socket | None, TcpEvidence, OSError | None]:
    family, socktype, proto, _canon, sockaddr = info
    evidence = TcpEvidence(address=str(sockaddr[0]), port=int(sockaddr[1]), connected=False)
    started = time.monotonic()
    sock = socket.socket(family, socktype, proto)
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        evidence.duration_ms = _elapsed_ms(started)
        evidence.error = str(exc) or type(exc).__name__
        evidence.errno = exc.errno
        evidence.timed_out = isinstance(exc, TimeoutError)
        if evidence.timed_out and timeout is not None and (asked is None or timeout < asked):
            # The connect was cut short by the scope's deadline, not by its own timeout.
            deadline = DeadlineExceeded("the run's deadline expired while connecting")
            deadline.__cause__ = exc
            return None, evidence, deadline
        return None, evidence, exc
    evidence.connected = True
    evidence.duration_ms = _elapsed_ms(started)
    return sock, evidence, None


_DEFAULT = urllib3_connection._DEFAULT_TIMEOUT


def trace_dial(
    host: str,
    port: int,
    timeout: Any = _DEFAULT,
    source_address: tuple[str, int] | None = None,
    socket_options: SocketOptions | None = None,
    connect_to: ConnectToMap | None = None,
) -> DialRecord:
    """Dial like `dial()` but never raise: the socket or the error is in the returned record.

    `connect_to` defaults to the current scope's map. `timeout` may be urllib3's default-timeout
    sentinel (socket default), None (blocking) or seconds; either way the scope's deadline bounds it.
    The record is added to the scope's recorder, and a connected socket registered for abort().
    """
    scope = _SCOPE.get()
    rules = connect_to if connect_to is not None else (scope.connect_to if scope else ConnectToMap())
    bare = host.strip("[]")
    rule = rules.rule_for(bare, port)
    target = rule.apply(bare, port) if rule else (bare, port)
    record = DialRecord(host=bare, port=port, dialled_host=target[0], dialled_port=target[1], rule=rule)
    if scope:
        scope.recorder.add(record)
    asked = socket.getdefaulttimeout() if timeout is _DEFAULT else timeout
    try:
        record.dialled_host.encode("idna")
    except UnicodeError:
        record.error = LocationParseError(f"'{record.dialled_host}', label empty or too long")
        return record
    try:
        infos = _resolve(record)
        if not infos:
            raise OSError("getaddrinfo returned no addresses")
        for info in infos:
            sock, evidence, error = _connect_one(
                info, bound_timeout(asked), asked, source_address, socket_options
            )
            record.tcp.append(evidence)
            if sock is not None:
                if scope:
                    try:
                        scope.recorder.register(sock)
                    except DeadlineExceeded:
                        sock.close()
                        raise
                record.sock, record.error = sock, None
                return record
            record.error = error
            if isinstance(error, DeadlineExceeded):
                break
    except OSError as exc:
        record.error = exc
    return record


def dial(
    host: str,
    port: int,
    timeout: Any = _DEFAULT,
    source_address: tuple[str, int] | None = None,
    socket_options: SocketOptions | None = None,
) -> socket.socket:
    """`urllib3.util.connection.create_connection`, routed, bounded and recorded by the scope.

    Raises what the original raises (socket.gaierror, TimeoutError, OSError), plus
    DeadlineExceeded (a TimeoutError) when the scope's deadline cut the connect short.
    """
    if _SCOPE.get() is None:
        return _original(host, port, timeout, source_address, socket_options)
    record = trace_dial(host, port, timeout, source_address, socket_options)
    if record.sock is None:
        raise record.error or OSError(f"could not connect to {host}:{port}")
    return record.sock


def _create_connection_hook(
    address: tuple[str, int],
    timeout: Any = _DEFAULT,
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
) -> socket.socket:
    host, port = address
    return dial(host, port, timeout, source_address, socket_options)


# urllib3's own function, kept even if this module is imported again after install().
_ORIGINAL_CREATE_CONNECTION = getattr(
    urllib3_connection.create_connection, "egress_doctor_original", urllib3_connection.create_connection
)


def _original(
    host: str,
    port: int,
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: Any,
) -> socket.socket:
    return _ORIGINAL_CREATE_CONNECTION((host, port), timeout, source_address, socket_options)


_create_connection_hook.egress_doctor_original = _ORIGINAL_CREATE_CONNECTION  # type: ignore[attr-defined]


def install() -> None:
    """Route urllib3's connections through `dial()` (idempotent; harmless outside scopes)."""
    urllib3_connection.create_connection = _create_connection_hook  # type: ignore[assignment]


def installed() -> bool:
    return urllib3_connection.create_connection is _create_connection_hook  # type: ignore[comparison-overlap]
