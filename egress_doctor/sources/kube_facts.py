"""Facts from two Kubernetes objects the cluster reader fetches: the pod and the mesh ConfigMap.

Pure functions from the API server's JSON to typed values; no I/O. The Istio networking objects
themselves are parsed by `istio.parse`, never here.

Pod (istio/api annotation/annotations.yaml, injection-template.yaml):
- outbound capture annotations `traffic.sidecar.istio.io/*`, baked into iptables at pod start;
- `proxy.istio.io/config` (ProxyConfig as YAML or JSON): `holdApplicationUntilProxyStarts`;
- a native sidecar: `istio-proxy` among the init containers with `restartPolicy: Always`
  (Kubernetes >= 1.28 sidecar containers; Istio's default from 1.27 on kubelet >= 1.33).

Mesh ConfigMap `istio` (`istio-<rev>`), key `mesh`: MeshConfig as YAML. Istio applies it over its
defaults, so an absent `outboundTrafficPolicy` (or one without `mode`) means ALLOW_ANY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.istio.objects import ROOT_NAMESPACE, IstioParseError, MeshConfig, Mode

ISTIO_PROXY = "istio-proxy"
MESH_KEY = "mesh"
PROXY_CONFIG = "proxy.istio.io/config"
HOLD = "holdApplicationUntilProxyStarts"
EXCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/includeOutboundIPRanges"
# The injecting revision: a pod annotation in current injection templates, a label in older ones.
REVISION = "istio.io/rev"
# Pod annotations kept (the rest, such as kubectl's last-applied-configuration, are not needed).
ISTIO_ANNOTATION_PREFIXES = ("traffic.sidecar.istio.io/", "proxy.istio.io/", "sidecar.istio.io/",
                             "ambient.istio.io/")
# Kept out even though Istio's: the injector's record of what it added (long, and nothing to decide on).
NOISY_ANNOTATIONS = ("sidecar.istio.io/status",)


@dataclass(frozen=True)
class PodFacts:
    """The pod under diagnosis, as far as egress goes."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)  # Istio's only (see above)
    containers: tuple[str, ...] = ()
    init_containers: tuple[str, ...] = ()
    native_sidecar: bool = False  # istio-proxy is an init container with restartPolicy Always
    owner_kind: str | None = None  # the controlling owner: ReplicaSet, Job, StatefulSet, ...
    hold_application: bool | None = None  # from proxy.istio.io/config; None: not set there
    revision: str | None = None  # istio.io/rev of the injector ("default" for the default revision)

    @property
    def has_sidecar(self) -> bool:
        return self.native_sidecar or ISTIO_PROXY in self.containers

    @property
    def exclude_outbound_ip_ranges(self) -> tuple[str, ...]:
        return _csv(self.annotations.get(EXCLUDE_OUTBOUND_IP_RANGES, ""))

    @property
    def include_outbound_ip_ranges(self) -> tuple[str, ...] | None:
        """None: not set (the injector's default, `*`); () means no outbound capture at all."""
        value = self.annotations.get(INCLUDE_OUTBOUND_IP_RANGES)
        return None if value is None else _csv(value)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def pod_facts(doc: Mapping[str, Any]) -> PodFacts:
    """A Pod as `GET /api/v1/namespaces/<ns>/pods/<name>` returns it."""
    metadata = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    annotations = {
        k: v for k, v in _strings(metadata.get("annotations")).items()
        if k.startswith(ISTIO_ANNOTATION_PREFIXES) and k not in NOISY_ANNOTATIONS
    }
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    inits = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    native = any(c.get("name") == ISTIO_PROXY and c.get("restartPolicy") == "Always" for c in inits)
    owner = next((o for o in metadata.get("ownerReferences") or [] if o.get("controller")), None)
    labels = _strings(metadata.get("labels"))
    revision = _strings(metadata.get("annotations")).get(REVISION) or labels.get(REVISION)
    return PodFacts(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        labels=labels,
        annotations=annotations,
        containers=tuple(str(c.get("name", "")) for c in containers),
        init_containers=tuple(str(c.get("name", "")) for c in inits),
        native_sidecar=native,
        owner_kind=str(owner["kind"]) if owner and owner.get("kind") else None,
        hold_application=_hold(annotations.get(PROXY_CONFIG)),
        revision=revision,
    )


def _hold(proxy_config: str | None) -> bool | None:
    """holdApplicationUntilProxyStarts from a ProxyConfig given as YAML or JSON; None when absent
    or unreadable (istiod would reject the pod's config then, not egress-doctor)."""
    if not proxy_config:
        return None
    try:
        import yaml  # lazily: `egress-doctor --help` must stay light

        from egress_doctor.istio.yaml_load import load_one

        config = load_one(proxy_config)
    except yaml.YAMLError:
        return None
    value = config.get(HOLD) if isinstance(config, dict) else None
    return value if isinstance(value, bool) else None


def mesh_config_from_configmap(doc: Mapping[str, Any]) -> tuple[MeshConfig, bool | None]:
    """(MeshConfig, defaultConfig.holdApplicationUntilProxyStarts) from the `istio` ConfigMap."""
    metadata = doc.get("metadata") or {}
    source = f"ConfigMap {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
    text = (doc.get("data") or {}).get(MESH_KEY)
    if not isinstance(text, str):
        raise IstioParseError(f"no `{MESH_KEY}` key in data", source)
    return parse_mesh_config(text, source)


def parse_mesh_config(text: str, source: str = MESH_KEY) -> tuple[MeshConfig, bool | None]:
    try:
        import yaml  # lazily: `egress-doctor --help` must stay light

        from egress_doctor.istio.yaml_load import load_one

        mesh = load_one(text) or {}
    except yaml.YAMLError as exc:
        raise IstioParseError(f"{MESH_KEY}: not valid YAML: {exc}", source) from None
    if not isinstance(mesh, dict):
        raise IstioParseError(f"{MESH_KEY}: must be a mapping", source)
    policy = mesh.get("outboundTrafficPolicy") or {}
    if not isinstance(policy, dict):
        raise IstioParseError("outboundTrafficPolicy: must be an object", source)
    mode = policy.get("mode", Mode.ALLOW_ANY.value)
    if mode not in tuple(Mode):
        allowed = ", ".join(Mode)
        raise IstioParseError(f'outboundTrafficPolicy.mode: Unsupported value: "{mode}": supported values: '
                              f"{allowed}", source)
    default_config = mesh.get("defaultConfig") or {}
    hold = default_config.get(HOLD) if isinstance(default_config, dict) else None
    return MeshConfig(
        outbound_traffic_policy=Mode(mode),
        root_namespace=str(mesh.get("rootNamespace") or ROOT_NAMESPACE),
        default_service_export_to=_export_to(mesh, "defaultServiceExportTo", source),
        default_virtual_service_export_to=_export_to(mesh, "defaultVirtualServiceExportTo", source),
        default_destination_rule_export_to=_export_to(mesh, "defaultDestinationRuleExportTo", source),
    ), hold if isinstance(hold, bool) else None


def _export_to(mesh: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = mesh.get(key)
    if value is None or value == []:
        return ("*",)  # Istio's default: visible everywhere
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise IstioParseError(f"{key}: must be a list of strings", source)
    return tuple(value)
