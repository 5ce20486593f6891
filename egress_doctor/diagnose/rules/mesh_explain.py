"""Why this pod's sidecar does not carry a host the SDK uses — from a `MeshView` (pure).

    ctx = mesh_context(view, "payments", ExplainOptions())
    explain(ctx, "sts.us-east-1.amazonaws.com", 443, "https")  # → [Explanation("ED610", ...)]

The Istio objects go through the one model (istio.scope / istio.outbound / istio.reach): the
SDK's call is simulated on the sidecar's configuration as istiod would build it, and followed
through an egress gateway when the route goes there. Where the path breaks decides the code:
- blocked at the sidecar: an entry refused by the webhook (ED618), hidden by exportTo (ED610), not
  imported by the Sidecar listener that owns the port (ED611), declared for another protocol or
  port (ED613-ED615), a metadata entry without the address (ED616), a near-miss name (ED617), or
  nothing at all (ED625, or ED630 offline);
- a DestinationRule that originates TLS on a TLS call (ED620);
- an egress gateway that cannot route it (ED621, ED622, ED660).
The sidecar's admin view adds what only Envoy knows (a DNS cluster without endpoints, ED619) and
stands alone when no objects were read. The first explanation is the root cause; it carries an
`Edit` of the object to change or says that a new ServiceEntry is the fix (`new_entry`).
`diagnose.rules.mesh_plan` applies them to the model until the host is reachable.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from egress_doctor.aws.hosts import is_ip, near_miss, wildcard_of
from egress_doctor.diagnose.catalogue import codes_with
from egress_doctor.diagnose.rules.mesh_context import Explanation, MeshContext
from egress_doctor.diagnose.rules.mesh_egress_policy import direct_refused, refused_beyond_sidecar
from egress_doctor.diagnose.rules.mesh_gateways import gateway_problems
from egress_doctor.diagnose.rules.sidecar_facts import carries, dns_without_endpoints, sidecar_evidence
from egress_doctor.fixes import edits
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.hosts import subset_of
from egress_doctor.istio.objects import IstioObject, Mode, Resolution, ServiceEntry
from egress_doctor.istio.reach import Reach, Stop, reach
from egress_doctor.istio.registry import Service, service_export_reach
from egress_doctor.istio.scope import Decision, Reason, Scope
from egress_doctor.sources.view import SidecarView

_BLOCK_ORDER = (Reason.REFUSED, Reason.NOT_EXPORTED, Reason.NOT_IMPORTED, Reason.PORT_LOCKED)


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
    return [h for h in entry.hosts if subset_of(host, h)]


def visible_service(scope: Scope, host: str) -> Service | None:
    """The service this pod's sidecar uses for `host`: exact name first, then the longest wildcard."""
    if is_ip(host):
        return next((s for s in scope.services if _in_addresses(host, s.addresses)), None)
    exact = scope.service(host)
    if exact is not None:
        return exact
    wild = [s for s in scope.services if s.hostname.startswith("*") and subset_of(host, s.hostname)]
    return max(wild, key=lambda s: len(s.hostname), default=None)


# ---- the explanations ------------------------------------------------------------------------------


def explain(ctx: MeshContext, host: str, port: int, scheme: str) -> list[Explanation]:
    """Root cause first; [] when the view explains nothing about host:port."""
    evidence = sidecar_evidence(ctx.sidecar, host, port, scheme)
    if ctx.world is None:
        return _from_sidecar(ctx, host, port, scheme, evidence)
    path = reach(ctx.world, host, port, scheme)
    found = path_problems(ctx, path, host, port, scheme, evidence) or direct_refused(
        ctx, path, host, port, ctx.options.egress_via)
    if found:
        return found
    sc = ctx.sidecar
    if sc is not None and not carries(sc, host, port, scheme) and ctx.mode is Mode.REGISTRY_ONLY:
        svc = ctx.scope.service(host) if ctx.scope else None
        note = f" The objects read say {svc.ref} covers it: they may be stale." if svc else ""
        return [_no_entry(sc, host, port, scheme, note)]
    if (cluster := dns_without_endpoints(sc, host, port)) is not None and ctx.scope is not None:
        svc = visible_service(ctx.scope, host)
        if svc is not None and isinstance(svc.origin, ServiceEntry):
            return [_dns_empty(ctx, svc.origin, cluster, host, port, evidence)]
    return []


