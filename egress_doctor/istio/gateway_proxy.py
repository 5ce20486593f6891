"""An egress gateway's configuration from its scope, as istiod builds it for a gateway. Pure.

pilot/pkg/model/gateway.go, pilot/pkg/networking/core/gateway.go:
- The Gateways that select the proxy's labels (any namespace) give its servers. A server's port
  becomes a listener on the pod port: the targetPort of a Kubernetes Service that selects the
  gateway pod and exposes that port, else the port itself (`0.0.0.0_<port>`).
- VirtualServices bound to a Gateway (`ns/name`, or a short name in the VirtualService's own
  namespace) and exported to the gateway's namespace; a server takes a VirtualService only when
  one of its hosts matches one of the server's hosts (`ns/host` also restricts the namespace).
- TLS PASSTHROUGH (and TCP) servers: one filter chain per TLS match of those VirtualServices
  (`sniHosts`, the server's port), to the route's destination; without one the listener has no
  chain and is not built (a connection is refused or reset). The first chain for an SNI wins.
- HTTP servers: route configuration `http.<port>` with a virtual host `<host>:<port>` per
  VirtualService host; with none, `blackhole:<port>` (no route: 404).
- Clusters: every service exported to the gateway's namespace (no Sidecar applies to gateways),
  with the DestinationRules a proxy in that namespace sees.
- RBAC: the AuthorizationPolicies attached to the gateway's pods (istio.authz), as a network
  filter on every TLS / TCP chain and an HTTP filter on HTTP chains.
"""

from __future__ import annotations

from collections.abc import Sequence

from egress_doctor.istio.authz import policies_for, policy_filters
from egress_doctor.istio.destination_rules import index_rules
from egress_doctor.istio.hosts import matches, subset_of
from egress_doctor.istio.objects import DestinationRule, Gateway, KubeService, Mode, Server, VirtualService, of_kind
from egress_doctor.istio.outbound import _vs_routes, build_clusters, destination_cluster
from egress_doctor.istio.scope import Scope, bound_to
from egress_doctor.istio.xds import Chain, Listener, ProxyConfig, Route, RouteConfig, VirtualHost

BLACKHOLE_VHOST = "blackhole"


def selected_gateways(scope: Scope) -> list[Gateway]:
    labels = scope.proxy.labels or {}
    return [g for g in of_kind(scope.objects, Gateway)
            if g.selector and all(labels.get(k) == v for k, v in g.selector.items())]


def listen_port(scope: Scope, number: int) -> int:
    """The pod port a Gateway server's port is served on (the Service's targetPort)."""
    labels = scope.proxy.labels or {}
    for svc in of_kind(scope.objects, KubeService):
        if svc.meta.namespace != scope.namespace or not svc.selector:
            continue
        if all(labels.get(k) == v for k, v in svc.selector.items()):
            for port in svc.ports:
                if port.number == number and port.target_port:
                    return port.target_port
    return number


def server_virtual_services(scope: Scope, gateway: Gateway, server: Server) -> list[tuple[VirtualService, list[str]]]:
    """The VirtualServices a server takes, each with its hosts that the server lists."""
    name = f"{gateway.meta.namespace}/{gateway.meta.name}"
    out = []
    for vs in scope.virtual_services:
        if not bound_to(vs, name):
            continue
        hosts = [h for h in vs.hosts if any(_server_host_matches(s, h, vs.meta.namespace) for s in server.hosts)]
        if hosts:
            out.append((vs, hosts))
    return out


def _server_host_matches(server_host: str, host: str, vs_namespace: str) -> bool:
    ns, slash, name = server_host.partition("/")
    if not slash:
        ns, name = "*", server_host
    if ns not in ("*", vs_namespace) and not (False):
        return False
    return matches(host, name)


