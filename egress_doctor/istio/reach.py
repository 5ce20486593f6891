"""Is host:port reachable from a pod, by the model: the whole path, hop by hop. Pure.

    world = World(objects, MeshConfig(), Proxy("payments"))
    reach(world, "sts.us-east-1.amazonaws.com", 443, "https").ok

The sidecar's configuration (istio.outbound) is simulated for the SDK's call; a call that lands
on a service's cluster is followed: when that service is an egress gateway's (a Kubernetes
Service whose pods a Gateway selects), the gateway's configuration (istio.gateway_proxy) is
simulated for the same SNI on the Service's target port: its AuthorizationPolicies must let the
call through (istio.authz) and its cluster for the host must exist.
A DestinationRule that originates TLS on a cluster the app already speaks TLS to breaks the call.

A route to a `*.svc.cluster.local` service that the objects do not include is taken to be a
Kubernetes Service that exists (objects read from a cluster or files rarely include Services):
its pods are the ones the Gateways bound by the route select.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from functools import cached_property

from egress_doctor.istio.authz import RbacFilter, Request, Verdict, decide
from egress_doctor.istio.gateway_proxy import build_gateway
from egress_doctor.istio.hosts import subset_of
from egress_doctor.istio.objects import (
    CLUSTER_DOMAIN,
    Gateway,
    IstioObject,
    KubeService,
    MeshConfig,
    Meta,
    ServicePort,
    VirtualService,
    of_kind,
)
from egress_doctor.istio.outbound import build_sidecar
from egress_doctor.istio.scope import Proxy, ProxyKind, Scope, proxy_scope
from egress_doctor.istio.simulate import Call, Result, simulate
from egress_doctor.istio.xds import PASSTHROUGH, ProxyConfig


class Stop(enum.StrEnum):
    """Where the path breaks."""

    NONE = ""
    SIDECAR = "sidecar"  # blackholed, block_all, or no chain for it
    NO_CLUSTER = "no-cluster"  # the sidecar routes to a cluster it does not have (a missing subset …)
    TLS_ORIGINATION = "tls-origination"  # a DestinationRule wraps the app's TLS in TLS
    GATEWAY_NO_ROUTE = "gateway-no-route"  # the gateway has no listener or chain for the SNI / Host
    GATEWAY_NO_CLUSTER = "gateway-no-cluster"  # the gateway routes to a cluster it does not have
    GATEWAY_DENIED = "gateway-denied"  # an AuthorizationPolicy on the gateway refuses it


@dataclass(frozen=True)
class Hop:
    proxy: str  # "sidecar" | "gateway istio-system/istio-egressgateway"
    call: Call
    result: Result
    target: Proxy | None = None  # the gateway proxy (None: the pod's sidecar)


@dataclass(frozen=True)
class Reach:
    hops: tuple[Hop, ...]
    stop: Stop = Stop.NONE
    verdict: Verdict | None = None  # the gateway's AuthorizationPolicies, when they were asked
    request: Request | None = None  # the call as the gateway's RBAC filters saw it

    @property
    def ok(self) -> bool:
        return self.stop is Stop.NONE

    @property
    def sidecar(self) -> Result:
        return self.hops[0].result

    @property
    def gateway(self) -> Hop | None:
        return self.hops[1] if len(self.hops) > 1 else None


@dataclass
class World:
    """The objects a proxy sees, the mesh config, and the proxy; configurations built on demand."""

    objects: tuple[IstioObject, ...]
    mesh: MeshConfig = field(default_factory=MeshConfig)
    proxy: Proxy = field(default_factory=Proxy)
    admit: bool = True

    @cached_property
    def scope(self) -> Scope:
        return proxy_scope(self.objects, self.proxy, self.mesh, self.admit)

    @cached_property
    def sidecar(self) -> ProxyConfig:
        return build_sidecar(self.scope)

    def with_objects(self, objects: tuple[IstioObject, ...]) -> World:
        return World(objects, self.mesh, self.proxy, self.admit)

    def gateway_scope(self, gateway: Proxy) -> Scope:
        return proxy_scope(self.objects, gateway, self.mesh, self.admit)


def call_for(host: str, port: int, scheme: str) -> Call:
    from egress_doctor.aws.hosts import is_ip

    address = host.strip("[]") if is_ip(host) else ""
    return Call(host, port, "tls" if scheme == "https" else "http", address)


def reach(world: World, host: str, port: int, scheme: str) -> Reach:
    call = call_for(host, port, scheme)
    result = simulate(world.sidecar, call)
    hops: tuple[Hop, ...] = (Hop("sidecar", call, result),)
    if result.cluster == PASSTHROUGH:
        return Reach(hops)
    if result.blocked:
        return Reach(hops, Stop.SIDECAR)
    cluster = result.config
    if cluster is None or cluster.service is None:
        return Reach(hops, Stop.NO_CLUSTER)
    if scheme == "https" and cluster.tls is not None:
        return Reach(hops, Stop.TLS_ORIGINATION)
    gateway = gateway_behind(world, cluster.service.hostname, cluster.port)
    if gateway is None:
        return Reach(hops)
    proxy, port_on_pod, name = gateway
    config = build_gateway(world.gateway_scope(proxy))
    hop_call = replace(call, port=port_on_pod, address="")
    hop = Hop(f"gateway {name}", hop_call, simulate(config, hop_call), proxy)
    if hop.result.error or not hop.result.cluster:
        return Reach((*hops, hop), Stop.GATEWAY_NO_ROUTE)
    filters, request = gateway_request(config, hop_call, host)
    verdict = decide(filters, request)
    if verdict.denied:  # the RBAC filter sits before the chain's tcp_proxy / router
        return Reach((*hops, hop), Stop.GATEWAY_DENIED, verdict, request)
    if hop.result.config is None:
        return Reach((*hops, hop), Stop.GATEWAY_NO_CLUSTER, verdict, request)
    return Reach((*hops, hop), verdict=verdict, request=request)


def gateway_request(config: ProxyConfig, call: Call, host: str) -> tuple[tuple[RbacFilter, ...], Request]:
    """The gateway's RBAC filters for the call's chain, and the call as they see it: the SNI (or
    Host) and the gateway pod's port. On a TLS PASSTHROUGH server the sidecar's connection
    carries the app's own TLS, so the gateway sees no peer identity."""
    if call.protocol == "http":
        return config.rbac_http, Request(port=call.port, authority=host)
    return config.rbac_tcp, Request(sni=host, port=call.port)


