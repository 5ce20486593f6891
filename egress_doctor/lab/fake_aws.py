"""A fake AWS (moto: STS, DynamoDB, S3, SQS, SNS, Secrets Manager, KMS, SSM, Kinesis, Lambda, Logs and
the rest of what moto serves) on 127.0.0.1 over real TLS, under the real AWS names.

The certificate covers the names botocore really contacts for a region: every service's regional
name (`<service>.<region>.amazonaws.com`, FIPS and dual-stack variants), the global names
(`sts.amazonaws.com`, `s3.amazonaws.com`), the names that carry a resource (S3 buckets
`<bucket>.s3.amazonaws.com` and `<bucket>.s3.<region>…`, access points, account-ID hosts
`*.ddb.<region>…`) plus `127.0.0.1`, so a client steered with `endpoint_url=https://127.0.0.1:<port>`
and the lab CA verifies too. moto answers by SigV4 scope (and S3's bucket label), so the Host a
request carried is only visible in `FakeAws.requests`; S3's answer to a request signed for another
region than the bucket's is the front door's (`s3_regions`).

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

from .aws_errors import ANY_OPERATION, InjectedAnswer, default_error_code, protocol
from .aws_front import AwsFrontDoor, AwsRequest
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


# S3 endpoints that put a bucket or access point label first (S3's endpoint rule set), regional
# and global; `*.` of each is in the certificate.
S3_REGIONAL_RESOURCE_ENDPOINTS = ("s3", "s3-fips", "s3.dualstack", "s3-fips.dualstack", "s3-accesspoint",
                                  "s3-accesspoint-fips", "s3-accesspoint.dualstack", "s3-accesspoint-fips.dualstack")
S3_GLOBAL_RESOURCE_ENDPOINTS = ("s3", "s3-accelerate", "s3-accelerate.dualstack")


def aws_server_names(region: str) -> list[str]:
    """The host names botocore may use in `region`: every service's (by wildcard), and the names
    that carry a resource or an account (S3 buckets, access points, DynamoDB and Kinesis accounts)."""
    dns, dualstack = partition_suffixes(region)
    names = [f"sts.{dns}", f"*.{dns}"]  # global endpoints: sts.amazonaws.com, s3.amazonaws.com, iam…
    for suffix in (dns, dualstack):
        names += [
            f"sts.{region}.{suffix}",
            f"sts-fips.{region}.{suffix}",
            f"dynamodb.{region}.{suffix}",
            f"dynamodb-fips.{region}.{suffix}",
            f"*.{region}.{suffix}",  # <service>.<region>…, <service>-fips.<region>…: every service
            f"*.ddb.{region}.{suffix}",  # <account-id>.ddb.<region>...: account-based endpoints
            f"*.control-kinesis.{region}.{suffix}",  # <account-id>.control-kinesis…: stream ARNs
        ]
    names += [f"*.{label}.{region}.{dns}" for label in S3_REGIONAL_RESOURCE_ENDPOINTS]
    names += [f"{label}.{region}.{dns}" for label in S3_REGIONAL_RESOURCE_ENDPOINTS if "." in label]
    names += [f"*.{label}.{dns}" for label in S3_GLOBAL_RESOURCE_ENDPOINTS]
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
        operation: str = ANY_OPERATION,
        *,
        status: int = 403,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
    ) -> InjectedAnswer:
        """Make `service` answer `operation` with this AWS error until cleared, in the service's own
        error format (botocore's model says which). REST services (S3, Lambda) are matched by
        service only: leave `operation` at ANY_OPERATION.

        `code` defaults to the service's access-denied code; `error_type` (query protocols) to
        "Sender" for 4xx and "Receiver" for 5xx.
        """
        protocol(service)  # ValueError for a service botocore does not know
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

    def create_resources(self, resources: Iterable[Any], region: str = DEFAULT_REGIONS[0],
                         accounts: Sequence[str] = (MOTO_DEFAULT_ACCOUNT,)) -> list[str]:
        """Create the app's resources (`aws.resources.Resource`: buckets, queues, secrets, …) in moto,
        in each of `accounts` (a resource's ARN adds its own); tables go through `create_tables`.
        Buckets are remembered with their region: S3's wrong-region answer depends on it."""
        from .aws_resources import create_resources

        items = list(resources)
        tables = [r for r in items if r.kind == "table"]
        for table in tables:
            for account in dict.fromkeys([*accounts, *([table.account] if table.account else [])]):
                self.create_tables([table.name], table.region or region, account)
        front = self._running_front()
        for bucket in (r for r in items if r.kind == "bucket" and r.form == "name"):
            front.s3_regions.add(bucket.name, bucket.region or region)
        created = create_resources(self.endpoint_url, str(self.pki.ca_bundle_path), items, region, accounts)
        front.requests.clear()  # the setup calls are not what a test asserts on
        return [f"table {t.name} in {t.region or region}" for t in tables] + created

    def reset(self) -> None:
        """Forget moto's state (all accounts), the injected answers and the recorded requests."""
        self._running_control().reset()
        front = self._running_front()
        front.clear_answers()
        front.requests.clear()
        front.s3_regions.clear()
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
