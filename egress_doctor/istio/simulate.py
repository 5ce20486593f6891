"""Where a proxy sends one call, read off its configuration the way Envoy matches it (the same
question istiod's own pilot/pkg/simulation/traffic.go answers in its tests). Pure.

    result = simulate(build_sidecar(scope), Call("sts.us-east-1.amazonaws.com", 443, "tls"))
    result.cluster   # "outbound|443||sts.us-east-1.amazonaws.com" or BlackHoleCluster, …

- Listener: the one bound to the destination address and port, else `0.0.0.0_<port>`, else (a
  sidecar) `virtualOutbound`, whose catch-all goes to BlackHoleCluster or PassthroughCluster;
  its own ports 15001/15006 are blackholed (the loop guard).
- Filter chain, in Envoy's order: destination prefix (longest), server name (exact, then the
  longest wildcard; only with a TLS inspector and a TLS call), transport protocol (`tls` or
  `raw_buffer`), application protocol (h1 from the HTTP inspector, the ClientHello's ALPN);
  none matching: the default chain.
- HTTP chains: the route configuration, the virtual host by Host (exact domain, then the longest
  suffix wildcard, then `*`), its first route; a direct response has no cluster.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from egress_doctor.istio.xds import BLACKHOLE, VIRTUAL_OUTBOUND, WILDCARD, Chain, Cluster, Listener, ProxyConfig

PROTOCOLS = ("tls", "http", "tcp")
UNKNOWN_ADDRESS = "1.3.3.7"  # what Istio's simulation dials when a call names no address
OWN_PORTS = (15001, 15006)


@dataclass(frozen=True)
class Call:
    host: str  # TLS: the SNI; HTTP: the Host header
    port: int
    protocol: str = "tls"  # tls | http | tcp
    address: str = ""  # the destination IP; "" means one no listener binds
    alpn: tuple[str, ...] = ("http/1.1",)  # what a TLS client offers (urllib3 offers http/1.1)
    path: str = "/"  # HTTP only

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {self.protocol!r}")


@dataclass(frozen=True)
class Result:
    listener: str = ""
    chain: Chain | None = None
    route: str = ""
    vhost: str = ""
    cluster: str = ""  # "" when nothing upstream was chosen (a direct response, an error)
    direct_status: int = 0
    error: str = ""
    config: Cluster | None = None  # the cluster's configuration, when the proxy has it

    @property
    def blocked(self) -> bool:
        """The sidecar refuses it: BlackHoleCluster, block_all's 502, or nothing at all."""
        return self.cluster in ("", BLACKHOLE) or bool(self.error)


def simulate(config: ProxyConfig, call: Call) -> Result:
    address = call.address or UNKNOWN_ADDRESS
    listener = config.listener(address, call.port) or config.listener(WILDCARD, call.port)
    if listener is None:
        if config.kind == "gateway":
            return Result(error="no listener matched")
        cluster = BLACKHOLE if call.port in OWN_PORTS else config.catch_all
        return _with_cluster(config, Result(listener=VIRTUAL_OUTBOUND, cluster=cluster))
    chain = match_chain(listener, call, address)
    if chain is None:
        return Result(listener=listener.name, error="no filter chains matched")
    if not chain.is_http:
        cluster = chain.cluster or (chain.weighted[0][0] if chain.weighted else "")
        return _with_cluster(config, Result(listener=listener.name, chain=chain, cluster=cluster))
    if call.protocol != "http":
        return Result(listener=listener.name, chain=chain, route=chain.route, error="protocol error")
    return _http(config, listener, chain, call)


def _with_cluster(config: ProxyConfig, result: Result) -> Result:
    return Result(result.listener, result.chain, result.route, result.vhost, result.cluster, result.direct_status,
                  result.error, config.clusters.get(result.cluster))


def _contains(cidr: str, address: str) -> int | None:
    """The prefix length when `address` is in `cidr`, else None."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
        return net.prefixlen if ipaddress.ip_address(address) in net else None
    except ValueError:
        return None


def _sni_rank(names: tuple[str, ...], sni: str) -> int | None:
    """Envoy's server_names: exact beats wildcard, a longer wildcard beats a shorter one."""
    best = None
    for name in names:
        if name == sni:
            return 10_000
        if name.startswith("*.") and sni.endswith(name[1:]) and len(sni) > len(name) - 1:
            best = max(best or 0, len(name))
    return best


def match_chain(listener: Listener, call: Call, address: str) -> Chain | None:
    """Envoy's filter chain match; the default chain when no chain matches."""
    candidates = list(listener.chains)
    ranked = [(rank, c) for c in candidates if c.prefix_ranges
              for rank in [max((r for r in (_contains(p, address) for p in c.prefix_ranges) if r is not None),
                               default=None)] if rank is not None]
    if ranked:
        top = max(r for r, _ in ranked)
        candidates = [c for r, c in ranked if r == top]
    else:
        candidates = [c for c in candidates if not c.prefix_ranges]
    sni = call.host.lower() if call.protocol == "tls" and listener.tls_inspector else ""
    named = [(r, c) for c in candidates if c.server_names for r in [_sni_rank(c.server_names, sni)] if r is not None]
    if named:
        top = max(r for r, _ in named)
        candidates = [c for r, c in named if r == top]
    else:
        candidates = [c for c in candidates if not c.server_names]
    transport = "tls" if call.protocol == "tls" and listener.tls_inspector else "raw_buffer"
    exact = [c for c in candidates if c.transport == transport]
    candidates = exact or [c for c in candidates if not c.transport]
    alpn = _alpn(listener, call)
    chosen = [c for c in candidates if c.alpns and set(c.alpns) & set(alpn)]
    candidates = chosen or [c for c in candidates if not c.alpns]
    return candidates[0] if candidates else listener.default


def _alpn(listener: Listener, call: Call) -> tuple[str, ...]:
    if call.protocol == "tls" and listener.tls_inspector:
        return call.alpn
    if call.protocol == "http" and listener.http_inspector:
        return ("http/1.1",)
    return ()


def _domain_rank(domain: str, host: str) -> int | None:
    if domain == host:
        return 10_000
    if domain.startswith("*") and domain != "*" and host.endswith(domain[1:]) and len(host) > len(domain) - 1:
        return len(domain)
    if domain == "*":
        return 0
    return None


def _http(config: ProxyConfig, listener: Listener, chain: Chain, call: Call) -> Result:
    routes = config.routes.get(chain.route)
    base = Result(listener=listener.name, chain=chain, route=chain.route)
    if routes is None:
        return Result(base.listener, chain, chain.route, error="no route configuration")
    host = call.host.lower()
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host  # ignore_port_in_host_matching
    ranked = [(r, v) for v in routes.virtual_hosts for r in [max(
        (x for x in (_domain_rank(d.lower(), host) for d in v.domains) if x is not None), default=None)]
        if r is not None]
    if not ranked:
        return Result(base.listener, chain, chain.route, error="no virtual host matched")
    vhost = max(ranked, key=lambda x: x[0])[1]
    route = next((r for r in vhost.routes if (r.exact == call.path if r.exact else call.path.startswith(r.prefix))),
                 None)
    if route is None:
        return Result(base.listener, chain, chain.route, vhost.name, error="no route matched")
    if route.direct_status:
        return Result(base.listener, chain, chain.route, vhost.name, direct_status=route.direct_status)
    cluster = route.cluster or (route.weighted[0][0] if route.weighted else "")
    return _with_cluster(config, Result(base.listener, chain, chain.route, vhost.name, cluster))
