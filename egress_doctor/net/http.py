"""One bounded HTTP request, for the probes that talk to endpoints without botocore (IMDS,
container credentials) and for reading bodies boundedly anywhere.

`request()` uses urllib3 directly: no proxies (environment proxy settings are not read), no
retries, no redirects, raw (undecoded) body. Its connection goes through `dial()`, so the active
`dial_scope` routes and records it. At most `max_body` bytes of the body are kept and only one
chunk more is read (to tell whether there was more): a 100 MB body costs 64 KiB of memory,
and the connection is closed instead of drained. A `deadline` bounds every wait, including a
body that drips one byte at a time forever.

Only transport failures set `layer`/`symptom`; an HTTP error status is an answer, left to the
rules (see `evidence.status` and `evidence.headers`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field

import certifi
import urllib3
from urllib3.response import BaseHTTPResponse

from egress_doctor.model import INTERESTING_HEADERS, ErrorInfo, HttpEvidence, Layer, Symptom
from egress_doctor.net.classify import classify, error_info
from egress_doctor.net.dial import DeadlineExceeded, current_scope
from egress_doctor.net.watchdog import abort_at

# Body bytes kept by default (the rest is read past at most once, never stored).
DEFAULT_MAX_BODY = 65536
# Largest single read from the socket.
READ_CHUNK = 16384
# Characters of the body shown in HttpEvidence.body_prefix.
BODY_PREFIX_BYTES = 200


@dataclass
class HttpResult:
    evidence: HttpEvidence
    body: bytes = b""  # the first max_body bytes (evidence.body_truncated says if there was more)
    error: ErrorInfo | None = None
    layer: Layer | None = None  # set only when no complete answer came back
    symptom: Symptom | None = None
    headers: dict[str, str] = field(default_factory=dict)  # every response header, names lower-cased

    @property
    def ok(self) -> bool:
        """An HTTP answer came back (whatever its status)."""
        return self.layer is None


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _response_socket(response: BaseHTTPResponse) -> socket.socket | None:
    sock = getattr(response.connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def read_bounded(
    response: BaseHTTPResponse, max_bytes: int, deadline: float | None = None
) -> tuple[bytes, bool]:
    """Read at most `max_bytes` of a streaming urllib3 response (`preload_content=False`).

    Returns (body prefix, truncated). Reads with `read1`, so each wait returns as soon as any
    bytes arrive, and while a `deadline` (a `time.monotonic()` value) is set, no single wait
    outlasts it. Raises DeadlineExceeded (with `.partial` = what was read) when it passes, and
    urllib3's errors (ReadTimeoutError, ProtocolError) as they come.
    """
    chunks: list[bytes] = []
    total = 0
    sock = _response_socket(response)
    saved_timeout = sock.gettimeout() if sock is not None else None
    try:
        while total <= max_bytes:
            remaining = _remaining(deadline)
            if remaining is not None:
                if remaining <= 0:
                    raise DeadlineExceeded("the deadline expired while reading the body", b"".join(chunks))
                if sock is not None:
                    sock.settimeout(remaining if saved_timeout is None else min(saved_timeout, remaining))
            try:
                data = response.read1(min(READ_CHUNK, max_bytes + 1 - total), decode_content=False)
            except urllib3.exceptions.ReadTimeoutError as exc:
                left = _remaining(deadline)
                if left is not None and left <= 0:
                    raise DeadlineExceeded(
                        "the deadline expired while reading the body", b"".join(chunks)
                    ) from exc
                raise
            except Exception as exc:
                if _aborted():
                    raise DeadlineExceeded(_ABORTED, b"".join(chunks)) from exc
                raise
            if not data:
                _raise_if_cut_short(response, b"".join(chunks))
                break
            chunks.append(data)
            total += len(data)
    finally:
        if sock is not None and deadline is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(saved_timeout)
    body = b"".join(chunks)
    return body[:max_bytes], total > max_bytes


_ABORTED = "the run's deadline expired while reading the body"


def _aborted() -> bool:
    """Whether the run's watchdog shut this scope's sockets down (what follows is its doing)."""
    scope = current_scope()
    return scope is not None and scope.recorder.aborted


def _raise_if_cut_short(response: BaseHTTPResponse, partial: bytes) -> None:
    """An end of body before the answer's end is no answer.

    The watchdog's shutdown reads as an EOF (DeadlineExceeded then); a peer closing mid-body
    raises urllib3's IncompleteRead, which urllib3 does not raise itself for botocore (it reads
    with enforce_content_length=False).
    """
    if _aborted():
        raise DeadlineExceeded(_ABORTED, partial)
    remaining = getattr(response, "length_remaining", None)
    if isinstance(remaining, int) and remaining > 0:
        raise urllib3.exceptions.IncompleteRead(len(partial), remaining)


def _interesting(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in INTERESTING_HEADERS if name in headers}


# urllib3 refuses a timeout of 0: a deadline already past still gets this much, then times out
# (and the timeout is reported as the deadline's doing).
_MIN_TIMEOUT = 0.001


def _bounded(timeout: float, deadline: float | None) -> float:
    remaining = _remaining(deadline)
    return timeout if remaining is None else max(_MIN_TIMEOUT, min(timeout, remaining))


# Timeouts that, once the deadline has passed, were the deadline's doing.
_TIMEOUT_SYMPTOMS = frozenset({Symptom.CONNECT_TIMEOUT, Symptom.TLS_TIMEOUT, Symptom.HTTP_TIMEOUT})


def _failure(result: HttpResult, exc: BaseException, deadline: float | None, reading_body: bool) -> bool:
    """Record a transport failure in `result`; False when `exc` is no network failure at all."""
    verdict = classify(exc, during="http" if reading_body else None)
    if _aborted():  # the deadline's watchdog shut the socket: whatever broke, the deadline did it
        verdict = (verdict[0] if verdict else Layer.HTTP, Symptom.DEADLINE)
    if verdict is None:
        return False
    left = _remaining(deadline)
    if left is not None and left <= 0 and verdict[1] in _TIMEOUT_SYMPTOMS:
        verdict = (verdict[0], Symptom.DEADLINE)
    result.layer, result.symptom = verdict
    result.error = error_info(exc)
    return True


def _exchange(
    pool: urllib3.PoolManager,
    result: HttpResult,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    body: bytes | None,
    connect_timeout: float,
    read_timeout: float,
    max_body: int,
    deadline: float | None,
) -> None:
    evidence = result.evidence
    response: BaseHTTPResponse | None = None
    try:
        timeout = urllib3.Timeout(
            connect=_bounded(connect_timeout, deadline), read=_bounded(read_timeout, deadline)
        )
        response = pool.urlopen(
            method,
            url,
            body=body,
            headers=headers or {},
            retries=False,
            redirect=False,
            preload_content=False,
            decode_content=False,
            timeout=timeout,
        )
        evidence.status = response.status
        result.headers = {name.lower(): value for name, value in response.headers.items()}
        evidence.headers = _interesting(result.headers)
        try:
            result.body, evidence.body_truncated = read_bounded(response, max_body, deadline)
        except DeadlineExceeded as exc:
            result.body = exc.partial[:max_body]
            _failure(result, exc, deadline, reading_body=True)
        except Exception as exc:  # the answer broke off (urllib3, ssl and socket errors)
            if not _failure(result, exc, deadline, reading_body=True):
                raise
    except Exception as exc:  # a transport failure is a result; anything else (a bug) propagates
        if not _failure(result, exc, deadline, reading_body=False):
            raise
    finally:
        if response is not None:
            response.close()
        pool.clear()


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    connect_timeout: float,
    read_timeout: float,
    max_body: int = DEFAULT_MAX_BODY,
    deadline: float | None = None,
    ca_file: str | None = None,
    record_body: bool = True,
) -> HttpResult:
    """Send one request and read a bounded prefix of the answer; never raises for I/O errors.

    `ca_file` is the trust for https (default certifi, as botocore). `deadline` is a
    `time.monotonic()` value bounding connect, headers and body. `record_body=False` keeps the
    body out of `evidence.body_prefix` (use it for answers that may carry credentials; the
    body is still returned in `result.body`).
    """
    started = time.monotonic()
    evidence = HttpEvidence(method=method, url=url)
    result = HttpResult(evidence=evidence)
    pool = urllib3.PoolManager(
        num_pools=1,
        maxsize=1,
        cert_reqs=ssl.CERT_REQUIRED,
        ca_certs=ca_file or certifi.where(),
    )
    # Timeouts bound each wait; this bounds the whole request (headers sent one byte a second too).
    with abort_at(deadline):
        _exchange(pool, result, method, url, headers, body, connect_timeout, read_timeout, max_body, deadline)
    evidence.body_bytes = len(result.body)
    if record_body and result.body:
        evidence.body_prefix = result.body[:BODY_PREFIX_BYTES].decode("utf-8", errors="replace")
    evidence.duration_ms = round((time.monotonic() - started) * 1000, 3)
    return result
