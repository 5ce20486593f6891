"""Fixes that are right in meshes shaped like real clusters, closed on the lab's real Envoy in ONE
application: `check` reads the cluster (a fake Kubernetes API over real HTTP) and the sidecar (the
lab's Envoy, configured from the same objects by the model), its `--fix-only` output is applied
once the way `kubectl apply -f -` would, and every call then passes.

Each case names the istiod behaviour it depends on (the file in istio/istio that implements it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fidelity_pod import ACCOUNT, closes_in_one_round, codes, failing, mesh_pod
from tests.sockets import Pki

pytestmark = pytest.mark.lab

STS = "sts.us-east-1.amazonaws.com"
DDB = f"{ACCOUNT}.ddb.us-east-1.amazonaws.com"
REGISTRY_ONLY = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}


def entry(name: str, namespace: str, hosts: list[str], protocol: str = "TLS", extra: str = "") -> str:
    listed = ", ".join(hosts)
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{listed}]
  ports: [{{number: 443, name: tls, protocol: {protocol}}}]
  location: MESH_EXTERNAL
  resolution: DNS
{extra}---"""


AWS = entry("aws-sts", "platform", [STS]) + entry("aws-ddb", "platform", [DDB])


def test_an_edit_of_exportTo_keeps_every_namespace_the_mesh_default_gave_and_adds_the_pods(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # push_context.go serviceExportTo / IsServiceVisible: no exportTo means defaultServiceExportTo
    mesh = {**REGISTRY_ONLY, "defaultServiceExportTo": [".", "istio-system", "billing"]}
    with mesh_pod(monkeypatch, tmp_path, pki, AWS, mesh) as pod:
        fix = closes_in_one_round(pod, {"ED610"})
    assert {tuple(m["spec"]["exportTo"]) for m in fix} == {(".", "istio-system", "billing", "payments")}


def test_a_sidecar_listener_for_port_443_owns_the_port_so_the_import_goes_there(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # listener.go buildSidecarOutboundListeners: the catch-all adds nothing to a port a listener
    # declared for it has built (here for the pod's own partner API entry)
    partner = entry("partner-api", "payments", ["api.partner.example"])
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: payments}
spec:
  egress:
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["./*", "istio-system/*"]
  - hosts: ["*/*"]
"""
    with mesh_pod(monkeypatch, tmp_path, pki, AWS + partner + sidecar, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, {"ED611"})
    (edited,) = fix
    assert set(edited["spec"]["egress"][0]["hosts"]) >= {f"platform/{STS}", f"platform/{DDB}"}
    assert edited["spec"]["egress"][1]["hosts"] == ["*/*"]


def test_the_clients_namespace_rule_wins_over_an_exact_host_rule_in_the_root_namespace(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # push_context.go destinationRule: client namespace, then the service's, then the root
    rules = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: aws-plain, namespace: payments}
spec: {host: "*.amazonaws.com", trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sts-originate, namespace: istio-system}
spec: {host: sts.us-east-1.amazonaws.com, trafficPolicy: {tls: {mode: SIMPLE}}}
"""
    with mesh_pod(monkeypatch, tmp_path, pki, AWS + rules, REGISTRY_ONLY) as pod:
        result = pod.check()
        assert result.code == 0, (failing(result), codes(result))
        assert pod.fix() == []


def test_a_wildcard_rule_that_originates_tls_is_narrowed_not_stripped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: aws-originate, namespace: payments}
spec:
  host: "*.amazonaws.com"
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 50}}
    tls: {mode: SIMPLE}
"""
    with mesh_pod(monkeypatch, tmp_path, pki, AWS + rule, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, {"ED620"})
    assert all(m["kind"] == "DestinationRule" and m["spec"]["host"] != "*.amazonaws.com" for m in fix)
    assert all(m["spec"]["trafficPolicy"] == {"connectionPool": {"tcp": {"maxConnections": 50}}} for m in fix)
    assert {m["metadata"]["namespace"] for m in fix} == {"payments"}


def test_a_port_level_tls_setting_is_removed_where_it_lives(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # networking/util/util.go GetPortLevelTrafficPolicy: the port's entry replaces the rule's tls
    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sts, namespace: payments}
spec:
  host: sts.us-east-1.amazonaws.com
  trafficPolicy:
    tls: {mode: DISABLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE}
"""
    with mesh_pod(monkeypatch, tmp_path, pki, AWS + rule, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, {"ED620"})
    (edited,) = fix
    assert edited["spec"]["trafficPolicy"] == {"tls": {"mode": "DISABLE"}, "portLevelSettings": [
        {"port": {"number": 443}}]}


