"""Fix builders: names, grouping, options. Shapes are checked against Istio in test_fixes_schema."""

from __future__ import annotations

import pytest
import yaml

from egress_doctor.aws.hosts import ddb_wildcard, wildcard_of
from egress_doctor.fixes.builders import (
    EgressNeed,
    FixOptions,
    build_fixes,
    external_service_entry,
    hold_until_proxy_starts_fix,
    metadata_service_entry,
    service_entry_name,
)


def need(host: str, port: int = 443, scheme: str = "https", code: str = "ED301") -> EgressNeed:
    return EgressNeed(host, port, code, "TLS closed during handshake", scheme)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("sts.us-east-1.amazonaws.com", "sts-us-east-1-amazonaws-com"),
        ("sts.amazonaws.com", "sts-amazonaws-com"),
        ("sts-fips.us-east-1.amazonaws.com", "sts-fips-us-east-1-amazonaws-com"),
        ("sts.us-east-1.api.aws", "sts-us-east-1-api-aws"),
        ("sts.cn-north-1.amazonaws.com.cn", "sts-cn-north-1-amazonaws-com-cn"),
        ("111122223333.ddb.us-east-1.amazonaws.com", "111122223333-ddb-us-east-1-amazonaws-com"),
        ("444455556666.ddb.us-east-1.amazonaws.com", "444455556666-ddb-us-east-1-amazonaws-com"),
        ("*.ddb.us-east-1.amazonaws.com", "wildcard-ddb-us-east-1-amazonaws-com"),
        ("169.254.169.254", "aws-imds"),
        ("fd00:ec2::254", "aws-imds-ipv6"),
        ("169.254.170.23", "aws-eks-pod-identity"),
        ("169.254.170.2", "aws-ecs-credentials"),
        ("localstack.tools.svc.cluster.local", "localstack-tools-svc-cluster-local"),
    ],
)
def test_service_entry_names_say_the_host_so_fips_dual_stack_regions_and_accounts_never_share_one(
        host: str, name: str) -> None:
    assert service_entry_name(host) == name


def test_very_long_hosts_get_a_short_stable_name() -> None:
    host = "a" * 80 + ".example.com"
    name = service_entry_name(host)
    assert len(name) <= 63 and name == service_entry_name(host) and name != service_entry_name("b" + host)


@pytest.mark.parametrize(
    ("host", "wildcard"),
    [
        ("111122223333.ddb.us-east-1.amazonaws.com", "*.ddb.us-east-1.amazonaws.com"),
        ("111122223333.ddb.us-west-2.api.aws", "*.ddb.us-west-2.api.aws"),
    ],
)
def test_account_dynamodb_hosts_widen_to_the_regional_wildcard(host: str, wildcard: str) -> None:
    assert ddb_wildcard(host) == wildcard


def test_only_account_dynamodb_hosts_can_be_widened() -> None:
    with pytest.raises(ValueError):
        ddb_wildcard("dynamodb.us-east-1.amazonaws.com")


@pytest.mark.parametrize(
    ("host", "wildcard"),
    [
        ("invoice-archive.s3.amazonaws.com", "*.s3.amazonaws.com"),
        ("invoice-archive.s3.eu-west-1.amazonaws.com", "*.s3.eu-west-1.amazonaws.com"),
        ("invoice-archive.s3-fips.us-east-1.amazonaws.com", "*.s3-fips.us-east-1.amazonaws.com"),
        ("invoice-archive.s3.dualstack.us-east-1.amazonaws.com", "*.s3.dualstack.us-east-1.amazonaws.com"),
        ("reports-111122223333.s3-accesspoint.us-west-2.amazonaws.com", "*.s3-accesspoint.us-west-2.amazonaws.com"),
        ("111122223333.ddb.us-east-1.amazonaws.com", "*.ddb.us-east-1.amazonaws.com"),
        ("sts.us-east-1.amazonaws.com", None),
        ("s3.us-east-1.amazonaws.com", None),
        ("sqs.us-east-1.amazonaws.com", None),
        ("bucket.vpce-0abc-1.s3.us-east-1.vpce.amazonaws.com", None),
    ],
)
def test_hosts_that_carry_a_bucket_or_account_widen_to_their_endpoints_wildcard(host: str,
                                                                                wildcard: str | None) -> None:
    assert wildcard_of(host) == wildcard


def test_wildcard_option_gives_buckets_of_one_endpoint_one_serviceentry_with_resolution_none() -> None:
    plan = build_fixes([need("invoice-archive.s3.amazonaws.com"), need("logs-archive.s3.amazonaws.com"),
                        need("secretsmanager.us-east-1.amazonaws.com")], FixOptions(wildcard=True))
    specs = {f.id: f.manifests[0]["spec"] for f in plan.fixes}
    assert specs["serviceentry/wildcard-s3-amazonaws-com"]["hosts"] == ["*.s3.amazonaws.com"]
    assert specs["serviceentry/wildcard-s3-amazonaws-com"]["resolution"] == "NONE"
    assert specs["serviceentry/secretsmanager-us-east-1-amazonaws-com"]["resolution"] == "DNS"
    assert plan.by_host["logs-archive.s3.amazonaws.com"] == "serviceentry/wildcard-s3-amazonaws-com"


