"""Where a call broke: from an exception (raw, urllib3- or botocore-wrapped) to (Layer, Symptom).

Decisions rest on exception types, errno, `ssl` reason and verify_code, and on *where* an
exception was raised (a frame of the TLS handshake in its traceback), never on message text:
the EOF and timeout texts differ between Python and OpenSSL builds.

`unwrap` lists the chain outermost first, following, in this order: botocore's
`e.kwargs['error']`, urllib3's `.reason`, exceptions passed as arguments (urllib3's
`ProtocolError('Connection aborted.', err)`, `SSLError(err)`), `__cause__`, then `__context__`.
The `__context__` of a standard-library OSError is not followed: it is the library's own
fallback (ssl probes `getpeername()` and gets ENOTCONN before reporting the RST), not a cause.
"""

from __future__ import annotations

import errno as errno_codes
import http.client
import socket
import ssl
import traceback
import types
from collections.abc import Iterator
from typing import Literal

import botocore.exceptions as botocore_errors
import urllib3.connection
import urllib3.exceptions as urllib3_errors
import urllib3.util.connection
import urllib3.util.ssl_match_hostname

from egress_doctor.model import ChainLink, ErrorInfo, Layer, Symptom
from egress_doctor.net import dial as dial_module
from egress_doctor.net.dial import DeadlineExceeded

Phase = Literal["dns", "tcp", "tls", "http"]

# Links kept in a chain; a deeper chain is cut (a cycle or a pathological wrapper).
MAX_DEPTH = 12
# ChainLink.message is cut to this many characters.
MAX_MESSAGE = 500

_STDLIB_MODULES = frozenset({"builtins", "socket", "ssl", "http.client"})

# Frames that mean "inside the TLS handshake" (ssl's _create calls do_handshake, and probes the
# connection before it: an RST can surface there).
_HANDSHAKE_CODE = frozenset(
    {
        ssl.SSLSocket.do_handshake.__code__,
        ssl.SSLSocket._create.__func__.__code__,  # type: ignore[attr-defined]
        ssl.SSLObject.do_handshake.__code__,
    }
)
# Frames that mean "inside connect()".
_CONNECT_CODE = frozenset(
    {
        dial_module._connect_one.__code__,
        socket.create_connection.__code__,
        dial_module._ORIGINAL_CREATE_CONNECTION.__code__,
    }
)

_RESET_ERRNOS = frozenset({errno_codes.ECONNRESET, errno_codes.EPIPE, errno_codes.ECONNABORTED})

# OpenSSL verify codes: the chain could not be built to a trusted root.
_UNTRUSTED_VERIFY_CODES = frozenset({2, 18, 19, 20, 21})  # ISSUER_CERT, SELF_SIGNED(_IN_CHAIN), LOCAL_ISSUER
# The certificate is valid but for another name (62) or IP (64).
_NAME_VERIFY_CODES = frozenset({62, 64})
# ssl reasons of a TLS client talking to something that does not speak TLS (a plaintext
# listener answering "HTTP/1.1 400 ..."); OpenSSL 3.0 says WRONG_VERSION_NUMBER.
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"})
_EOF_REASONS = frozenset({"UNEXPECTED_EOF_WHILE_READING"})


# -- the chain ---------------------------------------------------------------------------------


def _children(exc: BaseException) -> Iterator[BaseException]:
    kwargs = getattr(exc, "kwargs", None)
    if isinstance(kwargs, dict) and isinstance(kwargs.get("error"), BaseException):
        yield kwargs["error"]
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        yield reason
    for arg in exc.args:
        if isinstance(arg, BaseException):
            yield arg
    if exc.__cause__ is not None:
        yield exc.__cause__
    # An OS-level error (or our DeadlineExceeded) is a root: its context is incidental.
    os_leaf = isinstance(exc, DeadlineExceeded) or (
        isinstance(exc, OSError) and type(exc).__module__ in _STDLIB_MODULES
    )
    if exc.__context__ is not None and not exc.__suppress_context__ and not os_leaf:
        yield exc.__context__


def chain(exc: BaseException) -> list[BaseException]:
    """The exceptions in `exc`'s chain, outermost first, each once, at most MAX_DEPTH."""
    seen: set[int] = set()
    found: list[BaseException] = []

    def visit(link: BaseException) -> None:
        if id(link) in seen or len(found) >= MAX_DEPTH:
            return
        seen.add(id(link))
        found.append(link)
        for child in _children(link):
            visit(child)

    visit(exc)
    return found


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def to_link(exc: BaseException) -> ChainLink:
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    verify_code = getattr(exc, "verify_code", None)
    return ChainLink(
        type=_type_name(exc),
        message=_message(exc),
        errno=code if isinstance(code, int) else None,
        reason=reason if isinstance(reason, str) else None,
        verify_code=verify_code if isinstance(verify_code, int) else None,
    )


