"""What a sidecar in namespace N sees: istiod's SidecarScope, as pure functions.

Mirrors istio/istio 1.30.3:
- exportTo: `PushContext.initServiceRegistry` / `IsServiceVisible` (pilot/pkg/model/push_context.go),
  defaults from meshConfig `defaultServiceExportTo` etc. (`initDefaultExportMaps`); `~` on a
  ServiceEntry hides it from everyone.
- Which Sidecar applies: `doGetSidecarScope` — in the pod's namespace, those with a
  workloadSelector matching the pod's labels first, then one without a selector; else the root
  namespace's Sidecar without a selector; else the default `*/*`.
- `egress[].hosts` `ns/host`: `convertIstioListenerToWrapper` + `selectServices` (pilot/pkg/model/
  sidecar.go): `.` is the pod's namespace (also in the root Sidecar), `*` any namespace, `~` no
  namespace (imports nothing); host matching is `host.Name.SubsetOf`. A listener with a port
  imports only that port (`needsPortMatch`).
- Mode: the Sidecar's `outboundTrafficPolicy` if set, else the mesh's (sidecar.go:345-353).
- One service per hostname: the pod's namespace wins, else the first (oldest) one.

Not modelled: services imported only because a VirtualService routes to them, Kubernetes
Services, DestinationRule merging across namespaces.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from egress_doctor.istio.objects import (
    DestinationRule,
    IstioObject,
    MeshConfig,
    Mode,
    Resolution,
    ServiceEntry,
    ServicePort,
    Sidecar,
    VirtualService,
    of_kind,
)
from egress_doctor.istio.validation import ValidationMessage, errors, validate


class Reason(enum.StrEnum):
    VISIBLE = "visible"
    NOT_EXPORTED = "not-exported"  # exportTo does not include the pod's namespace
    NOT_IMPORTED = "not-imported"  # the Sidecar's egress hosts do not select it
    SHADOWED = "shadowed"  # another namespace's entry for the same host won
    REFUSED = "refused"  # the webhook would have refused the object: it does not exist


@dataclass(frozen=True)
class Service:
    """One host of a ServiceEntry, as istiod's model.Service (one per host)."""

    hostname: str
    entry: ServiceEntry
    ports: tuple[ServicePort, ...]

    @property
    def namespace(self) -> str:
        return self.entry.meta.namespace

    @property
    def resolution(self) -> Resolution:
        return self.entry.resolution

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.entry.addresses

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class Decision:
    """Why one host of one object is or is not in this pod's sidecar."""

    ref: str  # "ServiceEntry ns/name"
    host: str
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class PodView:
    namespace: str
    mode: Mode
    mode_source: str  # "mesh" or "Sidecar ns/name"
    sidecar: Sidecar | None
    services: tuple[Service, ...]
    destination_rules: tuple[DestinationRule, ...]
    virtual_services: tuple[VirtualService, ...]
    decisions: tuple[Decision, ...]
    refused: Mapping[str, tuple[ValidationMessage, ...]] = field(default_factory=dict)

    def service(self, hostname: str) -> Service | None:
        return next((s for s in self.services if s.hostname == hostname), None)

    def explain(self, hostname: str) -> list[Decision]:
        return [d for d in self.decisions if d.host == hostname]

    def destination_rule(self, hostname: str) -> DestinationRule | None:
        """The DestinationRule that applies to a service host: the most specific host match."""
        matches = [dr for dr in self.destination_rules if host_subset_of(hostname, dr.host)]
        return min(matches, key=lambda dr: (_specificity(dr.host), _ns_rank(dr, self.namespace)),
                   default=None)


def _specificity(pattern: str) -> int:
    return 0 if not pattern.startswith("*") else 1000 - len(pattern)


def _ns_rank(dr: DestinationRule, pod_namespace: str) -> int:
    return 0 if dr.meta.namespace == pod_namespace else 1


