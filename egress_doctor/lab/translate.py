"""The model's proxy configuration (istio.outbound / istio.gateway_proxy: what istiod would push)
rendered as Envoy's own resources, rebound to loopback. The lab decides nothing about Istio: every
listener, filter chain, route and cluster comes from the model; this module only writes them in
Envoy's terms and moves them onto addresses a rootless process can serve.

What the lab changes (see docs/lab.md): `0.0.0.0_80`, `0.0.0.0_443` and `virtualOutbound` bind
fixed loopback ports (the app reaches them through connect-to rules, not iptables); when Istio
would have no `0.0.0.0_80`/`0.0.0.0_443`, those ports are extra addresses of `virtualOutbound`,
which is what iptables would have done; a listener bound to a link-local address on port 80 (a
metadata ServiceEntry with `addresses` and a TCP or TLS port) binds that address's stand-in, where
the app's connection lands; any other listener binds a loopback port only when the
caller hands one (`listener_ports`, the conformance runner does), else it keeps
`bind_to_port: false` as istiod writes it; link-local IPs in virtual host domains also get their
loopback stand-in (127.169.254.254 for 169.254.169.254); every upstream is a loopback fake
(`lab.clusters`), and virtual hosts name themselves in a response header (`x-egress-doctor-vhost`)
so a client can tell which one answered.

Listeners are built here; routes in `lab.routes`, clusters in `lab.clusters`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from egress_doctor.istio.gateway_proxy import build_gateway
from egress_doctor.istio.objects import Mode
from egress_doctor.istio.outbound import build_sidecar
from egress_doctor.istio.scope import Scope
from egress_doctor.istio.xds import (
    BLACKHOLE,
    HTTP_ALPNS,
    PASSTHROUGH,
    VIRTUAL_OUTBOUND,
    WILDCARD,
    Chain,
    Listener,
    ProxyConfig,
    RouteConfig,
)
from egress_doctor.lab.clusters import LAB_METADATA, Json, build_clusters, socket_address
from egress_doctor.lab.rbac import with_rbac
from egress_doctor.lab.routes import catch_all_only, route_config
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Upstreams

ISTIO_VERSION = "1.30.3"
CATCH_ALL_CHAIN = "virtualOutbound-catchall-tcp"


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
    proxy: ProxyConfig | None = None  # what the model said; the resources render it
    # where each Istio listener (bind, port) can be dialled in the lab: (loopback address, port)
    addresses: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)


def translate(scope: Scope, ports: LabPorts, upstreams: Upstreams, istio_version: str = ISTIO_VERSION,
              assume_http_80: bool = True, access_log: str | None = "TEXT",
              listener_ports: Mapping[tuple[str, int], int] | None = None) -> EnvoyResources:
    """assume_http_80: a real cluster nearly always has some HTTP service on port 80, so istiod
    builds `0.0.0.0_80`; without one, port 80 falls to virtualOutbound (a TCP close).
    access_log: meshConfig.accessLogEncoding of `accessLogFile: /dev/stdout` (TEXT or JSON), or
    None: access logging off (Istio's default when neither the mesh config nor a Telemetry asks).
    listener_ports: loopback ports for listeners other than 0.0.0.0_80/443."""
    config = build_sidecar(scope)
    if assume_http_80 and (WILDCARD, 80) not in config.listeners:
        http = Listener(WILDCARD, 80, [Chain(route="80", transport="raw_buffer", alpns=HTTP_ALPNS)])
        http.finish(config.catch_all)
        config.listeners[(WILDCARD, 80)] = http
        config.routes["80"] = catch_all_only("80", scope.mode)
    return render(config, scope, ports, upstreams, _node(scope, ports, istio_version), listener_ports or {},
                  access_log)


def translate_gateway(scope: Scope, ports: LabPorts, upstreams: Upstreams,
                      listener_ports: Mapping[tuple[str, int], int], istio_version: str = ISTIO_VERSION,
                      access_log: str | None = "TEXT") -> EnvoyResources:
    """An egress gateway's configuration (istio.gateway_proxy), each listener on the loopback port
    `listener_ports` names (a gateway's listeners bind their ports; there is no capture)."""
    node = _node(scope, ports, istio_version)
    node["id"] = node["id"].replace("sidecar~", "router~", 1)
    return render(build_gateway(scope), scope, ports, upstreams, node, listener_ports, access_log)


def render(config: ProxyConfig, scope: Scope, ports: LabPorts, upstreams: Upstreams, node: Json,
           listener_ports: Mapping[tuple[str, int], int], access_log: str | None = "TEXT") -> EnvoyResources:
    notes: list[str] = []
    taken = {bind for (bind, port) in config.listeners if port == 80 and bind in LINK_LOCAL_STANDINS}
    addresses: dict[tuple[str, int], tuple[str, int]] = {}
    listeners = [_listener(entry, ports, listener_ports, notes, taken, addresses)
                 for entry in config.listeners.values()]
    if config.kind == "sidecar":
        listeners.append(_virtual_outbound(config, ports, taken))
    _set_access_logs(listeners, access_log)
    if config.kind != "sidecar":  # after the access logs: an RBAC filter has none
        bound = {port: listener_ports[(bind, port)] for (bind, port) in config.listeners
                 if (bind, port) in listener_ports}
        with_rbac(listeners, config.rbac_tcp, config.rbac_http, bound)
    return EnvoyResources(
        node=node,
        listeners=listeners,
        clusters=build_clusters(config, upstreams, notes),
        routes=[route_config(r, scope.mode, upstreams) for r in _ordered(config.routes)],
        admin={"address": socket_address(ports.address, ports.admin)},
        notes=notes,
        proxy=config,
        addresses=addresses,
    )


def _ordered(routes: Mapping[str, RouteConfig]) -> list[RouteConfig]:
    return [routes[name] for name in sorted(routes, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))]


# ---- listeners -----------------------------------------------------------------------------------


def _chain(chain: Chain, listener: str = "") -> Json:
    if chain.route:
        filters = [_hcm(chain.route, listener)]
    elif chain.weighted:
        filters = [_weighted(chain.weighted)]
    else:
        filters = [tcp_proxy(chain.cluster)]
    out: Json = {"filters": filters}
    match: Json = {}
    names = [n for n in chain.server_names if n != "*"]
    if names:
        match["server_names"] = sorted(names)
    if chain.transport:
        match["transport_protocol"] = chain.transport
    if chain.alpns:
        match["application_protocols"] = list(chain.alpns)
    if chain.prefix_ranges:
        match["prefix_ranges"] = [_cidr(c) for c in sorted(chain.prefix_ranges)]
    if match:
        out["filter_chain_match"] = match
    if chain.name:
        out["name"] = chain.name
    if chain.config:
        out["metadata"] = {"filter_metadata": {"istio": {"config": chain.config}}}
    return out


def _hcm(route: str, listener: str) -> Json:
    # istiod names the HCM's stats after its listener, `outbound_0.0.0.0_80;` (the `;` ends the
    # prefix for its tag extraction: pilot/pkg/networking/util DelimitedStatsPrefix)
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": f"outbound_{listener or route};",
        "rds": {"route_config_name": route, "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "use_remote_address": False,
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "access_log": [_access_log()],
    }
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}


