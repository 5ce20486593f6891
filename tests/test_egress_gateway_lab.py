"""Egress through istio-egressgateway, end to end on the lab: the pod's sidecar and the gateway are
two real Envoys configured from the model (lab.gateway), the fake AWS behind the gateway; with
`enforce`, the sidecar's own connections to AWS are refused (only the gateway may leave).

istiod behaviour the cases depend on:
- pilot/pkg/networking/core/gateway.go (buildGatewayListeners, TLS passthrough filter chains per
  VirtualService `tls` match on the server's port; clusters for the services the gateway sees),
  pilot/pkg/networking/core/gateway_simulation_test.go (passthrough by SNI, no chain → no match);
- pilot/pkg/model/push_context.go (exportTo: the gateway's namespace must see the entry; its
  VirtualServices and DestinationRules likewise).
"""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from egress_doctor.cli import main
from egress_doctor.context import Environment
from egress_doctor.lab.pod_log import pod_log
from egress_doctor.lab.runner import Lab, LabConfig
from tests.fidelity_pod import ACCOUNT, closes_in_one_round, codes, docs, failing, mesh_pod
from tests.kube_api import FakeApiServer, write_kubeconfig
from tests.kube_logs import FakePod, log_routes
from tests.sockets import Pki

pytestmark = pytest.mark.lab

STS = "sts.us-east-1.amazonaws.com"
DDB = f"{ACCOUNT}.ddb.us-east-1.amazonaws.com"
GW_HOST = "istio-egressgateway.istio-system.svc.cluster.local"
REGISTRY_ONLY = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}


def entry(name: str, hosts: list[str], namespace: str = "platform", export: str = "") -> str:
    export_to = f"\n  exportTo: [{export}]" if export else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{", ".join(hosts)}]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  location: MESH_EXTERNAL
  resolution: DNS{export_to}
---"""


def gateway(hosts: list[str]) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 443, name: tls, protocol: TLS}}
    hosts: [{", ".join(hosts)}]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-aws, namespace: istio-system}}
spec:
  host: {GW_HOST}
  subsets: [{{name: aws}}]
---"""


def through_gateway(name: str, hosts: list[str]) -> str:
    """The istio.io egress-gateway task's VirtualService: the mesh's SNI to the gateway's subset,
    the gateway's SNI to the host."""
    routes = []
    for host in hosts:
        routes.append(f"""  - match: [{{gateways: [mesh], port: 443, sniHosts: [{host}]}}]
    route: [{{destination: {{host: {GW_HOST}, subset: aws, port: {{number: 443}}}}}}]
  - match: [{{gateways: [istio-system/istio-egressgateway], port: 443, sniHosts: [{host}]}}]
    route: [{{destination: {{host: {host}, port: {{number: 443}}}}}}]""")
    body = "\n".join(routes)
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: istio-system}}
spec:
  hosts: [{", ".join(hosts)}]
  gateways: [mesh, istio-system/istio-egressgateway]
  tls:
{body}
---"""


ALL_THROUGH_GATEWAY = entry("aws", [STS, DDB]) + gateway([STS, DDB]) + through_gateway("aws-egress", [STS, DDB])


def _tls_handshake(port: int, sni: str) -> str:
    """The app's view of a TLS connection to a stand-in port: "ok" or the error's name."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock, \
                context.wrap_socket(sock, server_hostname=sni):
            return "ok"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__


def test_the_lab_sends_the_apps_tls_through_the_gateway_envoy_and_only_the_gateway_reaches_aws() -> None:
    config = LabConfig(objects=tuple(docs(ALL_THROUGH_GATEWAY)), namespace="payments",
                       egress_gateway=True, enforce=True)
    with Lab(config) as lab:
        assert lab.gateway is not None and lab.gateway.pid is not None and lab.ports is not None
        assert _tls_handshake(lab.ports.tls, STS) == "ok"
        deadline = time.monotonic() + 5  # Envoy flushes its access log about every second
        while f"outbound|443||{STS}" not in lab.gateway.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = lab.gateway.log()
        sidecar_log = lab.envoy_log()
    assert f"outbound|443||{STS}" in log, log[-2000:]
    assert f"outbound|443|aws|{GW_HOST}" in sidecar_log, sidecar_log[-2000:]


