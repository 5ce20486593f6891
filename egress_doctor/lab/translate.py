"""A pod's view of the mesh (mesh.visibility.PodView) in, Envoy resources out, built the way istiod
1.30 builds a sidecar's outbound config, rebound to loopback.

What mirrors istiod (pilot/pkg/networking/core/):
- listener.go buildSidecarOutboundListener / buildListenerFromEntry: `<bind>_<port>` listeners;
  HTTP services always on the wildcard with an HCM on RDS route `"<port>"` whose chain matches
  raw_buffer + `http/1.1`/`h2c` (so `http_inspector`), TLS services on the wildcard get one SNI
  chain each (tls.go), services with `addresses` get VIP listeners, CIDRs a prefix-range match;
  the default chain is `PassthroughFilterChain` (tcp_proxy to BlackHole/Passthrough).
- listener_builder.go: `virtualOutbound` with `virtualOutbound-blackhole` and
  `virtualOutbound-catchall-tcp`.
- httproute.go: virtual hosts `<host>:<port>` with domains = host + addresses
  (`IgnorePortInHostMatching`), a `default` route, and last `block_all` (direct 502) or
  `allow_any` (PassthroughCluster, timeout 0).
- cluster.go / conversion.go: `outbound|<port>|<subset>|<host>`, type by resolution,
  BlackHoleCluster STATIC without endpoints.

What the lab changes (see docs/lab.md): the wildcard listeners for 80 and 443 and
`virtualOutbound` bind real loopback ports (the app reaches them through connect-to rules, not
iptables); when Istio would have no `0.0.0.0_80`/`0.0.0.0_443`, those ports are extra addresses of
`virtualOutbound`, which is what iptables would have done; link-local IPs in `addresses` also add
their loopback stand-in (127.169.254.254 for 169.254.169.254) to the domains; every upstream is a
loopback fake, and ORIGINAL_DST clusters (NONE, PassthroughCluster) become STATIC ones to the fake
the app would have reached.

Listeners are built here; routes in `lab.routes`, clusters in `lab.clusters`, the loopback fakes
that stand in for the outside in `lab.upstreams`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.istio.objects import Mode, Protocol, ServicePort
from egress_doctor.istio.visibility import PodView, Service
from egress_doctor.lab.clusters import (
    BLACKHOLE,
    LAB_METADATA,
    PASSTHROUGH,
    Json,
    build_clusters,
    cluster_name,
    destination_cluster,
    socket_address,
)
from egress_doctor.lab.routes import route_config
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Upstreams

ISTIO_VERSION = "1.30.3"
VIRTUAL_OUTBOUND = "virtualOutbound"
PASSTHROUGH_CHAIN, CATCH_ALL_CHAIN = "PassthroughFilterChain", "virtualOutbound-catchall-tcp"
HTTP_ALPNS = ["http/1.1", "h2c"]  # plaintextHTTPALPNs without PILOT_HTTP10


@dataclass(frozen=True)
class LabPorts:
    """Loopback ports standing in for what iptables would capture (all on `address`)."""

    http: int  # stands in for 0.0.0.0_80 (and the link-local stand-ins, same port)
    tls: int  # stands in for 0.0.0.0_443
    catch_all: int  # stands in for virtualOutbound (15001)
    admin: int  # Envoy admin (15000 in a pod)
    address: str = "127.0.0.1"


@dataclass
class EnvoyResources:
    node: Json
    listeners: list[Json]
    clusters: list[Json]
    routes: list[Json]
    admin: Json
    notes: list[str] = field(default_factory=list)  # where the lab had to differ from istiod


@dataclass
class _Chain:
    filters: list[Json]
    server_names: tuple[str, ...] = ()
    alpns: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()
    name: str = ""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.server_names, self.alpns, self.cidrs)

    def envoy(self) -> Json:
        chain: Json = {"filters": self.filters}
        match: Json = {}
        if self.server_names:
            match["server_names"] = list(self.server_names)
        if self.alpns:
            match.update(transport_protocol="raw_buffer", application_protocols=list(self.alpns))
        if self.cidrs:
            match["prefix_ranges"] = [_cidr(c) for c in self.cidrs]
        if match:
            chain["filter_chain_match"] = match
        if self.name:
            chain["name"] = self.name
        return chain


@dataclass
class _Listener:
    bind: str
    port: int
    chains: list[_Chain] = field(default_factory=list)
    http: bool = False

    def add(self, chain: _Chain) -> None:
        if all(c.key != chain.key for c in self.chains):
            self.chains.append(chain)


def translate(view: PodView, ports: LabPorts, upstreams: Upstreams, istio_version: str = ISTIO_VERSION,
              assume_http_80: bool = True) -> EnvoyResources:
    """assume_http_80: a real cluster nearly always has some HTTP service on port 80, so istiod
    builds `0.0.0.0_80`; without one, port 80 falls to virtualOutbound (a TCP close)."""
    notes: list[str] = []
    listeners = _listener_entries(view, notes)
    if assume_http_80 and ("0.0.0.0", 80) not in listeners:
        listeners[("0.0.0.0", 80)] = _Listener("0.0.0.0", 80, [_http_chain(80)], http=True)
    http_ports = sorted({entry.port for entry in listeners.values() if entry.http})
    envoy_listeners = [_listener(entry, view.mode, ports) for entry in listeners.values()]
    envoy_listeners.append(_virtual_outbound(view.mode, ports, set(listeners)))
    return EnvoyResources(
        node=_node(view, ports, istio_version),
        listeners=envoy_listeners,
        clusters=build_clusters(view, upstreams, notes),
        routes=[route_config(view, port, upstreams) for port in http_ports],
        admin={"address": socket_address(ports.address, ports.admin)},
        notes=notes,
    )


# ---- listeners -----------------------------------------------------------------------------------


def _listener_entries(view: PodView, notes: list[str]) -> dict[tuple[str, int], _Listener]:
    entries: dict[tuple[str, int], _Listener] = {}
    for svc in view.services:
        for port in svc.ports:
            for bind, cidr in _binds(svc, port):
                entry = entries.setdefault((bind, port.number), _Listener(bind, port.number))
                _add_chains(entry, svc, port, cidr, view)
                if bind != "0.0.0.0" and not cidr:
                    notes.append(f"{svc.hostname}:{port.number}: listener {bind}_{port.number} matches the "
                                 "destination address only; the lab cannot dial it (no iptables)")
    return entries


def _binds(svc: Service, port: ServicePort) -> list[tuple[str, str]]:
    """(listener bind, CIDR match) per address; HTTP always binds the wildcard (listener.go)."""
    if port.protocol.is_http or not svc.addresses:
        return [("0.0.0.0", "")]
    out = []
    for address in svc.addresses:
        net = ipaddress.ip_network(address, strict=False)
        if net.num_addresses == 1:
            out.append((str(net.network_address), ""))
        else:
            out.append(("0.0.0.0", str(net)))
    return out


def _add_chains(entry: _Listener, svc: Service, port: ServicePort, cidr: str, view: PodView) -> None:
    proto = port.protocol
    if proto is Protocol.UDP:
        return
    if proto.is_http or proto is Protocol.UNSUPPORTED:
        entry.http = True
        entry.add(_http_chain(port.number))
    if proto.is_tls:
        for chain in _tls_chains(svc, port, cidr, entry.bind == "0.0.0.0" or bool(cidr), view):
            entry.add(chain)
    elif proto.is_tcp or proto is Protocol.UNSUPPORTED:
        cluster = cluster_name(port.number, svc.hostname)
        entry.add(_Chain([_tcp_proxy(cluster)], cidrs=(cidr,) if cidr else ()))


def _tls_chains(svc: Service, port: ServicePort, cidr: str, sni: bool, view: PodView) -> list[_Chain]:
    """VirtualService TLS routes for this host replace the automatic SNI chain (tls.go)."""
    chains = []
    for vs in view.virtual_services:
        if not any(h == svc.hostname for h in vs.hosts):
            continue
        for route in vs.tls:
            for match in route.match:
                if match.port not in (0, port.number) or (match.gateways and "mesh" not in match.gateways):
                    continue
                clusters = [(destination_cluster(d.destination, port.number, view), d.weight)
                            for d in route.route]
                proxy = _tcp_proxy(clusters[0][0]) if len(clusters) == 1 else _weighted(clusters)
                chains.append(_Chain([proxy], server_names=match.sni_hosts, cidrs=(cidr,) if cidr else ()))
    if chains:
        return chains
    cluster = cluster_name(port.number, svc.hostname)
    return [_Chain([_tcp_proxy(cluster)], server_names=(svc.hostname,) if sni else (),
                   cidrs=(cidr,) if cidr else ())]


def _http_chain(port: int) -> _Chain:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": f"outbound_0.0.0.0_{port}",
        "rds": {"route_config_name": str(port), "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "use_remote_address": False,
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "access_log": [_access_log()],
    }
    filters = [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    return _Chain(filters, alpns=tuple(HTTP_ALPNS))


def _tcp_proxy(cluster: str) -> Json:
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": cluster, "cluster": cluster, "access_log": [_access_log()]}}


def _weighted(clusters: list[tuple[str, int]]) -> Json:
    proxy = _tcp_proxy(clusters[0][0])
    config = proxy["typed_config"]
    del config["cluster"]
    config["weighted_clusters"] = {"clusters": [{"name": n, "weight": w or 1} for n, w in clusters]}
    return proxy


def _catch_all_filters(mode: Mode) -> list[Json]:
    return [_tcp_proxy(PASSTHROUGH if mode is Mode.ALLOW_ANY else BLACKHOLE)]


def _listener(entry: _Listener, mode: Mode, ports: LabPorts) -> Json:
    name = f"{entry.bind}_{entry.port}"
    listener: Json = {"name": name, "traffic_direction": "OUTBOUND", "listener_filters_timeout": "0s",
                      "continue_on_listener_filters_timeout": True, "metadata": {
                          "filter_metadata": {LAB_METADATA: {"istio_address": f"{entry.bind}:{entry.port}"}}}}
    lab_port = {80: ports.http, 443: ports.tls}.get(entry.port) if entry.bind == "0.0.0.0" else None
    if lab_port:
        listener["address"] = socket_address(ports.address, lab_port)
        if entry.port == 80:
            listener["additional_addresses"] = _standin_addresses(lab_port)
    else:
        listener["address"] = socket_address(entry.bind, entry.port)
        listener["bind_to_port"] = False
    filters = []
    if any(c.server_names for c in entry.chains):
        filters.append(_listener_filter("tls_inspector", "tls_inspector.v3.TlsInspector"))
    if any(c.alpns for c in entry.chains):
        filters.append(_listener_filter("http_inspector", "http_inspector.v3.HttpInspector"))
    if filters:
        listener["listener_filters"] = filters
    match_all = [c for c in entry.chains if not c.key[0] and not c.key[1] and not c.key[2]]
    others = [c for c in entry.chains if c not in match_all]
    if match_all and not others:
        listener["filter_chains"] = [match_all[0].envoy()]
    else:
        listener["filter_chains"] = [c.envoy() for c in others]
        default = match_all[0] if match_all else _Chain(_catch_all_filters(mode), name=PASSTHROUGH_CHAIN)
        listener["default_filter_chain"] = default.envoy()
    return listener


def _virtual_outbound(mode: Mode, ports: LabPorts, present: set[tuple[str, int]]) -> Json:
    extra = []
    if ("0.0.0.0", 443) not in present:
        extra.append({"address": socket_address(ports.address, ports.tls)})
    if ("0.0.0.0", 80) not in present:
        extra += [{"address": socket_address(ports.address, ports.http)}, *_standin_addresses(ports.http)]
    blackhole = _Chain([_tcp_proxy(BLACKHOLE)], name="virtualOutbound-blackhole").envoy()
    blackhole["filter_chain_match"] = {"destination_port": 15001}
    listener: Json = {
        "name": VIRTUAL_OUTBOUND,
        "address": socket_address(ports.address, ports.catch_all),
        "traffic_direction": "OUTBOUND",
        "filter_chains": [blackhole, _Chain(_catch_all_filters(mode), name=CATCH_ALL_CHAIN).envoy()],
        "metadata": {"filter_metadata": {LAB_METADATA: {"istio_address": "0.0.0.0:15001",
                                                        "use_original_dst": True}}},
    }
    if extra:
        listener["additional_addresses"] = extra
    return listener


def _listener_filter(name: str, type_suffix: str) -> Json:
    return {"name": f"envoy.filters.listener.{name}", "typed_config": {
        "@type": f"type.googleapis.com/envoy.extensions.filters.listener.{type_suffix}"}}


def _standin_addresses(port: int) -> list[Json]:
    return [{"address": socket_address(ip, port)} for ip in LINK_LOCAL_STANDINS.values()]


def _cidr(value: str) -> Json:
    net = ipaddress.ip_network(value, strict=False)
    return {"address_prefix": str(net.network_address), "prefix_len": net.prefixlen}


_ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)  # pilot/pkg/model/telemetry_logging.go default text format


def _access_log() -> Json:
    return {"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {"inline_string": _ACCESS_LOG_FORMAT}}}}
def _node(view: PodView, ports: LabPorts, istio_version: str) -> Json:
    ns = view.namespace
    return {
        "id": f"sidecar~{ports.address}~egress-doctor-lab.{ns}~{ns}.svc.cluster.local",
        "cluster": f"egress-doctor-lab.{ns}",
        "metadata": {
            "ISTIO_VERSION": istio_version, "NAMESPACE": ns, "NAME": "egress-doctor-lab",
            "WORKLOAD_NAME": "egress-doctor-lab", "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local",
            "INTERCEPTION_MODE": "REDIRECT", "LABELS": {"app": "egress-doctor-lab"},
            "EGRESS_DOCTOR_LAB": {"mode": str(view.mode), "http_port": ports.http, "tls_port": ports.tls,
                                  "catch_all_port": ports.catch_all},
        },
    }