def tcp_proxy(cluster: str) -> Json:
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": cluster, "cluster": cluster, "access_log": [_access_log()]}}


def _weighted(clusters: tuple[tuple[str, int], ...]) -> Json:
    proxy = tcp_proxy(clusters[0][0])
    config = proxy["typed_config"]
    del config["cluster"]
    config["weighted_clusters"] = {"clusters": [{"name": n, "weight": w or 1} for n, w in clusters]}
    return proxy


def _listener(entry: Listener, ports: LabPorts, extra: Mapping[tuple[str, int], int], notes: list[str],
              taken: set[str], addresses: dict[tuple[str, int], tuple[str, int]]) -> Json:
    listener: Json = {"name": entry.name, "traffic_direction": "OUTBOUND", "listener_filters_timeout": "0s",
                      "continue_on_listener_filters_timeout": True, "metadata": {
                          "filter_metadata": {LAB_METADATA: {"istio_address": f"{entry.bind}:{entry.port}"}}}}
    lab_port = {80: ports.http, 443: ports.tls}.get(entry.port) if entry.bind == WILDCARD else None
    lab_port = lab_port or extra.get((entry.bind, entry.port))
    standin = LINK_LOCAL_STANDINS.get(entry.bind) if entry.port == 80 else None
    if standin is not None:
        # a link-local VIP: its stand-in is where the app's connection lands, as the original
        # destination would hand it to this listener rather than to 0.0.0.0_80
        listener["address"] = socket_address(standin, ports.http)
        addresses[(entry.bind, entry.port)] = (standin, ports.http)
    elif lab_port:
        listener["address"] = socket_address(ports.address, lab_port)
        addresses[(entry.bind, entry.port)] = (ports.address, lab_port)
        if entry.bind == WILDCARD and entry.port == 80:
            listener["additional_addresses"] = _standin_addresses(ports.http, taken)
    else:
        listener["address"] = socket_address(entry.bind, entry.port)
        listener["bind_to_port"] = False
        notes.append(f"listener {entry.name} matches the destination address only; the lab cannot dial it "
                     "(no iptables)")
    filters = []
    if entry.tls_inspector:
        filters.append(_listener_filter("tls_inspector", "tls_inspector.v3.TlsInspector"))
    if entry.http_inspector:
        filters.append(_listener_filter("http_inspector", "http_inspector.v3.HttpInspector"))
    if filters:
        listener["listener_filters"] = filters
    listener["filter_chains"] = [_chain(c, entry.name) for c in entry.chains]
    if entry.default is not None:
        listener["default_filter_chain"] = _chain(entry.default, entry.name)
    return listener


