"""HTTP replies: Envoy's local replies, IMDS and agent answers, AWS errors; plus credential-stage,
deadline and unclassified failures. Shapes from aws-sdk.md §5 and istio-egress.md §1."""

from __future__ import annotations

from egress_doctor.model import (
    AwsEvidence,
    CheckResult,
    ErrorInfo,
    Evidence,
    HttpEvidence,
    Layer,
    Status,
    Symptom,
    TlsEvidence,
)
from egress_doctor.probes import registry
from tests.test_diagnose_evidence import (
    REQUEST_ID,
    TRUST,
    chain,
    result,
    target,
    tcp_evidence,
)

# --- HTTP replies ---------------------------------------------------------------------------------

ENVOY_LOCAL = {"server": "envoy", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}
UF_BODY = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"


def http_reply(
    check_id: str,
    status: int,
    body: str = "",
    headers: dict[str, str] | None = None,
    *,
    host: str | None = None,
    symptom: Symptom = Symptom.HTTP_STATUS,
    aws: AwsEvidence | None = None,
    check_status: Status = Status.FAIL,
) -> CheckResult:
    t = target(check_id, host)
    all_headers = dict(ENVOY_LOCAL if headers is None else headers)
    all_headers.setdefault("content-length", str(len(body.encode())))
    if body:
        all_headers.setdefault("content-type", "text/plain")
    method = "PUT" if check_id == "imds.token" else "POST" if t.scheme == "https" else "GET"
    http = HttpEvidence(
        method=method,
        url=t.url,
        status=status,
        headers=all_headers,
        body_prefix=body or None,
        body_bytes=len(body.encode()),
    )
    layer = Layer.API if symptom is Symptom.AWS_ERROR else Layer.HTTP
    first = body.strip().splitlines()[0][:80] if body.strip() else "empty body"
    return result(
        check_id,
        check_status,
        host=t.host,
        layer=layer,
        symptom=symptom,
        error=ErrorInfo(type="HTTPError", message=f"HTTP {status}"),
        evidence=Evidence(tcp=tcp_evidence(t.host, t.port), http=http, aws=aws),
        reason=f"HTTP {status}: {first}",
    )


def envoy(check_id: str, kind: str, host: str | None = None) -> CheckResult:
    """Envoy's local replies (tests/canned.py has the same on real sockets)."""
    shapes = {
        "block_all": (502, ""),
        "uf": (503, UF_BODY),
        "uh": (503, "no healthy upstream"),
        "ut": (504, "upstream request timeout"),
        "nr": (404, ""),
        "rbac": (403, "RBAC: access denied"),
    }
    status, body = shapes[kind]
    return http_reply(check_id, status, body, host=host)


def upstream_reply(
    check_id: str, status: int, body: str, host: str | None = None, **kw: object
) -> CheckResult:
    """A reply an upstream produced, proxied by the sidecar (server overwritten, upstream timed)."""
    headers = {"server": "envoy", "x-envoy-upstream-service-time": "3"}
    return http_reply(check_id, status, body, headers, host=host, **kw)  # type: ignore[arg-type]


def metadata_answer(check_id: str, status: int, body: str = "", *, warn: bool = False) -> CheckResult:
    """IMDS or the agent answered 4xx itself: the probes record it as an AWS-level answer."""
    aws = AwsEvidence(
        service="imds" if check_id.startswith("imds.") else "container",
        operation={"imds.token": "PutToken", "imds.role": "GetRoleName"}.get(check_id, "GetCredentials"),
        error_code=str(status),
        http_status=status,
    )
    headers = {"server": "EC2ws", "content-type": "text/html"}
    return http_reply(
        check_id,
        status,
        body,
        headers,
        symptom=Symptom.AWS_ERROR,
        aws=aws,
        check_status=Status.WARN if warn else Status.FAIL,
    )


def http_timeout(check_id: str, host: str | None = None, warn: bool = False) -> CheckResult:
    t = target(check_id, host)
    error = chain(("ReadTimeoutError", "Read timed out. (read timeout=1)"), ("TimeoutError", "timed out"))
    return result(
        check_id,
        Status.WARN if warn else Status.FAIL,
        host=t.host,
        layer=Layer.HTTP,
        symptom=Symptom.HTTP_TIMEOUT,
        error=error,
        evidence=Evidence(tcp=tcp_evidence(t.host, t.port)),
        reason="no response in time (TimeoutError)",
    )