EGRESS_GATEWAY_LABELS = {"istio": "egressgateway"}  # the istio-egressgateway chart's pod labels


def _bound_gateways(world: World, hostname: str) -> list[str]:
    """"ns/name" of the non-mesh gateways bound by VirtualServices that route to `hostname`."""
    out = []
    for vs in of_kind(world.objects, VirtualService):
        dests = [d.destination.host for r in (*vs.tls, *vs.http, *vs.tcp) for d in r.route]
        if hostname in dests or any(f"{h}.{vs.meta.namespace}.svc.{CLUSTER_DOMAIN}" == hostname for h in dests):
            out += [g if "/" in g else f"{vs.meta.namespace}/{g}" for g in vs.gateways if g != "mesh"]
    return out


def gateway_behind(world: World, hostname: str, port: ServicePort | None) -> tuple[Proxy, int, str] | None:
    """(the gateway proxy, the pod port it serves on, "ns/Gateway") when `hostname` is an egress
    gateway's Service — a Gateway selects its pods, or a route binding a Gateway sends traffic to
    it — else None."""
    services = [s for s in of_kind(world.objects, KubeService) if s.hostname == hostname]
    gateways = of_kind(world.objects, Gateway)
    for svc in services:
        target = next((p.target_port for p in svc.ports if port and p.number == port.number), 0)
        proxy = Proxy(svc.meta.namespace, dict(svc.selector), ProxyKind.GATEWAY)
        served = target or (port.number if port else 0)
        for gw in gateways:
            if gw.selector and all(svc.selector.get(k) == v for k, v in gw.selector.items()):
                return proxy, served, f"{gw.meta.namespace}/{gw.meta.name}"
        bound = _bound_gateways(world, hostname)
        if bound:
            return proxy, served, bound[0]
    return None


def assumed_services(objects: tuple[IstioObject, ...]) -> tuple[KubeService, ...]:
    """Kubernetes Services the routes name but the objects lack: the egress gateway's, in a
    cluster read without Services. Its pods: those the bound Gateways select (the chart's
    `istio: egressgateway` when no Gateway exists)."""
    known = {s.hostname for s in of_kind(objects, KubeService)}
    gateways = {f"{g.meta.namespace}/{g.meta.name}": g for g in of_kind(objects, Gateway)}
    out: dict[str, KubeService] = {}
    suffix = f".svc.{CLUSTER_DOMAIN}"
    for vs in of_kind(objects, VirtualService):
        bound = [x if "/" in x else f"{vs.meta.namespace}/{x}" for x in vs.gateways if x != "mesh"]
        if not bound:
            continue
        selectors = [gateways[g].selector for g in bound if g in gateways and gateways[g].selector]
        selector = dict(selectors[0]) if selectors else dict(EGRESS_GATEWAY_LABELS)
        for route in [*vs.tls, *vs.http, *vs.tcp]:
            for dest in route.route:
                host = dest.destination.host
                if not host.endswith(suffix) or host in known:
                    continue
                name, namespace = host[: -len(suffix)].split(".", 1)
                number = dest.destination.port or 443
                current = out.get(host)
                ports = current.ports if current else ()
                if all(p.number != number for p in ports):
                    protocol = "TLS" if route in vs.tls else ("HTTP" if route in vs.http else "TCP")
                    ports += (ServicePort(number, f"{protocol.lower()}-{number}", protocol, number),)
                out[host] = KubeService(Meta("Service", name, namespace, "v1", source="assumed"), ports, "",
                                        selector)
    return tuple(out.values())


def covers(hostname: str, host: str) -> bool:
    return subset_of(host, hostname)