def unwrap(exc: BaseException) -> list[ChainLink]:
    """The chain as model ChainLinks, outermost first (ErrorInfo.root is the innermost)."""
    return [to_link(link) for link in chain(exc)]


def error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(type=_type_name(exc), message=_message(exc), chain=unwrap(exc))


# -- where it happened -------------------------------------------------------------------------


def _frames(exc: BaseException) -> Iterator[types.CodeType]:
    for frame, _line in traceback.walk_tb(exc.__traceback__):
        yield frame.f_code


def _raised_in(links: list[BaseException], codes: frozenset[types.CodeType]) -> bool:
    return any(code in codes for link in links for code in _frames(link))


def _endpoint_is_tls(links: list[BaseException]) -> bool | None:
    """Whether the failing endpoint was https, when a wrapper says (None: unknown)."""
    for link in links:
        kwargs = getattr(link, "kwargs", None)
        url = kwargs.get("endpoint_url") if isinstance(kwargs, dict) else None
        if isinstance(url, str):
            return url.lower().startswith("https:")
        conn = getattr(link, "conn", None)
        if isinstance(conn, urllib3.connection.HTTPConnection):
            return isinstance(conn, urllib3.connection.HTTPSConnection)
    return None


def _phase(links: list[BaseException], during: Phase | None) -> Phase | None:
    """The phase an exception happened in: the caller's hint, else what the chain shows."""
    if during is not None:
        return during
    if _raised_in(links, _HANDSHAKE_CODE):
        return "tls"
    if any(isinstance(link, socket.gaierror | urllib3_errors.NameResolutionError) for link in links):
        return "dns"
    if any(_is_connect_wrapper(link) for link in links) or _raised_in(links, _CONNECT_CODE):
        return "tcp"
    if any(isinstance(link, urllib3_errors.ProtocolError | http.client.HTTPException) for link in links):
        return "http"
    return None


def _is_connect_wrapper(link: BaseException) -> bool:
    # urllib3's NewConnectionError and NameResolutionError subclass its ConnectTimeoutError:
    # all three mean "in connect()"; botocore's SSLError is none of these.
    return isinstance(
        link,
        urllib3_errors.ConnectTimeoutError
        | botocore_errors.ConnectTimeoutError
        | botocore_errors.EndpointConnectionError,
    )


_PHASE_LAYER: dict[Phase, Layer] = {
    "dns": Layer.DNS,
    "tcp": Layer.TCP,
    "tls": Layer.TLS,
    "http": Layer.HTTP,
}


# -- the verdict -------------------------------------------------------------------------------

Verdict = tuple[Layer, Symptom]


def _first(links: list[BaseException], kind: type | types.UnionType) -> BaseException | None:
    return next((link for link in links if isinstance(link, kind)), None)


def _dns(links: list[BaseException]) -> Verdict | None:
    gai = _first(links, socket.gaierror)
    if gai is not None:
        if gai.errno == socket.EAI_NONAME:
            return Layer.DNS, Symptom.DNS_NXDOMAIN
        if gai.errno == socket.EAI_AGAIN:
            return Layer.DNS, Symptom.DNS_UNREACHABLE
        return Layer.DNS, Symptom.DNS_OTHER
    if _first(links, urllib3_errors.NameResolutionError) is not None:
        return Layer.DNS, Symptom.DNS_OTHER
    return None


def _certificate(links: list[BaseException]) -> Verdict | None:
    verify = _first(links, ssl.SSLCertVerificationError)
    if verify is not None:
        code = getattr(verify, "verify_code", None)
        if code in _NAME_VERIFY_CODES:
            return Layer.TLS, Symptom.TLS_NAME_MISMATCH
        if code in _UNTRUSTED_VERIFY_CODES:
            return Layer.TLS, Symptom.TLS_UNTRUSTED
        return Layer.TLS, Symptom.TLS_OTHER
    # urllib3 matches the hostname itself (botocore's path): its own CertificateError type.
    if _first(links, urllib3.util.ssl_match_hostname.CertificateError) is not None:
        return Layer.TLS, Symptom.TLS_NAME_MISMATCH
    return None


def _ssl_protocol(links: list[BaseException], phase: Phase | None) -> Verdict | None:
    eof = _first(links, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError)
    for link in links:
        if isinstance(link, ssl.SSLError) and getattr(link, "reason", None) in _EOF_REASONS:
            eof = eof or link
    if eof is not None:
        return (Layer.HTTP, Symptom.HTTP_CLOSED) if phase == "http" else (Layer.TLS, Symptom.TLS_CLOSED)
    for link in links:
        if isinstance(link, ssl.SSLError) and getattr(link, "reason", None) in _NOT_TLS_REASONS:
            return Layer.TLS, Symptom.TLS_WRONG_VERSION
    return None


def _errno_of(links: list[BaseException], codes: frozenset[int]) -> OSError | None:
    for link in links:
        if isinstance(link, OSError) and link.errno in codes:
            return link
    return None