def closed_after_tls(check_id: str, host: str | None = None) -> CheckResult:
    t = target(check_id, host)
    error = chain(
        ("ConnectionClosedError", "Connection was closed"), ("RemoteDisconnected", "Remote end closed")
    )
    evidence = Evidence(tcp=tcp_evidence(t.host, t.port), tls=TlsEvidence(sni=t.host, ok=True, trust=TRUST))
    return result(
        check_id,
        host=t.host,
        layer=Layer.HTTP,
        symptom=Symptom.HTTP_CLOSED,
        error=error,
        evidence=evidence,
        reason="connection closed without a response",
    )


def not_aws(check_id: str, host: str | None = None) -> CheckResult:
    error = chain(("KeyError", "'GetCallerIdentityResult'"))
    reply = upstream_reply(check_id, 200, "<html><body>Please log in</body></html>", host=host)
    reply.symptom, reply.error, reply.reason = Symptom.NOT_AWS, error, "reply is not an AWS answer"
    return reply


def aws_error(
    check_id: str,
    code: str,
    message: str = "",
    status: int = 400,
    host: str | None = None,
    subject: str | None = None,
) -> CheckResult:
    """A real AWS error answer, proxied by the sidecar: request id and upstream time present."""
    row = registry.spec(check_id)
    service, operation = str(row.service), str(row.operation)
    message = message or f"{code} happened"
    t = target(check_id, host)
    http = HttpEvidence(
        method="POST",
        url=t.url,
        status=status,
        headers={
            "server": "envoy",
            "x-envoy-upstream-service-time": "12",
            "x-amzn-requestid": REQUEST_ID,
            "content-type": "text/xml",
        },
    )
    aws = AwsEvidence(
        service=service,
        operation=operation,
        error_code=code,
        error_message=message,
        request_id=REQUEST_ID,
        http_status=status,
    )
    error = chain(
        ("ClientError", f"An error occurred ({code}) when calling the {operation} operation: {message}")
    )
    return result(
        check_id,
        host=t.host,
        layer=Layer.API,
        symptom=Symptom.AWS_ERROR,
        error=error,
        evidence=Evidence(http=http, aws=aws),
        subject=subject,
        reason=f"AWS answered {code}: {message}",
    )


def credential_failure(check_id: str, error_type: str, message: str) -> CheckResult:
    return result(
        check_id,
        layer=Layer.CREDENTIALS,
        symptom=Symptom.CREDENTIALS,
        error=ErrorInfo(type=error_type, message=message),
        reason=message,
    )


def deadline(check_id: str) -> CheckResult:
    return result(check_id, layer=None, symptom=Symptom.DEADLINE, reason="deadline expired")


def unclassified(check_id: str) -> CheckResult:
    return result(
        check_id, error=ErrorInfo(type="RuntimeError", message="something odd"), reason="RuntimeError"
    )


# --- the shapes, pinned ---


def test_block_all_502_is_an_empty_envoy_local_reply_without_upstream_time() -> None:
    http = envoy("imds.token", "block_all").evidence.http
    assert http is not None
    assert (http.status, http.headers["server"], http.headers["content-length"]) == (502, "envoy", "0")
    assert "x-envoy-upstream-service-time" not in http.headers
    assert not http.body_prefix


def test_upstream_connect_error_body_is_envoys_text_with_the_reset_reason() -> None:
    http = envoy("container.credentials", "uf").evidence.http
    assert http is not None and http.body_prefix is not None
    assert http.status == 503
    assert http.body_prefix.startswith(
        "upstream connect error or disconnect/reset before headers. reset reason:"
    )


def test_aws_answers_carry_a_request_id_and_upstream_time_unlike_envoy_replies() -> None:
    http = aws_error("sts.get-caller-identity", "AccessDenied", status=403).evidence.http
    assert http is not None
    assert {"x-amzn-requestid", "x-envoy-upstream-service-time"} <= set(http.headers)


def test_factories_match_the_envoy_replies_of_the_socket_test_servers() -> None:
    """Cross-check with tests/canned.py, whose replies are served on real sockets."""
    import pytest

    canned = pytest.importorskip("tests.canned")
    pairs = {
        "block_all": canned.envoy_block_all_502(),
        "uf": canned.envoy_upstream_connect_error_503(),
        "uh": canned.envoy_no_healthy_upstream_503(),
        "ut": canned.envoy_upstream_timeout_504(),
        "nr": canned.envoy_no_route_404(),
        "rbac": canned.envoy_rbac_403(),
    }
    for kind, reply in pairs.items():
        http = envoy("imds.role", kind).evidence.http
        assert http is not None
        assert http.status == reply.status, kind
        assert (http.body_prefix or "").encode() == reply.body, kind
        assert http.headers["server"] == dict(reply.headers)["server"], kind
        assert "x-envoy-upstream-service-time" not in {k for k, _ in reply.headers}, kind