def test_hidden_by_exportTo_and_declared_http_are_both_fixed_in_one_pass(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    objects = (entry("aws-sts", "platform", [STS], "HTTP", "  exportTo: ['.']\n")
               + entry("aws-ddb", "platform", [DDB], "HTTP", "  exportTo: ['.']\n"))
    with mesh_pod(monkeypatch, tmp_path, pki, objects, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, {"ED610", "ED613"})
    assert {m["spec"]["ports"][0]["protocol"] for m in fix} == {"TLS"}
    assert {tuple(m["spec"]["exportTo"]) for m in fix} == {(".", "payments")}


def test_a_near_miss_onto_an_entry_whose_443_is_http_gets_the_host_and_the_protocol(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    objects = entry("aws-sts", "payments", ["sts.amazonaws.com"], "HTTP") + entry("aws-ddb", "payments", [DDB])
    with mesh_pod(monkeypatch, tmp_path, pki, objects, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, {"ED617"})
    (edited,) = fix
    assert STS in edited["spec"]["hosts"] and edited["spec"]["ports"][0]["protocol"] == "TLS"


def test_a_new_entry_the_pods_sidecar_does_not_import_comes_with_the_sidecar_edit(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: payments}
spec:
  egress:
  - hosts: ["istio-system/*"]
"""
    with mesh_pod(monkeypatch, tmp_path, pki, sidecar, REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, set())
    kinds = sorted(m["kind"] for m in fix)
    assert kinds.count("Sidecar") == 1 and kinds.count("ServiceEntry") == 2


def test_a_new_entry_never_takes_the_name_of_an_object_that_exists(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    taken = entry("sts-us-east-1-amazonaws-com", "payments", ["legacy.partner.example"])
    with mesh_pod(monkeypatch, tmp_path, pki, taken + entry("aws-ddb", "payments", [DDB]), REGISTRY_ONLY) as pod:
        fix = closes_in_one_round(pod, set())
        assert {m["metadata"]["name"] for m in fix} == {"sts-us-east-1-amazonaws-com-2"}
        kept = next(m for m in pod.manifests if m["metadata"]["name"] == "sts-us-east-1-amazonaws-com")
        assert kept["spec"]["hosts"] == ["legacy.partner.example"]


def test_a_root_namespace_sidecar_edit_says_it_is_mesh_wide_and_offers_the_namespaced_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    root = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
"""
    with mesh_pod(monkeypatch, tmp_path, pki, AWS + root, REGISTRY_ONLY) as pod:
        report = pod.check().json()
        finding = next(f for f in report["findings"] if f["code"] == "ED611")
        assert "root namespace" in finding["message"] and "every namespace" in finding["message"]
        fix = next(f for f in report["fixes"] if f["id"].startswith("edit/sidecar/istio-system"))
        assert "only payments" in fix["description"]
        closes_in_one_round(pod, {"ED611"})


def test_a_metadata_endpoint_moved_to_another_address_gets_a_fix_named_after_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    """AWS_EC2_METADATA_SERVICE_ENDPOINT=http://198.18.0.254/ (198.18.0.0/15: benchmarking
    addresses; the lab's connect-to rules keep it on loopback): placeholder host, addresses,
    STATIC endpoint; httproute.go puts the address into the virtual host's domains."""
    aws = entry("aws-sts", "payments", [STS]) + entry("aws-ddb", "payments", ["dynamodb.us-east-1.amazonaws.com"])
    with mesh_pod(monkeypatch, tmp_path, pki, aws, REGISTRY_ONLY, credentials="imds",
                  imds_address="198.18.0.254") as pod:
        fix = closes_in_one_round(pod, set())
    (metadata,) = [m for m in fix if "198.18.0.254" in m["spec"].get("addresses", [])]
    assert metadata["spec"]["hosts"] == ["ip-198-18-0-254.egress.internal"]
    assert metadata["spec"]["endpoints"] == [{"address": "198.18.0.254"}]
    assert metadata["spec"]["resolution"] == "STATIC"


def test_analyze_with_the_apps_environment_prints_the_fix_its_sdk_needs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    """AWS_STS_REGIONAL_ENDPOINTS=legacy: botocore calls the global STS host; analyze --env knows."""
    import io

    import yaml

    from egress_doctor.cli import main
    from egress_doctor.context import Environment

    objects = entry("aws-sts", "payments", [STS]) + entry("aws-ddb", "payments", [DDB])
    path = tmp_path / "mesh.yaml"
    path.write_text(objects)
    out = io.StringIO()
    main(["analyze", "-f", str(path), "-n", "payments", "--mode", "REGISTRY_ONLY", "--region", "us-east-1",
          "--credentials", "irsa", "--account", ACCOUNT, "--table", "orders", "--fix-only",
          "--env", "AWS_STS_REGIONAL_ENDPOINTS=legacy"], Environment(environ={}, stdout=out, stderr=io.StringIO()))
    fix = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert any("sts.amazonaws.com" in m["spec"]["hosts"] for m in fix)
    with mesh_pod(monkeypatch, tmp_path, pki, objects, REGISTRY_ONLY) as pod:
        monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
        assert pod.check().code == 1
        pod.apply(fix)
        after = pod.check()
        assert after.code == 0, (failing(after), codes(after))


def test_a_new_entry_the_egress_gateway_must_route_is_exported_to_the_gateways_namespace(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # issue 9 item 4. push_context.go IsServiceVisible: the gateway (istio-system) builds a cluster
    # only for entries exported to it; gateway.go routes the SNI to that cluster
    from tests.test_egress_gateway_lab import gateway, through_gateway

    mesh = entry("aws-sts", "platform", [STS]) + gateway([STS, DDB]) + through_gateway("aws-egress", [STS, DDB])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        fix = closes_in_one_round(pod, {"ED660"})
    (created,) = fix
    assert created["kind"] == "ServiceEntry" and DDB in created["spec"]["hosts"]
    assert "istio-system" in created["spec"]["exportTo"]
