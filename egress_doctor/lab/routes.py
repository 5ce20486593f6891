"""Envoy HTTP route configs for a pod's view, the way istiod builds them (httproute.go).

One route config per HTTP port: virtual hosts `<host>:<port>` with domains = host + addresses
(`IgnorePortInHostMatching`), a `default` route or the VirtualService's HTTP routes, and last
`block_all` (direct 502) or `allow_any` (PassthroughCluster, timeout 0).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from egress_doctor.istio.objects import Mode, Protocol
from egress_doctor.istio.visibility import PodView, Service
from egress_doctor.lab.clusters import PASSTHROUGH, Json, cluster_name, destination_cluster, lab_passthrough
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Upstreams

BLOCK_ALL, ALLOW_ANY = "block_all", "allow_any"


def route_config(view: PodView, port: int, upstreams: Upstreams) -> Json:
    vhosts: list[Json] = []
    seen: set[str] = set()
    for svc in view.services:
        sp = svc.port(port)
        if sp is None or not (sp.protocol.is_http or sp.protocol is Protocol.UNSUPPORTED):
            continue
        domains = [d for d in _domains(svc) if d not in seen]
        seen.update(domains)
        if domains:
            vhosts.append({"name": f"{svc.hostname}:{port}", "domains": domains,
                           "include_request_attempt_count": True,
                           "routes": _http_routes(svc.hostname, port, view)})
    vhosts.sort(key=lambda v: v["name"])
    vhosts.append(_catch_all_vhost(view.mode, upstreams))
    return {"name": str(port), "virtual_hosts": vhosts, "validate_clusters": False,
            "max_direct_response_body_size_bytes": 1048576, "ignore_port_in_host_matching": True}


def _domains(svc: Service) -> list[str]:
    """generateVirtualHostDomains: the host and each non-CIDR address (+ the lab stand-in)."""
    domains = [svc.hostname]
    for address in svc.addresses:
        net = ipaddress.ip_network(address, strict=False)
        if net.num_addresses == 1:
            ip = str(net.network_address)
            domains.append(ip)
            if ip in LINK_LOCAL_STANDINS:
                domains.append(LINK_LOCAL_STANDINS[ip])
    return domains


def _http_routes(hostname: str, port: int, view: PodView) -> list[Json]:
    for vs in view.virtual_services:
        if hostname in vs.hosts and vs.http:
            routes = [r for route in vs.http for r in _vs_http_route(route, port, view)]
            if routes:
                return routes
    return [_route("default", {"prefix": "/"}, cluster_name(port, hostname))]


def _vs_http_route(route: Any, port: int, view: PodView) -> list[Json]:
    clusters = [(destination_cluster(d.destination, port, view), d.weight) for d in route.route]
    if not clusters:
        return []
    matches = [m for m in route.match if m.port in (0, port) and (not m.gateways or "mesh" in m.gateways)]
    if route.match and not matches:
        return []
    out = []
    for m in matches or [None]:
        envoy_match = {"path": m.exact} if m and m.exact else {"prefix": (m.prefix if m else "") or "/"}
        out.append(_route(route.name, envoy_match, clusters[0][0] if len(clusters) == 1 else clusters))
    return out


def _route(name: str, match: Json, cluster: str | list[tuple[str, int]]) -> Json:
    action: Json = {"timeout": "0s", "max_grpc_timeout": "0s", "retry_policy": {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2, "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                                    "typed_config": {"@type": "type.googleapis.com/envoy."
                                                                     "extensions.retry.host.previous_hosts.v3."
                                                                     "PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": "5", "retriable_status_codes": [503]}}
    if isinstance(cluster, str):
        action["cluster"] = cluster
    else:
        action["weighted_clusters"] = {"clusters": [{"name": n, "weight": w or 1} for n, w in cluster]}
    return {"name": name, "match": match, "route": action, "decorator": {"operation": f"{name}/*"}}


def _catch_all_vhost(mode: Mode, upstreams: Upstreams) -> Json:
    if mode is Mode.REGISTRY_ONLY:
        return {"name": BLOCK_ALL, "domains": ["*"], "include_request_attempt_count": True,
                "routes": [{"name": BLOCK_ALL, "match": {"prefix": "/"}, "direct_response": {"status": 502}}]}
    routes = []
    for ip, standin in LINK_LOCAL_STANDINS.items():
        if upstreams.for_ip(ip) is not None:
            authority = rf"^({re.escape(ip)}|{re.escape(standin)})(:\d+)?$"
            routes.append({"name": ALLOW_ANY, "match": {"prefix": "/", "headers": [
                {"name": ":authority", "string_match": {"safe_regex": {"regex": authority}}}]},
                "route": {"cluster": lab_passthrough(ip), "timeout": "0s", "max_grpc_timeout": "0s"}})
    routes.append({"name": ALLOW_ANY, "match": {"prefix": "/"},
                   "route": {"cluster": PASSTHROUGH, "timeout": "0s", "max_grpc_timeout": "0s"}})
    return {"name": ALLOW_ANY, "domains": ["*"], "routes": routes, "include_request_attempt_count": True}
