"""Rule table: instance metadata (hop limit, IMDSv2, roles) and the container credentials agents."""

from __future__ import annotations

import pytest

from egress_doctor.model import ErrorInfo, Layer, Symptom
from tests.test_diagnose_evidence import (
    AGENT,
    GCI,
    IMDS_CREDS,
    ROLE,
    TOKEN,
    Case,
    assert_case,
    facts,
    identity,
    passed,
    result,
    skipped,
)
from tests.test_diagnose_replies import (
    envoy,
    http_reply,
    http_timeout,
    metadata_answer,
)
from tests.test_diagnose_transport import (
    connect_timeout,
    refused,
)

IMDS_ID = identity("imds")
POD_ID = identity("pod-identity")


def _credentials_document_error() -> list:
    """IMDS served a credentials document with Code instead of keys (the probe's CredentialDocumentError)."""
    bad = result(
        IMDS_CREDS,
        layer=Layer.API,
        symptom=Symptom.AWS_ERROR,
        error=ErrorInfo(
            type="CredentialDocumentError",
            message="credentials document lacks AccessKeyId (Code AssumeRoleUnauthorizedAccess)",
        ),
        reason="incomplete document: AssumeRoleUnauthorizedAccess",
    )
    return [passed(TOKEN), passed(ROLE), bad]


CASES = [
    Case(
        "token PUT timing out while IMDSv1 answers is the EC2 hop limit, a warning without an Istio fix",
        [http_timeout(TOKEN, warn=True), passed(ROLE), passed(IMDS_CREDS)],
        ["ED510"],
        identity=IMDS_ID,
    ),
    Case(
        "token PUT timing out with IMDSv2 required leaves the pod without credentials",
        [http_timeout(TOKEN), metadata_answer(ROLE, 401), skipped(IMDS_CREDS)],
        ["ED511"],
        identity=IMDS_ID,
    ),
    Case(
        "token PUT timing out with AWS_EC2_METADATA_V1_DISABLED has no fallback",
        [http_timeout(TOKEN), skipped(ROLE), skipped(IMDS_CREDS)],
        ["ED511"],
        identity=IMDS_ID,
        facts=facts(AWS_EC2_METADATA_V1_DISABLED="true"),
    ),
    Case(
        "every IMDS request timing out is not the hop limit",
        [http_timeout(TOKEN), http_timeout(ROLE)],
        ["ED409"],
        identity=IMDS_ID,
    ),
    Case(
        "a refused token then 401 on the role means IMDSv2 is required and there is no token",
        [metadata_answer(TOKEN, 403), metadata_answer(ROLE, 401), skipped(IMDS_CREDS)],
        ["ED512"],
        identity=IMDS_ID,
    ),
    Case(
        "a refused token with a working IMDSv1 fallback is a warning",
        [metadata_answer(TOKEN, 403, warn=True), passed(ROLE), passed(IMDS_CREDS)],
        ["ED515"],
        identity=IMDS_ID,
    ),
    Case(
        "role list 404 from IMDS itself means no instance profile",
        [passed(TOKEN), metadata_answer(ROLE, 404, "<html>404 - Not Found</html>"), skipped(IMDS_CREDS)],
        ["ED513"],
        identity=IMDS_ID,
    ),
    Case(
        "an empty role list means no instance profile",
        [passed(TOKEN), metadata_answer(ROLE, 200), skipped(IMDS_CREDS)],
        ["ED513"],
        identity=IMDS_ID,
    ),
    Case(
        "a credentials document with an error Code is an IMDS error",
        _credentials_document_error(),
        ["ED514"],
        identity=IMDS_ID,
    ),
    Case(
        "IMDS refusing the token PUT with 400 is an IMDS error (no IMDSv1 fallback)",
        [metadata_answer(TOKEN, 400), skipped(ROLE), skipped(IMDS_CREDS)],
        ["ED514"],
        identity=IMDS_ID,
    ),
    Case(
        "Pod Identity agent refusing alone is the agent, not the sidecar",
        [refused(AGENT), skipped(GCI)],
        ["ED520"],
        identity=POD_ID,
    ),
    Case(
        "Pod Identity agent not answering in time is unreachable",
        [http_timeout(AGENT)],
        ["ED520"],
        identity=POD_ID,
    ),
    Case(
        "Pod Identity agent SYN dropped is unreachable",
        [connect_timeout(AGENT)],
        ["ED520"],
        identity=POD_ID,
    ),
    Case(
        "Pod Identity agent answering 400 itself refused the request",
        [metadata_answer(AGENT, 400, '{"message":"no association"}')],
        ["ED521"],
        identity=POD_ID,
    ),
    Case(
        "Pod Identity agent answering 500 itself refused the request",
        [http_reply(AGENT, 500, "internal error", {"content-type": "text/plain"})],
        ["ED521"],
        identity=POD_ID,
    ),
    Case(
        "a 502 on metadata routed through an HTTP proxy is not blamed on the sidecar's registry",
        [envoy(TOKEN, "block_all")],
        ["ED408", "ED551"],
        identity=IMDS_ID,
        facts=facts(HTTP_PROXY="http://proxy.corp:3128", NO_PROXY="localhost,.svc"),
    ),
    Case(
        "NO_PROXY naming the metadata address keeps the ServiceEntry fix",
        [envoy(TOKEN, "block_all")],
        ["ED401"],
        ["serviceentry/aws-imds"],
        identity=IMDS_ID,
        facts=facts(HTTP_PROXY="http://proxy.corp:3128", NO_PROXY="localhost,169.254.169.254"),
    ),
    Case(
        "a CIDR in NO_PROXY does not cover the metadata address for botocore",
        [passed(TOKEN), passed(ROLE), passed(IMDS_CREDS)],
        ["ED551"],
        identity=IMDS_ID,
        facts=facts(http_proxy="http://proxy.corp:3128", no_proxy="169.254.0.0/16"),
    ),
    Case(
        "only HTTPS_PROXY set does not touch instance metadata",
        [passed(TOKEN), passed(ROLE), passed(IMDS_CREDS)],
        [],
        identity=IMDS_ID,
        facts=facts(HTTPS_PROXY="http://proxy.corp:3128"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_metadata_rule_table(case: Case) -> None:
    assert_case(case)


def test_hop_limit_finding_prints_the_ec2_command_not_a_manifest() -> None:
    (finding,) = assert_case(CASES[0]).findings
    assert finding.level == "warning"
    assert finding.fix is None
    assert "--http-put-response-hop-limit 2" in finding.message


def test_agent_findings_name_the_real_pod_identity_address() -> None:
    (finding,) = assert_case(CASES[10]).findings
    assert finding.hosts == ["169.254.170.23"]
    assert "EKS Pod Identity agent" in finding.message
