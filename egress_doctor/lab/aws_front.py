"""The front door of the fake AWS: records every request, answers some itself, passes the rest to moto.

It answers itself with injected AWS errors (`aws_errors`: "the mesh is fine, IAM is not", in each
service's own error format) and with S3's answer to a request signed for a region the bucket is
not in (`s3_regions`), which moto does not give.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .aws_errors import ANY_OPERATION, InjectedAnswer
from .s3_regions import S3Regions
from .serving import RequestLog

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Actions that botocore sends unsigned; moto routes them to STS as well.
UNSIGNED_STS_ACTIONS = frozenset({"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/\d{8}/([^/\s,]+)/([^/\s,]+)/aws4_request")
KEY_PREFIX_LENGTH = 4  # "ASIA" (temporary) or "AKIA" (long-term): never more of the key


@dataclass(frozen=True)
class AwsRequest:
    """One request the fake AWS received, reduced to what tests assert on (no secrets)."""

    host: str  # the Host header as sent, e.g. "sts.us-east-1.amazonaws.com"
    sni: str | None  # TLS server name the client sent (None: no SNI, e.g. an IP literal)
    method: str
    path: str
    service: str | None  # "sts", "dynamodb", ... (SigV4 scope, X-Amz-Target or unsigned Action)
    operation: str | None  # "GetCallerIdentity", "DescribeTable", ... (None for REST services)
    signed: bool  # carried a SigV4 Authorization header
    access_key_prefix: str | None  # first 4 characters of the signing key id, e.g. "ASIA"
    scope_region: str | None  # region of the SigV4 credential scope
    security_token: bool  # X-Amz-Security-Token was sent (temporary credentials)
    status: int | None  # status answered (None if the response never started)
    injected: bool  # answered by an injected error (or S3's region check), not by moto
    target: str | None = None  # the X-Amz-Target header (JSON protocols: which API version spoke)


@dataclass(frozen=True)
class _Signature:
    """What a SigV4 Authorization header reveals without revealing the key."""

    signed: bool
    access_key_prefix: str | None = None
    region: str | None = None
    service: str | None = None


def read_signature(environ: dict[str, Any]) -> _Signature:
    """The SigV4 credential scope of a request (header or presigned query), key id cut to its prefix."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    source = authorization or environ.get("QUERY_STRING", "").replace("%2F", "/")
    match = _CREDENTIAL.search(source)
    if not match:
        return _Signature(signed=bool(authorization))
    key_id, region, service = match.groups()
    return _Signature(True, key_id[:KEY_PREFIX_LENGTH], region, service.lower())


def take_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body and put it back as a fresh stream for the next app."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def identify_operation(
    environ: dict[str, Any], body: bytes, scope_service: str | None
) -> tuple[str | None, str | None]:
    """(service, operation) from X-Amz-Target (JSON protocols) or `Action=` (query protocols)."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target and "." in target:
        prefix, operation = target.rsplit(".", 1)
        service = "dynamodb" if target.startswith(DYNAMODB_TARGET_PREFIX) else scope_service
        return service or prefix.lower(), operation
    form = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form.update(parse_qs(body.decode("utf-8", "replace")))
    action = (form.get("Action") or [None])[0]
    if action in UNSIGNED_STS_ACTIONS and scope_service is None:
        return "sts", action
    return scope_service, action


class AwsFrontDoor:
    """WSGI middleware in front of moto: records each request, answers injected errors itself."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.requests: RequestLog[AwsRequest] = RequestLog()
        self.s3_regions = S3Regions()
        self._answers: dict[tuple[str, str], InjectedAnswer] = {}
        self._lock = threading.Lock()

    def inject(self, answer: InjectedAnswer) -> None:
        """Answer (service, operation) with `answer` from now on."""
        with self._lock:
            self._answers[(answer.service, answer.operation)] = answer

    def clear_answers(self) -> None:
        """Let moto answer everything again."""
        with self._lock:
            self._answers.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        signature = read_signature(environ)
        body = take_body(environ)
        service, operation = identify_operation(environ, body, signature.service)
        with self._lock:
            answer = self._answers.get((service or "", operation or "")) or self._answers.get(
                (service or "", ANY_OPERATION))
        method = environ.get("REQUEST_METHOD", "")
        rendered = answer.render(method) if answer is not None else None
        if rendered is None and service == "s3":
            rendered = self.s3_regions.misdirected(environ.get("HTTP_HOST", ""), environ.get("PATH_INFO", ""),
                                                   method, signature.region)
        seen = _Seen(environ, signature, service, operation, injected=rendered is not None)
        if rendered is not None:
            status_line, headers, payload = rendered
            self.requests.append(seen.finish(int(status_line.split(" ", 1)[0])))
            start_response(status_line, headers)
            return [payload]
        return self.app(environ, self._recording(start_response, seen))

    def _recording(self, start_response: Callable[..., Any], seen: _Seen) -> Callable[..., Any]:
        """A start_response that records the request with the status moto chose."""

        def record_then_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.requests.append(seen.finish(int(status.split(" ", 1)[0])))
            return start_response(status, headers, exc_info)

        return record_then_start


@dataclass(frozen=True)
class _Seen:
    """The parts of an AwsRequest known before the answer."""

    environ: dict[str, Any]
    signature: _Signature
    service: str | None
    operation: str | None
    injected: bool

    def finish(self, status: int | None) -> AwsRequest:
        environ = self.environ
        return AwsRequest(
            host=environ.get("HTTP_HOST", ""),
            sni=getattr(environ.get("werkzeug.socket"), "lab_sni", None),
            method=environ.get("REQUEST_METHOD", ""),
            path=environ.get("PATH_INFO", ""),
            service=self.service,
            operation=self.operation,
            signed=self.signature.signed,
            access_key_prefix=self.signature.access_key_prefix,
            scope_region=self.signature.region,
            security_token="HTTP_X_AMZ_SECURITY_TOKEN" in environ,
            status=status,
            injected=self.injected,
            target=environ.get("HTTP_X_AMZ_TARGET"),
        )
