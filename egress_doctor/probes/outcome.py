"""Turn what a call raised or returned into (layer, symptom, reason): the check's verdict.

Transport failures are classified by `net.classify` (exception types, errno, ssl reasons);
this module adds what only the SDK level knows: AWS error codes, Envoy's local replies,
replies that are not AWS at all, and the SDK's credential-stage errors.
"""

from __future__ import annotations

from typing import Any

from egress_doctor.model import AwsEvidence, ErrorInfo, Evidence, HttpEvidence, Layer, Symptom, is_envoy_local_reply
from egress_doctor.net.classify import classify, error_info

# Raised before any request leaves: the SDK could not build a signed call.
CREDENTIAL_STAGE_ERRORS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "MetadataRetrievalError",
    "NoRegionError",
    "InvalidConfigError",
    "EndpointResolutionError",
    "InvalidIMDSEndpointError",
    "FileNotFoundError",
    "PermissionError",
}


def has_request_id(http: HttpEvidence | None, response: dict[str, Any] | None = None) -> bool:
    if response and (response.get("ResponseMetadata") or {}).get("RequestId"):
        return True
    return bool(http and ("x-amzn-requestid" in http.headers or "x-amz-request-id" in http.headers))


def body_text(raw: bytes, limit: int = 200) -> str:
    return raw[:limit].decode("utf-8", "replace")


def api_failure(
    exc: BaseException, evidence: Evidence, raw_prefix: bytes, service: str, operation: str
) -> tuple[Layer | None, Symptom | None, ErrorInfo, str]:
    """Layer, symptom, error and one-line reason for an exception out of a botocore call."""
    from egress_doctor.aws.session import LadderFailure

    if isinstance(exc, LadderFailure):
        result = exc.result
        info = result.error or error_info(exc)
        return result.layer, result.symptom, info, transport_reason(result.symptom, info)
    info = error_info(exc)
    name = type(exc).__name__
    http = evidence.http
    if name == "ClientError" or _is_client_error(exc):
        return _client_error(exc, evidence, raw_prefix, service, operation, info)
    if name == "ResponseParserError":
        if http is not None:
            http.body_prefix = body_text(raw_prefix)
        status = http.status if http else None
        symptom = Symptom.HTTP_STATUS if status and status >= 300 else Symptom.NOT_AWS
        return Layer.HTTP, symptom, info, http_reason(http, "reply is not an AWS answer")
    if name in CREDENTIAL_STAGE_ERRORS or (name == "ValueError" and "Unsupported host" in str(exc)):
        return Layer.CREDENTIALS, Symptom.CREDENTIALS, info, f"{name}: {_one_line(info.message)}"
    verdict = classify(exc)
    if verdict is not None:
        layer, symptom = verdict
        return layer, symptom, info, transport_reason(symptom, info)
    if isinstance(exc, KeyError | TypeError | AttributeError | ValueError | RecursionError) and http is not None:
        # An answer came back and botocore's parser choked on it (not UTF-8, not JSON or XML, keys
        # missing): whatever sent it, it is no AWS answer.
        http.body_prefix = body_text(raw_prefix)
        detail = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else type(exc).__name__
        return Layer.HTTP, Symptom.NOT_AWS, info, f"reply is not an AWS answer ({detail})"
    return None, None, info, f"{name}: {_one_line(info.message)}"


def _one_line(message: str) -> str:
    """A reason is one line of the table (botocore's ParamValidationError spans several)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _is_client_error(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError)


def _client_error(
    exc: Any, evidence: Evidence, raw_prefix: bytes, service: str, operation: str, info: ErrorInfo
) -> tuple[Layer, Symptom, ErrorInfo, str]:
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    http = evidence.http
    code = str(error.get("Code") or "")
    if has_request_id(http, response) and not is_envoy_local_reply(http):
        evidence.aws = AwsEvidence(
            service=service,
            operation=operation,
            error_code=code,
            error_message=str(error.get("Message") or ""),
            request_id=(response.get("ResponseMetadata") or {}).get("RequestId"),
            http_status=status,
        )
        return Layer.API, Symptom.AWS_ERROR, info, f"AWS answered {code}: {error.get('Message') or ''}".strip()
    if http is not None:
        http.body_prefix = body_text(raw_prefix)
    return Layer.HTTP, Symptom.HTTP_STATUS, info, http_reason(http, f"HTTP {status}")


def http_reason(http: HttpEvidence | None, fallback: str) -> str:
    if http is None or http.status is None:
        return fallback
    origin = "from Envoy" if is_envoy_local_reply(http) else ""
    body = (http.body_prefix or "").strip().splitlines()
    detail = f": {body[0][:80]}" if body else ", empty body"
    return " ".join(p for p in (f"HTTP {http.status}", origin) if p) + detail


_TRANSPORT_REASONS = {
    Symptom.DNS_NXDOMAIN: "name does not resolve",
    Symptom.DNS_UNREACHABLE: "DNS resolver unreachable",
    Symptom.DNS_OTHER: "DNS lookup failed",
    Symptom.CONNECT_REFUSED: "connection refused",
    Symptom.CONNECT_TIMEOUT: "connect timed out",
    Symptom.CONNECT_RESET: "connection reset",
    Symptom.CONNECT_OTHER: "connect failed",
    Symptom.TLS_CLOSED: "connection closed during TLS handshake",
    Symptom.TLS_TIMEOUT: "TLS handshake timed out",
    Symptom.TLS_UNTRUSTED: "certificate not trusted",
    Symptom.TLS_NAME_MISMATCH: "certificate is for another name",
    Symptom.TLS_WRONG_VERSION: "TLS spoken to a plaintext listener",
    Symptom.TLS_OTHER: "TLS failed",
    Symptom.HTTP_CLOSED: "connection closed without a response",
    Symptom.HTTP_TIMEOUT: "no response in time",
    Symptom.DEADLINE: "the run's --deadline expired first",
}


def transport_reason(symptom: Symptom | None, info: ErrorInfo) -> str:
    root = info.root
    detail = root.type if root else info.type
    if root and root.reason:
        detail = f"{root.type} {root.reason}"
    elif root and root.errno is not None:
        detail = f"{root.type} errno {root.errno}"
    text = _TRANSPORT_REASONS.get(symptom, info.message) if symptom else info.message
    return f"{text} ({detail})"
