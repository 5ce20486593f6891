"""What one proxy is configured with: istiod's SidecarScope (pilot/pkg/model/sidecar.go), pure.

    scope = proxy_scope(objects, Proxy(namespace="payments"), MeshConfig())
    scope.listeners[0].services   # what the first egress listener imports

- Which Sidecar applies (push_context.go getSidecarScope): in the proxy's namespace, the oldest
  whose workloadSelector matches the proxy's labels, else the oldest without a selector; else the
  root namespace's Sidecar without a selector; else the default, one catch-all listener `*/*`.
  Gateways never use a Sidecar (DefaultSidecarScopeForGateway: every service exported to the
  gateway's namespace).
- Egress listeners (convertIstioListenerToWrapper, selectServices): hosts `ns/host`, `.` is the
  proxy's namespace (also in a root Sidecar), `*` any namespace, a `~` prefix excludes; a
  service is checked against its own namespace's hosts first, then `*/…`; exact names match
  exactly, wildcards by SubsetOf. A listener with a port (not HTTP_PROXY) keeps only that port of
  each service, and drops services without it (needsPortMatch, serviceMatchingListenerPort).
  One namespace per hostname: the proxy's, else a Kubernetes Service, else the first.
- VirtualServices (SelectVirtualServices): bound to `mesh`, exported to the proxy's namespace,
  and a host the listener imports from the VirtualService's namespace or `*` (Matches).
- The union of the listeners' services (appendSidecarServices) is what clusters are built for.
- outboundTrafficPolicy: the Sidecar's if set, else the mesh's.

Every decision that keeps a host out is recorded (`Decision`) so the diagnosis can say why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from egress_doctor.istio.hosts import is_wildcard, matches, subset_of
from egress_doctor.istio.objects import (
    MESH_GATEWAY,
    DestinationRule,
    EgressListener,
    IstioObject,
    MeshConfig,
    Mode,
    Protocol,
    ServiceEntry,
    Sidecar,
    VirtualService,
    of_kind,
)
from egress_doctor.istio.registry import (
    Service,
    build_services,
    by_creation,
    effective_export,
    exported,
    service_visible,
)
from egress_doctor.istio.validation import ValidationMessage, errors, validate


class Reason(enum.StrEnum):
    VISIBLE = "visible"
    NOT_EXPORTED = "not-exported"  # exportTo does not include the proxy's namespace
    NOT_IMPORTED = "not-imported"  # no egress listener of the Sidecar imports it
    PORT_LOCKED = "port-locked"  # imported, but the listener that owns the port does not import it
    SHADOWED = "shadowed"  # another namespace's service for the same host won
    REFUSED = "refused"  # the webhook would have refused the object: it does not exist


class ProxyKind(enum.StrEnum):
    SIDECAR = "sidecar"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class Proxy:
    namespace: str = "default"
    labels: Mapping[str, str] | None = None  # None: unknown (every Sidecar selector may apply)
    kind: ProxyKind = ProxyKind.SIDECAR


@dataclass(frozen=True)
class Decision:
    """Why one host of one object is or is not in this proxy's configuration."""

    ref: str  # "ServiceEntry ns/name"
    host: str
    reason: Reason
    detail: str = ""
    port: int = 0  # PORT_LOCKED: the port whose listener does not import it


@dataclass(frozen=True)
class HostImport:
    """One `ns/host` of an egress listener, read: namespace (`*` any), host, excluded?"""

    namespace: str
    host: str
    excluded: bool = False


@dataclass(frozen=True)
class ListenerScope:
    """IstioEgressListenerWrapper: one egress listener and what it imports."""

    index: int  # in the Sidecar's spec.egress (-1: the default catch-all)
    port: int  # 0: the catch-all
    protocol_name: str
    bind: str
    imports: tuple[HostImport, ...]
    services: tuple[Service, ...]
    virtual_services: tuple[VirtualService, ...]

    @property
    def catch_all(self) -> bool:
        return self.port == 0


