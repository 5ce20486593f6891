"""AWS errors the fake AWS answers instead of moto, shaped the way each service really answers.

"The mesh is fine, IAM is not": the request crossed every network hop and AWS itself said no.
The body follows the service's protocol (botocore's model says which), so botocore parses it into
a `ClientError` with the given code: query services (STS, SNS) answer `<ErrorResponse>` XML, JSON
services (DynamoDB, SQS, KMS, Secrets Manager, SSM, Kinesis, Logs) `{"__type": …}`, REST-JSON
(Lambda) a body plus `x-amzn-ErrorType`, REST-XML (S3) `<Error>` — and nothing at all for a HEAD.
Every answer carries a request id, as AWS's do.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from xml.sax.saxutils import escape

ANY_OPERATION = "*"  # for REST services, whose operation the fake cannot name from the request
DYNAMODB_ERROR_NAMESPACE = "com.amazonaws.dynamodb.v20120810#"


@functools.cache
def protocol(service: str) -> tuple[str, str]:
    """(protocol, JSON version) of `service` from botocore's model; ValueError for unknown names."""
    from botocore.exceptions import UnknownServiceError
    from botocore.loaders import create_loader

    try:
        metadata = create_loader().load_service_model(service, "service-2")["metadata"]
    except UnknownServiceError:
        raise ValueError(f"botocore knows no service {service!r}") from None
    return str(metadata["protocol"]), str(metadata.get("jsonVersion", "1.0"))


def default_error_code(service: str) -> str:
    """The access-denied code each service really uses."""
    kind, _ = protocol(service)
    return "AccessDeniedException" if kind in ("json", "rest-json") else "AccessDenied"


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


@dataclass(frozen=True)
class InjectedAnswer:
    """An AWS error the fake returns for one service operation instead of asking moto."""

    service: str
    operation: str  # or ANY_OPERATION
    status: int
    code: str
    message: str
    error_type: str = "Sender"  # query protocols' <Type>: "Sender" for 4xx, "Receiver" for 5xx

    def render(self, method: str = "POST") -> tuple[str, list[tuple[str, str]], bytes]:
        """(status line, headers, body) in the service's own error format."""
        request_id = str(uuid.uuid4())
        kind, json_version = protocol(self.service)
        headers = [("x-amzn-RequestId", request_id)]
        if kind == "json":
            content_type, body = f"application/x-amz-json-{json_version}", self._json_body()
        elif kind == "rest-json":
            content_type, body = "application/json", json.dumps({"Type": "User", "message": self.message}).encode()
            headers.append(("x-amzn-ErrorType", self.code))
        elif kind == "rest-xml":
            content_type, body = "application/xml", self._rest_xml_body(request_id)
            headers.append(("x-amz-request-id", request_id))
        else:
            content_type, body = "text/xml", self._query_body(request_id)
        if method == "HEAD":
            body = b""
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        return status_line(self.status), headers, body

    def _json_body(self) -> bytes:
        code = DYNAMODB_ERROR_NAMESPACE + self.code if self.service == "dynamodb" else self.code
        return json.dumps({"__type": code, "message": self.message}).encode()

    def _query_body(self, request_id: str) -> bytes:
        return (
            f'<ErrorResponse xmlns="https://{self.service}.amazonaws.com/doc/">\n'
            f"  <Error>\n    <Type>{escape(self.error_type)}</Type>\n"
            f"    <Code>{escape(self.code)}</Code>\n    <Message>{escape(self.message)}</Message>\n"
            f"  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
        ).encode()

    def _rest_xml_body(self, request_id: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
