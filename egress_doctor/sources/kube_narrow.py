"""A cluster read narrowed to the hosts a run contacted: every ServiceEntry and Sidecar; the
VirtualServices and DestinationRules that name one of the hosts; the DestinationRules of the
services those routes send to (an egress gateway's); the Gateways they bind. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from egress_doctor.istio.objects import DestinationRule, IstioObject, VirtualService, of_kind
from egress_doctor.sources.view import GatewayInfo, MeshView, host_matches


def narrowed_view(view: MeshView, hosts: Sequence[str]) -> MeshView:
    """The view with only the objects that concern `hosts`; unchanged when `hosts` is empty."""
    if not hosts or view.objects is None:
        return view
    kept = [o for o in view.objects if not isinstance(o, DestinationRule) and _names_a_probed_host(o, tuple(hosts))]
    # the services the kept routes send to (an egress gateway's) have their DestinationRules too
    routed = tuple(r.destination.host for vs in of_kind(kept, VirtualService)
                   for route in (*vs.http, *vs.tls, *vs.tcp) for r in route.route)
    rules = [o for o in view.objects if isinstance(o, DestinationRule)
             and _names_a_probed_host(o, (*hosts, *routed))]
    keep = {id(o) for o in (*kept, *rules)}
    objects = [o for o in view.objects if id(o) in keep]
    refs = {o.meta.ref for o in objects}
    manifests = {ref: doc for ref, doc in view.manifests.items() if ref in refs}
    return replace(view, objects=objects, manifests=manifests, gateways=_used_gateways(view.gateways, objects))


def _used_gateways(gateways: Sequence[GatewayInfo] | None, objects: Sequence[IstioObject]) -> list[GatewayInfo] | None:
    """Gateways a VirtualService among `objects` binds to (`name` in its namespace, or `ns/name`)."""
    if gateways is None:
        return None
    bound = set()
    for vs in of_kind(objects, VirtualService):
        for name in vs.gateways:
            namespace, _, short = name.rpartition("/")
            bound.add((namespace or vs.meta.namespace, short))
    return [g for g in gateways if (g.namespace, g.name) in bound]


def _names_a_probed_host(obj: IstioObject, hosts: tuple[str, ...]) -> bool:
    """ServiceEntries and Sidecars always count; VirtualServices and DestinationRules only when they
    name a probed host (in `hosts` or a route destination). No hosts: everything counts."""
    if not hosts:
        return True
    if isinstance(obj, DestinationRule):
        patterns: tuple[str, ...] = (obj.host,)
    elif isinstance(obj, VirtualService):
        routes = [*obj.http, *obj.tls]
        patterns = obj.hosts + tuple(r.destination.host for route in routes for r in route.route)
    else:
        return True
    return any(host_matches(host, pattern) for host in hosts for pattern in patterns)