def _virtual_outbound(config: ProxyConfig, ports: LabPorts, taken: set[str]) -> Json:
    extra = []
    if (WILDCARD, 443) not in config.listeners:
        extra.append({"address": socket_address(ports.address, ports.tls)})
    if (WILDCARD, 80) not in config.listeners:
        extra += [{"address": socket_address(ports.address, ports.http)}, *_standin_addresses(ports.http, taken)]
    blackhole = _chain(Chain(cluster=BLACKHOLE, name="virtualOutbound-blackhole"))
    blackhole["filter_chain_match"] = {"destination_port": 15001}
    catch_all = PASSTHROUGH if config.mode is Mode.ALLOW_ANY else BLACKHOLE
    listener: Json = {
        "name": VIRTUAL_OUTBOUND,
        "address": socket_address(ports.address, ports.catch_all),
        "traffic_direction": "OUTBOUND",
        "filter_chains": [blackhole, _chain(Chain(cluster=catch_all, name=CATCH_ALL_CHAIN))],
        "metadata": {"filter_metadata": {LAB_METADATA: {"istio_address": "0.0.0.0:15001",
                                                        "use_original_dst": True}}},
    }
    if extra:
        listener["additional_addresses"] = extra
    return listener


def _listener_filter(name: str, type_suffix: str) -> Json:
    return {"name": f"envoy.filters.listener.{name}", "typed_config": {
        "@type": f"type.googleapis.com/envoy.extensions.filters.listener.{type_suffix}"}}


def _standin_addresses(port: int, taken: set[str]) -> list[Json]:
    """The link-local stand-ins on port 80, but those a VIP listener of their own holds."""
    return [{"address": socket_address(standin, port)} for ip, standin in LINK_LOCAL_STANDINS.items()
            if ip not in taken]


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
)  # pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat
# pilot/pkg/model/telemetry_logging.go EnvoyJSONLogFormatIstio (accessLogEncoding: JSON), in its order.
_ACCESS_LOG_JSON = {
    "start_time": "%START_TIME%", "route_name": "%ROUTE_NAME%", "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%", "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%", "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%", "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%", "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%", "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}
ACCESS_LOG_ENCODINGS = ("TEXT", "JSON")
ACCESS_LOG_PATH = "/dev/stdout"  # meshConfig.accessLogFile as Istio's profiles set it: the container log


def _access_log(encoding: str = "TEXT") -> Json:
    """FileAccessLogFromMeshConfig: a file access log to /dev/stdout in Istio's default format."""
    if encoding == "JSON":
        log_format: Json = {"json_format": _ACCESS_LOG_JSON, "json_format_options": {"sort_properties": False}}
    else:
        log_format = {"text_format_source": {"inline_string": _ACCESS_LOG_FORMAT}}
    return {"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": ACCESS_LOG_PATH, "log_format": log_format}}


def _set_access_logs(listeners: list[Json], encoding: str | None) -> None:
    """Every HCM and tcp_proxy logs in `encoding`, or (None) not at all, as istiod configures them."""
    if encoding is not None and encoding not in ACCESS_LOG_ENCODINGS:
        raise ValueError(f"access log encoding must be one of {ACCESS_LOG_ENCODINGS} or None, not {encoding!r}")
    for listener in listeners:
        chains = [*listener.get("filter_chains", []), *([listener["default_filter_chain"]]
                                                        if "default_filter_chain" in listener else [])]
        for f in (f for chain in chains for f in chain.get("filters", [])):
            config = f.get("typed_config", {})
            if encoding is None:
                config.pop("access_log", None)
            else:
                config["access_log"] = [_access_log(encoding)]


def _node(scope: Scope, ports: LabPorts, istio_version: str) -> Json:
    ns = scope.namespace
    return {
        "id": f"sidecar~{ports.address}~egress-doctor-lab.{ns}~{ns}.svc.cluster.local",
        "cluster": f"egress-doctor-lab.{ns}",
        "metadata": {
            "ISTIO_VERSION": istio_version, "NAMESPACE": ns, "NAME": "egress-doctor-lab",
            "WORKLOAD_NAME": "egress-doctor-lab", "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local",
            "INTERCEPTION_MODE": "REDIRECT", "LABELS": dict(scope.proxy.labels or {"app": "egress-doctor-lab"}),
            "EGRESS_DOCTOR_LAB": {"mode": str(scope.mode), "http_port": ports.http, "tls_port": ports.tls,
                                  "catch_all_port": ports.catch_all},
        },
    }

