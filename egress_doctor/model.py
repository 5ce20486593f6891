"""The result model: what one run found, independent of how it is shown.

Probes fill `Evidence` and return `CheckResult`s; the diagnosis adds `Finding`s and `Fix`es;
renderers only read a `Report`. The JSON contract (`egress-doctor/v1`) is produced from these
objects by `render.json_v1`, not by dumping them, so internal names can change freely.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from egress_doctor.sources.envoy_stats import SidecarCounters
    from egress_doctor.sources.view import MeshView


class Layer(enum.StrEnum):
    """Where a call broke, from the bottom of the stack up."""

    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"
    API = "api"
    CREDENTIALS = "credentials"


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


class Symptom(enum.StrEnum):
    """What was observed at the layer that broke: the classifier's verdict, the rules' input.

    Decided from exception types, errno and ssl reasons (never from message text alone) and
    from HTTP status and headers.
    """

    DNS_NXDOMAIN = "dns-nxdomain"  # gaierror -2 (EAI_NONAME): the name does not exist
    DNS_UNREACHABLE = "dns-unreachable"  # gaierror -3 (EAI_AGAIN): resolver unreachable / timed out
    DNS_OTHER = "dns-error"
    CONNECT_REFUSED = "connect-refused"  # ECONNREFUSED: nothing listening (no sidecar, Envoy not ready)
    CONNECT_TIMEOUT = "connect-timeout"  # SYN unanswered
    CONNECT_RESET = "connect-reset"  # RST before anything was exchanged on a plain-HTTP path
    CONNECT_OTHER = "connect-error"  # EHOSTUNREACH, ENETUNREACH, ...
    TLS_CLOSED = "tls-closed"  # EOF or RST during the handshake (Envoy tcp_proxy to BlackHoleCluster)
    TLS_TIMEOUT = "tls-timeout"  # handshake stalled
    TLS_UNTRUSTED = "tls-untrusted"  # CERTIFICATE_VERIFY_FAILED: intercepted, or AWS_CA_BUNDLE missing
    TLS_NAME_MISMATCH = "tls-name-mismatch"  # certificate for another name
    TLS_WRONG_VERSION = "tls-wrong-version"  # TLS spoken to a plaintext listener
    TLS_OTHER = "tls-error"
    HTTP_CLOSED = "http-closed"  # connection closed or reset after the request, no response
    HTTP_TIMEOUT = "http-timeout"  # no (complete) response within the read timeout
    HTTP_STATUS = "http-status"  # an HTTP error reply that is not an AWS answer (see evidence.http)
    NOT_AWS = "not-aws"  # a reply that parses as no AWS answer (HTML 200, garbage, missing keys)
    AWS_ERROR = "aws-error"  # AWS answered with an error code: the network path works
    CREDENTIALS = "credentials"  # the credential stage failed before any request (see error)
    DEADLINE = "deadline"  # the run's --deadline expired before this check finished


class ExitStatus(enum.IntEnum):
    """Process exit codes (also listed in `--help` and docs/exit-codes.md)."""

    OK = 0  # every check passed (warnings allowed)
    CHECK_FAILED = 1  # at least one check failed: the diagnosis is in the output
    USAGE = 2  # bad flag, bad value or bad environment: nothing was probed
    INTERNAL = 3  # a bug in egress-doctor; run with -v for a (redacted) traceback
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True)
class Target:
    """The endpoint a check talked to, as the SDK named it, and where the packets really went."""

    url: str
    host: str
    port: int
    scheme: str = "https"
    # "addr:port" actually dialled when a --connect-to rule applied, else None.
    connect_to: str | None = None


@dataclass
class ChainLink:
    """One exception in a chain, outermost first."""

    type: str
    message: str
    errno: int | None = None
    reason: str | None = None  # ssl reason such as UNEXPECTED_EOF_WHILE_READING
    verify_code: int | None = None


@dataclass
class ErrorInfo:
    type: str
    message: str
    chain: list[ChainLink] = field(default_factory=list)

    @property
    def root(self) -> ChainLink | None:
        return self.chain[-1] if self.chain else None


@dataclass
class DnsEvidence:
    name: str
    addresses: list[str] = field(default_factory=list)
    error: str | None = None
    gai_errno: int | None = None  # socket.gaierror errno: -2 no such name, -3 resolver unreachable
    duration_ms: float | None = None
    # Why no lookup happened (an IP literal, or a --connect-to rule to an address).
    skipped: str | None = None


@dataclass
class TcpEvidence:
    address: str
    port: int
    connected: bool
    duration_ms: float | None = None
    error: str | None = None
    errno: int | None = None
    timed_out: bool = False


@dataclass
class TlsEvidence:
    sni: str
    ok: bool
    # Where the trust came from, exactly as botocore would pick it: "AWS_CA_BUNDLE=<path>",
    # "ca_bundle=<path>" (config file) or "certifi=<path>".
    trust: str
    protocol: str | None = None
    cipher: str | None = None
    peer_subject: str | None = None
    peer_issuer: str | None = None
    peer_san: list[str] = field(default_factory=list)
    duration_ms: float | None = None
    error: str | None = None
    reason: str | None = None
    verify_code: int | None = None


# Response headers worth keeping: they tell Envoy's local replies from AWS's answers.
INTERESTING_HEADERS = (
    "server",
    "x-envoy-upstream-service-time",
    "x-amzn-requestid",
    "x-amz-request-id",
    "content-type",
    "content-length",
    "connection",
    "x-envoy-overloaded",
    "x-envoy-ratelimited",
)


@dataclass
class HttpEvidence:
    method: str
    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The first bytes of a body that is not a well-formed AWS answer (never credentials:
    # credential documents are summarised, not copied).
    body_prefix: str | None = None
    body_bytes: int | None = None  # bytes read (bounded)
    body_truncated: bool = False
    duration_ms: float | None = None


def is_envoy_local_reply(http: HttpEvidence | None) -> bool:
    """Envoy generated the reply itself: `server: envoy` and no upstream was timed.

    `server: envoy` alone proves nothing: the sidecar overwrites it on proxied replies too, but
    those carry `x-envoy-upstream-service-time`.
    """
    if http is None or http.status is None:
        return False
    headers = http.headers
    return headers.get("server", "").lower() == "envoy" and "x-envoy-upstream-service-time" not in headers


@dataclass
class AwsEvidence:
    service: str
    operation: str
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    http_status: int | None = None
    # S3: the region its x-amz-bucket-region header names when it is not the client's, and the
    # host botocore uses for the bucket in that region (the one the app needs too).
    bucket_region: str | None = None
    region_host: str | None = None


@dataclass
class Evidence:
    dns: DnsEvidence | None = None
    tcp: TcpEvidence | None = None
    tls: TlsEvidence | None = None
    http: HttpEvidence | None = None
    aws: AwsEvidence | None = None
    # Every URL botocore sent to while this check ran (nested clients included), in order.
    requests: list[str] = field(default_factory=list)
    # Plain facts worth showing ("IMDSv1 fallback used", "account id 1111… from AssumedRoleUser").
    notes: list[str] = field(default_factory=list)
    # The boto3/urllib3 DEBUG transcript of this check, already redacted.
    transcript: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    id: str  # stable: imds.token, sts.get-caller-identity, dynamodb.describe-table, ...
    title: str  # what a user reads: "DynamoDB DescribeTable orders"
    status: Status
    target: Target | None = None
    layer: Layer | None = None  # where it broke; None on pass and skip
    symptom: Symptom | None = None  # what was observed there; None on pass and skip
    error: ErrorInfo | None = None
    evidence: Evidence = field(default_factory=Evidence)
    duration_ms: float = 0.0
    reason: str = ""  # one line for the table
    # Extra label for checks that repeat (the table name for dynamodb.describe-table).
    subject: str | None = None


@dataclass
class Identity:
    """Which credential source the SDK's default chain picks, decided without network."""

    source: str  # env | profile | irsa | pod-identity | ecs | imds | none
    region: str | None = None
    region_source: str | None = None  # "AWS_DEFAULT_REGION", "--region", "config file", ...
    account_id: str | None = None
    role_arn: str | None = None
    chain: list[str] = field(default_factory=list)  # botocore's provider order
    details: dict[str, str] = field(default_factory=dict)  # non-secret facts (token file path, URL)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunFacts:
    """Facts about the process and its environment that the diagnosis needs (no secrets)."""

    uid: int
    gid: int
    namespace: str | None = None  # the pod's namespace: --namespace, POD_NAMESPACE or the SA file
    env: dict[str, str] = field(default_factory=dict)  # AWS_REGION, HTTP(S)_PROXY, NO_PROXY, ...
    connect_to: list[str] = field(default_factory=list)  # active --connect-to rules


@dataclass
class Finding:
    code: str  # ED1xx...
    level: str  # error | warning | info
    title: str
    message: str
    checks: list[str] = field(default_factory=list)  # check ids whose evidence produced it
    hosts: list[str] = field(default_factory=list)
    docs: str = ""
    fix: str | None = None  # id of the Fix that addresses it, if any


@dataclass
class Fix:
    id: str
    description: str
    manifests: list[dict[str, Any]] = field(default_factory=list)
    # A patch (for annotations) or a command, when a manifest is not the right shape.
    patch: str | None = None


@dataclass
class Report:
    identity: Identity
    checks: list[CheckResult]
    facts: RunFacts | None = None
    findings: list[Finding] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    started_at: str = ""
    duration_ms: float = 0.0
    deadline_ms: float = 0.0
    tool_version: str = ""
    warnings: list[str] = field(default_factory=list)
    mesh: MeshView | None = None  # what the sidecar's admin port (and the Istio objects) said
    counters: SidecarCounters | None = None  # the sidecar's counters of the app's own traffic (before probes)

    @property
    def exit_status(self) -> ExitStatus:
        if any(c.status is Status.FAIL for c in self.checks):
            return ExitStatus.CHECK_FAILED
        return ExitStatus.OK
