"""Rule table: AWS answered (the mesh is fine), the credential stage failed, environment traps,
and the tool's own trouble. None of these may produce an Istio fix, except the proxy/region
traps that change *which* host needs one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from egress_doctor.diagnose import DiagnoseOptions
from egress_doctor.model import AwsEvidence, Evidence
from egress_doctor.probes.registry import NOT_LISTED
from tests.test_diagnose_evidence import (
    ARWWI,
    CREDS,
    DDB,
    DESCRIBE,
    GCI,
    LIST,
    STS_GLOBAL,
    Case,
    assert_case,
    facts,
    identity,
    passed,
    skipped,
)
from tests.test_diagnose_replies import (
    aws_error,
    credential_failure,
    deadline,
    unclassified,
)
from tests.test_diagnose_transport import (
    tls_eof,
)

if TYPE_CHECKING:
    from egress_doctor.model import CheckResult

BUCKET, QUEUE = "s3.head-bucket", "sqs.get-queue-url"
SECRET, PARAMETER = "secretsmanager.describe-secret", "ssm.describe-parameters"
BUCKET_HOST = "invoice-archive.s3.amazonaws.com"
EU = "eu-west-1"


def head_error(check_id: str, code: str, status: int, **kw: object) -> CheckResult:
    """S3's answer to a HEAD: a status and request id, no body, so the code is the status."""
    result = aws_error(check_id, code, "", status, **kw)  # type: ignore[arg-type]
    assert result.evidence.http is not None
    result.evidence.http.method = "HEAD"
    return result


