"""Why this pod's sidecar does not carry a host the SDK uses — from a `MeshView` (pure).

    ctx = mesh_context(view, "payments", ExplainOptions())
    explain(ctx, "sts.us-east-1.amazonaws.com", 443, "https")  # → [Explanation("ED610", ...)]

The Istio objects are run through the one model (`istio.visibility.pod_view`, which applies the
webhook rules of `istio.validation`); the sidecar's admin view adds what only Envoy knows (a DNS
cluster without endpoints) and stands alone when no objects were read. The first explanation is
the root cause; it carries an `Edit` of the object to change (same name and namespace) or says
that a new ServiceEntry is the fix (`new_entry`). An empty list: the view explains nothing
(covered, or nothing known).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from egress_doctor.aws.hosts import ddb_wildcard, is_account_ddb_host, is_ip, near_miss
from egress_doctor.diagnose.rules.mesh_gateways import gateway_problems
from egress_doctor.diagnose.rules.sidecar_facts import carries, dns_without_endpoints, sidecar_evidence
from egress_doctor.fixes import edits
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.objects import IstioObject, Mode, Resolution, ServiceEntry
from egress_doctor.istio.visibility import Decision, PodView, Reason, Service, host_subset_of, pod_view
from egress_doctor.sources.view import MeshView, SidecarView

_BLOCK_ORDER = (Reason.REFUSED, Reason.NOT_EXPORTED, Reason.NOT_IMPORTED)
# Explanations that break a host even under ALLOW_ANY (the others only matter under REGISTRY_ONLY:
# an unregistered host passes through).
ALWAYS_BREAKS = ("ED619", "ED620", "ED621", "ED622")
_TLS_ORIGINATION = ("SIMPLE", "MUTUAL")


@dataclass(frozen=True)
class ExplainOptions:
    wildcard: bool = False  # near-miss edits may add *.ddb.<region>… to a resolution NONE entry
    istio_api: str = "v1"  # for objects created from scratch (Gateway, DestinationRule)


@dataclass(frozen=True)
class Explanation:
    code: str
    args: Mapping[str, object]
    host: str
    port: int
    edit: Edit | None = None
    new_entry: bool = False  # a new ServiceEntry for the host is the fix (mesh.fixes.build_fixes)
    blocks: bool = True  # explains why the host fails (False: context for another finding)


@dataclass
class MeshContext:
    """A view prepared once per run: the pod's view of the objects and an index by ref."""

    view: MeshView
    namespace: str
    pod: PodView | None
    by_ref: dict[str, IstioObject] = field(default_factory=dict)
    options: ExplainOptions = field(default_factory=ExplainOptions)
    # Decisions that keep an entry's host out of this sidecar, by that host (built on first use).
    _not_visible: dict[str, list[Decision]] | None = field(default=None, repr=False)

    def not_visible(self, host: str | None = None) -> list[Decision]:
        """Refused / not exported / not imported decisions whose host could stand for `host`
        (every one for an IP, which matches by addresses; every one when `host` is None)."""
        if self._not_visible is None:
            self._not_visible = {}
            for d in self.pod.decisions if self.pod else ():
                if d.reason is not Reason.VISIBLE:
                    self._not_visible.setdefault(d.host, []).append(d)
        if host is None or is_ip(host):
            return [d for ds in self._not_visible.values() for d in ds]
        out = list(self._not_visible.get(host, ()))
        for pattern, ds in self._not_visible.items():
            if pattern.startswith("*") and host_subset_of(host, pattern):
                out += ds
        return out

    @property
    def sidecar(self) -> SidecarView | None:
        sc = self.view.sidecar
        return sc if sc is not None and sc.present else None

    @property
    def mode(self) -> Mode | None:
        """What the sidecar says when read, else what the objects say."""
        if self.sidecar is not None and self.sidecar.outbound_mode is not None:
            return self.sidecar.outbound_mode
        return self.pod.mode if self.pod else None


def mesh_context(view: MeshView, namespace: str | None = None, options: ExplainOptions | None = None) -> MeshContext:
    namespace = view.pod_namespace or namespace or "default"
    pod = None
    by_ref: dict[str, IstioObject] = {}
    if view.objects is not None:
        pod = pod_view(view.objects, namespace, view.mesh, view.pod_labels)
        by_ref = {o.meta.ref: o for o in view.objects}
    return MeshContext(view, namespace, pod, by_ref, options or ExplainOptions())


