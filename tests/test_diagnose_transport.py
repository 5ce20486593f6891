"""DNS, TCP and TLS failures, shaped like botocore's exception chains on real sockets (aws-sdk.md §5)."""

from __future__ import annotations

from egress_doctor.model import (
    ChainLink,
    CheckResult,
    DnsEvidence,
    Evidence,
    Layer,
    Symptom,
)
from tests.test_diagnose_evidence import (
    chain,
    default_host,
    result,
    target,
    tcp_evidence,
    tls_failed,
)

# --- DNS and TCP ----------------------------------------------------------------------------------


def dns_failure(check_id: str, gai_errno: int, host: str | None = None) -> CheckResult:
    host = host or default_host(check_id)
    text = {-2: "Name or service not known", -3: "Temporary failure in name resolution"}.get(
        gai_errno, "error"
    )
    symptom = {-2: Symptom.DNS_NXDOMAIN, -3: Symptom.DNS_UNREACHABLE}.get(gai_errno, Symptom.DNS_OTHER)
    error = chain(
        ("EndpointConnectionError", f'Could not connect to the endpoint URL: "https://{host}/"'),
        ("NameResolutionError", f"Failed to resolve '{host}' ([Errno {gai_errno}] {text})"),
        ChainLink(type="gaierror", message=f"[Errno {gai_errno}] {text}", errno=gai_errno),
    )
    evidence = Evidence(dns=DnsEvidence(name=host, error=text, gai_errno=gai_errno))
    return result(
        check_id,
        host=host,
        layer=Layer.DNS,
        symptom=symptom,
        error=error,
        evidence=evidence,
        reason=f"DNS lookup failed ({text})",
    )


def refused(check_id: str, host: str | None = None, port: int | None = None) -> CheckResult:
    t = target(check_id, host, port)
    error = chain(
        ("EndpointConnectionError", f'Could not connect to the endpoint URL: "{t.url}"'),
        ("NewConnectionError", "Failed to establish a new connection: [Errno 111] Connection refused"),
        ChainLink(type="ConnectionRefusedError", message="[Errno 111] Connection refused", errno=111),
    )
    tcp = tcp_evidence(t.host, t.port, connected=False, errno=111, error="Connection refused")
    evidence = Evidence(tcp=tcp)
    return result(
        check_id,
        host=t.host,
        port=t.port,
        layer=Layer.TCP,
        symptom=Symptom.CONNECT_REFUSED,
        error=error,
        evidence=evidence,
        reason="connection refused (ConnectionRefusedError errno 111)",
    )


def connect_timeout(check_id: str, host: str | None = None) -> CheckResult:
    t = target(check_id, host)
    error = chain(
        ("ConnectTimeoutError", f'Connect timeout on endpoint URL: "{t.url}"'),
        ("ConnectTimeoutError", "Connection to host timed out. (connect timeout=2)"),
        ("TimeoutError", "timed out"),
    )
    evidence = Evidence(tcp=tcp_evidence(t.host, t.port, connected=False, timed_out=True))
    return result(
        check_id,
        host=t.host,
        layer=Layer.TCP,
        symptom=Symptom.CONNECT_TIMEOUT,
        error=error,
        evidence=evidence,
        reason="connect timed out (TimeoutError)",
    )


def unreachable(check_id: str, host: str | None = None) -> CheckResult:
    t = target(check_id, host)
    error = chain(
        ("EndpointConnectionError", "Could not connect"),
        ChainLink(type="OSError", message="[Errno 113] No route to host", errno=113),
    )
    evidence = Evidence(tcp=tcp_evidence(t.host, t.port, connected=False, errno=113))
    return result(
        check_id,
        host=t.host,
        layer=Layer.TCP,
        symptom=Symptom.CONNECT_OTHER,
        error=error,
        evidence=evidence,
        reason="connect failed (OSError errno 113)",
    )


def plain_reset(check_id: str, after_request: bool = False, host: str | None = None) -> CheckResult:
    """Plain HTTP: accepted, then closed (the sidecar's catch-all to BlackHoleCluster)."""
    t = target(check_id, host)
    if after_request:
        error = chain(
            ("ProtocolError", "Connection aborted."),
            ("RemoteDisconnected", "Remote end closed connection without response"),
        )
        symptom = Symptom.HTTP_CLOSED
    else:
        error = chain(
            ("ProtocolError", "Connection aborted."),
            ChainLink(type="ConnectionResetError", message="[Errno 104] Connection reset by peer", errno=104),
        )
        symptom = Symptom.CONNECT_RESET
    return result(
        check_id,
        host=t.host,
        layer=Layer.TCP if not after_request else Layer.HTTP,
        symptom=symptom,
        error=error,
        evidence=Evidence(tcp=tcp_evidence(t.host, t.port)),
        reason="connection closed",
    )


# --- TLS ------------------------------------------------------------------------------------------


