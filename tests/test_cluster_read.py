"""The cluster reader against a fake API server (real HTTPS on 127.0.0.1, recorded JSON): what it
reads from a healthy cluster, and how it copes with 403, 404, v1beta1-only clusters and bad objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from egress_doctor.istio.objects import DestinationRule, Mode, ServiceEntry, Sidecar, VirtualService, of_kind
from egress_doctor.sources.kube import ClusterOptions, ClusterRead, Problem, ReadError, read_cluster
from tests.kube_api import (
    NAMESPACE,
    POD,
    ROOT,
    Answer,
    FakeApiServer,
    cluster_routes,
    istio_path,
    pod_path,
    recorded,
    status_answer,
    write_kubeconfig,
)
from tests.sockets import Pki

STS = "sts.us-east-1.amazonaws.com"
DDB = "dynamodb.us-east-1.amazonaws.com"
CONFIGMAP = f"/api/v1/namespaces/{ROOT}/configmaps/istio"


def read(api: FakeApiServer, pki: Pki, tmp_path: Path, **options: Any) -> ClusterRead:
    """One read through a kubeconfig that points at `api` (as `--context lab` would)."""
    kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
    defaults: dict[str, Any] = {"kubeconfig": str(kubeconfig), "namespace": NAMESPACE, "pod_name": POD}
    return read_cluster(ClusterOptions(**{**defaults, **options}), environ={})


def refs(result: ClusterRead) -> list[str]:
    assert result.view.objects is not None, result.errors
    return [o.meta.ref for o in result.view.objects]


def only_error(result: ClusterRead) -> ReadError:
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


# ---- a healthy cluster ---------------------------------------------------------------------------


def test_a_healthy_cluster_gives_every_istio_object_the_mesh_config_and_the_pod(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert result.errors == []
    assert result.istio_api == "v1"
    assert result.server == api.url and result.source.startswith("kubeconfig ")
    view = result.view
    assert view.source == "cluster" and view.pod_namespace == NAMESPACE
    assert sorted(se.meta.ref for se in of_kind(view.objects or [], ServiceEntry)) == [
        "ServiceEntry istio-system/aws-imds", "ServiceEntry orders/partner-api",
        "ServiceEntry payments/aws-sts-us-east-1", "ServiceEntry shared-egress/aws-dynamodb-us-east-1",
    ]
    assert sorted(sc.meta.ref for sc in of_kind(view.objects or [], Sidecar)) == [
        "Sidecar istio-system/default", "Sidecar payments/default"]
    assert view.mesh is not None and view.mesh.outbound_traffic_policy is Mode.REGISTRY_ONLY
    assert result.mesh_hold_default is False
    assert view.namespace_labels["istio-injection"] == "enabled"


def test_the_pod_facts_come_from_the_pod_object(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    pod = result.pod
    assert pod is not None and pod.name == POD
    assert pod.native_sidecar and pod.has_sidecar and pod.containers == ("app",)
    assert pod.hold_application is True and pod.owner_kind == "ReplicaSet" and pod.revision == "default"
    assert pod.exclude_outbound_ip_ranges == ("169.254.169.254/32", "169.254.170.23/32")
    assert result.view.pod_labels == dict(pod.labels) and result.view.pod_labels["app"] == "payments-api"
    assert "kubectl.kubernetes.io/default-container" not in result.view.pod_annotations
    assert "sidecar.istio.io/status" not in result.view.pod_annotations


def test_objects_keep_their_manifest_as_read_for_fixes_that_edit_them(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    manifest = result.view.manifests["ServiceEntry payments/aws-sts-us-east-1"]
    assert manifest["apiVersion"] == "networking.istio.io/v1" and manifest["kind"] == "ServiceEntry"
    assert manifest["metadata"]["resourceVersion"] == "48213" and manifest["spec"]["exportTo"] == ["."]


def test_the_reader_sends_only_gets_each_with_the_bearer_token(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        read(api, pki, tmp_path)
    assert {r.method for r in api.requests} == {"GET"}
    assert all(r.headers["authorization"].lower().startswith("bearer ") for r in api.requests)
    assert len(api.paths) == len(set(api.paths)), "a resource was asked for twice"
    assert api.paths[:3] == [pod_path(), f"/api/v1/namespaces/{NAMESPACE}", CONFIGMAP]


def test_routing_objects_that_name_no_probed_host_are_left_out(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read(api, pki, tmp_path, hosts=(STS, DDB))
    objects = result.view.objects or []
    assert [vs.meta.ref for vs in of_kind(objects, VirtualService)] == [
        "VirtualService payments/sts-via-egress-gateway"]
    assert [dr.meta.ref for dr in of_kind(objects, DestinationRule)] == [
        "DestinationRule shared-egress/aws-dynamodb-us-east-1"]
    assert len(of_kind(objects, ServiceEntry)) == 4, "ServiceEntries are never narrowed"
    assert [g.ref for g in result.view.gateways or []] == ["Gateway istio-system/istio-egressgateway"]
    assert "VirtualService orders/partner-api" not in result.view.manifests


def test_without_probed_hosts_every_routing_object_and_gateway_is_kept(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert len(of_kind(result.view.objects or [], VirtualService)) == 2
    assert len(result.view.gateways or []) == 2


def test_an_ambient_namespace_reaches_the_view(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes["/api/v1/namespaces/ledger"] = Answer(recorded("namespace-ledger-ambient"))
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path, namespace="ledger", pod_name=None)
    assert result.view.ambient and result.pod is None


# ---- 403 -----------------------------------------------------------------------------------------


def test_a_forbidden_cluster_wide_list_falls_back_to_the_pod_and_root_namespaces(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[istio_path("serviceentries")] = status_answer("status-403-serviceentries-cluster")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert sorted(r for r in refs(result) if r.startswith("ServiceEntry")) == [
        "ServiceEntry istio-system/aws-imds", "ServiceEntry payments/aws-sts-us-east-1"]
    error = only_error(result)
    assert (error.verb, error.resource, error.namespace, error.status, error.problem) == (
        "list", "serviceentries.networking.istio.io", None, 403, Problem.FORBIDDEN)
    assert error.message.endswith(
        'cannot list resource "serviceentries" in API group "networking.istio.io" at the cluster scope')
    assert istio_path("serviceentries", NAMESPACE) in api.paths and istio_path("serviceentries", ROOT) in api.paths


def test_a_forbidden_namespaced_list_is_recorded_and_the_other_namespace_still_read(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[istio_path("sidecars", ROOT)] = status_answer("status-403-sidecars-istio-system")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert [r for r in refs(result) if r.startswith("Sidecar")] == ["Sidecar payments/default"]
    error = only_error(result)
    assert (error.verb, error.resource, error.namespace, error.problem) == (
        "list", "sidecars.networking.istio.io", ROOT, Problem.FORBIDDEN)


def test_a_forbidden_mesh_configmap_leaves_the_mesh_unknown_and_the_rest_read(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[CONFIGMAP] = status_answer("status-403-configmap-istio")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    error = only_error(result)
    assert (error.verb, error.target, error.namespace, error.problem) == (
        "get", "configmaps/istio", ROOT, Problem.FORBIDDEN)
    assert result.view.mesh is None and len(refs(result)) == 12  # Gateways included


# ---- 404 -----------------------------------------------------------------------------------------


def test_missing_istio_crds_are_one_record_per_resource_and_the_pod_is_still_read(pki: Pki, tmp_path: Path) -> None:
    routes = {path: answer for path, answer in cluster_routes().items() if not path.startswith("/apis/")}
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert [(e.resource, e.problem, e.status) for e in result.errors] == [
        (f"{plural}.networking.istio.io", Problem.NOT_SERVED, 404)
        for plural in ("serviceentries", "sidecars", "virtualservices", "destinationrules", "gateways")]
    assert "tried networking.istio.io/v1 or networking.istio.io/v1beta1" in result.errors[0].message
    assert result.view.objects == [], "no CRDs: there are no Istio objects (not: unknown)"
    assert result.istio_api is None and result.pod is not None and result.view.mesh is not None


def test_a_cluster_serving_only_v1beta1_is_read_through_the_fallback_and_says_so(pki: Pki, tmp_path: Path) -> None:
    routes = {p: a for p, a in cluster_routes("v1beta1").items()}
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert result.errors == [] and result.istio_api == "v1beta1"
    assert {o.meta.api_version for o in result.view.objects or []} == {"networking.istio.io/v1beta1"}
    v1_tries = [p for p in api.paths if p.startswith("/apis/networking.istio.io/v1/")]
    assert v1_tries == [istio_path("serviceentries")], "v1 is tried once, then the served version is kept"


def test_a_missing_mesh_configmap_is_not_found_and_the_mesh_stays_unknown(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[CONFIGMAP] = status_answer("status-404-configmap-istio")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    error = only_error(result)
    assert (error.target, error.problem, error.message) == ("configmaps/istio", Problem.NOT_FOUND,
                                                             'configmaps "istio" not found')
    assert result.view.mesh is None


def test_a_revisioned_pod_reads_its_revisions_mesh_configmap(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    pod = recorded("pod-payments-api")
    pod["metadata"]["annotations"]["istio.io/rev"] = "canary"
    routes[pod_path()] = Answer(pod)
    routes[f"/api/v1/namespaces/{ROOT}/configmaps/istio-canary"] = routes.pop(CONFIGMAP)
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert result.errors == [] and result.view.mesh is not None


def test_a_pod_that_does_not_exist_is_recorded_and_everything_else_read(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[pod_path()] = status_answer("status-404-pod")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    error = only_error(result)
    assert (error.target, error.namespace, error.problem) == (f"pods/{POD}", NAMESPACE, Problem.NOT_FOUND)
    assert result.pod is None and result.view.pod_labels is None and len(refs(result)) == 12


# ---- other answers -------------------------------------------------------------------------------


def test_a_rejected_token_is_a_failed_read_not_a_crash(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca, token="another-token") as api:
        result = read(api, pki, tmp_path)
    assert {(e.status, e.problem, e.message) for e in result.errors} == {(401, Problem.FAILED, "Unauthorized")}
    assert result.view.objects is None, "nothing Istio was read: unknown, not empty"


def test_an_object_the_model_refuses_is_left_out_and_named(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    listing = recorded("serviceentries")
    listing["items"][1]["spec"]["ports"] = {"number": 443}  # a mapping where the CRD has a list
    routes[istio_path("serviceentries")] = Answer(listing)
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    error = only_error(result)
    assert (error.target, error.namespace, error.problem) == (
        "serviceentries.networking.istio.io/aws-sts-us-east-1", NAMESPACE, Problem.UNPARSEABLE)
    assert "spec.ports: must be a list" in error.message
    assert "ServiceEntry payments/aws-sts-us-east-1" not in refs(result) and len(refs(result)) == 11


@pytest.mark.parametrize("body", [b"<html>proxy login</html>", b"[1, 2]"], ids=["html", "json-array"])
def test_an_answer_that_is_not_a_kubernetes_object_is_a_failed_read(body: bytes, pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[pod_path()] = Answer(body)
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    error = only_error(result)
    assert (error.target, error.problem) == (f"pods/{POD}", Problem.FAILED)