# ---- matching ------------------------------------------------------------------------------------


def _in_addresses(ip: str, addresses: tuple[str, ...]) -> bool:
    for address in addresses:
        try:
            if ipaddress.ip_address(ip) in ipaddress.ip_network(address, strict=False):
                return True
        except ValueError:
            continue
    return False


def targets(entry: ServiceEntry, host: str) -> list[str]:
    """The entry's hostnames that stand for `host` (an IP matches by addresses, hosts or endpoints)."""
    if is_ip(host):
        if host in entry.hosts:
            return [host]
        if _in_addresses(host, entry.addresses) or any(e.address == host for e in entry.endpoints):
            return list(entry.hosts[:1])
        return []
    return [h for h in entry.hosts if host_subset_of(host, h)]


def visible_service(pod: PodView, host: str) -> Service | None:
    """The service this pod's sidecar uses for `host`: exact name first, then the longest wildcard."""
    if is_ip(host):
        return next((s for s in pod.services if _in_addresses(host, s.addresses)), None)
    exact = pod.service(host)
    if exact is not None:
        return exact
    wild = [s for s in pod.services if s.hostname.startswith("*") and host_subset_of(host, s.hostname)]
    return max(wild, key=lambda s: len(s.hostname), default=None)


# ---- the explanations ------------------------------------------------------------------------------


def explain(ctx: MeshContext, host: str, port: int, scheme: str) -> list[Explanation]:
    """Root cause first; [] when the view explains nothing about host:port."""
    evidence = sidecar_evidence(ctx.sidecar, host, port, scheme)
    if ctx.pod is None:
        return _from_sidecar(ctx, host, port, scheme, evidence)
    svc = visible_service(ctx.pod, host)
    found = _declared(ctx, svc, host, port, scheme, evidence) if svc else _hidden(ctx, host, port, scheme, evidence)
    if found:
        return found
    sc = ctx.sidecar
    if sc is not None and not carries(sc, host, port, scheme) and ctx.mode is Mode.REGISTRY_ONLY:
        note = f" The objects read say {svc.entry.meta.ref} covers it: they may be stale." if svc else ""
        return [_no_entry(sc, host, port, scheme, note)]
    return []


def passes(ctx: MeshContext, host: str, port: int, scheme: str) -> bool | None:
    """Would this pod's sidecar carry host:port? None when the view cannot tell.

    Objects decide when read (an entry the pod sees, declared for the SDK's protocol, and nothing
    that breaks it); else the sidecar's own entries; ALLOW_ANY passes unregistered hosts.
    """
    if ctx.pod is None and ctx.sidecar is None:
        return None
    breaks = [e for e in explain(ctx, host, port, scheme) if e.blocks]
    if ctx.mode is Mode.ALLOW_ANY:
        return not any(e.code in ALWAYS_BREAKS for e in breaks)
    if breaks:
        return False
    if ctx.pod is not None:
        svc = visible_service(ctx.pod, host)
        declared = svc.port(port) if svc else None
        return declared is not None and declared.protocol.is_http == (scheme == "http")
    assert ctx.sidecar is not None
    return carries(ctx.sidecar, host, port, scheme)


def _no_entry(sc: SidecarView, host: str, port: int, scheme: str, note: str = "") -> Explanation:
    similar = sc.similar_entries(host, port)
    has = f"; it has one for {', '.join(similar[:4])}" if similar else ""
    if scheme == "https":
        lacks = f"no cluster outbound|{port}||{host} and no SNI filter chain on port {port} matches it"
    else:
        lacks = f'no virtual host in route "{port}" lists it as a domain'
    args = {"host": host, "port": port, "lacks": lacks, "similar": has, "evidence": note}
    return Explanation("ED625", args, host, port, new_entry=True)


