"""A fake AWS (STS and DynamoDB, by moto) on 127.0.0.1 over real TLS, under the real AWS names.

The certificate covers the names botocore really contacts for a region (regional and global
STS, DynamoDB, account-ID hosts `*.ddb.<region>.amazonaws.com`, FIPS and dual-stack variants)
plus `127.0.0.1`, so a client steered with `endpoint_url=https://127.0.0.1:<port>` and the lab
CA verifies too. moto answers by SigV4 scope, never by Host, so the Host a request carried is
only visible in `FakeAws.requests`.

TLS is set up per connection on the connection's own thread. werkzeug's own `ssl_context=`
wraps the listening socket instead, so `accept()` runs the handshake on the accept loop: one
client that connects and sends nothing then freezes every other client and `shutdown()`.
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from werkzeug.serving import BaseWSGIServer

from .aws_front import SERVICES, AwsFrontDoor, AwsRequest, InjectedAnswer, default_error_code
from .pki import LabPKI
from .serving import LOG, LOOPBACK, LoopbackFake, RequestLog, StoppableServerMixin

if TYPE_CHECKING:
    from .moto_app import MotoControl

DEFAULT_REGIONS = ("us-east-1",)
# moto keys its state by account and takes the account from the caller's access key: a key it
# issued through AssumeRole* belongs to the role's account, any other key to this one.
MOTO_DEFAULT_ACCOUNT = "123456789012"
HANDSHAKE_TIMEOUT = 5.0  # seconds a client may take to finish the TLS handshake


@functools.cache
def _partitions() -> list[dict[str, Any]]:
    from botocore.loaders import create_loader

    return list(create_loader().load_data("partitions")["partitions"])


def partition_suffixes(region: str) -> tuple[str, str]:
    """(dnsSuffix, dualStackDnsSuffix) of the region's partition, from botocore's partitions data."""
    partitions = _partitions()
    for partition in partitions:
        if region in partition.get("regions", {}):
            return partition["outputs"]["dnsSuffix"], partition["outputs"]["dualStackDnsSuffix"]
    for partition in partitions:
        if re.match(partition["regionRegex"], region):
            return partition["outputs"]["dnsSuffix"], partition["outputs"]["dualStackDnsSuffix"]
    return "amazonaws.com", "api.aws"


def aws_server_names(region: str) -> list[str]:
    """The STS and DynamoDB host names botocore may use in `region` (wildcard for account hosts)."""
    dns, dualstack = partition_suffixes(region)
    names = [f"sts.{dns}"]  # the global endpoint (no region, or sts_regional_endpoints=legacy)
    for suffix in (dns, dualstack):
        names += [
            f"sts.{region}.{suffix}",
            f"sts-fips.{region}.{suffix}",
            f"dynamodb.{region}.{suffix}",
            f"dynamodb-fips.{region}.{suffix}",
            f"*.ddb.{region}.{suffix}",  # <account-id>.ddb.<region>...: account-based endpoints
        ]
    return names


def _remember_sni(sock: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
    """SNI callback: keep the name the client asked for on its socket, for the request log."""
    sock.lab_sni = server_name


class _TlsWsgiServer(StoppableServerMixin, BaseWSGIServer):
    """werkzeug's WSGI server with per-connection TLS on handler threads (see the module docstring)."""

    multithread = True

    def __init__(self, app: Any, handler: Any, tls: ssl.SSLContext, failures: RequestLog[str]) -> None:
        self.init_stopping()
        self.tls_context = tls
        self.handshake_failures = failures
        super().__init__(LOOPBACK, 0, app, handler=handler)
        self.ssl_context = tls  # only tells werkzeug to report wsgi.url_scheme "https"

    def open_connection(self, sock: socket.socket) -> socket.socket | None:
        return self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def accept_connection(self, connection: socket.socket) -> bool:
        """Finish the TLS handshake within HANDSHAKE_TIMEOUT; failures are recorded, not raised."""
        tls = cast(ssl.SSLSocket, connection)  # open_connection wrapped it
        tls.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls.do_handshake()
        except (OSError, ValueError) as error:
            self.handshake_failures.append(f"{type(error).__name__}: {error}")
            return False
        tls.settimeout(None)
        return True

    def log(self, type: str, message: str, *args: Any) -> None:
        LOG.debug("fake-aws %s: " + message, type, *args)


