"""The model's AuthorizationPolicy decisions (istio.authz) against a real Envoy: the lab renders
the gateway's RBAC filters (lab/rbac.py) and the gateway Envoy decides each TLS connection by
itself. For each policy and host, the app's handshake through both Envoys succeeds exactly when
the model's path does. Policies after pilot/pkg/security/authz/builder/testdata/tcp/*.yaml and
the egress-gateway shapes of istio.io."""

from __future__ import annotations

import pytest
import urllib3

from egress_doctor.istio.objects import MeshConfig
from egress_doctor.istio.reach import Stop, World, reach
from egress_doctor.istio.scope import Proxy
from egress_doctor.lab.gateway import with_gateway_service
from egress_doctor.lab.runner import Lab, LabConfig
from tests.fidelity_pod import docs
from tests.test_egress_gateway_lab import ALL_THROUGH_GATEWAY, DDB, STS, _tls_handshake

pytestmark = pytest.mark.lab


def rules(action: str, body: str, selector: str = "  selector: {matchLabels: {istio: egressgateway}}\n") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: istio-system}}
spec:
{selector}  action: {action}
  rules:
{body}
---"""


# name → (the policy, whether (STS, DynamoDB) get through): each case refuses something or lets
# something through, so that a gateway Envoy running no RBAC filter at all cannot agree by accident
POLICIES = {
    "allow-sni-suffix": (rules("ALLOW", '  - when: [{key: connection.sni, values: ["*.ddb.us-east-1.amazonaws.com"]}]'),
                         (False, True)),
    "allow-sni-prefix": (rules("ALLOW", '  - when: [{key: connection.sni, values: ["sts.*"]}]'), (True, False)),
    # testdata/tcp/deny-both-http-tcp: HTTP-only fields dropped from a DENY rule, which then denies all
    "deny-http-only-fields": (rules("DENY", "  - to: [{operation: {methods: [GET]}}]"), (False, False)),
    # testdata/tcp/allow-only-http: the ALLOW rule is dropped, nothing is allowed
    "allow-http-only-fields": (rules("ALLOW", f"  - to: [{{operation: {{hosts: [{STS}]}}}}]"), (False, False)),
    "allow-service-port": (rules("ALLOW", '  - to: [{operation: {ports: ["443"]}}]'), (True, True)),
    "allow-other-port": (rules("ALLOW", '  - to: [{operation: {ports: ["8443"]}}]'), (False, False)),
    # generator.go: namespaces are matched on the mTLS peer, which a passthrough connection lacks
    "allow-namespace": (rules("ALLOW", "  - from: [{source: {namespaces: [payments]}}]"), (False, False)),
    "deny-not-namespace": (rules("DENY", "  - from: [{source: {notNamespaces: [payments]}}]"), (False, False)),
    "deny-all-but": (rules("DENY", f"  - when: [{{key: connection.sni, notValues: [{DDB}]}}]"), (False, True)),
    "deny-other-labels": (rules("DENY", "  - {}", "  selector: {matchLabels: {istio: ingressgateway}}\n"),
                          (True, True)),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_the_gateway_envoy_refuses_exactly_what_the_model_says_the_policy_refuses(name: str) -> None:
    policy, expected = POLICIES[name]
    manifests = tuple(docs(ALL_THROUGH_GATEWAY + policy))
    config = LabConfig(objects=manifests, namespace="payments", egress_gateway=True, enforce=True)
    with Lab(config) as lab:
        assert lab.ports is not None
        world = World(tuple(with_gateway_service(lab.objects)), MeshConfig(), Proxy("payments"))
        seen = {}
        for host in (STS, DDB):
            path = reach(world, host, 443, "https")
            assert path.stop in (Stop.NONE, Stop.GATEWAY_DENIED), path.stop
            seen[host] = (path.ok, _tls_handshake(lab.ports.tls, host) == "ok")
    assert all(model == envoy for model, envoy in seen.values()), seen
    assert (seen[STS][1], seen[DDB][1]) == expected, seen


HTTP_THROUGH_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: platform}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: istio-system}
spec:
  hosts: [api.example.com]
  gateways: [mesh, istio-system/istio-egressgateway]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 80}}}]
  - match: [{gateways: [istio-system/istio-egressgateway], port: 80}]
    route: [{destination: {host: api.example.com, port: {number: 80}}}]
---"""


@pytest.mark.parametrize(("allowed_host", "denied"), [("other.example.com", True), ("api.example.com", False)])
def test_an_http_request_the_gateways_policy_refuses_gets_403_rbac_access_denied_as_the_model_says(
        allowed_host: str, denied: bool) -> None:
    # builder.go: on an HTTP chain the RBAC filter runs before the router; to.operation.hosts is
    # the :authority header (generator.go hostGenerator)
    policy = rules("ALLOW", f"  - to: [{{operation: {{hosts: [{allowed_host}]}}}}]")
    with Lab(LabConfig(objects=tuple(docs(HTTP_THROUGH_GATEWAY + policy)), namespace="payments",
                       egress_gateway=True)) as lab:
        assert lab.ports is not None
        world = World(tuple(with_gateway_service(lab.objects)), MeshConfig(), Proxy("payments"))
        path = reach(world, "api.example.com", 80, "http")
        reply = urllib3.PoolManager().request("GET", f"http://127.0.0.1:{lab.ports.http}/", retries=False,
                                              timeout=3, headers={"Host": "api.example.com"})
    assert (path.stop is Stop.GATEWAY_DENIED) is denied, path.stop
    assert (reply.status == 403 and reply.data == b"RBAC: access denied") is denied, (reply.status, reply.data[:80])