def test_in_an_enforced_lab_the_sidecars_direct_connection_to_aws_is_refused_upstream() -> None:
    mesh = entry("aws", [STS, DDB])
    with Lab(LabConfig(objects=tuple(docs(mesh)), namespace="payments", egress_gateway=True,
                       enforce=True)) as lab:
        assert lab.ports is not None
        assert _tls_handshake(lab.ports.tls, STS) != "ok"
        deadline = time.monotonic() + 5
        while "UF" not in lab.envoy_log() and time.monotonic() < deadline:
            time.sleep(0.1)
        line = next((x for x in lab.envoy_log().splitlines() if f"outbound|443||{STS}" in x), "")
    assert " UF" in line and "Connection_refused" in line, line


def test_an_all_pass_gateway_mesh_is_healthy_and_gets_no_fix(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # gateway.go: TLS PASSTHROUGH server + VS tls match by SNI → chain to outbound|443||<host>
    with mesh_pod(monkeypatch, tmp_path, pki, ALL_THROUGH_GATEWAY, REGISTRY_ONLY,
                  egress_gateway=True, enforce=True) as pod:
        result = pod.check()
        assert result.code == 0, (failing(result), codes(result))
        assert pod.fix() == []


def _kinds(fix: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in fix}


def test_a_gateway_listing_the_regional_dynamodb_name_gets_the_account_host_added_to_its_server(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # gateway.go buildGatewayNetworkFiltersFromTLSRoutes: a VirtualService whose hosts share none
    # with the server's (pickMatchingGatewayHosts) adds no chain, so the account host's SNI has no
    # chain at the gateway (one VirtualService per host, as many meshes write them)
    mesh = entry("aws", [STS, DDB]) + gateway([STS, "dynamodb.us-east-1.amazonaws.com"]) \
        + through_gateway("aws-sts-egress", [STS]) + through_gateway("aws-ddb-egress", [DDB])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        before = pod.check()
        assert "ED622" not in codes(before), "the DestinationRule in istio-system defines the subset"
        fix = closes_in_one_round(pod, {"ED621"})
    edited = _kinds(fix)
    assert set(edited) == {("Gateway", "istio-egressgateway")}, list(edited)
    assert DDB in edited[("Gateway", "istio-egressgateway")]["spec"]["servers"][0]["hosts"]


def test_an_entry_exported_only_to_the_apps_namespace_is_exported_to_the_gateways_too(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # push_context.go IsServiceVisible: the gateway (istio-system) has no cluster for an entry not
    # exported there; gateway.go then has a chain to a cluster it lacks and closes the connection
    mesh = entry("aws", [STS, DDB], namespace="payments", export='"."') + gateway([STS, DDB]) \
        + through_gateway("aws-egress", [STS, DDB])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        fix = closes_in_one_round(pod, {"ED660"})
    (edited,) = fix
    assert edited["kind"] == "ServiceEntry" and edited["spec"]["exportTo"] == [".", "istio-system"]


def test_in_an_enforced_mesh_a_host_with_only_a_direct_entry_is_routed_through_the_gateway_like_its_siblings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # the siblings' VirtualService sends STS through the gateway; DynamoDB's direct connection is
    # refused (only the gateway may leave): a direct entry cannot be the fix. gateway.go
    # buildGatewayNetworkFiltersFromTLSRoutes: once one of a VirtualService's hosts matches the
    # server's (STS), every tls match of it on the port becomes a chain, so the VirtualService edit
    # alone gives the gateway a chain for DynamoDB's SNI
    mesh = entry("aws-sts", [STS]) + entry("aws-ddb", [DDB]) + gateway([STS]) + through_gateway("aws-egress", [STS])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        before = pod.check()
        assert "ED301" not in codes(before), codes(before)
        fix = closes_in_one_round(pod, {"ED661"})
    edited = _kinds(fix)
    assert not any(kind == "ServiceEntry" for kind, _ in edited), list(edited)
    routes = edited[("VirtualService", "aws-egress")]["spec"]
    assert DDB in routes["hosts"]
    assert DDB in edited[("Gateway", "istio-egressgateway")]["spec"]["servers"][0]["hosts"]  # ED665
    assert [r["route"][0]["destination"]["host"] for r in routes["tls"] if DDB in r["match"][0]["sniHosts"]] == [
        GW_HOST, DDB]


def test_in_an_enforced_mesh_a_host_with_no_entry_gets_one_routed_through_the_gateway(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # a direct entry would be refused beyond the sidecar; the new entry is exported to the
    # gateway's namespace (push_context.go) and routed like STS (gateway.go)
    mesh = entry("aws-sts", [STS]) + gateway([STS]) + through_gateway("aws-egress", [STS])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        fix = closes_in_one_round(pod, {"ED662"})
    (created,) = [m for m in fix if m["kind"] == "ServiceEntry"]
    assert created["spec"]["hosts"] == [DDB] and created["spec"]["exportTo"] == [".", "istio-system"]
    assert DDB in _kinds(fix)[("VirtualService", "aws-egress")]["spec"]["hosts"]
    assert DDB in _kinds(fix)[("Gateway", "istio-egressgateway")]["spec"]["servers"][0]["hosts"]


def test_egress_via_direct_in_an_enforced_mesh_names_the_refusal_and_prints_no_fix(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    mesh = entry("aws-sts", [STS]) + entry("aws-ddb", [DDB]) + gateway([STS]) + through_gateway("aws-egress", [STS])
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        result = pod.check("--egress-via", "direct")
        assert result.code == 1 and "ED661" in codes(result), codes(result)
        assert pod.fix("--egress-via", "direct") == []


@pytest.mark.parametrize(("mesh", "code"), [
    (ALL_THROUGH_GATEWAY, 0),
    (entry("aws-sts", [STS]) + entry("aws-ddb", [DDB]) + gateway([STS]) + through_gateway("aws-egress", [STS]), 1),
], ids=["all-through-the-gateway", "dynamodb-direct-refused"])
def test_lab_run_with_an_enforced_egress_gateway_runs_the_check_through_both_envoys(
        tmp_path: Path, mesh: str, code: int) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh)
    done = subprocess.run(
        [sys.executable, "-m", "egress_doctor.cli", "lab", "run", "-f", str(path), "--namespace", "payments",
         "--credentials", "irsa", "--account-id", ACCOUNT, "--table", "orders", "--egress-gateway", "--enforce",
         "--", sys.executable, "-m", "egress_doctor.cli", "check", "--table", "orders", "--no-cluster",
         "--deadline", "8", "-o", "json"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert done.returncode == code, done.stdout[-1500:] + done.stderr[-1500:]


def egress_policy(action: str, sni: str) -> str:
    """An AuthorizationPolicy on the gateway's pods keeping a list of SNIs (istio.io's "egress
    gateway, additional security considerations", with the TLS passthrough condition
    `connection.sni`, pilot/pkg/security/authz/model/model.go)."""
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: egress-allowlist, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: egressgateway}}}}
  action: {action}
  rules:
  - when:
    - key: connection.sni
      {sni}
---"""


@pytest.mark.parametrize(("action", "sni"), [
    ("ALLOW", f"values: [{STS}]"),
    ("DENY", f"notValues: [{STS}, dynamodb.us-east-1.amazonaws.com]"),
], ids=["allow-list", "deny-all-but"])
def test_an_authorization_policy_on_the_gateway_that_lists_the_siblings_gets_the_account_host_added(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki, action: str, sni: str) -> None:
    # builder.go: the gateway's network RBAC filter decides on the SNI before tcp_proxy; the real
    # gateway Envoy resets DynamoDB's handshake. The fix adds the account host to the list the
    # policy keeps, and nothing else.
    mesh = ALL_THROUGH_GATEWAY + egress_policy(action, sni)
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        before = pod.check()
        assert [c.split(".")[0] for c in failing(before)] == ["dynamodb"], failing(before)
        assert pod.gateway_stat("tcp.rbac.denied") >= 1
        fix = closes_in_one_round(pod, {"ED663"})
    (edited,) = fix
    condition = edited["spec"]["rules"][0]["when"][0]
    assert DDB in condition["values" if action == "ALLOW" else "notValues"], edited


def test_an_allow_policy_on_source_namespaces_at_a_passthrough_gateway_is_named_and_not_guessed_at(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # generator.go srcNamespaceGenerator: a namespace is matched on the peer's mTLS certificate;
    # the sidecar's connection to a PASSTHROUGH server carries the app's TLS, so nothing matches
    policy = egress_policy("ALLOW", f"values: [{STS}, {DDB}]").replace(
        "  - when:", "  - from: [{source: {namespaces: [payments]}}]\n    when:")
    with mesh_pod(monkeypatch, tmp_path, pki, ALL_THROUGH_GATEWAY + policy, REGISTRY_ONLY,
                  egress_gateway=True, enforce=True) as pod:
        result = pod.check()
        assert result.code == 1 and "ED663" in codes(result), codes(result)
        assert "mTLS identity" in result.stdout
        assert pod.fix() == []


def test_when_the_gateways_own_egress_is_refused_the_finding_says_so_and_no_entry_is_printed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # the whole path is open in the model (gateway.go chain, cluster for the host); the gateway
    # Envoy's upstream connect is refused: a ServiceEntry would be a wrong fix
    with mesh_pod(monkeypatch, tmp_path, pki, ALL_THROUGH_GATEWAY, REGISTRY_ONLY, egress_gateway=True, enforce=True,
                  gateway_refused=True) as pod:
        result = pod.check()
        assert result.code == 1 and codes(result) == ["ED664"], codes(result)
        assert pod.fix() == []
        assert pod.gateway_stat(f"outbound|443||{STS}.upstream_cx_connect_fail") >= 1


@pytest.mark.parametrize(("broken", "code", "edited"), [
    # the sidecar routes to subset `aws` of the gateway's Service, and no DestinationRule defines it:
    # cluster_builder: no subset cluster; tcp_proxy has no cluster (ED622), the subset is added
    (lambda m: m.replace("  subsets: [{name: aws}]", "  subsets: [{name: other}]"), "ED622",
     ("DestinationRule", "egressgateway-for-aws")),
    # the VirtualService binds a Gateway that does not exist: the gateway Envoy has no listener
    # (gateway.go builds listeners from Gateways only), the Gateway is created
    (lambda m: "\n---".join(d for d in m.split("\n---") if "kind: Gateway\n" not in d), "ED621",
     ("Gateway", "istio-egressgateway")),
], ids=["subset-missing", "gateway-missing"])
def test_a_break_between_the_sidecar_and_the_gateway_is_named_at_its_hop_and_mended_in_one_round(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki, broken: Callable[[str], str], code: str,
        edited: tuple[str, str]) -> None:
    mesh = broken(ALL_THROUGH_GATEWAY)
    assert mesh != ALL_THROUGH_GATEWAY
    with mesh_pod(monkeypatch, tmp_path, pki, mesh, REGISTRY_ONLY, egress_gateway=True, enforce=True) as pod:
        fix = closes_in_one_round(pod, {code})
    kinds = _kinds(fix)
    assert edited in kinds and not any(kind == "ServiceEntry" for kind, _ in kinds), list(kinds)


def test_blocked_reads_what_the_gateway_envoy_itself_refused_by_policy_and_could_not_reach(
        pki: Pki, tmp_path: Path) -> None:
    # the gateway's own istio-proxy log, served as pods/log: `blocked -n istio-system` names the
    # RBAC refusal (DynamoDB, not in the policy's list) and prints no ServiceEntry for it
    mesh = ALL_THROUGH_GATEWAY + egress_policy("ALLOW", f"values: [{STS}]")
    with Lab(LabConfig(objects=tuple(docs(mesh)), namespace="payments", egress_gateway=True, enforce=True)) as lab:
        assert lab.gateway is not None and lab.ports is not None
        assert _tls_handshake(lab.ports.tls, DDB) != "ok" and _tls_handshake(lab.ports.tls, STS) == "ok"
        deadline = time.monotonic() + 5
        while "rbac_access_denied" not in lab.gateway.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = pod_log(lab.gateway.log_path, lab.ports)
    pods = [FakePod("istio-egressgateway-6d5f", namespace="istio-system", labels={"istio": "egressgateway"},
                    log=lambda: [log])]
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        out, err = io.StringIO(), io.StringIO()
        code = main(["blocked", "--kubeconfig", str(kubeconfig), "-n", "istio-system", "-l", "istio=egressgateway",
                     "-o", "json"], Environment(environ={}, stdout=out, stderr=err))
    report = json.loads(out.getvalue())
    assert code == 1, err.getvalue()
    rows = [(d["host"], d["port"], d["how"]) for d in report["destinations"] if d["refused"]]
    assert rows == [(DDB, 443, "RBAC denied")], rows
    assert [f["code"] for f in report["findings"] if f["level"] == "error"] == ["ED658"]
    assert report["fixes"] == []
