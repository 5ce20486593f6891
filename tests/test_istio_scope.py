"""What a pod in namespace N sees (istio/scope.py, istio/registry.py): exportTo, Sidecar scope, mode.
Cases from Istio's own tests are in tests/conformance/; these pin the model's API."""

from __future__ import annotations

from typing import Any

import pytest

from egress_doctor.istio.destination_rules import index_rules, rule_for
from egress_doctor.istio.hosts import subset_of as host_subset_of
from egress_doctor.istio.objects import DestinationRule, IstioObject, MeshConfig, Mode, of_kind
from egress_doctor.istio.parse import parse_documents
from egress_doctor.istio.registry import exported
from egress_doctor.istio.scope import HostImport, Proxy, Reason, Scope, proxy_scope, select_sidecar


def se(name: str, namespace: str, hosts: list[str], export_to: list[str] | None = None,
       ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": hosts, "resolution": "DNS",
                            "ports": ports or [{"number": 443, "name": "tls", "protocol": "TLS"}]}
    if export_to is not None:
        spec["exportTo"] = export_to
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def sidecar(name: str, namespace: str, hosts: list[str] | None = None, mode: str | None = None,
            selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if hosts is not None:
        spec["egress"] = [{"hosts": hosts}]
    if mode is not None:
        spec["outboundTrafficPolicy"] = {"mode": mode}
    if selector is not None:
        spec["workloadSelector"] = {"labels": selector}
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def parsed(*docs: dict[str, Any]) -> list[IstioObject]:
    return parse_documents(list(docs), "app")[0]


def pod_view(objects: list[IstioObject], namespace: str, mesh: MeshConfig | None = None, admit: bool = True) -> Scope:
    return proxy_scope(objects, Proxy(namespace), mesh, admit)


def visible_hosts(*docs: dict[str, Any], namespace: str = "app", **kwargs: Any) -> list[str]:
    return [s.hostname for s in pod_view(parsed(*docs), namespace, **kwargs).services]


STS = "sts.us-east-1.amazonaws.com"


@pytest.mark.parametrize(("export_to", "object_ns", "pod_ns", "seen"), [
    (["*"], "platform", "app", True),
    (["."], "platform", "app", False),
    (["."], "app", "app", True),
    (["app"], "platform", "app", True),
    (["other"], "platform", "app", False),
    (["~"], "app", "app", False),
    (["~", "*"], "app", "app", True),
])
def test_export_to_decides_whether_a_pod_sees_an_object(export_to: list[str], object_ns: str, pod_ns: str,
                                                       seen: bool) -> None:
    assert exported(frozenset(export_to), object_ns, pod_ns) is seen


def test_service_entry_exported_only_to_its_namespace_is_invisible_elsewhere_and_says_why() -> None:
    view = pod_view(parsed(se("sts", "platform", [STS], ["."])), "app")
    assert view.services == ()
    (decision,) = view.explain(STS)
    assert decision.reason is Reason.NOT_EXPORTED and decision.ref == "ServiceEntry platform/sts"


def test_mesh_default_service_export_to_applies_when_the_entry_has_no_export_to() -> None:
    mesh = MeshConfig(default_service_export_to=(".",))
    assert visible_hosts(se("sts", "platform", [STS]), mesh=mesh) == []
    assert visible_hosts(se("sts", "app", [STS]), mesh=mesh) == [STS]


def test_without_a_sidecar_every_exported_entry_is_imported_and_the_mesh_mode_applies() -> None:
    mesh = MeshConfig(outbound_traffic_policy=Mode.ALLOW_ANY)
    view = pod_view(parsed(se("sts", "platform", [STS])), "app", mesh)
    assert [s.hostname for s in view.services] == [STS]
    assert (view.mode, view.mode_source) == (Mode.ALLOW_ANY, "mesh")


def test_sidecar_importing_only_its_own_namespace_hides_another_namespaces_entry() -> None:
    docs = (se("sts", "platform", [STS]), sidecar("default", "app", ["./*", "istio-system/*"]))
    view = pod_view(parsed(*docs), "app")
    assert view.services == ()
    assert view.explain(STS)[0].reason is Reason.NOT_IMPORTED


@pytest.mark.parametrize(("hosts", "seen"), [
    (["platform/*"], True),
    (["*/sts.us-east-1.amazonaws.com"], True),
    (["*/*.amazonaws.com"], True),
    (["platform/*.us-east-1.amazonaws.com"], True),
    (["*/*.us-west-2.amazonaws.com"], False),
    (["other/*"], False),
    (["~/*"], False),
])
def test_sidecar_egress_hosts_import_by_namespace_and_host_pattern(hosts: list[str], seen: bool) -> None:
    docs = (se("sts", "platform", [STS]), sidecar("default", "app", hosts))
    assert (visible_hosts(*docs) == [STS]) is seen


def test_dot_in_a_root_namespace_sidecar_means_the_pods_namespace() -> None:
    docs = (se("sts", "app", [STS]), se("ddb", "platform", ["dynamodb.us-east-1.amazonaws.com"]),
            sidecar("default", "istio-system", ["./*"]))
    assert visible_hosts(*docs) == [STS]


def test_the_pods_namespace_sidecar_wins_over_the_root_namespace_one() -> None:
    sidecars = parsed(sidecar("root", "istio-system", ["*/*"], "ALLOW_ANY"), sidecar("local", "app", ["./*"]))
    chosen = select_sidecar(sidecars, "app", "istio-system", None)  # type: ignore[arg-type]
    assert chosen is not None and chosen.meta.name == "local"


def test_root_sidecar_with_a_workload_selector_never_applies_to_other_namespaces() -> None:
    sidecars = parsed(sidecar("root", "istio-system", ["*/*"], selector={"app": "x"}))
    assert select_sidecar(sidecars, "app", "istio-system", None) is None  # type: ignore[arg-type]


def test_workload_selector_is_applied_when_the_pod_labels_are_known() -> None:
    sidecars = parsed(sidecar("selected", "app", ["./*"], selector={"app": "web"}),
                      sidecar("any", "app", ["*/*"]))
    assert select_sidecar(sidecars, "app", "istio-system", {"app": "web"}).meta.name == "selected"  # type: ignore
    assert select_sidecar(sidecars, "app", "istio-system", {"app": "db"}).meta.name == "any"  # type: ignore
    assert select_sidecar(sidecars, "app", "istio-system", None).meta.name == "selected"  # type: ignore


def test_sidecar_outbound_traffic_policy_overrides_the_mesh_mode() -> None:
    view = pod_view(parsed(sidecar("default", "app", mode="REGISTRY_ONLY")), "app",
                    MeshConfig(outbound_traffic_policy=Mode.ALLOW_ANY))
    assert (view.mode, view.mode_source) == (Mode.REGISTRY_ONLY, "Sidecar app/default")


def test_sidecar_without_a_policy_inherits_the_mesh_mode() -> None:
    view = pod_view(parsed(sidecar("default", "app", ["*/*"])), "app",
                    MeshConfig(outbound_traffic_policy=Mode.ALLOW_ANY))
    assert view.mode is Mode.ALLOW_ANY


def test_a_port_bound_egress_listener_imports_only_that_port() -> None:
    ports = [{"number": 443, "name": "tls", "protocol": "TLS"},
             {"number": 80, "name": "http", "protocol": "HTTP"}]
    doc = sidecar("default", "app")
    doc["spec"]["egress"] = [{"port": {"number": 443, "protocol": "TLS", "name": "tls"}, "hosts": ["*/*"]}]
    view = pod_view(parsed(se("sts", "platform", [STS], ports=ports), doc), "app")
    assert [p.number for p in view.services[0].ports] == [443]


def test_same_host_in_two_namespaces_the_pods_namespace_wins_and_the_other_is_shadowed() -> None:
    view = pod_view(parsed(se("far", "platform", [STS]), se("near", "app", [STS])), "app")
    assert [s.ref for s in view.services] == ["ServiceEntry app/near"]
    reasons = {d.ref: d.reason for d in view.explain(STS)}
    assert reasons == {"ServiceEntry platform/far": Reason.SHADOWED, "ServiceEntry app/near": Reason.VISIBLE}


def test_an_entry_the_webhook_refuses_does_not_exist_for_the_pod() -> None:
    doc = se("imds", "app", ["169.254.169.254"], ports=[{"number": 80, "name": "http", "protocol": "HTTP"}])
    view = pod_view(parsed(doc), "app")
    assert view.services == () and "ServiceEntry app/imds" in view.refused
    assert view.explain("169.254.169.254")[0].reason is Reason.REFUSED
    assert visible_hosts(doc, admit=False) == ["169.254.169.254"]


def test_destination_rule_most_specific_host_applies_to_a_service() -> None:
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "spec": {"host": "*.amazonaws.com", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}}
    exact = {**dr, "metadata": {"name": "exact"},
             "spec": {"host": STS, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}}
    view = pod_view(parsed({**dr, "metadata": {"name": "wide"}}, exact, se("sts", "app", [STS])), "app")
    svc = view.service(STS)
    assert svc is not None
    rule = rule_for(index_rules(of_kind(view.objects, DestinationRule), view.mesh), "app", None, svc)
    assert rule is not None and rule.rule.meta.name == "exact"


def test_virtual_service_bound_only_to_a_gateway_does_not_reach_the_sidecar() -> None:
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "gw-only"},
          "spec": {"hosts": [STS], "gateways": ["istio-egressgateway"],
                   "tls": [{"match": [{"sniHosts": [STS]}], "route": [{"destination": {"host": STS}}]}]}}
    assert pod_view(parsed(vs), "app").virtual_services == ()


@pytest.mark.parametrize(("host", "pattern", "subset"), [
    (STS, "*", True), (STS, "*.amazonaws.com", True), (STS, STS, True),
    ("*.ddb.x.amazonaws.com", "*.amazonaws.com", True), ("*.amazonaws.com", STS, False),
    ("amazonaws.com", "*.amazonaws.com", False), (STS, "sts.amazonaws.com", False),
])
def test_host_subset_of_follows_istio_host_name_semantics(host: str, pattern: str, subset: bool) -> None:
    assert host_subset_of(host, pattern) is subset


def test_no_sidecar_means_the_default_import_of_everything() -> None:
    (listener,) = pod_view([], "app").listeners
    assert listener.catch_all and listener.imports == (HostImport("*", "*"),)
