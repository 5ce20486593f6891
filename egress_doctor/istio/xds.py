"""The shape of what istiod pushes to a proxy, reduced to what decides where a connection goes:
listeners and their filter chains, HTTP route configurations, clusters. Built by
`istio.outbound` (a sidecar) and `istio.gateway_proxy` (an egress gateway); read by
`istio.simulate` (where does this call go?) and by the lab, which turns it into Envoy's own
configuration. Plain data, no behaviour beyond naming.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egress_doctor.istio.authz import RbacFilter
from egress_doctor.istio.destination_rules import MergedRule
from egress_doctor.istio.objects import ClientTls, Mode, Protocol, Resolution, ServicePort
from egress_doctor.istio.registry import Service

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
BLOCK_ALL, ALLOW_ANY = "block_all", "allow_any"
PASSTHROUGH_CHAIN = "PassthroughFilterChain"
VIRTUAL_OUTBOUND = "virtualOutbound"
HTTP_ALPNS = ("http/1.1", "h2c")  # plaintextHTTPALPNs (without PILOT_HTTP10)
WILDCARD = "0.0.0.0"


def cluster_name(port: int, host: str, subset: str = "") -> str:
    """model.BuildSubsetKey: `outbound|443||sts.us-east-1.amazonaws.com`."""
    return f"outbound|{port}|{subset}|{host}"


@dataclass(frozen=True)
class Chain:
    """One filter chain: what it matches, and a tcp_proxy (`cluster`/`weighted`) or an HTTP
    connection manager on route configuration `route`."""

    server_names: tuple[str, ...] = ()
    prefix_ranges: tuple[str, ...] = ()  # destination CIDRs
    transport: str = ""  # "raw_buffer" for the sniffed HTTP chain, "tls" for TLS-only
    alpns: tuple[str, ...] = ()
    route: str = ""  # RDS name of an HTTP chain
    cluster: str = ""  # tcp_proxy cluster
    weighted: tuple[tuple[str, int], ...] = ()
    name: str = ""
    config: str = ""  # the object that produced it ("VirtualService ns/name"), as istiod's metadata

    @property
    def match_all(self) -> bool:
        names = tuple(n for n in self.server_names if n != "*")
        return not names and not self.prefix_ranges and not self.transport and not self.alpns

    @property
    def is_http(self) -> bool:
        return bool(self.route)

    def same_match(self, other: Chain) -> bool:
        """conflictsWith: the two chains match the same connections."""
        return (self.transport == other.transport and self.alpns == other.alpns
                and set(self.server_names) - {"*"} == set(other.server_names) - {"*"}
                and set(self.prefix_ranges) == set(other.prefix_ranges))


@dataclass
class Listener:
    bind: str
    port: int
    chains: list[Chain] = field(default_factory=list)
    protocol: Protocol = Protocol.TCP  # HTTP, TCP, or UNSUPPORTED (sniffed: both chains)
    locked: bool = False
    default: Chain | None = None  # set by finish(): the match-all chain or PassthroughFilterChain

    @property
    def name(self) -> str:
        return f"{self.bind}_{self.port}"

    @property
    def tls_inspector(self) -> bool:
        return any(c.server_names for c in self.chains) or any(c.transport == "tls" for c in self.chains)

    @property
    def http_inspector(self) -> bool:
        return any(c.alpns for c in self.chains)

    def finish(self, fallthrough: str, default_name: str = PASSTHROUGH_CHAIN) -> None:
        """buildListenerFromEntry: a match-all chain becomes the default chain when others exist;
        without one, the default is PassthroughFilterChain to `fallthrough`."""
        match_all = [c for c in self.chains if c.match_all]
        others = [c for c in self.chains if not c.match_all]
        if match_all and not others:
            self.chains, self.default = match_all[:1], None
        elif match_all:
            self.chains, self.default = others, match_all[0]
        else:
            self.chains, self.default = others, Chain(cluster=fallthrough, name=default_name)


@dataclass(frozen=True)
class Route:
    name: str = "default"
    prefix: str = "/"
    exact: str = ""
    cluster: str = ""
    weighted: tuple[tuple[str, int], ...] = ()
    direct_status: int = 0  # a direct response (block_all: 502)


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True)
class Cluster:
    name: str
    service: Service | None = None
    port: ServicePort | None = None
    subset: str = ""
    tls: ClientTls | None = None  # TLS the proxy originates towards the upstream
    rule: MergedRule | None = None  # the DestinationRule that configured it

    @property
    def istio_type(self) -> str:
        """EDS, STRICT_DNS, LOGICAL_DNS or ORIGINAL_DST, as istiod types the cluster."""
        if self.service is None:
            return "STATIC"
        return {Resolution.DNS: "STRICT_DNS", Resolution.DNS_ROUND_ROBIN: "LOGICAL_DNS",
                Resolution.NONE: "ORIGINAL_DST"}.get(self.service.resolution, "EDS")


@dataclass
class ProxyConfig:
    """Everything that decides where this proxy sends a connection."""

    kind: str  # "sidecar" | "gateway"
    mode: Mode
    listeners: dict[tuple[str, int], Listener] = field(default_factory=dict)
    routes: dict[str, RouteConfig] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    catch_all: str = BLACKHOLE  # what virtualOutbound does with the rest (sidecars)
    rbac_tcp: tuple[RbacFilter, ...] = ()  # a gateway's network RBAC filters (TLS / TCP chains)
    rbac_http: tuple[RbacFilter, ...] = ()  # and its HTTP RBAC filters

    def listener(self, bind: str, port: int) -> Listener | None:
        return self.listeners.get((bind, port))
