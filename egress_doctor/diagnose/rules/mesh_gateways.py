"""Egress through a gateway: does a VirtualService that sends a host to an egress gateway have the
Gateway and DestinationRule subset it needs? (istio.io "Egress Gateways", TLS passthrough.)

    VirtualService hosts [H], gateways [mesh, istio-egressgateway]
      tls match gateways [mesh] sniHosts [H] → istio-egressgateway.istio-system.svc.cluster.local subset S
      tls match gateways [istio-egressgateway] sniHosts [H] → H

needs a Gateway `istio-egressgateway` (in the VirtualService's namespace unless written `ns/name`)
whose servers list H, and a DestinationRule for the gateway's service with subset S (without it
the sidecar has no `outbound|443|S|…` cluster: a reset, 503 NC for HTTP). Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from egress_doctor.fixes import edits
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.objects import MESH_GATEWAY, Destination, DestinationRule, VirtualService
from egress_doctor.istio.visibility import PodView, host_subset_of
from egress_doctor.sources.view import GatewayInfo, MeshView

EGRESS_SELECTOR = {"istio": "egressgateway"}


@dataclass(frozen=True)
class GatewayProblem:
    code: str  # ED621 (Gateway) or ED622 (DestinationRule subset)
    args: dict[str, object]
    edit: Edit | None


def fqdn(host: str, namespace: str) -> str:
    """Short service names are relative to the referring object's namespace."""
    return host if "." in host else f"{host}.{namespace}.svc.cluster.local"


def _applies(gateways: tuple[str, ...]) -> bool:
    return not gateways or MESH_GATEWAY in gateways


def mesh_destinations(vs: VirtualService, host: str, port: int) -> Iterator[Destination]:
    """Where the sidecar sends `host` by this VirtualService's mesh-bound routes."""
    for route in vs.tls:
        for match in route.match:
            if _applies(match.gateways) and match.port in (0, port) and any(
                    host_subset_of(host, s) for s in match.sni_hosts):
                yield from (d.destination for d in route.route)
    for http in vs.http:
        if not http.match or any(_applies(m.gateways) and m.port in (0, port) for m in http.match):
            yield from (d.destination for d in http.route)


def _gateway_ref(name: str, namespace: str) -> tuple[str, str]:
    ns, slash, short = name.partition("/")
    return (ns, short) if slash else (namespace, name)


def _lists(gateway: GatewayInfo, host: str) -> bool:
    return any(host_subset_of(host, h.partition("/")[2] or h) for h in gateway.hosts)


def _gateway_problem(vs: VirtualService, view: MeshView, name: str, host: str, port: int,
                     istio_api: str) -> GatewayProblem | None:
    assert view.gateways is not None
    ns, short = _gateway_ref(name, vs.meta.namespace)
    found = next((g for g in view.gateways if (g.namespace, g.name) == (ns, short)), None)
    base: dict[str, object] = {"host": host, "route": vs.meta.ref, "gateway": f"{ns}/{short}"}
    if found is None:
        spec = {"selector": dict(EGRESS_SELECTOR), "servers": [{
            "port": {"number": port, "name": f"tls-{port}", "protocol": "TLS"}, "hosts": [host],
            "tls": {"mode": "PASSTHROUGH"}}]}
        edit = edits.new_object("Gateway", short, ns, spec, istio_api, f"new Gateway for {host} (TLS passthrough)")
        return GatewayProblem("ED621", {**base, "problem": "no such Gateway exists"}, edit)
    if _lists(found, host):
        return None
    raw: Any = view.manifests.get(found.ref)
    edit = None
    if raw is not None:
        servers = (raw.get("spec") or {}).get("servers") or []
        index = next((i for i, s in enumerate(servers) if (s.get("port") or {}).get("number") == port), None)
        if index is not None:
            op = {"op": "add", "path": f"/spec/servers/{index}/hosts/-", "value": host}
            edit = Edit(found.ref, f"add {host} to the port {port} server's hosts", (op,), None, None,
                        base=dict(raw))
    problem = f"{found.ref} does not list {host} in its servers' hosts"
    return GatewayProblem("ED621", {**base, "problem": problem}, edit)


def _rules_for(pod: PodView, service: str) -> list[DestinationRule]:
    return [dr for dr in pod.destination_rules if fqdn(dr.host, dr.meta.namespace) == service]


def _subset_problem(pod: PodView, vs: VirtualService, dest: Destination, host: str,
                    istio_api: str) -> GatewayProblem | None:
    service = fqdn(dest.host, vs.meta.namespace)
    rules = _rules_for(pod, service)
    if any(s.name == dest.subset for dr in rules for s in dr.subsets):
        return None
    args: dict[str, object] = {"host": host, "route": vs.meta.ref, "destination": service, "subset": dest.subset}
    if rules:
        problem = f"{rules[0].meta.ref} has no subset {dest.subset}"
        return GatewayProblem("ED622", {**args, "problem": problem}, edits.add_subset(rules[0], dest.subset))
    name = service.split(".")[0]
    spec = {"host": service, "subsets": [{"name": dest.subset}]}
    edit = edits.new_object("DestinationRule", name, vs.meta.namespace, spec, istio_api,
                            f"new DestinationRule with subset {dest.subset}")
    return GatewayProblem("ED622", {**args, "problem": "no DestinationRule visible to this pod defines it"}, edit)


def gateway_problems(pod: PodView, view: MeshView, host: str, port: int, istio_api: str) -> list[GatewayProblem]:
    out: list[GatewayProblem] = []
    for vs in pod.virtual_services:
        if not any(host_subset_of(host, h) for h in vs.hosts):
            continue
        away = [d for d in mesh_destinations(vs, host, port) if not host_subset_of(host, d.host)]
        if not away:
            continue
        for dest in away:
            if dest.subset and (problem := _subset_problem(pod, vs, dest, host, istio_api)):
                out.append(problem)
        if view.gateways is None:
            continue
        for name in (g for g in vs.gateways if g != MESH_GATEWAY):
            if (problem := _gateway_problem(vs, view, name, host, port, istio_api)) is not None:
                out.append(problem)
    return out
