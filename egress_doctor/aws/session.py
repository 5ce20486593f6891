"""A botocore session whose every client is bounded and observed.

Bounded: short connect/read timeouts and exactly one attempt (`total_max_attempts=1`; plain
`max_attempts` counts retries), set as the session's default client config so that any client
botocore creates for itself is bounded too; response bodies are read up to a fixed prefix.

Observed: `before-send` records each URL the SDK really sent to and first runs the ladder
(DNS, TCP, TLS with botocore's own trust) against it, aborting the call at the first rung that
fails; `before-parse` records status, headers and the body prefix even when parsing then fails
(STS turns Envoy's text replies into a ResponseParserError without a status).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from egress_doctor.aws.trust import Trust
from egress_doctor.model import INTERESTING_HEADERS, HttpEvidence, Target
from egress_doctor.net.connect_to import ConnectToMap
from egress_doctor.net.http import read_bounded
from egress_doctor.net.ladder import LadderResult, probe_endpoint
from egress_doctor.probes.progress import CheckProgress, current_check

BODY_PREFIX_BYTES = 512


class LadderFailure(Exception):
    """Raised from `before-send`: a rung below HTTP failed, so the request was not sent."""

    def __init__(self, result: LadderResult) -> None:
        super().__init__(result.error.message if result.error else "ladder failed")
        self.result = result


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    max_body: int = 1 << 20  # bytes of a response body read at most; the rest is dropped


def target_of(url: str, connect_to: ConnectToMap | None) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    dialled = connect_to.resolve(host, port) if connect_to else None
    via = f"{dialled[0]}:{dialled[1]}" if dialled and dialled != (host, port) else None
    return Target(url=url, host=host, port=port, scheme=scheme, connect_to=via)


def record_ladder(progress: CheckProgress, result: LadderResult) -> None:
    progress.evidence.dns = result.dns or progress.evidence.dns
    progress.evidence.tcp = result.tcp or progress.evidence.tcp
    progress.evidence.tls = result.tls or progress.evidence.tls


class ProbeSession:
    """One botocore session per run; clients are created from it per check."""

    def __init__(
        self,
        limits: Limits,
        connect_to: ConnectToMap | None,
        trust_of: Callable[[Any], Trust],
        data_loader: Any = None,
    ):
        import botocore.session
        from botocore.config import Config

        self.limits = limits
        self.connect_to = connect_to
        from egress_doctor.aws.loader import create_model_loader

        self.session = botocore.session.Session()
        # Shared between runs (serve): models are parsed once per process. Either way a ModelLoader,
        # which finds a service's models without listing every service first (aws/loader.py).
        if data_loader is None:
            data_loader = create_model_loader(self.session.get_config_variable("data_path"))
        self.session.register_component("data_loader", data_loader)
        self.config = Config(
            connect_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        self.session.set_default_client_config(self.config)
        self.session.register("before-send", self._before_send)
        self.session.register("before-parse", self._before_parse)
        self.trust = trust_of(self.session)
        self._lock = threading.Lock()
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def preload(self, services: Sequence[str]) -> None:
        """Read the service models and endpoint rules the run's clients will need, into the session's
        loader (it caches them), ahead of the clients: meant for a thread started before the credential
        step, whose network waits it fills. Best effort: a client loads whatever is still missing."""
        loader = self.session.get_component("data_loader")
        for service in dict.fromkeys(services):
            try:  # as botocore's client does: the model by name, the rules by its version (no other scan)
                loader.load_service_model(service, "service-2")
                version = loader.determine_latest_version(service, "service-2")
                loader.load_service_model(service, "endpoint-rule-set-1", version)
            except Exception:  # an unknown or partial model: the client says so, not this
                continue

    def client(self, service: str, region: str | None, credentials: Any = None, *, unsigned: bool = False) -> Any:
        """The session's client for `service` in `region` with these credentials, built by the first
        caller (others wait for it; clients are thread-safe) and kept: a session that lives across
        runs (`serve`) builds a service's client again only when the credentials change."""
        key = (service, region, unsigned, _fingerprint(credentials))
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            client = self._clients.get(key)
            if client is None:
                client = self._new_client(service, region, credentials, unsigned)
                with self._lock:
                    for old in [k for k in self._clients if k[:3] == key[:3]]:  # other (older) credentials
                        _close(self._clients.pop(old))
                        self._building.pop(old, None)
                    self._clients[key] = client
        return client

    def close_connections(self) -> None:
        """Close every client's pooled connections, so that the next run dials (and probes) anew."""
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            _close(client)

    def _new_client(self, service: str, region: str | None, credentials: Any, unsigned: bool) -> Any:
        from botocore import UNSIGNED
        from botocore.config import Config

        config = self.config.merge(Config(signature_version=UNSIGNED)) if unsigned else self.config
        kwargs: dict[str, Any] = {"region_name": region, "config": config}
        if credentials is not None:
            kwargs.update(
                aws_access_key_id=credentials.access_key,
                aws_secret_access_key=credentials.secret_key,
                aws_session_token=credentials.token,
                aws_account_id=getattr(credentials, "account_id", None),
            )
        client = self.session.create_client(service, **kwargs)
        endpoint = client._endpoint
        endpoint.http_session = _BoundedBodySession(endpoint.http_session, self.limits.max_body)
        return client

    def _before_send(self, request: Any, **_: Any) -> None:
        progress = current_check.get()
        if progress is None:
            return None
        target = target_of(request.url, self.connect_to)
        progress.target = target
        progress.evidence.requests.append(request.url)
        key = f"{target.host}:{target.port}"
        if key in progress.laddered:
            return None
        progress.laddered.add(key)
        result = probe_endpoint(
            request.url,
            ca_file=self.trust.ca_file,
            connect_timeout=progress.remaining(self.limits.connect_timeout),
            read_timeout=progress.remaining(self.limits.read_timeout),
            trust=self.trust.label,
        )
        record_ladder(progress, result)
        if not result.ok:
            raise LadderFailure(result)
        return None

    def _before_parse(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        progress = current_check.get()
        if progress is None:
            return
        headers = {k.lower(): str(v) for k, v in dict(response_dict.get("headers") or {}).items()}
        body = response_dict.get("body")
        raw = body if isinstance(body, bytes | bytearray) else b""
        progress.raw_body_prefix = bytes(raw[:BODY_PREFIX_BYTES])
        if headers.get("x-amz-bucket-region"):  # S3 says where the bucket lives (any status)
            progress.bucket_region = headers["x-amz-bucket-region"]
        progress.evidence.http = HttpEvidence(
            method=str(operation_model.http.get("method", "POST")),
            url=progress.target.url if progress.target else "",
            status=response_dict.get("status_code"),
            headers={k: v for k, v in headers.items() if k in INTERESTING_HEADERS},
            body_bytes=len(raw),
            body_truncated=progress.body_truncated,
        )


def _fingerprint(credentials: Any) -> str | None:
    """Which credentials a client signs with, without keeping them in a key: a digest."""
    if credentials is None:
        return None
    parts = (credentials.access_key, credentials.secret_key, credentials.token,
             getattr(credentials, "account_id", None))
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


def _close(client: Any) -> None:
    with contextlib.suppress(Exception):  # a pool that is already closed, or half built
        client._endpoint.http_session.close()


class _BoundedBodySession:
    """Wraps botocore's HTTP session so that a response body is read up to `max_body` bytes.

    The deadline of the current check also bounds the read: a slow-drip body cannot outlive it.
    """

    def __init__(self, inner: Any, max_body: int) -> None:
        self._inner = inner
        self._max_body = max_body

    def send(self, request: Any) -> Any:
        request.stream_output = True
        response = self._inner.send(request)
        progress = current_check.get()
        deadline = progress.deadline if progress else None
        body, truncated = read_bounded(response.raw, self._max_body, deadline)
        response._content = body
        if truncated:
            if progress is not None:
                progress.body_truncated = True
            response.raw.close()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
