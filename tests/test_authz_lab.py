"""The model's AuthorizationPolicy decisions (istio.authz) against a real Envoy: the lab renders
the gateway's RBAC filters (lab/rbac.py) and the gateway Envoy decides each TLS connection by
itself. For each policy and host, the app's handshake through both Envoys succeeds exactly when
the model's path does. Policies after pilot/pkg/security/authz/builder/testdata/tcp/*.yaml and
the egress-gateway shapes of istio.io."""

from __future__ import annotations

import pytest

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


POLICIES = {
    "allow-sni-suffix": rules("ALLOW", '  - when: [{key: connection.sni, values: ["*.ddb.us-east-1.amazonaws.com"]}]'),
    "allow-sni-prefix": rules("ALLOW", '  - when: [{key: connection.sni, values: ["sts.*"]}]'),
    "deny-http-only-fields": rules("DENY", "  - to: [{operation: {methods: [GET]}}]"),
    "allow-http-only-fields": rules("ALLOW", f"  - to: [{{operation: {{hosts: [{STS}]}}}}]"),
    "allow-service-port": rules("ALLOW", '  - to: [{operation: {ports: ["443"]}}]'),
    "allow-other-port": rules("ALLOW", '  - to: [{operation: {ports: ["8443"]}}]'),
    "allow-namespace": rules("ALLOW", "  - from: [{source: {namespaces: [payments]}}]"),
    "deny-not-namespace": rules("DENY", "  - from: [{source: {notNamespaces: [payments]}}]"),
    "deny-all-but": rules("DENY", f"  - when: [{{key: connection.sni, notValues: [{DDB}]}}]"),
    "deny-other-labels": rules("DENY", "  - {}", "  selector: {matchLabels: {istio: ingressgateway}}\n"),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_the_gateway_envoy_refuses_exactly_what_the_model_says_the_policy_refuses(name: str) -> None:
    manifests = tuple(docs(ALL_THROUGH_GATEWAY + POLICIES[name]))
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