def build_gateway(scope: Scope) -> ProxyConfig:
    config = ProxyConfig("gateway", Mode.REGISTRY_ONLY)
    routes: dict[str, list[VirtualHost]] = {}
    for gateway in selected_gateways(scope):
        for server in gateway.servers:
            port = listen_port(scope, server.port.number)
            key = ("0.0.0.0", port)
            if server.port.protocol.is_http:
                chain = Chain(route=f"http.{server.port.number}")
                listener = config.listeners.setdefault(key, Listener("0.0.0.0", port, [chain]))
                routes.setdefault(chain.route, []).extend(_http_hosts(scope, gateway, server, routes.get(chain.route)))
                del listener
            else:
                chains = _tls_chains(scope, gateway, server)
                if not chains:
                    continue
                listener = config.listeners.setdefault(key, Listener("0.0.0.0", port, []))
                for chain in chains:
                    if not any(chain.same_match(c) for c in listener.chains):
                        listener.chains.append(chain)
    for listener in config.listeners.values():
        listener.default = None
    for name, vhosts in routes.items():
        port = name.split(".", 1)[1]
        blackhole = VirtualHost(f"{BLACKHOLE_VHOST}:{port}", ("*",), ())
        config.routes[name] = RouteConfig(name, tuple(vhosts) or (blackhole,))
    config.clusters = build_clusters(scope, index_rules(of_kind(scope.objects, DestinationRule), scope.mesh))
    policies = policies_for(scope.objects, scope.namespace, scope.proxy.labels or {}, scope.mesh.root_namespace)
    config.rbac_tcp, config.rbac_http = policy_filters(policies, tcp=True), policy_filters(policies, tcp=False)
    return config


def _tls_chains(scope: Scope, gateway: Gateway, server: Server) -> list[Chain]:
    chains = []
    for vs, _ in server_virtual_services(scope, gateway, server):
        for route in vs.tls:
            for match in route.match:
                gateways = [fqdn_gateway(g, vs.meta.namespace) for g in match.gateways]
                name = f"{gateway.meta.namespace}/{gateway.meta.name}"
                if match.port not in (0, server.port.number) or (gateways and name not in gateways):
                    continue
                clusters = tuple((destination_cluster(r, server.port.number, scope, vs.meta.namespace), r.weight)
                                 for r in route.route)
                if clusters:
                    chains.append(Chain(server_names=match.sni_hosts, cluster=clusters[0][0] if len(clusters) == 1
                                        else "", weighted=clusters if len(clusters) > 1 else (),
                                        config=vs.meta.ref))
    return chains


def fqdn_gateway(name: str, namespace: str) -> str:
    return name if "/" in name else f"{namespace}/{name}"


def _http_hosts(scope: Scope, gateway: Gateway, server: Server,
                existing: Sequence[VirtualHost] | None) -> list[VirtualHost]:
    """A virtual host per host the server and a VirtualService share: the narrower of the two
    names (pickMatchingGatewayHosts)."""
    taken = {d for v in existing or () for d in v.domains}
    out = []
    name = f"{gateway.meta.namespace}/{gateway.meta.name}"
    for vs, hosts in server_virtual_services(scope, gateway, server):
        routes = _gateway_routes(vs, server, name, scope)
        for host in hosts:
            for server_host in server.hosts:
                listed = server_host.partition("/")[2] if "/" in server_host else server_host
                if not _server_host_matches(server_host, host, vs.meta.namespace):
                    continue
                domain = listed if subset_of(listed, host) else host
                if domain in taken:
                    continue
                taken.add(domain)
                out.append(VirtualHost(f"{domain}:{server.port.number}", (domain,), routes))
    return out


def _gateway_routes(vs: VirtualService, server: Server, gateway: str, scope: Scope) -> tuple[Route, ...]:
    gated = VirtualService(vs.meta, vs.hosts, vs.gateways, tuple(
        h for h in vs.http if not h.match or any(
            (not m.gateways or gateway in [fqdn_gateway(g, vs.meta.namespace) for g in m.gateways]) for m in h.match)),
        vs.tls, vs.export_to, vs.tcp)
    return _vs_routes(_ungated(gated), server.port.number, scope)


def _ungated(vs: VirtualService) -> VirtualService:
    """The routes with their gateway matches already applied (so `mesh`-only filtering keeps them)."""
    from dataclasses import replace

    http = tuple(replace(h, match=tuple(replace(m, gateways=()) for m in h.match)) for h in vs.http)
    return replace(vs, http=http)
