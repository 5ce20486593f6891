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

import socket
import ssl
from pathlib import Path

import pytest

from egress_doctor.lab.runner import Lab, LabConfig
from tests.fidelity_pod import ACCOUNT, codes, docs, failing, mesh_pod
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
        log = lab.gateway.log()
    assert f"outbound|443||{STS}" in log, log[-2000:]


def test_an_all_pass_gateway_mesh_is_healthy_and_gets_no_fix(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> None:
    # gateway.go: TLS PASSTHROUGH server + VS tls match by SNI → chain to outbound|443||<host>
    with mesh_pod(monkeypatch, tmp_path, pki, ALL_THROUGH_GATEWAY, REGISTRY_ONLY,
                  egress_gateway=True, enforce=True) as pod:
        result = pod.check()
        assert result.code == 0, (failing(result), codes(result))
        assert pod.fix() == []