def test_without_wildcard_each_bucket_gets_its_own_serviceentry() -> None:
    plan = build_fixes([need("invoice-archive.s3.amazonaws.com"), need("logs-archive.s3.amazonaws.com")])
    assert [f.id for f in plan.fixes] == ["serviceentry/invoice-archive-s3-amazonaws-com",
                                          "serviceentry/logs-archive-s3-amazonaws-com"]


def test_one_serviceentry_per_host_named_after_it() -> None:
    plan = build_fixes(
        [
            need("111122223333.ddb.us-east-1.amazonaws.com"),
            need("dynamodb.us-east-1.amazonaws.com"),
            need("sts.us-east-1.amazonaws.com"),
            need("sts.us-east-1.amazonaws.com", code="ED601"),
        ]
    )
    assert [f.id for f in plan.fixes] == [
        "serviceentry/111122223333-ddb-us-east-1-amazonaws-com",
        "serviceentry/dynamodb-us-east-1-amazonaws-com",
        "serviceentry/sts-us-east-1-amazonaws-com",
    ]
    assert [f.manifests[0]["spec"]["hosts"] for f in plan.fixes] == [
        ["111122223333.ddb.us-east-1.amazonaws.com"], ["dynamodb.us-east-1.amazonaws.com"],
        ["sts.us-east-1.amazonaws.com"]]
    assert plan.by_host["dynamodb.us-east-1.amazonaws.com"] == "serviceentry/dynamodb-us-east-1-amazonaws-com"


def test_wildcard_replaces_the_account_host_and_switches_to_resolution_none() -> None:
    plan = build_fixes(
        [need("111122223333.ddb.us-east-1.amazonaws.com"), need("dynamodb.us-east-1.amazonaws.com")],
        FixOptions(wildcard=True),
    )
    specs = {f.manifests[0]["spec"]["hosts"][0]: f.manifests[0]["spec"] for f in plan.fixes}
    wildcard, regional = specs["*.ddb.us-east-1.amazonaws.com"], specs["dynamodb.us-east-1.amazonaws.com"]
    assert wildcard["hosts"] == ["*.ddb.us-east-1.amazonaws.com"] and wildcard["resolution"] == "NONE"
    assert "endpoints" not in wildcard
    assert regional["resolution"] == "DNS"


def test_with_wildcard_two_accounts_in_one_region_share_one_entry() -> None:
    plan = build_fixes([need("111122223333.ddb.us-east-1.amazonaws.com"),
                        need("444455556666.ddb.us-east-1.amazonaws.com")], FixOptions(wildcard=True))
    assert [f.manifests[0]["spec"]["hosts"] for f in plan.fixes] == [["*.ddb.us-east-1.amazonaws.com"]]


def test_tls_serviceentry_has_port_443_tls_dns_mesh_external_and_no_virtualservice() -> None:
    plan = build_fixes([need("sts.us-east-1.amazonaws.com")], FixOptions(namespace="payments"))
    (fix,) = plan.fixes
    (manifest,) = fix.manifests
    assert manifest["kind"] == "ServiceEntry" and manifest["metadata"]["namespace"] == "payments"
    assert manifest["spec"] == {
        "hosts": ["sts.us-east-1.amazonaws.com"],
        "exportTo": ["."],
        "location": "MESH_EXTERNAL",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    }


def test_metadata_serviceentry_uses_a_placeholder_fqdn_the_address_and_a_static_endpoint() -> None:
    spec = metadata_service_entry("169.254.169.254")["spec"]
    assert spec["hosts"] == ["imds.aws.internal"]
    assert spec["addresses"] == ["169.254.169.254"]
    assert spec["resolution"] == "STATIC"
    assert spec["endpoints"] == [{"address": "169.254.169.254"}]
    assert spec["ports"] == [{"number": 80, "name": "http", "protocol": "HTTP"}]


def test_each_metadata_address_gets_its_own_serviceentry() -> None:
    plan = build_fixes(
        [need("169.254.169.254", 80, "http", "ED401"), need("169.254.170.23", 80, "http", "ED401")]
    )
    assert [f.id for f in plan.fixes] == ["serviceentry/aws-eks-pod-identity", "serviceentry/aws-imds"]
    hosts = [f.manifests[0]["spec"]["hosts"][0] for f in plan.fixes]
    assert hosts == ["eks-pod-identity.aws.internal", "imds.aws.internal"]


def test_annotation_mode_merges_every_metadata_address_into_one_pod_template_patch() -> None:
    plan = build_fixes(
        [need("169.254.169.254", 80, "http", "ED401"), need("169.254.170.23", 80, "http", "ED205")],
        FixOptions(imds_fix="annotation"),
    )
    (fix,) = plan.fixes
    patch = yaml.safe_load(fix.patch or "")
    annotations = patch["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32,169.254.170.23/32"
    }
    assert plan.by_host == {"169.254.169.254": fix.id, "169.254.170.23": fix.id}