def pod_view(
    objects: Iterable[IstioObject],
    namespace: str,
    mesh: MeshConfig | None = None,
    labels: Mapping[str, str] | None = None,
    admit: bool = True,
) -> PodView:
    """Everything the sidecar of a pod in `namespace` is configured with.

    admit: drop objects the validating webhook refuses (they never exist in a cluster).
    labels: the pod's labels; None ignores Sidecar workloadSelectors (every Sidecar applies).
    """
    mesh = mesh or MeshConfig()
    objects = list(objects)
    refused: dict[str, tuple[ValidationMessage, ...]] = {}
    decisions: list[Decision] = []
    if admit:
        objects, refused = _admitted(objects, decisions)
    sidecar = select_sidecar(of_kind(objects, Sidecar), namespace, mesh.root_namespace, labels)
    mode, source = effective_mode(mesh, sidecar)
    services = _services(of_kind(objects, ServiceEntry), namespace, mesh, sidecar, decisions)
    rules = tuple(
        dr for dr in of_kind(objects, DestinationRule)
        if is_exported(dr.export_to or mesh.default_destination_rule_export_to, dr.meta.namespace, namespace)
    )
    virtual_services = tuple(
        vs for vs in of_kind(objects, VirtualService)
        if vs.applies_to_sidecars and _vs_imported(vs, namespace, mesh, sidecar)
    )
    return PodView(namespace, mode, source, sidecar, tuple(services), rules, virtual_services,
                   tuple(decisions), refused)


def _admitted(
    objects: list[IstioObject], decisions: list[Decision]
) -> tuple[list[IstioObject], dict[str, tuple[ValidationMessage, ...]]]:
    kept: list[IstioObject] = []
    refused: dict[str, tuple[ValidationMessage, ...]] = {}
    for obj in objects:
        problems = errors(validate(obj))
        if not problems:
            kept.append(obj)
            continue
        refused[obj.meta.ref] = tuple(problems)
        for host in _hosts_of(obj):
            decisions.append(Decision(obj.meta.ref, host, Reason.REFUSED, problems[0].message))
    return kept, refused


def _hosts_of(obj: IstioObject) -> Sequence[str]:
    if isinstance(obj, ServiceEntry | VirtualService):
        return obj.hosts
    if isinstance(obj, DestinationRule):
        return (obj.host,)
    return ()


# ---- building blocks (also used by the diagnosis) -------------------------------------------------


def is_exported(export_to: Sequence[str], object_namespace: str, pod_namespace: str) -> bool:
    """exportTo semantics: `*` everyone, `.` the object's namespace, `~` nobody, else named ones."""
    entries = set(export_to)
    if "*" in entries:
        return True
    if "~" in entries:
        return False
    return ("." in entries and object_namespace == pod_namespace) or pod_namespace in entries


def host_subset_of(host: str, pattern: str) -> bool:
    """istio host.Name.SubsetOf: every name matched by `host` is matched by `pattern`."""
    host, pattern = host.lower(), pattern.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]
        return host[1:].endswith(suffix) if host.startswith("*") else host.endswith(suffix)
    return host == pattern


def select_sidecar(
    sidecars: Sequence[Sidecar], namespace: str, root_namespace: str, labels: Mapping[str, str] | None
) -> Sidecar | None:
    local = [s for s in sidecars if s.meta.namespace == namespace]
    with_selector = [s for s in local if s.workload_selector is not None]
    without = [s for s in local if s.workload_selector is None]
    if labels is None:
        candidates = with_selector + without
    else:
        matching = [s for s in with_selector if _selects(s.workload_selector or {}, labels)]
        candidates = matching + without
    if candidates:
        return candidates[0]
    if namespace != root_namespace:
        root = [s for s in sidecars if s.meta.namespace == root_namespace and s.workload_selector is None]
        if root:
            return root[0]
    return None


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def effective_mode(mesh: MeshConfig, sidecar: Sidecar | None) -> tuple[Mode, str]:
    if sidecar is not None and sidecar.outbound_traffic_policy is not None:
        return sidecar.outbound_traffic_policy, sidecar.meta.ref
    return mesh.outbound_traffic_policy, "mesh"


