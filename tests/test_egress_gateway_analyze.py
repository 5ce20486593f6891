"""`analyze -f` follows the same path offline — sidecar → egress gateway → host — and its fixes
follow the mesh's egress policy: new hosts are routed through the gateway like the hosts the
mesh routes already (ED662), unless `--egress-via direct`.

istiod behaviour: pilot/pkg/networking/core/gateway.go (passthrough chains per VirtualService tls
match, pickMatchingGatewayHosts), pilot/pkg/model/push_context.go (exportTo: what the gateway's
namespace sees)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from egress_doctor.cli import main
from egress_doctor.context import Environment
from tests.test_egress_gateway_lab import DDB, GW_HOST, STS, entry, gateway, through_gateway

APP = ("--env", "AWS_ACCOUNT_ID=111122223333", "--env", "AWS_ROLE_ARN=arn:aws:iam::111122223333:role/app",
       "--env", "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token")


def analyze(tmp_path: Path, text: str, *args: str) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    base = ["analyze", "-f", str(path), "-n", "payments", "--mode", "REGISTRY_ONLY", "--region", "us-east-1",
            *APP, *args]
    out, err = io.StringIO(), io.StringIO()
    code = main([*base, "-o", "json"], Environment(environ={}, stdout=out, stderr=err))
    assert err.getvalue() == "", err.getvalue()
    fixes = io.StringIO()
    main([*base, "--fix-only"], Environment(environ={}, stdout=fixes, stderr=io.StringIO()))
    return int(code), json.loads(out.getvalue()), [d for d in yaml.safe_load_all(fixes.getvalue()) if d]


def codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for f in report["findings"]}


def by_kind(fix: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in fix if d["kind"] == kind]


def test_new_hosts_in_a_mesh_that_routes_aws_through_the_gateway_are_routed_the_same_way(tmp_path: Path) -> None:
    mesh = entry("aws-sts", [STS]) + gateway([STS]) + through_gateway("aws-egress", [STS])
    code, report, fix = analyze(tmp_path, mesh)
    assert code == 1 and "ED662" in codes(report)
    (routes,) = by_kind(fix, "VirtualService")
    assert DDB in routes["spec"]["hosts"]
    to_gateway = [r for r in routes["spec"]["tls"] if r["match"][0]["sniHosts"] == [DDB]]
    assert [r["route"][0]["destination"]["host"] for r in to_gateway] == [GW_HOST, DDB]
    entries = {d["spec"]["hosts"][0]: d for d in by_kind(fix, "ServiceEntry")}
    assert entries[DDB]["spec"]["exportTo"] == [".", "istio-system"]


def test_egress_via_direct_gives_direct_entries_and_leaves_the_routes_alone(tmp_path: Path) -> None:
    mesh = entry("aws-sts", [STS]) + gateway([STS]) + through_gateway("aws-egress", [STS])
    code, report, fix = analyze(tmp_path, mesh, "--egress-via", "direct")
    assert code == 1 and "ED662" not in codes(report)
    assert by_kind(fix, "VirtualService") == []
    assert {tuple(d["spec"]["exportTo"]) for d in by_kind(fix, "ServiceEntry")} == {(".",)}


def test_an_entry_hidden_from_the_gateways_namespace_is_exported_there_offline(tmp_path: Path) -> None:
    mesh = entry("aws", [STS, DDB], namespace="payments", export='"."') + gateway([STS, DDB]) \
        + through_gateway("aws-egress", [STS, DDB])
    code, report, fix = analyze(tmp_path, mesh)
    assert code == 1 and "ED660" in codes(report)
    edited = [d for d in by_kind(fix, "ServiceEntry") if d["metadata"]["name"] == "aws"]
    assert edited and edited[0]["spec"]["exportTo"] == [".", "istio-system"]


def test_a_gateway_that_lists_the_regional_name_gets_the_account_host_offline_without_a_false_subset_finding(
        tmp_path: Path) -> None:
    # the DestinationRule in istio-system defines the subset: no ED622
    mesh = entry("aws", [STS, DDB]) + gateway([STS, "dynamodb.us-east-1.amazonaws.com"]) \
        + through_gateway("aws-sts-egress", [STS]) + through_gateway("aws-ddb-egress", [DDB])
    code, report, fix = analyze(tmp_path, mesh)
    assert code == 1 and "ED621" in codes(report) and "ED622" not in codes(report), codes(report)
    assert by_kind(fix, "DestinationRule") == []
    (edited,) = by_kind(fix, "Gateway")
    assert DDB in edited["spec"]["servers"][0]["hosts"]
    assert "dynamodb.us-east-1.amazonaws.com" in edited["spec"]["servers"][0]["hosts"]


def test_an_authorization_policy_on_the_gateway_is_checked_offline_and_its_list_extended(tmp_path: Path) -> None:
    # pilot/pkg/security/authz/builder/builder.go: the gateway's RBAC network filter on the SNI
    from tests.test_egress_gateway_lab import ALL_THROUGH_GATEWAY, egress_policy

    code, report, fix = analyze(tmp_path, ALL_THROUGH_GATEWAY + egress_policy("ALLOW", f"values: [{STS}]"))
    assert code == 1 and "ED663" in codes(report), codes(report)
    (edited,) = by_kind(fix, "AuthorizationPolicy")
    assert edited["kind"] == "AuthorizationPolicy"
    assert edited["spec"]["rules"][0]["when"][0]["values"] == [STS, DDB]
    code, report, fix = analyze(tmp_path, ALL_THROUGH_GATEWAY + egress_policy("ALLOW", f"values: [{STS}, {DDB}]"))
    assert "ED663" not in codes(report) and by_kind(fix, "AuthorizationPolicy") == [], codes(report)
