"""The network ladder: DNS, then TCP, then (for https) the TLS handshake, stopping at the first
rung that fails. It never sends an HTTP request.

The connection goes through `dial.trace_dial`, so the active `dial_scope` applies (its
`--connect-to` map, its deadline, its recorder and abort). TLS is set up the way urllib3 (and so
botocore) sets it up: urllib3's default context, ALPN http/1.1, SNI = the URL's host, trust =
exactly `ca_file`, hostname checked. The handshake is bounded by `connect_timeout`, because
urllib3 runs the handshake under the connect timeout (it reports a stall there as
"Read timed out. (read timeout=<connect timeout>)").
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from urllib3.util import parse_url
from urllib3.util.ssl_ import create_urllib3_context

from egress_doctor.model import DnsEvidence, ErrorInfo, Layer, Symptom, TcpEvidence, TlsEvidence
from egress_doctor.net import dial
from egress_doctor.net.classify import Phase, classify, error_info

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class LadderResult:
    """What each rung saw; `layer`/`symptom`/`error` describe the first rung that failed."""

    url: str
    dns: DnsEvidence | None = None
    tcp: TcpEvidence | None = None
    tls: TlsEvidence | None = None
    layer: Layer | None = None
    symptom: Symptom | None = None
    error: ErrorInfo | None = None
    # "addr:port" actually dialled when a --connect-to rule applied (model.Target.connect_to).
    connect_to: str | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.layer is None


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context like urllib3's for botocore: its defaults, trust = `ca_file` only.

    One per bundle (and version of the file), shared: loading a bundle such as certifi's costs
    milliseconds, and every probe of every run would load it again. Contexts are thread-safe."""
    try:
        version = os.stat(ca_file).st_mtime_ns
    except OSError:
        version = 0  # loading it fails below, as it must
    return _tls_context(ca_file, version)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str, _version: int) -> ssl.SSLContext:
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=ca_file)
    context.check_hostname = True
    with contextlib.suppress(NotImplementedError):
        context.set_alpn_protocols(["http/1.1"])
    return context


def _name(parts: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """An X.509 name from getpeercert() as `CN=..., O=...`."""
    return ", ".join(f"{key}={value}" for rdn in parts for key, value in rdn)


def _peer_facts(peer: dict[str, Any], evidence: TlsEvidence) -> None:
    evidence.peer_subject = _name(peer.get("subject", ())) or None
    evidence.peer_issuer = _name(peer.get("issuer", ())) or None
    evidence.peer_san = [f"{kind}:{value}" for kind, value in peer.get("subjectAltName", ())]


# What a rung reports when the classifier does not recognise the failure.
_UNRECOGNISED: dict[Phase, tuple[Layer, Symptom]] = {
    "dns": (Layer.DNS, Symptom.DNS_OTHER),
    "tcp": (Layer.TCP, Symptom.CONNECT_OTHER),
    "tls": (Layer.TLS, Symptom.TLS_OTHER),
    "http": (Layer.HTTP, Symptom.HTTP_CLOSED),
}


def _fail(result: LadderResult, exc: BaseException, during: Phase, tls: bool) -> LadderResult:
    layer, symptom = classify(exc, during=during, tls=tls) or _UNRECOGNISED[during]
    scope = dial.current_scope()
    if scope is not None and scope.recorder.aborted:
        # The run's watchdog shut the socket down: what followed is a consequence of that.
        symptom = Symptom.DEADLINE
    result.layer, result.symptom = layer, symptom
    result.error = error_info(exc)
    return result


def _handshake(
    sock: socket.socket, host: str, ca_file: str, trust: str, timeout: float, result: LadderResult
) -> None:
    evidence = TlsEvidence(sni=host, ok=False, trust=trust)
    result.tls = evidence
    started = time.monotonic()
    bounded: float | None = timeout
    try:
        bounded = dial.bound_timeout(timeout)
        sock.settimeout(bounded)
        wrapped = tls_context(ca_file).wrap_socket(sock, server_hostname=host)
    except OSError as exc:  # ssl errors, resets, timeouts, DeadlineExceeded
        evidence.duration_ms = round((time.monotonic() - started) * 1000, 3)
        evidence.error = str(exc) or type(exc).__name__
        evidence.reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
        evidence.verify_code = getattr(exc, "verify_code", None)
        failure: OSError = exc
        cut_short = bounded is not None and bounded < timeout
        if isinstance(exc, TimeoutError) and not isinstance(exc, dial.DeadlineExceeded) and cut_short:
            failure = dial.DeadlineExceeded("the run's deadline expired during the TLS handshake")
            failure.__cause__ = exc
        _fail(result, failure, "tls", tls=True)
        return
    with wrapped:
        evidence.duration_ms = round((time.monotonic() - started) * 1000, 3)
        evidence.ok = True
        evidence.protocol = wrapped.version()
        cipher = wrapped.cipher()
        evidence.cipher = cipher[0] if cipher else None
        _peer_facts(wrapped.getpeercert() or {}, evidence)


def probe_endpoint(
    url: str,
    *,
    ca_file: str,
    connect_timeout: float,
    read_timeout: float | None = None,
    trust: str | None = None,
) -> LadderResult:
    """Climb DNS → TCP → TLS for `url` and report the first rung that failed (or none).

    `ca_file` is the trust botocore would use (the caller computes it: AWS_CA_BUNDLE, config
    `ca_bundle` or certifi); `trust` labels it in the evidence (default `ca_file=<path>`).
    `connect_timeout` bounds the connect and, as in urllib3, the TLS handshake.
    `read_timeout` is accepted for symmetry with the HTTP probes; no rung reads a response.
    """
    started = time.monotonic()
    parsed = parse_url(url)
    scheme = (parsed.scheme or "https").lower()
    host = (parsed.host or "").strip("[]")
    port = parsed.port or DEFAULT_PORTS.get(scheme, 443)
    result = LadderResult(url=url)
    record = dial.trace_dial(host, port, connect_timeout)
    result.dns = record.dns
    result.tcp = record.tcp[-1] if record.tcp else None
    result.connect_to = record.connect_to
    tls = scheme == "https"
    trust_label = trust or f"ca_file={ca_file}"
    if record.sock is None:
        error = record.error or OSError(f"could not connect to {host}:{port}")
        _fail(result, error, "dns" if record.dns is None or record.dns.error else "tcp", tls=tls)
        if result.layer is Layer.TLS:
            # An RST that beat connect()'s completion check: the handshake never started.
            result.tls = TlsEvidence(sni=host, ok=False, trust=trust_label, error=str(error), duration_ms=0.0)
    elif tls:
        _handshake(record.sock, host, ca_file, trust_label, connect_timeout, result)
    if record.sock is not None:
        record.sock.close()
    result.duration_ms = round((time.monotonic() - started) * 1000, 3)
    return result
