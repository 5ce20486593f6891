"""Facts from the pod and the mesh ConfigMap as the API server returns them (pure parsing)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from egress_doctor.istio.objects import IstioParseError, Mode
from egress_doctor.sources.kube_facts import mesh_config_from_configmap, parse_mesh_config, pod_facts
from tests.kube_api import recorded


def pod_with(**changes: Any) -> dict[str, Any]:
    """The recorded pod with metadata.annotations / spec fields replaced."""
    pod = copy.deepcopy(recorded("pod-payments-api"))
    if "annotations" in changes:
        pod["metadata"]["annotations"] = changes["annotations"]
    for key in ("containers", "initContainers"):
        if key in changes:
            pod["spec"][key] = changes[key]
    return pod


PROXY = {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.3"}
INIT = {"name": "istio-init", "image": "docker.io/istio/proxyv2:1.30.3"}
APP = {"name": "app", "image": "app:1"}


@pytest.mark.parametrize(
    ("containers", "inits", "native", "has_sidecar"),
    [
        ([APP], [INIT, {**PROXY, "restartPolicy": "Always"}], True, True),
        ([APP, PROXY], [INIT], False, True),
        ([APP], [INIT, PROXY], False, False),  # an init container that runs to completion is no sidecar
        ([APP], [], False, False),
    ],
    ids=["native-sidecar", "classic-sidecar", "proxy-init-without-restart-policy", "not-injected"],
)
def test_the_sidecar_kind_is_read_from_the_containers(
    containers: list[dict[str, Any]], inits: list[dict[str, Any]], native: bool, has_sidecar: bool
) -> None:
    facts = pod_facts(pod_with(containers=containers, initContainers=inits))
    assert (facts.native_sidecar, facts.has_sidecar) == (native, has_sidecar)


@pytest.mark.parametrize(
    ("proxy_config", "hold"),
    [
        ('{"holdApplicationUntilProxyStarts": true}', True),
        ("holdApplicationUntilProxyStarts: false\n", False),
        ('{"concurrency": 2}', None),
        ("holdApplicationUntilProxyStarts: [not, a, bool]", None),
        ("{not yaml", None),
        (None, None),
    ],
    ids=["json-true", "yaml-false", "other-settings", "not-a-bool", "unreadable", "absent"],
)
def test_hold_application_is_read_from_the_proxy_config_annotation(proxy_config: str | None, hold: bool | None) -> None:
    annotations = {} if proxy_config is None else {"proxy.istio.io/config": proxy_config}
    assert pod_facts(pod_with(annotations=annotations)).hold_application is hold


def test_capture_annotations_are_split_and_unrelated_ones_dropped() -> None:
    facts = pod_facts(pod_with(annotations={
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32, 169.254.170.23/32",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "",
        "kubectl.kubernetes.io/last-applied-configuration": '{"secret": "not ours to keep"}',
        "sidecar.istio.io/status": '{"initContainers": ["istio-init"]}',
        "istio.io/rev": "canary",
    }))
    assert facts.exclude_outbound_ip_ranges == ("169.254.169.254/32", "169.254.170.23/32")
    assert facts.include_outbound_ip_ranges == (), "an empty include list means no outbound capture at all"
    assert set(facts.annotations) == {"traffic.sidecar.istio.io/excludeOutboundIPRanges",
                                      "traffic.sidecar.istio.io/includeOutboundIPRanges"}
    assert facts.revision == "canary"


def test_a_pod_without_capture_annotations_has_the_injector_defaults() -> None:
    facts = pod_facts(pod_with(annotations={}))
    assert facts.exclude_outbound_ip_ranges == () and facts.include_outbound_ip_ranges is None


def test_a_job_pod_names_its_owner_kind() -> None:
    pod = pod_with()
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-export",
                                           "controller": True, "uid": "0f1e2d3c-4b5a-4697-8879-6a5b4c3d2e1f"}]
    assert pod_facts(pod).owner_kind == "Job"


# ---- mesh config ---------------------------------------------------------------------------------


def test_the_recorded_mesh_configmap_says_registry_only_and_no_hold() -> None:
    mesh, hold = mesh_config_from_configmap(recorded("configmap-istio"))
    assert mesh.outbound_traffic_policy is Mode.REGISTRY_ONLY and mesh.root_namespace == "istio-system"
    assert mesh.default_service_export_to == ("*",) and hold is False


@pytest.mark.parametrize(
    ("text", "mode", "root", "service_export"),
    [
        ("", Mode.ALLOW_ANY, "istio-system", ("*",)),
        ("outboundTrafficPolicy: {}", Mode.ALLOW_ANY, "istio-system", ("*",)),
        ("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nrootNamespace: mesh-root", Mode.REGISTRY_ONLY, "mesh-root",
         ("*",)),
        ('defaultServiceExportTo: ["."]', Mode.ALLOW_ANY, "istio-system", (".",)),
    ],
    ids=["empty: Istio's defaults", "policy-without-mode", "registry-only-and-root", "export-to-own-namespace"],
)
def test_mesh_config_fields_and_istios_defaults(
    text: str, mode: Mode, root: str, service_export: tuple[str, ...]
) -> None:
    mesh, hold = parse_mesh_config(text)
    assert (mesh.outbound_traffic_policy, mesh.root_namespace, mesh.default_service_export_to) == (
        mode, root, service_export)
    assert hold is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("outboundTrafficPolicy: {mode: DENY_ALL}", 'Unsupported value: "DENY_ALL"'),
        ("outboundTrafficPolicy: [REGISTRY_ONLY]", "outboundTrafficPolicy: must be an object"),
        ("defaultServiceExportTo: '*'", "defaultServiceExportTo: must be a list of strings"),
        ("- just\n- a list", "must be a mapping"),
        ("mesh: {unclosed", "not valid YAML"),
    ],
    ids=["unknown-mode", "policy-not-a-mapping", "export-to-not-a-list", "not-a-mapping", "not-yaml"],
)
def test_a_malformed_mesh_config_is_refused_with_the_field(text: str, complaint: str) -> None:
    with pytest.raises(IstioParseError, match=complaint):
        parse_mesh_config(text, "ConfigMap istio-system/istio")


def test_a_configmap_without_a_mesh_key_is_refused() -> None:
    configmap = recorded("configmap-istio")
    del configmap["data"]["mesh"]
    with pytest.raises(IstioParseError, match="ConfigMap istio-system/istio: no `mesh` key"):
        mesh_config_from_configmap(configmap)
