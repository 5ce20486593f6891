"""The URL botocore would send a call to, computed without sending anything.

A real client is built and called; a `before-send` handler on that client records the final URL
(after endpoint rules: regional STS, `<account>.ddb.<region>…`, table ARNs, FIPS, dual-stack,
`AWS_ENDPOINT_URL_*`) and aborts the call before any connection is made.
"""

from __future__ import annotations

from typing import Any

# Never sent: the call is aborted in before-send, before any connection.
_PLACEHOLDER_KEY = "AKIAPREDICTPREDICT00"
_PLACEHOLDER_SECRET = "predict-only-never-sent"


class _Captured(Exception):
    """Raised by the before-send handler: the request was recorded and is not sent."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def capture_before_send(request: Any, **_: Any) -> None:
    """A `before-send` handler that stops the request and hands its final URL to `url_of`."""
    raise _Captured(request.url)


def url_of(client: Any, method: str, params: dict[str, Any]) -> str:
    """The URL botocore would send `client.<method>(**params)` to; `capture_before_send` must be
    registered on the client or its session. Other errors (no region, bad params) propagate."""
    try:
        getattr(client, method)(**params)
    except _Captured as captured:
        return captured.url
    raise RuntimeError(f"botocore sent {method} without calling before-send")


def predict_url(
    session: Any,
    service: str,
    operation: str,
    params: dict[str, Any],
    *,
    region: str | None,
    account_id: str | None = None,
) -> str | None:
    """The URL of `operation`, or None when botocore cannot build the call (no region, ...)."""
    from botocore import xform_name
    from botocore.config import Config

    try:
        client = session.create_client(
            service,
            region_name=region,
            aws_access_key_id=_PLACEHOLDER_KEY,
            aws_secret_access_key=_PLACEHOLDER_SECRET,
            aws_account_id=account_id,
            config=Config(retries={"total_max_attempts": 1}),
        )
        client.meta.events.register_first("before-send", capture_before_send)
        return url_of(client, xform_name(operation), params)
    except Exception:
        return None