def path_problems(ctx: MeshContext, path: Reach, host: str, port: int, scheme: str,
                  evidence: str) -> list[Explanation]:
    assert ctx.scope is not None
    if path.stop is Stop.NONE:
        return []
    if path.stop is Stop.SIDECAR:
        svc = visible_service(ctx.scope, host)
        if svc is not None:
            found = _declared(ctx, svc, host, port, scheme, evidence)
            if found:
                return found
        return _hidden(ctx, host, port, scheme, evidence)
    if path.stop is Stop.TLS_ORIGINATION:
        return _tls_origination(ctx, path, host, port)
    return [Explanation(p.code, p.args, host, port, checked(ctx, p.edit), new_entry=p.new_entry)
            for p in gateway_problems(ctx.world, path, host, port, ctx.options.istio_api)]  # type: ignore[arg-type]


def passes(ctx: MeshContext, host: str, port: int, scheme: str) -> bool | None:
    """Would this pod's sidecar carry host:port? None when the view cannot tell.

    The model decides when objects were read (the whole path, gateway included); else the
    sidecar's own entries; ALLOW_ANY passes unregistered hosts."""
    if ctx.world is None and ctx.sidecar is None:
        return None
    if ctx.world is not None:
        path = reach(ctx.world, host, port, scheme)
        if not path.ok or refused_beyond_sidecar(ctx, path, host, port):
            return False
        sc = ctx.sidecar
        return dns_without_endpoints(sc, host, port) is None
    assert ctx.sidecar is not None
    breaks = [e for e in _from_sidecar(ctx, host, port, scheme, "") if e.blocks]
    if ctx.mode is Mode.ALLOW_ANY:
        return not any(e.code in codes_with("always_breaks") for e in breaks)
    return not breaks and carries(ctx.sidecar, host, port, scheme)


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


def _dns_empty(ctx: MeshContext, se: ServiceEntry, cluster: str, host: str, port: int, evidence: str) -> Explanation:
    names = ", ".join(e.address for e in se.endpoints) or host
    named = [e for e in se.endpoints if not is_ip(e.address)]
    edit = checked(ctx, edits.drop_endpoints(se)) if named and se.resolution is Resolution.DNS else None
    args = {"host": host, "port": port, "entry": se.meta.ref, "cluster": cluster, "names": names,
            "evidence": evidence}
    return Explanation("ED619", args, host, port, edit)