def test_annotation_mode_still_writes_serviceentries_for_aws_hosts() -> None:
    plan = build_fixes(
        [need("169.254.169.254", 80, "http", "ED401"), need("sts.us-east-1.amazonaws.com")],
        FixOptions(imds_fix="annotation"),
    )
    assert [f.id for f in plan.fixes] == [
        "patch/exclude-outbound-ip-ranges",
        "serviceentry/sts-us-east-1-amazonaws-com",
    ]


def test_ipv6_metadata_exclusion_uses_a_128_bit_prefix() -> None:
    plan = build_fixes([need("fd00:ec2::254", 80, "http", "ED401")], FixOptions(imds_fix="annotation"))
    assert "fd00:ec2::254/128" in (plan.fixes[0].patch or "")


def test_non_default_ports_and_plain_http_get_distinct_port_names() -> None:
    plan = build_fixes([need("api.example.com", 8443), need("api.example.com", 8080, "http")])
    ports = plan.fixes[0].manifests[0]["spec"]["ports"]
    assert ports == [
        {"number": 8080, "name": "http-8080", "protocol": "HTTP"},
        {"number": 8443, "name": "tls-8443", "protocol": "TLS"},
    ]


@pytest.mark.parametrize("api", ["v1", "v1beta1", "v1alpha3"])
def test_api_version_follows_the_istio_api_option(api: str) -> None:
    plan = build_fixes([need("sts.us-east-1.amazonaws.com")], FixOptions(istio_api=api))
    assert plan.fixes[0].manifests[0]["apiVersion"] == f"networking.istio.io/{api}"


def test_export_to_is_copied_from_the_options() -> None:
    plan = build_fixes([need("sts.us-east-1.amazonaws.com")], FixOptions(export_to=("*",)))
    assert plan.fixes[0].manifests[0]["spec"]["exportTo"] == ["*"]


@pytest.mark.parametrize(("address", "port", "name", "placeholder"), [
    ("10.1.2.3", 80, "egress-ip-10-1-2-3", "ip-10-1-2-3.egress.internal"),
    ("10.1.2.3", 8080, "egress-ip-10-1-2-3", "ip-10-1-2-3.egress.internal"),
    ("fd00:ec2::1234", 80, "egress-ip-fd00-ec2-1234", "ip-fd00-ec2-1234.egress.internal"),
])
def test_a_metadata_endpoint_at_any_ip_gets_a_placeholder_host_its_address_and_a_static_endpoint(
        address: str, port: int, name: str, placeholder: str) -> None:
    (fix,) = build_fixes([need(address, port, "http", "ED401")]).fixes
    (manifest,) = fix.manifests
    assert manifest["metadata"]["name"] == name
    spec = manifest["spec"]
    assert spec["hosts"] == [placeholder] and spec["addresses"] == [address]
    assert spec["resolution"] == "STATIC" and spec["endpoints"] == [{"address": address}]
    assert spec["ports"][0]["number"] == port and spec["ports"][0]["protocol"] == "HTTP"


def test_with_the_annotation_form_any_ip_is_excluded_from_capture() -> None:
    (fix,) = build_fixes([need("10.1.2.3", 80, "http", "ED401")], FixOptions(imds_fix="annotation")).fixes
    assert "10.1.2.3/32" in (fix.patch or "")


def test_no_serviceentry_names_an_ip_in_its_hosts() -> None:
    with pytest.raises(ValueError):
        external_service_entry("x", ["10.0.0.5"])


@pytest.mark.parametrize(
    "options",
    [{"istio_api": "v2"}, {"imds_fix": "iptables"}, {"namespace": ""}],
    ids=["istio_api", "imds_fix", "namespace"],
)
def test_fix_options_refuse_values_that_would_print_a_wrong_manifest(options: dict) -> None:
    with pytest.raises(ValueError):
        FixOptions(**options)


def test_hold_patch_sets_hold_application_until_proxy_starts_in_the_pod_template() -> None:
    fix = hold_until_proxy_starts_fix("ED202", "connections refused", FixOptions(namespace="jobs"))
    patch = yaml.safe_load(fix.patch or "")
    value = patch["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
    assert yaml.safe_load(value) == {"holdApplicationUntilProxyStarts": True}
    assert "kubectl -n jobs patch" in fix.description


def test_descriptions_start_with_one_egress_doctor_line_per_blocked_destination() -> None:
    plan = build_fixes([need("sts.us-east-1.amazonaws.com"), need("sts.amazonaws.com")])
    lines = [f.description.splitlines()[0] for f in plan.fixes]
    why = "(blocked: TLS closed during handshake)"
    assert lines == [
        f"egress-doctor: ED301 — allows sts.amazonaws.com:443 {why}",
        f"egress-doctor: ED301 — allows sts.us-east-1.amazonaws.com:443 {why}",
    ]