def tls_eof(check_id: str, host: str | None = None, subject: str | None = None,
            evidence: Evidence | None = None) -> CheckResult:
    """Envoy tcp_proxy to BlackHoleCluster closing with FIN: botocore SSLError → SSLEOFError.
    `evidence`: what the check saw before (its `aws` part is kept)."""
    t = target(check_id, host)
    reason = "UNEXPECTED_EOF_WHILE_READING"
    error = chain(
        (
            "SSLError",
            f"SSL validation failed for {t.url} [SSL: {reason}] EOF occurred in violation of protocol",
        ),
        ChainLink(
            type="SSLEOFError",
            message=f"[SSL: {reason}] EOF occurred in violation of protocol (_ssl.c:1006)",
            errno=8,
            reason=reason,
        ),
    )
    seen = Evidence(tcp=tcp_evidence(t.host, t.port), tls=tls_failed(t.host, error="EOF", reason=reason),
                    aws=evidence.aws if evidence else None)
    return result(
        check_id,
        host=t.host,
        layer=Layer.TLS,
        symptom=Symptom.TLS_CLOSED,
        error=error,
        evidence=seen,
        subject=subject,
        reason="connection closed during TLS handshake (SSLEOFError)",
    )


def tls_reset(check_id: str, host: str | None = None, race: bool = False) -> CheckResult:
    """The same close as an RST: ConnectionClosedError, or (race) EndpointConnectionError → ECONNRESET."""
    t = target(check_id, host)
    outer = "EndpointConnectionError" if race else "ConnectionClosedError"
    middle = "NewConnectionError" if race else "ProtocolError"
    error = chain(
        (outer, f"Connection was closed before we received a valid response from endpoint URL: {t.url}"),
        (middle, "Connection aborted."),
        ChainLink(type="ConnectionResetError", message="[Errno 104] Connection reset by peer", errno=104),
    )
    evidence = Evidence(tcp=tcp_evidence(t.host, t.port), tls=tls_failed(t.host, error="reset"))
    symptom = Symptom.CONNECT_RESET if race else Symptom.TLS_CLOSED
    return result(
        check_id,
        host=t.host,
        layer=Layer.TCP if race else Layer.TLS,
        symptom=symptom,
        error=error,
        evidence=evidence,
        reason="connection reset",
    )


def tls_failure(check_id: str, kind: str, host: str | None = None) -> CheckResult:
    """kind: timeout | untrusted | mismatch | wrong-version | other."""
    t = target(check_id, host)
    shapes = {
        "timeout": (
            Symptom.TLS_TIMEOUT,
            ChainLink(type="TimeoutError", message="_ssl.c:989: The handshake operation timed out"),
            {},
        ),
        "untrusted": (
            Symptom.TLS_UNTRUSTED,
            ChainLink(
                type="SSLCertVerificationError",
                verify_code=20,
                reason="CERTIFICATE_VERIFY_FAILED",
                message="certificate verify failed: unable to get local issuer certificate",
            ),
            {"peer_issuer": "CN=Corp Egress Proxy CA", "verify_code": 20},
        ),
        "mismatch": (
            Symptom.TLS_NAME_MISMATCH,
            ChainLink(
                type="CertificateError", message=f"hostname '{t.host}' doesn't match 'wrong.example.com'"
            ),
            {"peer_san": ["wrong.example.com"], "peer_subject": "CN=wrong.example.com"},
        ),
        "wrong-version": (
            Symptom.TLS_WRONG_VERSION,
            ChainLink(
                type="SSLError",
                message="[SSL: WRONG_VERSION_NUMBER] wrong version number",
                reason="WRONG_VERSION_NUMBER",
            ),
            {"reason": "WRONG_VERSION_NUMBER"},
        ),
        "other": (
            Symptom.TLS_OTHER,
            ChainLink(
                type="SSLError",
                message="[SSL: TLSV1_ALERT_INTERNAL_ERROR]",
                reason="TLSV1_ALERT_INTERNAL_ERROR",
            ),
            {},
        ),
    }
    symptom, root, tls = shapes[kind]
    error = chain(("SSLError", f"SSL validation failed for {t.url}"), root)
    evidence = Evidence(tcp=tcp_evidence(t.host, t.port), tls=tls_failed(t.host, **tls))
    return result(
        check_id,
        host=t.host,
        layer=Layer.TLS,
        symptom=symptom,
        error=error,
        evidence=evidence,
        reason=f"TLS failed ({root.type} {root.reason or ''})".strip(),
    )


# --- the shapes, pinned ---


def test_tls_eof_chain_ends_in_ssleoferror_with_unexpected_eof_reason() -> None:
    error = tls_eof("sts.get-caller-identity").error
    assert error is not None and error.root is not None
    assert (error.type, error.root.type, error.root.reason) == (
        "SSLError",
        "SSLEOFError",
        "UNEXPECTED_EOF_WHILE_READING",
    )


def test_tls_reset_race_is_an_econnreset_under_endpointconnectionerror() -> None:
    error = tls_reset("sts.get-caller-identity", race=True).error
    assert error is not None and error.root is not None
    assert (error.type, error.root.errno) == ("EndpointConnectionError", 104)