def _from_sidecar(ctx: MeshContext, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    sc = ctx.sidecar
    if sc is None:
        return []
    cov = sc.coverage(host, port)
    if scheme == "https" and cov.sni_chain is None and cov.virtual_host is not None:
        entry = f"the entry behind {cov.effective_cluster.name if cov.effective_cluster else cov.virtual_host.name}"
        return [Explanation("ED613", {"host": host, "port": port, "entry": entry, "evidence": evidence}, host, port)]
    if (cluster := dns_without_endpoints(sc, host, port)) is not None:
        args = {"host": host, "port": port, "entry": "the ServiceEntry behind it", "cluster": cluster,
                "names": host, "evidence": ""}
        return [Explanation("ED619", args, host, port)]
    if not carries(sc, host, port, scheme) and ctx.mode is not Mode.ALLOW_ANY:
        return [_no_entry(sc, host, port, scheme)]
    return []


def _declared(ctx: MeshContext, svc: Service, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """The pod sees an entry for the host: is it declared the way the SDK talks to it?"""
    se = svc.entry
    ref = se.meta.ref
    declared = svc.port(port)
    base = {"host": host, "port": port, "entry": ref, "evidence": evidence}
    wanted = "TLS" if scheme == "https" else "HTTP"
    if declared is None:
        ports = ", ".join(f"{p.number}/{p.protocol_name or 'unset'}" for p in svc.ports) or "none"
        edit = checked(ctx, edits.declare_port(se, port, wanted))
        return [Explanation("ED614", {**base, "ports": ports}, host, port, edit)]
    if scheme == "https" and declared.protocol.is_http:
        return [Explanation("ED613", base, host, port, checked(ctx, edits.set_port_protocol(se, port, "TLS")))]
    if scheme == "http" and not declared.protocol.is_http:
        args = {**base, "protocol": declared.protocol_name or "unset"}
        return [Explanation("ED615", args, host, port, checked(ctx, edits.set_port_protocol(se, port, "HTTP")))]
    found: list[Explanation] = []
    if (cluster := dns_without_endpoints(ctx.sidecar, host, port)) is not None:
        names = ", ".join(e.address for e in se.endpoints) or host
        named = [e for e in se.endpoints if not is_ip(e.address)]
        edit = checked(ctx, edits.drop_endpoints(se)) if named and se.resolution is Resolution.DNS else None
        found.append(Explanation("ED619", {**base, "cluster": cluster, "names": names}, host, port, edit))
    found += _tls_origination(ctx, host, port, scheme)
    assert ctx.pod is not None
    for problem in gateway_problems(ctx.pod, ctx.view, host, port, ctx.options.istio_api):
        found.append(Explanation(problem.code, problem.args, host, port, checked(ctx, problem.edit)))
    return found


def _tls_origination(ctx: MeshContext, host: str, port: int, scheme: str) -> list[Explanation]:
    assert ctx.pod is not None
    rule = ctx.pod.destination_rule(host)
    if scheme != "https" or rule is None or rule.tls is None or rule.tls.mode not in _TLS_ORIGINATION:
        return []
    args = {"host": host, "port": port, "rule": rule.meta.ref, "mode": rule.tls.mode}
    return [Explanation("ED620", args, host, port, checked(ctx, edits.drop_tls_origination(rule)))]


def _hidden(ctx: MeshContext, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """No visible entry: one that exists but is refused or hidden, or one for a near-miss name."""
    assert ctx.pod is not None
    blocked = _blocking_decision(ctx, host)
    if blocked is not None:
        reason, se, hostname, detail = blocked
        return [_hidden_by(ctx, reason, se, hostname, detail, host, port, evidence)]
    if is_ip(host):
        return _metadata_without_address(ctx, host, port, evidence)
    return _near_miss(ctx, host, port, scheme, evidence)


def _blocking_decision(ctx: MeshContext, host: str) -> tuple[Reason, ServiceEntry, str, str] | None:
    assert ctx.pod is not None
    best: tuple[int, Reason, ServiceEntry, str, str] | None = None
    for decision in ctx.not_visible(host):
        if decision.reason not in _BLOCK_ORDER:
            continue
        entry = ctx.by_ref.get(decision.ref)
        if not isinstance(entry, ServiceEntry) or decision.host not in targets(entry, host):
            continue
        rank = _BLOCK_ORDER.index(decision.reason)
        if best is None or rank < best[0]:
            best = (rank, decision.reason, entry, decision.host, decision.detail)
    return None if best is None else best[1:]


def _hidden_by(ctx: MeshContext, reason: Reason, se: ServiceEntry, hostname: str, detail: str, host: str,
               port: int, evidence: str) -> Explanation:
    base = {"host": host, "port": port, "entry": se.meta.ref, "evidence": evidence}
    if reason is Reason.REFUSED:
        edit = checked(ctx, edits.repair_refused_entry(se, is_ip))
        return Explanation("ED618", {**base, "reason": detail}, host, port, edit, new_entry=edit is None)
    if reason is Reason.NOT_EXPORTED:
        export_to = json.dumps(list(se.export_to)) if se.export_to else "(the mesh default)"
        args = {**base, "export_to": export_to, "namespace": ctx.namespace}
        return Explanation("ED610", args, host, port, checked(ctx, edits.export_to_namespace(se, ctx.namespace)))
    assert ctx.pod is not None
    sidecar = ctx.pod.sidecar
    import_as = f"{se.meta.namespace}/{hostname}"
    edit = checked(ctx, edits.import_into_sidecar(sidecar, import_as, port)) if sidecar else None
    args = {**base, "sidecar": sidecar.meta.ref if sidecar else "a Sidecar", "import_as": import_as}
    return Explanation("ED611", args, host, port, edit)


def _metadata_without_address(ctx: MeshContext, host: str, port: int, evidence: str) -> list[Explanation]:
    assert ctx.pod is not None
    for svc in ctx.pod.services:
        se = svc.entry
        if any(e.address == host for e in se.endpoints) and not _in_addresses(host, se.addresses):
            args = {"host": host, "entry": se.meta.ref, "evidence": evidence}
            return [Explanation("ED616", args, host, port, checked(ctx, edits.add_address(se, host)))]
    return []


# ---- near misses ----------------------------------------------------------------------------------


def _near_miss(ctx: MeshContext, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """An entry for another form of the same AWS endpoint: a visible one first, else a hidden one
    (whose edit then also makes it visible: ED617 plus ED610/ED611 on the same object)."""
    assert ctx.pod is not None
    visible = [(svc.entry, svc.hostname, why) for svc in ctx.pod.services if (why := near_miss(host, svc.hostname))]
    hidden = [(entry, d.host, d.reason, d.detail) for d in ctx.not_visible()
              if d.reason in (Reason.NOT_EXPORTED, Reason.NOT_IMPORTED)
              and isinstance(entry := ctx.by_ref.get(d.ref), ServiceEntry) and near_miss(host, d.host)]
    if visible:
        se, registered, why = min(visible, key=lambda c: (c[2].count(";"), "region" in c[2], c[1]))
    elif hidden:
        se, registered, _, _ = min(hidden, key=lambda c: (str(near_miss(host, c[1])).count(";"), c[1]))
        why = str(near_miss(host, registered))
    else:
        return []
    add = host
    if ctx.options.wildcard and is_account_ddb_host(host) and se.resolution is Resolution.NONE:
        add = ddb_wildcard(host)
    edit = checked(ctx, edits.add_service_entry_host(se, add, port, "TLS" if scheme == "https" else "HTTP"))
    args = {"host": host, "port": port, "entry": se.meta.ref, "registered": registered, "difference": why,
            "evidence": evidence}
    found = [Explanation("ED617", args, host, port, edit, new_entry=edit is None)]
    if not visible and edit is not None:
        reason, detail = next((r, d) for e, h, r, d in hidden if e is se and h == registered)
        found.append(_hidden_by(ctx, reason, se, host, detail, registered, port, ""))
    return found


def checked(ctx: MeshContext, edit: Edit | None) -> Edit | None:
    """The edit, if the edited object would still pass the webhook rules."""
    if edit is None or not edits.admissible(edit, ctx.view.manifests):
        return None
    return edit


# ---- run-level context ---------------------------------------------------------------------------


def registry_only_override(ctx: MeshContext) -> Explanation | None:
    """ED612: a Sidecar makes this pod REGISTRY_ONLY while the mesh (as read) is ALLOW_ANY."""
    pod, mesh = ctx.pod, ctx.view.mesh
    if pod is None or mesh is None or pod.sidecar is None:
        return None
    if pod.mode is not Mode.REGISTRY_ONLY or pod.mode_source == "mesh":
        return None
    if mesh.outbound_traffic_policy is not Mode.ALLOW_ANY:
        return None
    return Explanation("ED612", {"sidecar": pod.sidecar.meta.ref, "namespace": ctx.namespace}, "", 0, blocks=False)