def _refused(links: list[BaseException]) -> Verdict | None:
    if _errno_of(links, frozenset({errno_codes.ECONNREFUSED})) is not None:
        return Layer.TCP, Symptom.CONNECT_REFUSED
    return None


def _reset(links: list[BaseException], phase: Phase | None, tls: bool | None) -> Verdict | None:
    # http.client's RemoteDisconnected is a ConnectionResetError without errno: an EOF
    # where a status line was expected, handled by _http.
    if _errno_of(links, _RESET_ERRNOS) is None:
        return None
    if phase == "tls":
        return Layer.TLS, Symptom.TLS_CLOSED
    if phase == "tcp":
        # An RST racing the connect: on a TLS endpoint this is the same class as an EOF in
        # the handshake (Envoy closes with FIN or RST depending on timing).
        # The kernel reports it from connect() when the RST beats the connect's completion check.
        if tls is None:
            tls = _endpoint_is_tls(links)
        return (Layer.TLS, Symptom.TLS_CLOSED) if tls else (Layer.TCP, Symptom.CONNECT_RESET)
    return Layer.HTTP, Symptom.HTTP_CLOSED


def _is_timeout(link: BaseException) -> bool:
    # urllib3's NewConnectionError subclasses its ConnectTimeoutError without being a timeout.
    if isinstance(link, urllib3_errors.NewConnectionError):
        return False
    return isinstance(
        link,
        TimeoutError
        | urllib3_errors.TimeoutError
        | botocore_errors.ConnectTimeoutError
        | botocore_errors.ReadTimeoutError,
    )


def _timeout(links: list[BaseException], phase: Phase | None) -> Verdict | None:
    if not any(_is_timeout(link) for link in links):
        return None
    if phase == "tls":
        return Layer.TLS, Symptom.TLS_TIMEOUT
    if phase == "tcp":
        return Layer.TCP, Symptom.CONNECT_TIMEOUT
    if phase == "dns":
        return Layer.DNS, Symptom.DNS_UNREACHABLE
    return Layer.HTTP, Symptom.HTTP_TIMEOUT


def _http(links: list[BaseException]) -> Verdict | None:
    if _first(links, http.client.RemoteDisconnected | http.client.IncompleteRead) is not None:
        return Layer.HTTP, Symptom.HTTP_CLOSED
    if _first(links, urllib3_errors.IncompleteRead) is not None:
        return Layer.HTTP, Symptom.HTTP_CLOSED
    if _first(links, http.client.HTTPException) is not None:
        # Bytes came back, but not HTTP (BadStatusLine, LineTooLong, ...).
        return Layer.HTTP, Symptom.NOT_AWS
    if _first(links, botocore_errors.ConnectionClosedError | urllib3_errors.ProtocolError) is not None:
        return Layer.HTTP, Symptom.HTTP_CLOSED
    return None


def _other(links: list[BaseException], phase: Phase | None) -> Verdict | None:
    if _first(links, ssl.SSLError | urllib3_errors.SSLError | botocore_errors.SSLError) is not None:
        return Layer.TLS, Symptom.TLS_OTHER
    if any(_is_connect_wrapper(link) for link in links):
        return Layer.TCP, Symptom.CONNECT_OTHER
    if phase is None or _first(links, OSError) is None:
        return None  # not an I/O failure (a URL the tool could not parse, a bug): not ours to place
    return _PHASE_LAYER[phase], {
        "dns": Symptom.DNS_OTHER,
        "tcp": Symptom.CONNECT_OTHER,
        "tls": Symptom.TLS_OTHER,
        "http": Symptom.HTTP_CLOSED,
    }[phase]


def classify(exc: BaseException, *, during: Phase | None = None, tls: bool | None = None) -> Verdict | None:
    """The layer where `exc` broke the call and what was seen there; None when `exc` is not a
    network failure (an AWS error reply, a credential or configuration error, a bug).

    `during` is the phase the caller was in when it caught `exc` (the ladder knows); without
    it the phase is read from the chain: wrapper types (urllib3/botocore connect errors), and
    a TLS-handshake frame in a traceback (how a handshake stall is told from a response stall).
    `tls` says whether the endpoint speaks TLS, when the caller knows (botocore's
    `endpoint_url` and urllib3's connection class say it otherwise); it decides an RST that
    arrives while connecting: TLS_CLOSED on a TLS endpoint, CONNECT_RESET on plain HTTP.
    """
    links = chain(exc)
    phase = _phase(links, during)
    deadline = _first(links, DeadlineExceeded)
    if deadline is not None:
        return _PHASE_LAYER[phase or "http"], Symptom.DEADLINE
    return (
        _dns(links)
        or _certificate(links)
        or _ssl_protocol(links, phase)
        or _refused(links)
        or _reset(links, phase, tls)
        or _timeout(links, phase)
        or _http(links)
        or _other(links, phase)
    )
