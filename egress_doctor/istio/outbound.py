"""A sidecar's outbound configuration from its scope, as istiod builds it. Pure.

pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners / buildSidecarOutboundListener:
- Egress listeners with a port come first, each building a listener on its port for every
  service it imports (the listener's protocol is the Sidecar port's); then every listener built
  so far is **locked**, and the catch-all listener builds one per service port, skipping any
  (bind, port) that is locked.
- The key of a listener: HTTP services always bind 0.0.0.0; TCP/TLS/auto ones bind the
  service's address (a CIDR binds 0.0.0.0 with a prefix-range match; no address: 0.0.0.0).
- Conflicts on one key: HTTP after HTTP adds nothing (one route config per port); TCP/TLS chains
  merge unless an existing chain matches the same connections (the oldest service wins); mixing
  HTTP and TCP turns the listener into a sniffing one (HTTP chain on raw_buffer + ALPN h1/h2c).
- tls.go: a TLS/HTTPS port gets one chain per VirtualService TLS match (sniHosts, port, mesh
  gateway), else one chain to `outbound|<port>||<host>` matching the host as SNI when the
  listener binds 0.0.0.0 (or a CIDR); TCP ports likewise with VirtualService tcp routes.
- A match-all chain becomes the default chain; otherwise the default is PassthroughFilterChain
  to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
httproute.go: route config `"<port>"` per HTTP port with one virtual host per service of the
owning egress listener that has the port (`<host>:<port>`; domains the host, `host.` and its
addresses), routes from the most specific VirtualService bound to `mesh`, else `default`;
(route.go BuildSidecarVirtualHostWrapper: HTTP or sniffed ports only); VirtualService hosts
without a service only on port 80; last `block_all` (502) or `allow_any`.
cluster.go: `outbound|<port>|<subset>|<host>` for every port of every service in scope and every
subset of its DestinationRule, with the TLS that rule originates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from egress_doctor.istio.destination_rules import RuleIndex, cluster_tls, index_rules, rule_for
from egress_doctor.istio.hosts import fqdn, is_wildcard, most_specific, subset_of
from egress_doctor.istio.objects import (
    MESH_GATEWAY,
    DestinationRule,
    Mode,
    Protocol,
    RouteDestination,
    ServicePort,
    VirtualService,
    of_kind,
)
from egress_doctor.istio.registry import Service
from egress_doctor.istio.scope import ListenerScope, ProxyKind, Scope
from egress_doctor.istio.xds import (
    ALLOW_ANY,
    BLACKHOLE,
    BLOCK_ALL,
    HTTP_ALPNS,
    PASSTHROUGH,
    WILDCARD,
    Chain,
    Cluster,
    Listener,
    ProxyConfig,
    Route,
    RouteConfig,
    VirtualHost,
    cluster_name,
)


def listener_protocol(protocol: Protocol) -> str:
    """ModelProtocolToListenerProtocol: "http", "tcp", "auto", or "" (UDP: no listener)."""
    if protocol.is_http:
        return "http"
    if protocol.is_tcp:
        return "tcp"
    if protocol is Protocol.UNSUPPORTED:
        return "auto"
    return ""


def build_sidecar(scope: Scope) -> ProxyConfig:
    """The listeners, routes and clusters istiod would push to this sidecar."""
    fallthrough = PASSTHROUGH if scope.mode is Mode.ALLOW_ANY else BLACKHOLE
    config = ProxyConfig(ProxyKind.SIDECAR.value, scope.mode, catch_all=fallthrough)
    for egress in (x for x in scope.listeners if not x.catch_all):
        listen = ServicePort(egress.port, egress.protocol_name, egress.protocol_name)
        for svc in egress.services:
            _add(config, scope, egress, svc, listen, egress.bind)
    for entry in config.listeners.values():
        entry.locked = True
    for egress in (x for x in scope.listeners if x.catch_all):
        for svc in egress.services:
            for port in svc.ports:
                _add(config, scope, egress, svc, port, egress.bind)
    for entry in config.listeners.values():
        entry.finish(fallthrough)
    config.routes = {name: route_config(scope, name, port) for name, port in _route_names(config)}
    config.clusters = build_clusters(scope, index_rules(of_kind(scope.objects, DestinationRule), scope.mesh))
    return config


def _route_names(config: ProxyConfig) -> list[tuple[str, int]]:
    names: dict[str, int] = {}
    for entry in config.listeners.values():
        for chain in [*entry.chains, *([entry.default] if entry.default else [])]:
            if chain.route:
                names.setdefault(chain.route, entry.port)
    return sorted(names.items())


def _binding(svc: Service, protocol: str, bind: str) -> tuple[str, tuple[str, ...]]:
    """(listener address, CIDR matches) for a service port."""
    if bind:
        return bind, ()
    if protocol == "http":
        return WILDCARD, ()
    address = svc.listen_address
    if "/" in address:
        return WILDCARD, (address, *svc.extra_addresses)
    return address, ()


def _add(config: ProxyConfig, scope: Scope, egress: ListenerScope, svc: Service, port: ServicePort,
         bind: str) -> None:
    kind = listener_protocol(port.protocol)
    if not kind:
        return
    address, cidrs = _binding(svc, kind, bind)
    key = (address, port.number)
    current = config.listeners.get(key)
    if current is not None and current.locked:
        return
    vss = [vs for vs in egress.virtual_services if any(_vs_host_matches(h, svc.hostname, vs) for h in vs.hosts)]
    http = _http_chain(port, svc, address, kind)
    if kind == "http":
        if current is not None and current.protocol is not Protocol.TCP:
            return  # the port's route configuration already carries every HTTP service
        chains = [http]
        protocol = Protocol.UNSUPPORTED if address == WILDCARD else Protocol.HTTP
    elif kind == "tcp":
        chains = _tcp_chains(scope, svc, port, address, cidrs, vss)
        protocol = Protocol.TCP
    else:
        chains = [*_tcp_chains(scope, svc, port, address, cidrs, vss), http]
        protocol = Protocol.UNSUPPORTED
    if current is None:
        config.listeners[key] = Listener(address, port.number, chains, protocol)
        return
    for chain in chains:
        if not any(chain.same_match(existing) for existing in current.chains):
            current.chains.append(chain)
    if current.protocol is not protocol:
        current.protocol = Protocol.UNSUPPORTED


def _http_chain(port: ServicePort, svc: Service, address: str, kind: str) -> Chain:
    route = f"{svc.hostname}:{port.number}" if kind == "auto" and address != WILDCARD else str(port.number)
    if address == WILDCARD:
        return Chain(route=route, transport="raw_buffer", alpns=HTTP_ALPNS)
    return Chain(route=route)


def _vs_host_matches(vs_host: str, hostname: str, vs: VirtualService) -> bool:
    return subset_of(hostname, fqdn(vs_host, vs.meta.namespace))


def _tcp_chains(scope: Scope, svc: Service, port: ServicePort, address: str, cidrs: tuple[str, ...],
                vss: Sequence[VirtualService]) -> list[Chain]:
    if port.protocol.is_tls:
        chains = []
        seen: set[str] = set()
        for vs in vss:
            for route in vs.tls:
                if not route.route:
                    continue
                for match in route.match:
                    if match.port not in (0, port.number) or (match.gateways and MESH_GATEWAY not in match.gateways):
                        continue
                    key = ",".join(match.sni_hosts)
                    if key in seen:
                        continue
                    seen.add(key)
                    chains.append(_destinations(route.route, port.number, scope, vs, match.sni_hosts, cidrs))
        if chains:
            return chains
    else:
        for vs in vss:
            for tcp in vs.tcp:
                if tcp.route and (not tcp.match or any(
                        m.port in (0, port.number) and (not m.gateways or MESH_GATEWAY in m.gateways)
                        for m in tcp.match)):
                    return [_destinations(tcp.route, port.number, scope, vs, (), cidrs)]
    number = svc.ports[0].number if len(svc.ports) == 1 else port.number
    sni = port.protocol.is_tls and (bool(cidrs) or address == WILDCARD)
    return [Chain(server_names=(svc.hostname,) if sni else (), prefix_ranges=cidrs,
                  cluster=cluster_name(number, svc.hostname))]


def _destinations(routes: Sequence[RouteDestination], port: int, scope: Scope, vs: VirtualService,
                  sni: tuple[str, ...], cidrs: tuple[str, ...]) -> Chain:
    clusters = tuple((destination_cluster(r, port, scope, vs.meta.namespace), r.weight) for r in routes)
    config = vs.meta.ref
    if len(clusters) == 1:
        return Chain(server_names=sni, prefix_ranges=cidrs, cluster=clusters[0][0], config=config)
    return Chain(server_names=sni, prefix_ranges=cidrs, weighted=clusters, config=config)


def destination_cluster(route: RouteDestination, port: int, scope: Scope, namespace: str) -> str:
    """GetDestinationCluster: the destination's port, else the service's only port, else ours."""
    dest = route.destination
    host = fqdn(dest.host, namespace)
    number = dest.port
    if not number:
        svc = scope.service(host)
        number = svc.ports[0].number if svc is not None and len(svc.ports) == 1 else port
    return cluster_name(number, host, dest.subset)


# ---- routes ----------------------------------------------------------------------------------------


def route_config(scope: Scope, name: str, port: int) -> RouteConfig:
    owner = scope.port_owner(port)
    if ":" in name:  # a sniffed port with its own address: one service, every domain
        host = name.rsplit(":", 1)[0]
        svc = next((s for s in (owner.services if owner else ()) if s.hostname == host), None)
        routes = _service_routes(scope, owner, host, port) if svc else ()
        return RouteConfig(name, (VirtualHost(name, ("*",), routes),))
    vhosts: list[VirtualHost] = []
    domains: set[str] = set()
    services = [s for s in (owner.services if owner else ()) if (p := s.port(port)) is not None
                and (p.protocol.is_http or p.protocol is Protocol.UNSUPPORTED)]  # IsHTTPOrSniffed
    for svc in services:
        fresh = tuple(d for d in _domains(svc) if d not in domains)
        domains.update(fresh)
        if fresh:
            vhosts.append(VirtualHost(f"{svc.hostname}:{port}", fresh, _service_routes(scope, owner, svc.hostname,
                                                                                        port)))
    if port == 80 and owner is not None:
        vhosts += _unbacked_virtual_hosts(owner, {s.hostname for s in services}, domains, port, scope)
    vhosts.append(catch_all_vhost(scope.mode))
    return RouteConfig(name, tuple(vhosts))


def catch_all_vhost(mode: Mode) -> VirtualHost:
    if mode is Mode.REGISTRY_ONLY:
        return VirtualHost(BLOCK_ALL, ("*",), (Route(BLOCK_ALL, direct_status=502),))
    return VirtualHost(ALLOW_ANY, ("*",), (Route(ALLOW_ANY, cluster=PASSTHROUGH),))


def _domains(svc: Service) -> list[str]:
    """generateVirtualHostDomains for an external host: the host, `host.`, each address."""
    out = [svc.hostname]
    if not is_wildcard(svc.hostname):
        out.append(svc.hostname + ".")
    for address in svc.addresses:
        try:
            net = ipaddress.ip_network(address, strict=False)
        except ValueError:
            continue
        if net.num_addresses == 1 and str(net.network_address) != WILDCARD:
            out.append(str(net.network_address))
    return out


def _most_specific_vs(owner: ListenerScope | None, hostname: str) -> VirtualService | None:
    if owner is None:
        return None
    hosts = {fqdn(h, vs.meta.namespace): vs for vs in reversed(owner.virtual_services) for h in vs.hosts
             if vs.http}
    best = most_specific(hostname, hosts)
    return hosts[best] if best is not None else None


def _service_routes(scope: Scope, owner: ListenerScope | None, hostname: str, port: int) -> tuple[Route, ...]:
    vs = _most_specific_vs(owner, hostname)
    if vs is not None:
        routes = _vs_routes(vs, port, scope)
        if routes:
            return routes
    return (Route("default", cluster=cluster_name(port, hostname)),)


def _vs_routes(vs: VirtualService, port: int, scope: Scope) -> tuple[Route, ...]:
    out = []
    for http in vs.http:
        if not http.route:
            continue
        matches = [m for m in http.match if m.port in (0, port) and (not m.gateways or MESH_GATEWAY in m.gateways)]
        if http.match and not matches:
            continue
        clusters = tuple((destination_cluster(r, port, scope, vs.meta.namespace), r.weight) for r in http.route)
        for m in matches or [None]:
            prefix = (m.prefix if m else "") or ("" if m and m.exact else "/")
            out.append(Route(http.name, prefix, m.exact if m else "", clusters[0][0] if len(clusters) == 1 else "",
                             clusters if len(clusters) > 1 else ()))
    return tuple(out)


def _unbacked_virtual_hosts(owner: ListenerScope, services: set[str], domains: set[str], port: int,
                            scope: Scope) -> list[VirtualHost]:
    """VirtualService hosts with no service behind them: a virtual host on port 80 only."""
    out = []
    for vs in owner.virtual_services:
        for raw in vs.hosts:
            host = fqdn(raw, vs.meta.namespace)
            if host in services or host in domains or any(subset_of(s, host) for s in services):
                continue
            routes = _vs_routes(vs, port, scope)
            if routes:
                domains.add(host)
                out.append(VirtualHost(f"{host}:{port}", (host,), routes))
    return out


# ---- clusters ------------------------------------------------------------------------------------


def build_clusters(scope: Scope, rules: RuleIndex) -> dict[str, Cluster]:
    out = {BLACKHOLE: Cluster(BLACKHOLE), PASSTHROUGH: Cluster(PASSTHROUGH)}
    sidecar = scope.proxy.kind is ProxyKind.SIDECAR
    for svc in scope.services:
        rule = rule_for(rules, scope.namespace, scope.proxy.labels, svc)
        for port in svc.ports:
            name = cluster_name(port.number, svc.hostname)
            out[name] = Cluster(name, svc, port, "", cluster_tls(rule, port.number, "", sidecar), rule)
            for subset in rule.subsets if rule else ():
                sub = cluster_name(port.number, svc.hostname, subset.name)
                out[sub] = Cluster(sub, svc, port, subset.name, cluster_tls(rule, port.number, subset.name, sidecar),
                                   rule)
    return out
