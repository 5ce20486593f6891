"""The rule tables' vocabulary: hosts, identities, facts, bare checks, and the Case row.

Failure shapes live next door: tests/test_diagnose_transport.py (DNS, TCP, TLS) and
tests/test_diagnose_replies.py (Envoy, IMDS, AWS answers). Both follow the measured tables in
shared/knowledge (aws-sdk.md §5, istio-egress.md §1) and pin their shapes with tests, so that a
factory drifting from reality fails there, not silently in a rule table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egress_doctor.diagnose import DiagnoseOptions, Diagnosis, diagnose
from egress_doctor.model import (
    ChainLink,
    CheckResult,
    ErrorInfo,
    Evidence,
    Identity,
    Layer,
    RunFacts,
    Status,
    Symptom,
    Target,
    TcpEvidence,
    TlsEvidence,
)

ACCOUNT = "111122223333"
REGION = "us-east-1"
STS = f"sts.{REGION}.amazonaws.com"
STS_GLOBAL = "sts.amazonaws.com"
DDB = f"{ACCOUNT}.ddb.{REGION}.amazonaws.com"
DDB_REGIONAL = f"dynamodb.{REGION}.amazonaws.com"
IMDS = "169.254.169.254"
POD_IDENTITY = "169.254.170.23"
ECS = "169.254.170.2"
STANDIN = "127.0.0.1"  # the lab's loopback stand-in for a link-local address
STANDIN_PORT = 40123
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/app"
REQUEST_ID = "4b1c1f2e-0d7a-4c43-9a4e-0123456789ab"
# Check ids, short enough for rule tables.
CREDS = "credentials.source"
TOKEN, ROLE, IMDS_CREDS = "imds.token", "imds.role", "imds.credentials"
AGENT = "container.credentials"
ARWWI = "sts.assume-role-with-web-identity"
GCI = "sts.get-caller-identity"
DESCRIBE, LIST = "dynamodb.describe-table", "dynamodb.list-tables"
TRUST = "certifi=/venv/lib/python3.11/site-packages/certifi/cacert.pem"

# --- identities and facts -------------------------------------------------------------------------


def identity(source: str = "irsa", **kw: object) -> Identity:
    base: dict[str, object] = {"region": REGION, "region_source": "AWS_DEFAULT_REGION"}
    if source == "irsa":
        base.update(
            role_arn=ROLE_ARN,
            account_id=ACCOUNT,
            details={"token_file": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
        )
    if source == "pod-identity":
        base.update(
            details={
                "url": "http://169.254.170.23/v1/credentials",
                "token_file": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            }
        )
    base.update(kw)
    return Identity(source=source, **base)  # type: ignore[arg-type]


def facts(uid: int = 1000, gid: int = 1000, namespace: str | None = "payments", **env: str) -> RunFacts:
    return RunFacts(uid=uid, gid=gid, namespace=namespace, env=dict(env))


# --- targets and bare checks ---------------------------------------------------------------------

TITLES = {
    "credentials.source": "credential source",
    "imds.token": "IMDSv2 token (PUT /latest/api/token)",
    "imds.role": "IMDS role name",
    "imds.credentials": "IMDS credentials",
    "container.credentials": "EKS Pod Identity agent",
    "sts.assume-role-with-web-identity": "STS AssumeRoleWithWebIdentity (IRSA)",
    "sts.get-caller-identity": "STS GetCallerIdentity",
    "dynamodb.describe-table": "DynamoDB DescribeTable",
    "dynamodb.list-tables": "DynamoDB ListTables",
}
PATHS = {
    "imds.token": "/latest/api/token",
    "imds.role": "/latest/meta-data/iam/security-credentials/",
    "imds.credentials": "/latest/meta-data/iam/security-credentials/app-node-role",
    "container.credentials": "/v1/credentials",
}


def default_host(check_id: str) -> str:
    if check_id.startswith(("imds.", "container.")):
        return STANDIN
    if check_id.startswith(("dynamodb.", "sts.")):
        return DDB if check_id.startswith("dynamodb.") else STS
    return f"{check_id.split('.')[0]}.{REGION}.amazonaws.com"


def target(check_id: str, host: str | None = None, port: int | None = None) -> Target:
    host = host or default_host(check_id)
    plain = check_id.startswith(("imds.", "container."))
    scheme = "http" if plain else "https"
    port = port or (STANDIN_PORT if host == STANDIN else 80 if plain else 443)
    url = f"{scheme}://{host}:{port}{PATHS.get(check_id, '/')}"
    return Target(url=url, host=host, port=port, scheme=scheme)


def result(
    check_id: str,
    status: Status = Status.FAIL,
    *,
    host: str | None = None,
    port: int | None = None,
    layer: Layer | None = None,
    symptom: Symptom | None = None,
    error: ErrorInfo | None = None,
    evidence: Evidence | None = None,
    subject: str | None = None,
    reason: str = "",
) -> CheckResult:
    if check_id == "dynamodb.describe-table" and subject is None:
        subject = "orders"
    return CheckResult(
        id=check_id,
        title=TITLES.get(check_id, check_id) + (f" {subject}" if subject else ""),
        status=status,
        target=None if check_id == "credentials.source" else target(check_id, host, port),
        layer=layer,
        symptom=symptom,
        error=error,
        evidence=evidence or Evidence(),
        reason=reason,
        subject=subject,
    )


def passed(check_id: str, **kw: object) -> CheckResult:
    return result(check_id, Status.PASS, **kw)  # type: ignore[arg-type]


def skipped(check_id: str, because: str = "an earlier check failed", **kw: object) -> CheckResult:
    return result(check_id, Status.SKIP, reason=f"skipped: {because}", **kw)  # type: ignore[arg-type]


def chain(*links: tuple[str, str] | ChainLink) -> ErrorInfo:
    built = [
        link if isinstance(link, ChainLink) else ChainLink(type=link[0], message=link[1]) for link in links
    ]
    return ErrorInfo(type=built[0].type, message=built[0].message, chain=built)


def tcp_evidence(host: str, port: int, connected: bool = True, **kw: object) -> TcpEvidence:
    return TcpEvidence(address=host, port=port, connected=connected, duration_ms=0.3, **kw)  # type: ignore[arg-type]


def tls_failed(host: str, **kw: object) -> TlsEvidence:
    return TlsEvidence(sni=host, ok=False, trust=TRUST, **kw)  # type: ignore[arg-type]


# --- cases ------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One rule-table row: a run's evidence and what the diagnosis must say about it."""

    id: str
    checks: list[CheckResult]
    codes: list[str]  # finding codes, in output order
    fixes: list[str] = field(default_factory=list)  # Fix ids, sorted
    identity: Identity = field(default_factory=identity)
    facts: RunFacts = field(default_factory=facts)
    options: DiagnoseOptions = field(default_factory=DiagnoseOptions)

    def run(self) -> Diagnosis:
        return diagnose(self.identity, self.checks, self.facts, self.options)


def assert_case(case: Case) -> Diagnosis:
    diagnosis = case.run()
    assert [f.code for f in diagnosis.findings] == case.codes, [
        (f.code, f.message) for f in diagnosis.findings
    ]
    assert [f.id for f in diagnosis.fixes] == case.fixes
    fix_ids = {f.id for f in diagnosis.fixes}
    for finding in diagnosis.findings:
        assert finding.fix is None or finding.fix in fix_ids, (
            f"{finding.code} names a fix that is not printed"
        )
    for fix in diagnosis.fixes:
        assert any(f.fix == fix.id for f in diagnosis.findings), f"{fix.id} addresses no finding"
    return diagnosis
