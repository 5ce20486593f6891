"""Rule-table rows for the mesh's egress policy: a direct connection refused beyond the sidecar
(ED661) and a new host in a mesh that routes its external hosts through an egress gateway (ED662).
Same shape as tests/test_explain_table.py (fix YAML golden under tests/golden/explain/)."""

from __future__ import annotations

import pytest

from egress_doctor.sources.view import SidecarView
from tests.test_diagnose_evidence import GCI, STS
from tests.test_diagnose_transport import tls_eof
from tests.test_explain_table import MeshCase, mesh_view, se, sidecar
from tests.test_explain_table import test_mesh_rule_table as check_row

DDB_VIA_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [dynamodb.us-east-1.amazonaws.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway, namespace: istio-system}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: aws}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: aws-via-egress, namespace: istio-system}
spec:
  hosts: [dynamodb.us-east-1.amazonaws.com]
  gateways: [mesh, istio-system/istio-egressgateway]
  tls:
  - match: [{gateways: [mesh], port: 443, sniHosts: [dynamodb.us-east-1.amazonaws.com]}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: aws, port: {number: 443}}}]
  - match: [{gateways: [istio-system/istio-egressgateway], port: 443, sniHosts: [dynamodb.us-east-1.amazonaws.com]}]
    route: [{destination: {host: dynamodb.us-east-1.amazonaws.com, port: {number: 443}}}]
---"""


def refused_upstream(host: str, port: int = 443) -> SidecarView:
    """A sidecar whose direct cluster for host:port counted upstream connect failures during the run."""
    view = sidecar(clusters={f"outbound|{port}||{host}": ("STRICT_DNS", (host,))}, sni={port: [host]})
    view.run_connect_failures[(host, port)] = 1
    return view


CASES = [
    MeshCase(
        "the sidecar carries the host directly and its connect was refused beyond it, while the mesh sends "
        "DynamoDB through the egress gateway: routed like its sibling, the Gateway that lists its hosts lists it "
        "too, no second direct entry",
        [tls_eof(GCI)], ["ED661", "ED665"],
        ["edit/gateway/istio-system/istio-egressgateway", "edit/virtualservice/istio-system/aws-via-egress"],
        mesh=mesh_view(se("aws-sts", [STS]) + DDB_VIA_GATEWAY, refused_upstream(STS)),
        golden="egress-gateway-direct-refused",
    ),
    MeshCase(
        "the direct connect was refused beyond the sidecar and nothing routes through a gateway: named, no fix",
        [tls_eof(GCI)], ["ED661"], [],
        mesh=mesh_view(se("aws-sts", [STS]), refused_upstream(STS)),
    ),
    MeshCase(
        "a host with no entry in a mesh that sends DynamoDB through the egress gateway: the new entry is "
        "exported to the gateway's namespace and routed like its sibling",
        [tls_eof(GCI)], ["ED625", "ED601", "ED662", "ED665"],
        ["edit/gateway/istio-system/istio-egressgateway", "edit/virtualservice/istio-system/aws-via-egress",
         "serviceentry/sts-us-east-1-amazonaws-com"],
        mesh=mesh_view(DDB_VIA_GATEWAY, sidecar()), golden="egress-gateway-new-host",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_egress_policy_rule_table(case: MeshCase) -> None:
    check_row(case)