def _declared(ctx: MeshContext, svc: Service, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """The pod sees an entry for the host: is it declared the way the SDK talks to it?"""
    if not isinstance(svc.origin, ServiceEntry):
        return []
    se = svc.origin
    declared = svc.port(port)
    base = {"host": host, "port": port, "entry": se.meta.ref, "evidence": evidence}
    wanted = "TLS" if scheme == "https" else "HTTP"
    if declared is None:
        full = next((p for p in se.ports if p.number == port), None)
        if full is not None:  # declared, but the Sidecar listener that owns the port keeps it out
            return _hidden(ctx, host, port, scheme, evidence)
        ports = ", ".join(f"{p.number}/{p.protocol_name or 'unset'}" for p in svc.ports) or "none"
        edit = checked(ctx, edits.declare_port(se, port, wanted))
        return [Explanation("ED614", {**base, "ports": ports}, host, port, edit)]
    if scheme == "https" and declared.protocol.is_http:
        return [Explanation("ED613", base, host, port, checked(ctx, edits.set_port_protocol(se, port, "TLS")))]
    if scheme == "http" and not declared.protocol.is_http:
        args = {**base, "protocol": declared.protocol_name or "unset"}
        return [Explanation("ED615", args, host, port, checked(ctx, edits.set_port_protocol(se, port, "HTTP")))]
    if is_ip(host) and not _in_addresses(host, se.addresses):
        return [Explanation("ED616", {"host": host, "entry": se.meta.ref, "evidence": evidence}, host, port,
                            checked(ctx, edits.add_address(se, host)))]
    return []


def _tls_origination(ctx: MeshContext, path: Reach, host: str, port: int) -> list[Explanation]:
    cluster = path.sidecar.config
    if cluster is None or cluster.rule is None or cluster.tls is None or cluster.service is None:
        return []
    rule = cluster.rule.rule
    edit, remedy = edits.stop_tls_origination(rule, cluster.service.hostname, port, ctx.namespace,
                                              ctx.view.manifests, ctx.taken)
    args = {"host": host, "port": port, "rule": rule.meta.ref, "mode": cluster.tls.mode, "remedy": remedy}
    return [Explanation("ED620", args, host, port, checked(ctx, edit))]


def _hidden(ctx: MeshContext, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """No entry carries it: one that exists but is refused or hidden, or one for a near-miss name."""
    blocked = _blocking_decision(ctx, host, port)
    if blocked is not None:
        decision, se, hostname = blocked
        return [_hidden_by(ctx, decision, se, hostname, host, port, scheme, evidence)]
    if is_ip(host):
        return _metadata_without_address(ctx, host, port, evidence)
    return _near_miss(ctx, host, port, scheme, evidence)


def _blocking_decision(ctx: MeshContext, host: str, port: int) -> tuple[Decision, ServiceEntry, str] | None:
    assert ctx.scope is not None
    best: tuple[int, Decision, ServiceEntry, str] | None = None
    for decision in ctx.scope.decisions:
        if decision.reason not in _BLOCK_ORDER:
            continue
        if decision.reason is Reason.PORT_LOCKED and decision.port != port:
            continue
        entry = ctx.by_ref.get(decision.ref)
        if not isinstance(entry, ServiceEntry) or decision.host not in targets(entry, host):
            continue
        rank = _BLOCK_ORDER.index(decision.reason)
        if best is None or rank < best[0]:
            best = (rank, decision, entry, decision.host)
    return None if best is None else best[1:]


def _root_note(ctx: MeshContext, namespace: str, what: str) -> str:
    root = ctx.scope.mesh.root_namespace if ctx.scope else "istio-system"
    if namespace != root:
        return ""
    return (f" {what} is in the root namespace {root}: the change applies to every namespace that uses it,"
            " not only this pod's.")


def _hidden_by(ctx: MeshContext, decision: Decision, se: ServiceEntry, hostname: str, host: str, port: int,
               scheme: str, evidence: str) -> Explanation:
    base = {"host": host, "port": port, "entry": se.meta.ref, "evidence": evidence}
    if decision.reason is Reason.REFUSED:
        edit = checked(ctx, edits.repair_refused_entry(se, is_ip))
        return Explanation("ED618", {**base, "reason": decision.detail}, host, port, edit, new_entry=edit is None)
    assert ctx.scope is not None
    if decision.reason is Reason.NOT_EXPORTED:
        svc = next(s for s in _services_of(ctx, se) if s.hostname == hostname)
        reach_now = list(service_export_reach(svc, ctx.scope.mesh))
        export_to = json.dumps(list(se.export_to)) if se.export_to else f"(the mesh default {json.dumps(reach_now)})"
        args = {**base, "export_to": export_to, "namespace": ctx.namespace}
        edit = checked(ctx, edits.export_to_namespace(se, ctx.namespace, reach_now))
        return Explanation("ED610", args, host, port, edit)
    sidecar = ctx.scope.sidecar
    import_as = f"{se.meta.namespace}/{hostname}"
    protocol = "TLS" if scheme == "https" else "HTTP"
    edit = checked(ctx, edits.import_into_sidecar(sidecar, import_as, port, protocol)) if sidecar else None
    if edit is not None and sidecar is not None and sidecar.meta.namespace == ctx.scope.mesh.root_namespace \
            and ctx.namespace != sidecar.meta.namespace:
        edit = replace(edit, mesh_wide_for=ctx.namespace)
    where = sidecar.meta.ref if sidecar else "a Sidecar"
    if decision.reason is Reason.PORT_LOCKED:
        where += f" (its egress listener for port {port} owns that port; the catch-all adds nothing to it)"
    scope_note = _root_note(ctx, sidecar.meta.namespace, sidecar.meta.ref) if sidecar else ""
    args = {**base, "sidecar": where, "import_as": import_as, "evidence": evidence + scope_note}
    return Explanation("ED611", args, host, port, edit)


def _services_of(ctx: MeshContext, se: ServiceEntry) -> list[Service]:
    from egress_doctor.istio.registry import build_services

    return [s for s in build_services([se]) if s.origin is se]


def _metadata_without_address(ctx: MeshContext, host: str, port: int, evidence: str) -> list[Explanation]:
    assert ctx.scope is not None
    for svc in ctx.scope.services:
        se = svc.origin
        if isinstance(se, ServiceEntry) and any(e.address == host for e in se.endpoints) \
                and not _in_addresses(host, se.addresses):
            args = {"host": host, "entry": se.meta.ref, "evidence": evidence}
            return [Explanation("ED616", args, host, port, checked(ctx, edits.add_address(se, host)))]
    return []


# ---- near misses ----------------------------------------------------------------------------------


def _near_miss(ctx: MeshContext, host: str, port: int, scheme: str, evidence: str) -> list[Explanation]:
    """An entry for another form of the same AWS endpoint: a visible one first, else a hidden one
    (whose edit the plan follows with the ED610/ED611 that makes it visible)."""
    assert ctx.scope is not None
    visible = [(svc.origin, svc.hostname, why) for svc in ctx.scope.services
               if isinstance(svc.origin, ServiceEntry) and not _planned(svc.origin)
               and (why := near_miss(host, svc.hostname))]
    hidden = [(entry, d.host, str(near_miss(host, d.host))) for d in ctx.scope.decisions
              if d.reason in (Reason.NOT_EXPORTED, Reason.NOT_IMPORTED)
              and isinstance(entry := ctx.by_ref.get(d.ref), ServiceEntry) and not _planned(entry)
              and near_miss(host, d.host)]
    candidates = visible or hidden
    if not candidates:
        return []
    se, registered, why = min(candidates, key=lambda c: (c[2].count(";"), "region" in c[2], c[1]))
    add = host
    if ctx.options.wildcard and wildcard_of(host) and se.resolution is Resolution.NONE:
        add = str(wildcard_of(host))
    edit = checked(ctx, edits.add_service_entry_host(se, add, port, "TLS" if scheme == "https" else "HTTP"))
    args = {"host": host, "port": port, "entry": se.meta.ref, "registered": registered, "difference": why,
            "evidence": evidence}
    return [Explanation("ED617", args, host, port, edit, new_entry=edit is None)]


def _planned(obj: IstioObject) -> bool:
    """An object a fix of this run creates: not a near miss anyone wrote."""
    return obj.meta.source == "planned"


def checked(ctx: MeshContext, edit: Edit | None) -> Edit | None:
    """The edit, if the edited object would still pass the webhook rules."""
    if edit is None or not edits.admissible(edit, ctx.view.manifests):
        return None
    return edit


# ---- run-level context ---------------------------------------------------------------------------


def registry_only_override(ctx: MeshContext) -> Explanation | None:
    """ED612: a Sidecar makes this pod REGISTRY_ONLY while the mesh (as read) is ALLOW_ANY."""
    scope, mesh = ctx.scope, ctx.view.mesh
    if scope is None or mesh is None or scope.sidecar is None:
        return None
    if scope.mode is not Mode.REGISTRY_ONLY or scope.mode_source == "mesh":
        return None
    if mesh.outbound_traffic_policy is not Mode.ALLOW_ANY:
        return None
    return Explanation("ED612", {"sidecar": scope.sidecar.meta.ref, "namespace": ctx.namespace}, "", 0, blocks=False)
