"""k8s/rbac.yaml: read-only, minimal, and enough for every request the cluster reader sends.

The manifest is parsed as YAML (a later check will validate it against the Kubernetes schema) and
evaluated with Kubernetes' RBAC rules: a RoleBinding grants its role's rules only for requests
whose namespace is the binding's (a ServiceAccount subject without namespace means the binding's);
a ClusterRoleBinding grants them everywhere. The requests are the ones the fake API server saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.sources.kube import ClusterOptions, read_cluster
from tests.kube_api import NAMESPACE, POD, FakeApiServer, cluster_routes, istio_path, status_answer, write_kubeconfig
from tests.sockets import Pki

MANIFEST = Path(__file__).resolve().parents[1] / "k8s" / "rbac.yaml"
ACCOUNT = "egress-doctor"


def documents(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The manifest as `sed s/APP_NAMESPACE/<ns>/ | kubectl -n <ns> apply -f -` creates it."""
    text = MANIFEST.read_text(encoding="utf-8").replace("APP_NAMESPACE", namespace)
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            doc["metadata"].setdefault("namespace", namespace)
    return docs


@dataclass(frozen=True)
class Attributes:
    """What the API server's authorizer sees for one request (k8s.io/apiserver RequestInfo)."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str


def attributes(path: str) -> Attributes:
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        rest = rest[2:] or rest  # /api/v1/namespaces/<ns> is the Namespace object itself
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    return Attributes("get" if name else "list", group, resource, namespace, name)


def _rule_allows(rule: dict[str, Any], a: Attributes) -> bool:
    return (a.verb in rule["verbs"] and a.group in rule["apiGroups"] and a.resource in rule["resources"]
            and (not rule.get("resourceNames") or a.name in rule["resourceNames"]))


def _binds_account(binding: dict[str, Any], account: str, namespace: str) -> bool:
    own = binding["metadata"].get("namespace", "")
    return any(s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace", own) == namespace
               for s in binding["subjects"])


def allowed(docs: list[dict[str, Any]], a: Attributes, account: str = ACCOUNT, namespace: str = NAMESPACE) -> bool:
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if not _binds_account(binding, account, namespace):
            continue
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else None
        if scope is not None and a.namespace != scope:
            continue
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else ""
        role = roles.get((ref["kind"], role_ns or "", ref["name"]))
        if role and any(_rule_allows(rule, a) for rule in role["rules"]):
            return True
    return False


def reader_requests(pki: Pki, tmp_path: Path, routes: dict[str, Any]) -> list[str]:
    with FakeApiServer(routes, tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), namespace=NAMESPACE, pod_name=POD), environ={})
    return api.paths


# ---- the manifest --------------------------------------------------------------------------------


def test_the_manifest_is_yaml_with_the_expected_objects() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents())
    assert kinds == [
        ("ClusterRole", "egress-doctor-istio-read"), ("ClusterRoleBinding", "egress-doctor-istio-read"),
        ("Role", "egress-doctor-pod-read"), ("RoleBinding", "egress-doctor-pod-read"),
        ("ServiceAccount", ACCOUNT),
    ]


def test_every_rule_is_read_only_and_names_its_resources() -> None:
    rules = [rule for d in documents() for rule in d.get("rules", [])]
    assert rules
    for rule in rules:
        assert set(rule["verbs"]) <= {"get", "list"}, rule
        assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"], rule
        assert "secrets" not in rule["resources"] and "pods/exec" not in rule["resources"]


def test_the_mesh_configmap_is_the_only_configmap_granted() -> None:
    rules = [rule for d in documents() for rule in d.get("rules", []) if "configmaps" in rule["resources"]]
    assert [(r["resourceNames"], r["verbs"]) for r in rules] == [(["istio"], ["get"])]


def test_the_namespace_placeholder_is_only_in_the_cluster_wide_binding() -> None:
    raw = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    holders = [d["kind"] for d in raw if "APP_NAMESPACE" in yaml.safe_dump(d)]
    assert holders == ["ClusterRoleBinding"]
    assert all("namespace" not in d["metadata"] for d in raw), "namespaced objects follow `kubectl -n`"


# ---- against the reader's requests ---------------------------------------------------------------


def test_every_request_of_a_full_read_is_allowed(pki: Pki, tmp_path: Path) -> None:
    paths = reader_requests(pki, tmp_path, cluster_routes())
    docs = documents()
    refused = [p for p in paths if not allowed(docs, attributes(p))]
    assert refused == []


def test_the_fallback_namespaced_lists_are_allowed_too(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[istio_path("serviceentries")] = status_answer("status-403-serviceentries-cluster")
    paths = reader_requests(pki, tmp_path, routes)
    assert istio_path("serviceentries", NAMESPACE) in paths
    docs = documents()
    assert [p for p in paths if not allowed(docs, attributes(p))] == []


def test_nothing_is_granted_that_the_reader_does_not_use(pki: Pki, tmp_path: Path) -> None:
    used = {(a.group, a.resource) for a in map(attributes, reader_requests(pki, tmp_path, cluster_routes()))}
    granted = {(group, resource) for d in documents() for rule in d.get("rules", [])
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted == used


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/api/v1/namespaces/payments/pods", "listing pods"),
        ("/api/v1/namespaces/orders/pods/orders-5d8f7-abcde", "another namespace's pod"),
        ("/api/v1/namespaces/orders", "another Namespace object"),
        ("/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert", "another ConfigMap"),
        ("/api/v1/namespaces/payments/secrets/payments-db", "a Secret"),
        ("/apis/security.istio.io/v1/peerauthentications", "another Istio resource"),
    ],
)
def test_what_the_reader_does_not_need_is_refused(path: str, why: str) -> None:
    assert not allowed(documents(), attributes(path)), why


def test_another_namespaces_service_account_gets_nothing() -> None:
    assert not allowed(documents(), attributes(istio_path("serviceentries")), namespace="orders")
