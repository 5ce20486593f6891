"""What the AuthorizationPolicies on an egress gateway let through (istio.authz), case by case
against istiod: pilot/pkg/security/authz/builder/testdata/tcp/*.yaml (what a TCP filter chain gets),
builder.go (a policy without rules never matches; dry-run only shadows), model/model.go and
generator.go (attributes, HTTP-only fields on TCP), pilot/pkg/model/authorization.go and
policyattachment.go (which policies a workload gets). Commit 86c9f01fd73 of istio/istio."""

from __future__ import annotations

import pytest

from egress_doctor.istio.authz import Request, allowing_edits, decide, policies_for, policy_filters
from egress_doctor.istio.parse import parse_yaml

GATEWAY = ("istio-system", {"istio": "egressgateway", "app": "istio-egressgateway"})
STS, DDB = "sts.us-east-1.amazonaws.com", "111122223333.ddb.us-east-1.amazonaws.com"


def policies(text: str, namespace: str = "istio-system", labels: dict[str, str] | None = None) -> list:
    objects, _ = parse_yaml(text, namespace)
    return policies_for(objects, namespace, labels if labels is not None else GATEWAY[1], "istio-system")


def policy(action: str, rules: str, extra: str = "", namespace: str = "istio-system") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: {namespace}{extra}}}
spec:
  action: {action}
  rules:
{rules}
---"""


def verdict(text: str, sni: str = STS, port: int = 8443, tcp: bool = True, **kw: object):
    found = policies(text, **kw)  # type: ignore[arg-type]
    request = Request(sni=sni, port=port) if tcp else Request(authority=sni, port=port)
    return decide(policy_filters(found, tcp), request)


def test_a_deny_rule_made_only_of_http_fields_denies_every_tls_connection() -> None:
    # testdata/tcp/deny-both-http-tcp: rule[0] (requestPrincipals + methods) becomes any/any on TCP
    text = policy("DENY", """  - from: [{source: {requestPrincipals: [id-1]}}]
    to: [{operation: {methods: [GET]}}]""")
    assert verdict(text).allowed is False
    assert verdict(text, tcp=False).allowed is None  # on HTTP it depends on the JWT: not guessed


def test_an_allow_policy_made_only_of_http_fields_allows_no_tls_connection() -> None:
    # testdata/tcp/allow-only-http: every rule is dropped, `rules: {}` — Envoy allows nothing
    text = policy("ALLOW", """  - to: [{operation: {hosts: [sts.us-east-1.amazonaws.com]}}]""")
    assert verdict(text).allowed is False
    assert verdict(text, tcp=False).allowed is True


def test_a_deny_rule_on_a_namespace_and_a_method_keeps_only_the_namespace_on_tcp() -> None:
    # testdata/tcp/deny-both-http-tcp rule[3]: principals `.*/ns/ns-1/.*`, the method dropped
    text = policy("DENY", """  - from: [{source: {namespaces: [ns-1]}}]
    to: [{operation: {methods: [GET]}}]""")
    assert verdict(text).allowed is True  # no mTLS identity: the namespace cannot match
    found = policies(text)
    assert decide(policy_filters(found, True), Request(sni=STS, port=8443,
                                                       identity="cluster.local/ns/ns-1/sa/app")).allowed is False


def test_a_policy_without_rules_never_matches_so_allow_denies_all_and_deny_denies_nothing() -> None:
    # builder.go: `rbacPolicyMatchNever` for a policy with no rules
    assert verdict(policy("ALLOW", "  rules: []").replace("  rules:\n", "")).allowed is False
    assert verdict(policy("DENY", "  rules: []").replace("  rules:\n", "")).allowed is True


def test_an_allow_list_of_snis_lets_through_what_it_names_and_wildcards_as_istio_matches_them() -> None:
    text = policy("ALLOW", """  - when: [{key: connection.sni, values: ["*.ddb.us-east-1.amazonaws.com", sts.*]}]""")
    assert verdict(text, DDB).allowed is True
    assert verdict(text, STS).allowed is True
    assert verdict(text, "dynamodb.us-east-1.amazonaws.com").allowed is False


def test_operation_ports_compare_the_gateway_pods_port_not_the_services() -> None:
    # Envoy's destination_port is the port the connection arrived on: the gateway's targetPort
    text = policy("ALLOW", """  - to: [{operation: {ports: ["443"]}}]""")
    assert verdict(text, port=8443).allowed is False
    assert verdict(text, port=443).allowed is True


def test_a_rule_with_an_unknown_when_key_is_skipped() -> None:
    # model.go New: "unknown attribute" — the rule is not generated
    text = policy("DENY", """  - when: [{key: connection.foo, values: [x]}]""")
    assert verdict(text).allowed is True


def test_what_the_model_cannot_see_gives_no_verdict_rather_than_a_guess() -> None:
    text = policy("ALLOW", """  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]""")
    assert verdict(text).allowed is None


def test_a_dry_run_policy_enforces_nothing() -> None:
    text = policy("DENY", "  - {}", extra=", annotations: {istio.io/dry-run: 'true'}")
    assert verdict(text).allowed is True


@pytest.mark.parametrize(("namespace", "selector", "attached"), [
    ("istio-system", "", True),  # the root namespace: every workload
    ("payments", "", False),  # another namespace: not the gateway's
    ("istio-system", "  selector: {matchLabels: {istio: ingressgateway}}\n", False),
    ("istio-system", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: egress}]\n", False),
], ids=["root-namespace", "other-namespace", "other-selector", "target-ref"])
def test_which_policies_the_egress_gateway_gets(namespace: str, selector: str, attached: bool) -> None:
    # authorization.go ListAuthorizationPolicies, policyattachment.go ShouldAttachPolicy
    text = policy("DENY", "  - {}", namespace=namespace).replace("  action:", selector + "  action:")
    assert bool(policies(text, namespace="istio-system")) is attached


def test_the_edit_offered_is_the_host_added_to_the_list_the_policy_keeps_and_it_works() -> None:
    text = policy("ALLOW", f"""  - when: [{{key: connection.sni, values: [{STS}]}}]""")
    found = policies(text)
    edits = allowing_edits(found, Request(sni=DDB, port=8443), tcp=True)
    assert [(p.meta.name, where) for p, where in edits] == [("p", "/spec/rules/0/when/0/values")]
    assert allowing_edits(policies(policy("DENY", f"""  - when: [{{key: connection.sni, values: [{DDB}]}}]""")),
                          Request(sni=DDB, port=8443), tcp=True) == []  # an explicit deny is not undone
