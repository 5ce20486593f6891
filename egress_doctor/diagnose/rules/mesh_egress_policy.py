"""The mesh's egress policy: when its VirtualServices send external hosts through an egress gateway,
a host that goes out directly is routed the same way rather than given a direct entry. Pure.

Evidence that direct egress is refused beyond the sidecar: the sidecar carries the host on its
own cluster (`outbound|443||host`, the model's path ends at the sidecar) and that cluster's
upstream connects failed while the probes ran (upstream_cx_connect_fail; `UF` in its access
log): a NetworkPolicy or firewall that lets only the gateway out, or an upstream that refuses.

The route follows the siblings (istio.io "Egress Gateways", TLS passthrough): the VirtualService
that already routes another host through the gateway gets the host and its two `tls` routes —
from the mesh to the gateway's subset, from the gateway to the host. What else the path then
lacks (the Gateway's server hosts: ED621, the subset: ED622, the entry's export to the gateway's
namespace: ED660) the plan finds on the next rounds (diagnose.rules.mesh_plan).
`--egress-via direct` keeps the host direct (no route is proposed); `--egress-via NS/GATEWAY`
takes the sibling route bound to that Gateway only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egress_doctor.aws.hosts import is_ip
from egress_doctor.diagnose.rules.mesh_context import Explanation, MeshContext
from egress_doctor.diagnose.rules.mesh_gateways import add_to_server, server_lists
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.hosts import subset_of
from egress_doctor.istio.objects import MESH_GATEWAY, Gateway, VirtualService, of_kind
from egress_doctor.istio.reach import Reach, gateway_behind, reach

DIRECT = "direct"


@dataclass(frozen=True)
class SiblingRoute:
    """A VirtualService's pair of tls routes that sends a host from the mesh through a gateway."""

    vs: VirtualService
    gateway: str  # as the route writes it ("istio-system/istio-egressgateway" or a short name)
    service: str  # the gateway's Service host
    subset: str
    service_port: int


def refused_beyond_sidecar(ctx: MeshContext, path: Reach, host: str, port: int) -> int:
    """Upstream connects that failed during the run on the direct cluster the model says carries
    host:port (0: no such evidence, or the path goes through a gateway)."""
    sidecar = ctx.view.sidecar
    if sidecar is None or not path.ok or path.gateway is not None:
        return 0
    return sidecar.run_connect_failures.get((host, port), 0)


def sibling_route(ctx: MeshContext, port: int, via: str = "") -> SiblingRoute | None:
    """The first VirtualService (oldest first, as read) whose mesh `tls` route for `port` sends an
    SNI to an egress gateway's Service; `via` ("ns/name") restricts the gateway."""
    world = ctx.world
    if world is None or via == DIRECT:
        return None
    for vs in of_kind(world.objects, VirtualService):
        gateways = [g for g in vs.gateways if g != MESH_GATEWAY]
        if not gateways or not vs.applies_to_sidecars:
            continue
        for route in vs.tls:
            mesh = [m for m in route.match if (not m.gateways or MESH_GATEWAY in m.gateways)
                    and m.port in (0, port)]
            if not mesh or len(route.route) != 1:
                continue
            dest = route.route[0].destination
            for gateway in gateways:
                ref = gateway if "/" in gateway else f"{vs.meta.namespace}/{gateway}"
                if via and ref != via:
                    continue
                service = world.scope.service(dest.host)
                number = dest.port or port
                ports = [p for p in (service.ports if service else ()) if p.number == number]
                behind = gateway_behind(world, dest.host, ports[0] if ports else None)
                if behind is not None:
                    return SiblingRoute(vs, gateway, dest.host, dest.subset, number)
    return None


