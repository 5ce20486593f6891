"""Rule table for `analyze`: Istio YAML + the SDK's hosts (computed by botocore, offline) → per-host
verdicts, finding codes and fixes. Pure: no files, no network."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from egress_doctor.aws.endpoints import EndpointOptions, sdk_endpoints
from egress_doctor.diagnose.engine import DiagnoseOptions
from egress_doctor.diagnose.offline import Analysis, analyze
from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.model import Identity, Status
from egress_doctor.sources.files import read_yaml
from egress_doctor.sources.view import MeshView
from tests.test_explain_table import GATEWAY_VS, IMDS_ENTRY, SIDECAR_LOCAL, se

NS = "payments"
ACCOUNT = "111122223333"
CORRECT = (
    se("aws-sts", ["sts.us-east-1.amazonaws.com"])
    + se("aws-dynamodb", ["dynamodb.us-east-1.amazonaws.com"])
    + se("aws-ddb-accounts", ["*.ddb.us-east-1.amazonaws.com"], resolution="NONE")
)


@dataclass
class AnalyzeCase:
    id: str
    yaml: str
    statuses: list[str]  # per checked host, in order: "pass" / "fail"
    codes: list[str]
    fixes: list[str] = field(default_factory=list)
    mode: Mode = Mode.REGISTRY_ONLY
    credentials: str = "irsa"
    account: str | None = ACCOUNT

    def run(self) -> Analysis:
        read = read_yaml(self.yaml, NS)
        view = MeshView(objects=read.objects, mesh=MeshConfig(outbound_traffic_policy=self.mode), pod_namespace=NS,
                        source="files", manifests=read.manifests, gateways=read.gateways)
        endpoints = sdk_endpoints(EndpointOptions("us-east-1", self.credentials, self.account))
        identity = Identity(source=self.credentials, region="us-east-1", account_id=self.account)
        return analyze(view, endpoints, identity, DiagnoseOptions(namespace=NS))


CASES = [
    AnalyzeCase("the recommended entries cover every irsa host", CORRECT, ["pass", "pass", "pass"], []),
    AnalyzeCase(
        "no entries under REGISTRY_ONLY: every host fails with a new ServiceEntry each",
        "", ["fail", "fail", "fail"], ["ED630", "ED630", "ED630", "ED601", "ED602"],
        ["serviceentry/111122223333-ddb-us-east-1-amazonaws-com", "serviceentry/dynamodb-us-east-1-amazonaws-com",
         "serviceentry/sts-us-east-1-amazonaws-com"],
    ),
    AnalyzeCase(
        "no entries under ALLOW_ANY: everything passes through, said as info",
        "", ["pass", "pass", "pass"], ["ED631", "ED631", "ED631"], mode=Mode.ALLOW_ANY,
    ),
    AnalyzeCase(
        "account unknown: the account endpoint is any account's host, allowed with a NONE wildcard",
        se("aws-sts", ["sts.us-east-1.amazonaws.com"]) + se("aws-dynamodb", ["dynamodb.us-east-1.amazonaws.com"]),
        ["pass", "pass", "fail"], ["ED617"], ["serviceentry/wildcard-ddb-us-east-1-amazonaws-com"], account=None,
    ),
    AnalyzeCase(
        "a Sidecar hides the entries: one Sidecar edit fixes all three hosts",
        CORRECT + SIDECAR_LOCAL, ["fail", "fail", "fail"], ["ED611", "ED611", "ED611"],
        ["edit/sidecar/payments/default"],
    ),
    AnalyzeCase(
        "a route through an egress gateway without Gateway or subset breaks even under ALLOW_ANY",
        CORRECT + GATEWAY_VS, ["fail", "pass", "pass"], ["ED621", "ED622"],
        ["create/destinationrule/payments/istio-egressgateway", "create/gateway/payments/istio-egressgateway"],
        mode=Mode.ALLOW_ANY,
    ),
    AnalyzeCase(
        "imds credentials need the metadata entry: without addresses it fails",
        CORRECT + IMDS_ENTRY % ("", "HTTP"), ["fail", "pass", "pass"], ["ED616"],
        ["edit/serviceentry/payments/aws-imds"], credentials="imds", account=None,
    ),
    AnalyzeCase(
        "a refused object fails the analysis even when no host needs it",
        CORRECT + se("aws-metadata", ["169.254.169.254"], ns=NS, port=80, protocol="HTTP"),
        ["pass", "pass", "pass", "fail"], ["ED618"], ["edit/serviceentry/payments/aws-metadata"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_analyze_rule_table(case: AnalyzeCase) -> None:
    result = case.run()
    assert [c.status.value for c in result.checks] == case.statuses, [(c.subject, c.reason) for c in result.checks]
    assert [f.code for f in result.findings] == case.codes, [(f.code, f.message) for f in result.findings]
    assert [f.id for f in result.fixes] == case.fixes
    for finding in result.findings:
        assert finding.fix is None or finding.fix in case.fixes


def test_a_passing_host_names_the_entry_that_covers_it() -> None:
    result = CASES[0].run()
    assert result.checks[0].status is Status.PASS
    assert result.checks[0].reason == "covered by ServiceEntry platform/aws-sts (sts.us-east-1.amazonaws.com)"