def egress_host_patterns(sidecar: Sidecar | None, pod_namespace: str) -> list[tuple[int | None, str, str]]:
    """(listener port or None, namespace or "*", host pattern) for each egress host entry.
    No Sidecar, or one without egress, imports `*/*`."""
    if sidecar is None or not sidecar.egress:
        return [(None, "*", "*")]
    out = []
    for listener in sidecar.egress:
        bound = listener.port is not None and listener.port.protocol_name.upper() != "HTTP_PROXY"
        port = listener.port.number if bound and listener.port else None
        for entry in listener.hosts:
            ns, slash, name = entry.partition("/")
            if not slash:
                continue  # istiod logs "Illegal host in sidecar resource" and skips it
            out.append((port or None, pod_namespace if ns == "." else ns, name))
    return out


def _imported_ports(
    hostname: str, namespace: str, ports: tuple[ServicePort, ...], patterns: list[tuple[int | None, str, str]]
) -> tuple[ServicePort, ...]:
    """Ports of a service the Sidecar imports (empty: not imported). The service's own namespace is
    checked before `*`, as in selectServices; a port-bound listener imports only its port."""
    wanted: set[int] = set()
    for scope in (namespace, "*"):
        for port, ns, pattern in patterns:
            if ns == scope and host_subset_of(hostname, pattern):
                if port is None:
                    return ports
                wanted.add(port)
    return tuple(p for p in ports if p.number in wanted)


def _services(
    entries: Sequence[ServiceEntry], namespace: str, mesh: MeshConfig, sidecar: Sidecar | None,
    decisions: list[Decision],
) -> list[Service]:
    patterns = egress_host_patterns(sidecar, namespace)
    candidates: list[Service] = []
    for entry in entries:
        export_to = entry.export_to or mesh.default_service_export_to
        exported = is_exported(export_to, entry.meta.namespace, namespace)
        for hostname in entry.hosts:
            if not exported:
                decisions.append(Decision(entry.meta.ref, hostname, Reason.NOT_EXPORTED,
                                          f"exportTo {list(export_to)}"))
                continue
            ports = _imported_ports(hostname, entry.meta.namespace, entry.ports, patterns)
            if not ports:
                where = sidecar.meta.ref if sidecar else "default */*"
                decisions.append(Decision(entry.meta.ref, hostname, Reason.NOT_IMPORTED,
                                          f"egress hosts of {where}"))
                continue
            candidates.append(Service(hostname, entry, ports))
    return _one_per_hostname(candidates, namespace, decisions)


def _one_per_hostname(candidates: list[Service], namespace: str, decisions: list[Decision]) -> list[Service]:
    chosen: dict[str, Service] = {}
    for svc in candidates:
        current = chosen.get(svc.hostname)
        if current is None or (svc.namespace == namespace and current.namespace != namespace):
            chosen[svc.hostname] = svc
        elif current.namespace == svc.namespace:
            extra = tuple(p for p in svc.ports if current.port(p.number) is None)
            chosen[svc.hostname] = Service(current.hostname, current.entry, current.ports + extra)
    for svc in candidates:
        winner = chosen[svc.hostname]
        if winner.entry is svc.entry:
            decisions.append(Decision(svc.entry.meta.ref, svc.hostname, Reason.VISIBLE))
        elif winner.namespace != svc.namespace:
            decisions.append(Decision(svc.entry.meta.ref, svc.hostname, Reason.SHADOWED,
                                      f"{winner.entry.meta.ref} serves this host"))
        else:
            decisions.append(Decision(svc.entry.meta.ref, svc.hostname, Reason.VISIBLE,
                                      f"ports merged into {winner.entry.meta.ref}"))
    first: dict[str, int] = {}
    for index, svc in enumerate(candidates):
        first.setdefault(svc.hostname, index)
    return sorted(chosen.values(), key=lambda s: first[s.hostname])


def _vs_imported(vs: VirtualService, namespace: str, mesh: MeshConfig, sidecar: Sidecar | None) -> bool:
    if not is_exported(vs.export_to or mesh.default_virtual_service_export_to, vs.meta.namespace, namespace):
        return False
    patterns = egress_host_patterns(sidecar, namespace)
    for host in vs.hosts:
        for _, ns, pattern in patterns:
            matches = host_subset_of(host, pattern) or host_subset_of(pattern, host)
            if ns in (vs.meta.namespace, "*") and matches:
                return True
    return False