def route_like_siblings(sibling: SiblingRoute, host: str, port: int) -> Edit:
    """The host added to the sibling VirtualService, with its mesh → gateway and gateway → host routes."""
    def destination(name: str, subset: str, number: int) -> dict[str, Any]:
        out: dict[str, Any] = {"host": name, "port": {"number": number}}
        if subset:
            out["subset"] = subset
        return out

    to_gateway = {"match": [{"gateways": [MESH_GATEWAY], "port": port, "sniHosts": [host]}],
                  "route": [{"destination": destination(sibling.service, sibling.subset, sibling.service_port)}]}
    to_host = {"match": [{"gateways": [sibling.gateway], "port": port, "sniHosts": [host]}],
               "route": [{"destination": destination(host, "", port)}]}
    ops = ({"op": "add", "path": "/spec/hosts/-", "value": host},
           {"op": "add", "path": "/spec/tls/-", "value": to_gateway},
           {"op": "add", "path": "/spec/tls/-", "value": to_host})
    return Edit(sibling.vs.meta.ref, f"route {host} through {sibling.gateway} like the hosts it routes already",
                ops, sibling.vs)


def direct_refused(ctx: MeshContext, path: Reach, host: str, port: int, via: str = "") -> list[Explanation]:
    """ED661 when the direct connection was refused beyond the sidecar, with the sibling route
    as its edit when the mesh sends other hosts through a gateway (and `via` is not "direct")."""
    failures = refused_beyond_sidecar(ctx, path, host, port)
    if not failures:
        return []
    cluster = path.sidecar.cluster
    sibling = sibling_route(ctx, port, via)
    if sibling is not None:
        policy = (f"{sibling.vs.meta.ref} sends other hosts through {sibling.gateway}: route {host} the same way "
                  "(a second direct entry would change nothing)")
    else:
        policy = ("no VirtualService sends other hosts through an egress gateway: open the path by hand (the "
                  "NetworkPolicy or firewall in front of the pod), or route the host through your gateway")
    args = {"host": host, "port": port, "cluster": cluster, "failures": failures, "policy": policy}
    edit = route_like_siblings(sibling, host, port) if sibling is not None else None
    return [Explanation("ED661", args, host, port, edit)]


def follow_the_mesh(ctx: MeshContext, created: str, host: str, port: int, scheme: str,
                    via: str = "") -> Explanation | None:
    """ED662 when the plan creates an entry for a host that would go out directly while the mesh
    sends its other external hosts through a gateway: the new host is routed the same way."""
    if not created or ctx.world is None or scheme != "https" or is_ip(host):
        return None
    path = reach(ctx.world, host, port, scheme)
    if not path.ok or path.gateway is not None:
        return None
    sibling = sibling_route(ctx, port, via)
    if sibling is None or any(subset_of(host, h) for h in sibling.vs.hosts):
        return None
    args = {"host": host, "port": port, "route": sibling.vs.meta.ref, "gateway": sibling.gateway}
    return Explanation("ED662", args, host, port, route_like_siblings(sibling, host, port))


ROUTED_LIKE_SIBLINGS = ("ED661", "ED662")


def listed_on_gateway(ctx: MeshContext, host: str, port: int, scheme: str) -> Explanation | None:
    """ED665 once a host routed like its siblings reaches the host through the gateway, when the
    Gateway's server for the port names the hosts it lets out and not this one: istiod builds the
    gateway's chain from the VirtualService's `sniHosts` once one of its hosts matches the server
    (gateway.go), so the route works without it, but a Gateway that lists its hosts should keep
    saying what leaves through it — and the route would break the day the sibling leaves it."""
    world = ctx.world
    if world is None:
        return None
    hop = reach(world, host, port, scheme).gateway
    if hop is None:
        return None
    ref = hop.proxy.removeprefix("gateway ")
    gateway = next((g for g in of_kind(world.objects, Gateway) if f"{g.meta.namespace}/{g.meta.name}" == ref), None)
    if gateway is None:
        return None
    for index, server in enumerate(gateway.servers):
        if server.port.number != port:
            continue
        if not server.hosts or server_lists(server, host):
            return None
        edit = add_to_server(gateway, index, host, port)
        args = {"host": host, "port": port, "gateway": gateway.meta.ref}
        return Explanation("ED665", args, host, port, edit, blocks=False)
    return None