class FakeAws(LoopbackFake):
    """Fake STS + DynamoDB (moto) on 127.0.0.1 over TLS from the lab CA, with injectable AWS errors.

    moto's state is process-global and is reset when a FakeAws stops.
    """

    thread_name = "lab-fake-aws"

    def __init__(
        self, pki: LabPKI, regions: Sequence[str] = DEFAULT_REGIONS, extra_names: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.pki = pki
        names = [name for region in regions for name in aws_server_names(region)]
        everything = [*names, *extra_names, "localhost", LOOPBACK]
        self.server_names: tuple[str, ...] = tuple(dict.fromkeys(everything))
        self._front: AwsFrontDoor | None = None
        self._control: MotoControl | None = None
        self._handshake_failures: RequestLog[str] = RequestLog()

    @property
    def endpoint_url(self) -> str:
        """`https://127.0.0.1:<port>`, for clients steered at the fake (the cert has 127.0.0.1)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[AwsRequest]:
        """Every request received since start (or the last reset), oldest first."""
        return self._front.requests.snapshot() if self._front else []

    @property
    def handshake_failures(self) -> list[str]:
        """TLS handshakes that failed (e.g. a client that does not trust the lab CA)."""
        return self._handshake_failures.snapshot()

    def answer(
        self,
        service: str,
        operation: str,
        *,
        status: int = 403,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
    ) -> InjectedAnswer:
        """Make `service` ('sts' | 'dynamodb') answer `operation` with this AWS error until cleared.

        `code` defaults to the service's access-denied code; `error_type` (STS only) to
        "Sender" for 4xx and "Receiver" for 5xx.
        """
        if service not in SERVICES:
            raise ValueError(f"can inject answers for {SERVICES}, not {service!r}")
        injected = InjectedAnswer(
            service=service,
            operation=operation,
            status=status,
            code=code or default_error_code(service),
            message=message or f"User is not authorized to perform: {service}:{operation}",
            error_type=error_type or ("Receiver" if status >= 500 else "Sender"),
        )
        self._running_front().inject(injected)
        return injected

    def clear_answers(self) -> None:
        """Let moto answer every operation again."""
        self._running_front().clear_answers()

    def clear_requests(self) -> None:
        """Forget the requests recorded so far."""
        self._running_front().requests.clear()

    def create_tables(
        self, names: Iterable[str], region: str = DEFAULT_REGIONS[0], account_id: str = MOTO_DEFAULT_ACCOUNT
    ) -> None:
        """Create on-demand tables (hash key `pk`) in moto, visible to callers of `account_id`.

        moto picks the account from the caller's access key: keys it issued through an
        AssumeRole* call belong to the role's account, any other key to MOTO_DEFAULT_ACCOUNT.
        """
        control = self._running_control()
        for name in names:
            control.create_table(name, region, account_id)

    def reset(self) -> None:
        """Forget moto's state (all accounts), the injected answers and the recorded requests."""
        self._running_control().reset()
        front = self._running_front()
        front.clear_answers()
        front.requests.clear()
        self._handshake_failures.clear()

    def stop(self) -> None:
        """Stop serving, then reset moto's process-global state so the next fake starts empty."""
        was_running = self.running
        super().stop()
        if was_running and self._control is not None:
            self._control.reset()

    def _make_server(self) -> _TlsWsgiServer:
        from .moto_app import MotoControl, QuietMotoHandler, make_moto_app

        moto = make_moto_app()
        self._control = MotoControl(moto)
        self._front = AwsFrontDoor(moto)
        tls = self.pki.server_context(self.server_names)
        tls.sni_callback = _remember_sni
        return _TlsWsgiServer(self._front, QuietMotoHandler, tls, self._handshake_failures)

    def _running_front(self) -> AwsFrontDoor:
        if self._front is None or not self.running:
            raise RuntimeError("FakeAws is not running")
        return self._front

    def _running_control(self) -> MotoControl:
        if self._control is None or not self.running:
            raise RuntimeError("FakeAws is not running")
        return self._control