@dataclass(frozen=True)
class Scope:
    proxy: Proxy
    mesh: MeshConfig
    sidecar: Sidecar | None
    listeners: tuple[ListenerScope, ...]
    services: tuple[Service, ...]  # the union: clusters are built for these
    virtual_services: tuple[VirtualService, ...]  # every one bound to this proxy
    mode: Mode
    mode_source: str  # "mesh" or "Sidecar ns/name"
    objects: tuple[IstioObject, ...]  # admitted objects, oldest first
    decisions: tuple[Decision, ...] = ()
    refused: Mapping[str, tuple[ValidationMessage, ...]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.proxy.namespace

    def service(self, hostname: str) -> Service | None:
        return next((s for s in self.services if s.hostname == hostname), None)

    def explain(self, hostname: str) -> list[Decision]:
        return [d for d in self.decisions if d.host == hostname]

    def port_owner(self, port: int) -> ListenerScope | None:
        """The egress listener that builds listeners on `port`: one declared for it, else the catch-all."""
        return next((x for x in self.listeners if x.port == port), None) or next(
            (x for x in self.listeners if x.catch_all), None)


def admitted(objects: Iterable[IstioObject]) -> tuple[list[IstioObject], dict[str, tuple[ValidationMessage, ...]]]:
    """The objects istiod's webhook admits, and why the others were refused."""
    kept: list[IstioObject] = []
    refused: dict[str, tuple[ValidationMessage, ...]] = {}
    for obj in objects:
        problems = errors(validate(obj))
        if problems:
            refused[obj.meta.ref] = tuple(problems)
        else:
            kept.append(obj)
    return kept, refused


def proxy_scope(objects: Iterable[IstioObject], proxy: Proxy | None = None, mesh: MeshConfig | None = None,
                admit: bool = True) -> Scope:
    """Everything `proxy` is configured with. admit: drop what the webhook refuses."""
    proxy, mesh = proxy or Proxy(), mesh or MeshConfig()
    given = list(objects)
    kept, refused = admitted(given) if admit else (given, {})
    ordered = tuple(by_creation(kept))
    decisions = [Decision(ref, host, Reason.REFUSED, problems[0].message)
                 for ref, problems in refused.items() for host in _hosts_of(given, ref)]
    services = build_services(ordered)
    virtual_services = [vs for vs in of_kind(ordered, VirtualService)
                        if exported(effective_export(vs.export_to, mesh.default_virtual_service_export_to),
                                    vs.meta.namespace, proxy.namespace)]
    if proxy.kind is ProxyKind.GATEWAY:
        sidecar = None
    else:
        sidecar = select_sidecar(of_kind(ordered, Sidecar), proxy.namespace, mesh.root_namespace, proxy.labels)
    visible = [s for s in services if service_visible(s, proxy.namespace, mesh)]
    decisions += [Decision(s.ref, s.hostname, Reason.NOT_EXPORTED,
                           f"exportTo {sorted(effective_export(s.export_to, mesh.default_service_export_to))}")
                  for s in services if s not in visible]
    if proxy.kind is ProxyKind.GATEWAY:
        listeners = (ListenerScope(-1, 0, "", "", (HostImport("*", "*"),), tuple(visible), ()),)
    else:
        mesh_bound = [vs for vs in virtual_services if vs.applies_to_sidecars]
        listeners = tuple(_listener(i, e, visible, mesh_bound, proxy.namespace)
                          for i, e in _egress(sidecar))
    union = _union(listeners, proxy.namespace)
    decisions += _import_decisions(visible, listeners, union, sidecar)
    mode, source = effective_mode(mesh, sidecar)
    bound = tuple(vs for vs in virtual_services if vs.applies_to_sidecars) if proxy.kind is ProxyKind.SIDECAR \
        else tuple(virtual_services)
    return Scope(proxy, mesh, sidecar, listeners, tuple(union), bound, mode, source, ordered,
                 tuple(decisions), refused)


def _hosts_of(objects: Sequence[IstioObject], ref: str) -> Sequence[str]:
    obj = next((o for o in objects if o.meta.ref == ref), None)
    if isinstance(obj, ServiceEntry | VirtualService):
        return obj.hosts
    if isinstance(obj, DestinationRule):
        return (obj.host,)
    return ()


def select_sidecar(sidecars: Sequence[Sidecar], namespace: str, root_namespace: str,
                   labels: Mapping[str, str] | None) -> Sidecar | None:
    """`sidecars` oldest first. labels None: a selector is taken to match."""
    local = [s for s in sidecars if s.meta.namespace == namespace]
    selected = [s for s in local if s.workload_selector is not None
                and (labels is None or all(labels.get(k) == v for k, v in s.workload_selector.items()))]
    plain = [s for s in local if s.workload_selector is None]
    if selected or plain:
        return (selected or plain)[0]
    root = [s for s in sidecars if s.meta.namespace == root_namespace and s.workload_selector is None]
    return root[0] if root else None


def effective_mode(mesh: MeshConfig, sidecar: Sidecar | None) -> tuple[Mode, str]:
    if sidecar is not None and sidecar.outbound_traffic_policy is not None:
        return sidecar.outbound_traffic_policy, sidecar.meta.ref
    return mesh.outbound_traffic_policy, "mesh"


def _egress(sidecar: Sidecar | None) -> list[tuple[int, EgressListener]]:
    if sidecar is None or not sidecar.egress:
        return [(-1, EgressListener(hosts=("*/*",)))]
    return list(enumerate(sidecar.egress))


def read_imports(hosts: Sequence[str], namespace: str) -> tuple[HostImport, ...]:
    out = []
    for entry in hosts:
        if entry.count("/") != 1:
            continue  # istiod logs "Illegal host in sidecar resource" and skips it
        ns, host = entry.split("/")
        excluded = ns.startswith("~")
        ns = ns.removeprefix("~") or ("*" if excluded else ns)
        out.append(HostImport(namespace if ns == "." else ns, host, excluded))
    return tuple(out)


def _imported_by(imports: Sequence[HostImport], hostname: str, namespace: str) -> bool:
    """selectServices for one service: excluded in its namespace or `*` → no; else its namespace's
    imports, then `*/…` (exact hosts exactly, wildcards by SubsetOf)."""
    scoped = [i for i in imports if i.namespace in (namespace, "*")]
    if any(i.excluded and subset_of(hostname, i.host) for i in scoped):
        return False
    for i in scoped:
        if i.excluded:
            continue
        if i.host == hostname or ((is_wildcard(hostname) or is_wildcard(i.host)) and subset_of(hostname, i.host)):
            return True
    return False


def _listener(index: int, egress: EgressListener, visible: Sequence[Service],
              virtual_services: Sequence[VirtualService], namespace: str) -> ListenerScope:
    imports = read_imports(egress.hosts, namespace)
    port = egress.port.number if egress.port else 0
    protocol = egress.port.protocol_name if egress.port else ""
    match_port = port != 0 and Protocol.parse(protocol) is not Protocol.HTTP_PROXY
    chosen: list[Service] = []
    for svc in visible:
        if not _imported_by(imports, svc.hostname, svc.namespace):
            continue
        if match_port:
            only = svc.port(port)
            if only is None:
                continue
            svc = Service(svc.hostname, svc.namespace, (only,), svc.origin, svc.order, svc.addresses,
                          svc.resolution, svc.location, svc.export_to, svc.endpoints)
        chosen.append(svc)
    vss = tuple(vs for vs in virtual_services if _vs_imported(vs, imports))
    return ListenerScope(index, port, protocol, egress.bind, imports, tuple(_one_per_host(chosen, namespace)), vss)


def _vs_imported(vs: VirtualService, imports: Sequence[HostImport]) -> bool:
    return any(not i.excluded and i.namespace in (vs.meta.namespace, "*") and matches(host, i.host)
               for host in vs.hosts for i in imports)


def _one_per_host(services: Sequence[Service], namespace: str) -> list[Service]:
    chosen: dict[str, Service] = {}
    for svc in services:
        current = chosen.get(svc.hostname)
        if current is None or (svc.namespace == namespace and current.namespace != namespace) or (
                svc.is_kube and not current.is_kube and current.namespace != namespace):
            chosen[svc.hostname] = svc
    return [s for s in services if chosen[s.hostname] is s]


def _union(listeners: Sequence[ListenerScope], namespace: str) -> list[Service]:
    """appendSidecarServices: first wins per hostname; same namespace merges ports."""
    out: list[Service] = []
    for listener in listeners:
        for svc in listener.services:
            current = next((i for i, s in enumerate(out) if s.hostname == svc.hostname), None)
            if current is None:
                out.append(svc)
                continue
            existing = out[current]
            if existing.namespace == svc.namespace and existing.origin is svc.origin:
                extra = tuple(p for p in svc.ports if existing.port(p.number) is None)
                out[current] = Service(existing.hostname, existing.namespace, existing.ports + extra, existing.origin,
                                       existing.order, existing.addresses, existing.resolution, existing.location,
                                       existing.export_to, existing.endpoints)
    return out


def _import_decisions(visible: Sequence[Service], listeners: Sequence[ListenerScope], union: Sequence[Service],
                      sidecar: Sidecar | None) -> list[Decision]:
    where = sidecar.meta.ref if sidecar else "the default Sidecar (*/*)"
    out: list[Decision] = []
    for svc in visible:
        winner = next((s for s in union if s.hostname == svc.hostname), None)
        if winner is None:
            out.append(Decision(svc.ref, svc.hostname, Reason.NOT_IMPORTED, f"egress hosts of {where}"))
        elif winner.origin is not svc.origin and winner.namespace != svc.namespace:
            out.append(Decision(svc.ref, svc.hostname, Reason.SHADOWED, f"{winner.ref} serves this host"))
        else:
            out.append(Decision(svc.ref, svc.hostname, Reason.VISIBLE))
            for number in (p.number for p in svc.ports):
                owner = next((x for x in listeners if x.port == number), None)
                if owner is not None and all(s.hostname != svc.hostname for s in owner.services):
                    out.append(Decision(svc.ref, svc.hostname, Reason.PORT_LOCKED,
                                        f"the egress listener for port {number} of {where} does not import it",
                                        number))
    return out


def bound_to(vs: VirtualService, gateway: str) -> bool:
    """Is the VirtualService bound to `gateway` ("mesh" or "ns/name")?"""
    if gateway == MESH_GATEWAY:
        return vs.applies_to_sidecars
    return any(_gateway_ref(g, vs.meta.namespace) == gateway for g in vs.gateways)


def _gateway_ref(name: str, namespace: str) -> str:
    return name if "/" in name or name == MESH_GATEWAY else f"{namespace}/{name}"