MESH_FINE = [
    # --- IRSA's own answers ---
    Case(
        "InvalidIdentityToken on AssumeRoleWithWebIdentity is the OIDC provider",
        [aws_error(ARWWI, "InvalidIdentityToken", "No OpenIDConnect provider found"), skipped(GCI)],
        ["ED530"],
    ),
    Case(
        "IDPRejectedClaim on AssumeRoleWithWebIdentity is the token",
        [aws_error(ARWWI, "IDPRejectedClaim")],
        ["ED530"],
    ),
    Case(
        "ExpiredTokenException on AssumeRoleWithWebIdentity is the projected token",
        [aws_error(ARWWI, "ExpiredTokenException")],
        ["ED530"],
    ),
    Case(
        "AccessDenied on AssumeRoleWithWebIdentity is the trust policy",
        [aws_error(ARWWI, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)],
        ["ED531"],
    ),
    # --- IAM and credentials ---
    Case(
        "AccessDeniedException on DescribeTable is IAM, not Istio",
        [passed(ARWWI), aws_error(DESCRIBE, "AccessDeniedException", status=400)],
        ["ED540"],
    ),
    Case(
        "InvalidClientTokenId is unknown credentials",
        [aws_error(GCI, "InvalidClientTokenId", status=403)],
        ["ED541"],
    ),
    Case(
        "UnrecognizedClientException is unknown credentials",
        [aws_error(LIST, "UnrecognizedClientException")],
        ["ED541"],
    ),
    Case("ExpiredToken is expired credentials", [aws_error(GCI, "ExpiredToken")], ["ED541"]),
    Case(
        "SignatureDoesNotMatch is clock skew or an altered request",
        [aws_error(GCI, "SignatureDoesNotMatch", status=403)],
        ["ED542"],
    ),
    Case(
        "InvalidSignatureException on DynamoDB is clock skew or an altered request",
        [aws_error(LIST, "InvalidSignatureException")],
        ["ED542"],
    ),
    Case(
        "ResourceNotFoundException is a missing table",
        [passed(GCI), aws_error(DESCRIBE, "ResourceNotFoundException", "Requested resource not found")],
        ["ED543"],
    ),
    Case("Throttling on STS is a warning", [aws_error(GCI, "Throttling")], ["ED544"]),
    Case(
        "ProvisionedThroughputExceededException is throttling",
        [aws_error(DESCRIBE, "ProvisionedThroughputExceededException")],
        ["ED544"],
    ),
    Case(
        "any other AWS error code still proves the path works",
        [aws_error(DESCRIBE, "ValidationException", "1 validation error")],
        ["ED545"],
    ),
    Case(
        "two tables failing for two reasons on one host give two findings",
        [
            aws_error(DESCRIBE, "AccessDeniedException", subject="orders"),
            aws_error(DESCRIBE, "ResourceNotFoundException", subject="archive"),
        ],
        ["ED540", "ED543"],
    ),
    # --- the app's other services: AWS answered, the path works ---
    Case(
        "a bucket S3 does not have (HeadBucket's bare 404) is a missing resource, not the mesh",
        [passed(GCI), aws_error(BUCKET, "404", "Not Found", 404, host=BUCKET_HOST, subject="invoice-archive")],
        ["ED546"],
    ),
    Case(
        "HeadBucket's bare 403 is IAM",
        [passed(GCI), head_error(BUCKET, "403", 403, host=BUCKET_HOST, subject="invoice-archive")],
        ["ED540"],
    ),
    Case(
        "QueueDoesNotExist is a missing queue",
        [passed(GCI), aws_error(QUEUE, "AWS.SimpleQueueService.NonExistentQueue", subject="billing-events")],
        ["ED546"],
    ),
    Case(
        "ResourceNotFoundException on a secret is a missing secret, not a missing table",
        [passed(GCI), aws_error(SECRET, "ResourceNotFoundException", status=404, subject="billing/db")],
        ["ED546"],
    ),
    Case(
        "a filtered list that does not name the parameter is a missing parameter",
        [passed(GCI), aws_error(PARAMETER, NOT_LISTED, status=200, subject="/billing/db-url")],
        ["ED546"],
    ),
    Case(
        "AccessDeniedException on Secrets Manager is IAM, not Istio",
        [passed(GCI), aws_error(SECRET, "AccessDeniedException", subject="billing/db")],
        ["ED540"],
    ),
    Case(
        "a bucket in another region: S3 said so and botocore went there (it passed)",
        [passed(GCI), passed(BUCKET, host=f"eu-archive.s3.{EU}.amazonaws.com", subject="eu-archive",
                             evidence=Evidence(aws=AwsEvidence("s3", "HeadBucket", bucket_region=EU,
                                                               region_host=f"eu-archive.s3.{EU}.amazonaws.com")))],
        ["ED547"],
    ),
    # --- credential stage ---
    Case(
        "no credential source at all",
        [credential_failure(CREDS, "NoCredentialsError", "Unable to locate credentials")],
        ["ED501"],
        identity=identity("none"),
    ),
    Case(
        "IRSA token file missing at the source check",
        [credential_failure(CREDS, "FileNotFoundError", "web identity token file does not exist")],
        ["ED502"],
    ),
    Case(
        "IRSA token file vanished before AssumeRoleWithWebIdentity",
        [passed(CREDS), credential_failure(ARWWI, "FileNotFoundError", "[Errno 2] No such file")],
        ["ED502"],
    ),
    Case(
        "IRSA without AWS_ROLE_ARN",
        [credential_failure(CREDS, "InvalidConfigError", "AWS_ROLE_ARN is not set")],
        ["ED503"],
    ),
    Case(
        "container credentials URI with a host botocore refuses",
        [credential_failure(CREDS, "ValueError", "Unsupported host '10.0.0.5'")],
        ["ED504"],
        identity=identity("pod-identity"),
    ),
    Case(
        "Pod Identity token file missing",
        [credential_failure(CREDS, "FileNotFoundError", "container authorization token file does not exist")],
        ["ED505"],
        identity=identity("pod-identity"),
    ),
    Case(
        "DynamoDB without a region cannot be called",
        [passed(GCI), credential_failure(DESCRIBE, "NoRegionError", "You must specify a region.")],
        ["ED506"],
    ),
    # --- the tool ---
    Case("a check cut by the deadline proves nothing", [passed(GCI), deadline(DESCRIBE)], ["ED901"]),
    Case("an unclassified failure is an internal error, not a guess", [unclassified(GCI)], ["ED902"]),
]

