"""The model's HTTP route configurations (istio.xds.RouteConfig) as Envoy route configurations.

Istio's shape is kept (`<host>:<port>` virtual hosts, istiod's retry policy and timeouts, last
`block_all` or `allow_any`, `ignore_port_in_host_matching`); the lab adds the loopback stand-in
of each link-local address to the domains that name it, routes `allow_any` requests for the
link-local hosts to their fakes, and names each virtual host in a response header (with a last
route that answers Envoy's own 404 for requests no route matches, so that the header comes too).
"""

from __future__ import annotations

import re

from egress_doctor.istio.objects import Mode
from egress_doctor.istio.outbound import catch_all_vhost
from egress_doctor.istio.xds import ALLOW_ANY, PASSTHROUGH, Route, RouteConfig, VirtualHost
from egress_doctor.lab.clusters import Json, lab_passthrough
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Upstreams

VHOST_HEADER = "x-egress-doctor-vhost"  # lab only: which virtual host answered
NO_ROUTE = "egress-doctor-lab-no-route"  # lab only: the 404 Envoy gives when no route matches
_RETRY = {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
          "num_retries": 2, "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                                      "typed_config": {"@type": "type.googleapis.com/envoy."
                                                                       "extensions.retry.host.previous_hosts.v3."
                                                                       "PreviousHostsPredicate"}}],
          "host_selection_retry_max_attempts": "5", "retriable_status_codes": [503]}


def catch_all_only(name: str, mode: Mode) -> RouteConfig:
    return RouteConfig(name, (catch_all_vhost(mode),))


def route_config(config: RouteConfig, mode: Mode, upstreams: Upstreams) -> Json:
    vhosts = [_vhost(v, mode, upstreams) for v in config.virtual_hosts]
    return {"name": config.name, "virtual_hosts": vhosts, "validate_clusters": False,
            "max_direct_response_body_size_bytes": 1048576, "ignore_port_in_host_matching": True}


def _domains(vhost: VirtualHost) -> list[str]:
    out: list[str] = []
    for domain in vhost.domains:
        out.append(domain)
        if domain in LINK_LOCAL_STANDINS:
            out.append(LINK_LOCAL_STANDINS[domain])
    return list(dict.fromkeys(out))


def _vhost(vhost: VirtualHost, mode: Mode, upstreams: Upstreams) -> Json:
    routes = [_route(r) for r in vhost.routes]
    if vhost.name == ALLOW_ANY and mode is Mode.ALLOW_ANY:
        routes = _link_local_passthrough(upstreams) + routes
    # Envoy answers 404 when no route matches; this last route does the same, with the lab's
    # header, so a client can tell which virtual host it reached.
    if not routes or routes[-1]["match"] != {"prefix": "/"}:
        routes.append({"name": NO_ROUTE, "match": {"prefix": "/"}, "direct_response": {"status": 404}})
    out: Json = {"name": vhost.name, "domains": _domains(vhost), "include_request_attempt_count": True,
                 "routes": routes,
                 "response_headers_to_add": [{"header": {"key": VHOST_HEADER, "value": vhost.name},
                                              "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}
    return out


def _route(route: Route) -> Json:
    match: Json = {"path": route.exact} if route.exact else {"prefix": route.prefix or "/"}
    if route.direct_status:
        return {"name": route.name, "match": match, "direct_response": {"status": route.direct_status}}
    action: Json = {"timeout": "0s", "max_grpc_timeout": "0s"}
    if route.cluster == PASSTHROUGH and route.name == ALLOW_ANY:
        action["cluster"] = PASSTHROUGH
        return {"name": route.name, "match": match, "route": action}
    action["retry_policy"] = _RETRY
    if route.weighted:
        action["weighted_clusters"] = {"clusters": [{"name": n, "weight": w or 1} for n, w in route.weighted]}
    else:
        action["cluster"] = route.cluster
    return {"name": route.name, "match": match, "route": action, "decorator": {"operation": f"{route.name}/*"}}


def _link_local_passthrough(upstreams: Upstreams) -> list[Json]:
    """ALLOW_ANY sends a request to the address the app dialled: for the link-local hosts, their fake."""
    routes = []
    for ip, standin in LINK_LOCAL_STANDINS.items():
        if upstreams.for_ip(ip) is not None:
            authority = rf"^({re.escape(ip)}|{re.escape(standin)})(:\d+)?$"
            routes.append({"name": ALLOW_ANY, "match": {"prefix": "/", "headers": [
                {"name": ":authority", "string_match": {"safe_regex": {"regex": authority}}}]},
                "route": {"cluster": lab_passthrough(ip), "timeout": "0s", "max_grpc_timeout": "0s"}})
    return routes
