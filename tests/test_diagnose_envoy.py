"""Rule table: Envoy's own replies (entry missing, or present with a failing upstream) and other HTTP."""

from __future__ import annotations

import pytest

from tests.test_diagnose_evidence import (
    AGENT,
    DESCRIBE,
    GCI,
    IMDS_CREDS,
    ROLE,
    TOKEN,
    Case,
    assert_case,
    facts,
    identity,
    passed,
    skipped,
)
from tests.test_diagnose_replies import (
    UF_BODY,
    closed_after_tls,
    envoy,
    http_reply,
    http_timeout,
    not_aws,
    upstream_reply,
)

SE_IMDS = "serviceentry/aws-imds"

CASES = [
    Case(
        "IMDS token PUT answered 502 by block_all needs the IMDS ServiceEntry",
        [envoy(TOKEN, "block_all"), envoy(ROLE, "block_all"), skipped(IMDS_CREDS)],
        ["ED401"],
        [SE_IMDS],
        identity=identity("imds"),
    ),
    Case(
        "Pod Identity agent answered 502 by block_all needs the agent's ServiceEntry, and STS next",
        [envoy(AGENT, "block_all"), skipped(GCI)],
        ["ED401", "ED307", "ED601"],
        ["serviceentry/aws-eks-pod-identity", "serviceentry/sts-us-east-1-amazonaws-com"],
        identity=identity("pod-identity"),
    ),
    Case(
        "ECS credentials endpoint blocked names 169.254.170.2",
        [envoy(AGENT, "block_all")],
        ["ED401"],
        ["serviceentry/aws-ecs-credentials"],
        identity=identity("ecs"),
    ),
    Case(
        "IPv6 IMDS blocked gets the IPv6 metadata ServiceEntry",
        [envoy(TOKEN, "block_all")],
        ["ED401"],
        ["serviceentry/aws-imds-ipv6"],
        identity=identity("imds"),
        facts=facts(AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE="IPv6"),
    ),
    Case(
        "a 502 the upstream produced (upstream time present) is not block_all",
        [upstream_reply(TOKEN, 502, "")],
        ["ED408"],
        identity=identity("imds"),
    ),
    Case(
        "an Envoy 502 with a body is not block_all",
        [http_reply(TOKEN, 502, "cannot find route entry")],
        ["ED408"],
        identity=identity("imds"),
    ),
    Case(
        "a block_all 502 seen as uid 1337 cannot come from the sidecar: no fix",
        [envoy(TOKEN, "block_all")],
        ["ED201", "ED408"],
        identity=identity("imds"),
        facts=facts(uid=1337),
    ),
    Case(
        "503 upstream connect error means the entry exists and its upstream refuses",
        [envoy(AGENT, "uf")],
        ["ED402"],
        identity=identity("pod-identity"),
    ),
    Case("DynamoDB 503 upstream connect error is UF, not an AWS answer", [envoy(DESCRIBE, "uf")], ["ED402"]),
    Case(
        "503 no healthy upstream means a DNS-resolution entry whose name does not resolve",
        [envoy(TOKEN, "uh")],
        ["ED403"],
        identity=identity("imds"),
    ),
    Case("504 upstream request timeout is UT", [envoy(GCI, "ut")], ["ED404"]),
    Case(
        "404 with an empty body from Envoy is no route, not a missing IMDS role",
        [passed(TOKEN), envoy(ROLE, "nr")],
        ["ED405"],
        identity=identity("imds"),
    ),
    Case("403 RBAC: access denied is an AuthorizationPolicy", [envoy(GCI, "rbac")], ["ED406"]),
    Case("an HTML 200 instead of an STS answer is not AWS", [not_aws(GCI)], ["ED407"]),
    Case(
        "a 404 with a body from the upstream is an unexpected reply",
        [upstream_reply(GCI, 404, "<html>not found</html>")],
        ["ED408"],
    ),
    Case("no reply within the read timeout", [http_timeout(DESCRIBE)], ["ED409"]),
    Case("closed after a completed handshake", [closed_after_tls(GCI)], ["ED410"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_envoy_rule_table(case: Case) -> None:
    assert_case(case)


def test_upstream_connect_failure_quotes_envoys_reset_reason() -> None:
    (finding,) = assert_case(CASES[7]).findings
    assert UF_BODY.rsplit(": ", 1)[1] in finding.message


def test_block_all_on_the_lab_standin_names_the_real_metadata_address() -> None:
    (finding,) = assert_case(CASES[0]).findings
    assert finding.hosts == ["169.254.169.254"]
    assert "169.254.169.254:80" in finding.message
    assert "127.0.0.1" not in finding.message
    assert finding.checks == [TOKEN, ROLE]