TRAPS = [
    Case(
        "AWS_REGION alone sends STS to the global endpoint and breaks DynamoDB",
        [
            tls_eof(GCI, host=STS_GLOBAL),
            credential_failure(DESCRIBE, "NoRegionError", "You must specify a region."),
        ],
        ["ED301", "ED506", "ED550"],
        ["serviceentry/sts-amazonaws-com"],
        identity=identity(region=None, region_source=None),
        facts=facts(AWS_REGION="eu-west-1"),
    ),
    Case(
        "AWS_REGION differing from the config file's region is flagged",
        [passed(GCI)],
        ["ED550"],
        identity=identity(region="us-east-1", region_source="config file"),
        facts=facts(AWS_REGION="eu-west-1"),
    ),
    Case(
        "AWS_REGION equal to the config file's region is fine",
        [passed(GCI)],
        [],
        identity=identity(region="eu-west-1", region_source="config file"),
        facts=facts(AWS_REGION="eu-west-1"),
    ),
    Case(
        "AWS_REGION next to AWS_DEFAULT_REGION is fine",
        [passed(GCI)],
        [],
        facts=facts(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="eu-west-1"),
    ),
    Case(
        "STS behind HTTPS_PROXY: the sidecar sees the proxy, so no ServiceEntry for STS",
        [tls_eof(GCI)],
        ["ED306", "ED603"],
        facts=facts(HTTPS_PROXY="http://user:secret@proxy.corp:3128"),
    ),
    Case(
        "NO_PROXY covering the AWS domain keeps the ServiceEntry fix",
        [tls_eof(GCI)],
        ["ED301", "ED601"],
        ["serviceentry/sts-us-east-1-amazonaws-com"],
        facts=facts(HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY=".amazonaws.com"),
    ),
    Case(
        "a blocked bucket host is allowed exactly, and explained (virtual-hosted, global in us-east-1)",
        [passed(GCI), tls_eof(BUCKET, host=BUCKET_HOST, subject="invoice-archive")],
        ["ED301", "ED604"],
        ["serviceentry/invoice-archive-s3-amazonaws-com"],
    ),
    Case(
        "wildcard option allows every bucket of the global S3 endpoint",
        [passed(GCI), tls_eof(BUCKET, host=BUCKET_HOST, subject="invoice-archive")],
        ["ED301", "ED604"],
        ["serviceentry/wildcard-s3-amazonaws-com"],
        options=DiagnoseOptions(wildcard=True),
    ),
    Case(
        "the bucket's region host blocked after S3's redirect: the fix allows it, the warning says why",
        [passed(GCI), tls_eof(BUCKET, host=f"eu-archive.s3.{EU}.amazonaws.com", subject="eu-archive",
                              evidence=Evidence(aws=AwsEvidence("s3", "HeadBucket", bucket_region=EU,
                                                                region_host=f"eu-archive.s3.{EU}.amazonaws.com")))],
        ["ED301", "ED547", "ED604"],
        ["serviceentry/eu-archive-s3-eu-west-1-amazonaws-com"],
    ),
    Case(
        "wildcard option allows every account's DynamoDB host and still explains the account endpoint",
        [tls_eof(DESCRIBE, host=DDB)],
        ["ED301", "ED602"],
        ["serviceentry/wildcard-ddb-us-east-1-amazonaws-com"],
        options=DiagnoseOptions(wildcard=True),
    ),
]

CASES = MESH_FINE + TRAPS


def case(prefix: str) -> Case:
    return next(c for c in CASES if c.id.startswith(prefix))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_aws_rule_table(case: Case) -> None:
    assert_case(case)


@pytest.mark.parametrize("case", MESH_FINE, ids=[c.id for c in MESH_FINE])
def test_when_the_mesh_is_fine_no_finding_names_a_fix_and_no_manifest_is_printed(case: Case) -> None:
    diagnosis = case.run()
    assert diagnosis.fixes == []
    assert all(f.fix is None for f in diagnosis.findings)


def test_missing_table_names_the_table_and_region() -> None:
    (finding,) = assert_case(MESH_FINE[10]).findings
    assert "orders" in finding.message and "us-east-1" in finding.message


def test_trust_policy_finding_names_the_role() -> None:
    (finding,) = assert_case(MESH_FINE[3]).findings
    assert "arn:aws:iam::111122223333:role/app" in finding.message


def test_proxy_credentials_never_reach_a_finding() -> None:
    diagnosis = assert_case(TRAPS[4])
    text = " ".join(f.message for f in diagnosis.findings)
    assert "secret" not in text and "user:" not in text
    assert "http://proxy.corp:3128" in text


def test_wildcard_option_prints_the_wildcard_host_with_resolution_none() -> None:
    (fix,) = assert_case(case("wildcard option allows every account's")).fixes
    spec = fix.manifests[0]["spec"]
    assert spec["hosts"] == ["*.ddb.us-east-1.amazonaws.com"]
    assert spec["resolution"] == "NONE"


def test_wildcard_option_prints_the_global_s3_wildcard_with_resolution_none() -> None:
    (fix,) = assert_case(case("wildcard option allows every bucket")).fixes
    spec = fix.manifests[0]["spec"]
    assert (spec["hosts"], spec["resolution"]) == (["*.s3.amazonaws.com"], "NONE")


def test_a_missing_resource_names_the_service_the_kind_the_name_and_the_region() -> None:
    (finding,) = assert_case(case("QueueDoesNotExist")).findings
    assert "sqs has no queue billing-events in us-east-1" in finding.message


def test_the_bucket_region_warning_names_the_host_the_app_needs_too() -> None:
    finding = next(f for f in assert_case(case("a bucket in another region")).findings if f.code == "ED547")
    assert finding.hosts == ["eu-archive.s3.eu-west-1.amazonaws.com"]
    assert "eu-west-1" in finding.message
