"""moto's server-mode WSGI app, wrapped for the lab: quiet request handler and in-process control.

Imported lazily by `FakeAws`: importing moto costs ~0.3 s and appends moto's (inactive unless
`mock_aws` is on) `before-send` stubber to botocore's BUILTIN_HANDLERS for the whole process.
moto's state is process-global: every FakeAws in a process shares the same tables and roles.
"""

from __future__ import annotations

import json
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.test import Client

from .serving import LOG

_FAKE_SIGNATURE = "0" * 64  # moto routes by the SigV4 scope and does not verify signatures


class QuietMotoHandler(MotoRequestHandler):
    """moto's request handler speaking HTTP/1.1 keep-alive and logging at DEBUG, not to stderr.

    Declaring protocol_version here keeps werkzeug's BaseWSGIServer from setting it on
    WSGIRequestHandler itself, which it does for any threaded server.
    """

    protocol_version = "HTTP/1.1"

    def log(self, type: str, message: str, *args: Any) -> None:
        LOG.debug("fake-aws %s: " + message, type, *args)


def make_moto_app() -> DomainDispatcherApplication:
    """A fresh moto dispatcher (routes by SigV4 scope / unsigned Action, not by Host)."""
    return DomainDispatcherApplication(create_backend_app)


class MotoControl:
    """Drives moto's own HTTP API in-process (no socket, no recording): table setup and reset."""

    def __init__(self, app: DomainDispatcherApplication) -> None:
        self._client = Client(app)

    def create_table(self, name: str, region: str, account_id: str) -> None:
        """Create an on-demand table with string hash key `pk`; an existing table is left alone."""
        body = {
            "TableName": name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        response = self._client.post(
            "/",
            data=json.dumps(body),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.CreateTable",
                "Authorization": _authorization(region, "dynamodb"),
                "x-moto-account-id": account_id,
            },
        )
        if response.status_code != 200 and b"ResourceInUseException" not in response.data:
            raise RuntimeError(f"moto refused CreateTable {name}: {response.status} {response.data[:200]!r}")

    def reset(self) -> None:
        """Forget every table, role and key moto holds (all accounts, all regions)."""
        response = self._client.post("/moto-api/reset")
        if response.status_code != 200:
            raise RuntimeError(f"moto refused reset: {response.status}")


def _authorization(region: str, service: str) -> str:
    """A SigV4-shaped Authorization header that routes to `service` in `region`."""
    scope = f"AKIAIOSFODNN7EXAMPLE/20260101/{region}/{service}/aws4_request"
    signed = "SignedHeaders=host;x-amz-target"
    return f"AWS4-HMAC-SHA256 Credential={scope}, {signed}, Signature={_FAKE_SIGNATURE}"
