"""Read this pod's sidecar from its Envoy admin port into a `SidecarView`.

    view = read_sidecar("http://127.0.0.1:15000", deadline=time.monotonic() + 3)

What is read (each call bounded by `timeout`, default 1 s, and by the run's `deadline`):

* `/server_info`: Envoy's build and the bootstrap node, whose `metadata.ISTIO_VERSION` is the
  Istio release (`pkg/model/proxy.go`); `state` LIVE is the fallback readiness;
* `:15021/healthz/ready` (the pilot-agent readiness Envoy serves in a pod);
* `/config_dump?resource=dynamic_listeners`: `virtualOutbound`'s catch-all chain (BlackHoleCluster
  under REGISTRY_ONLY, PassthroughCluster under ALLOW_ANY) and the SNI filter chains;
* `/config_dump?resource=dynamic_route_configs`: virtual hosts per route (route `"80"` ends with
  `block_all` or `allow_any`, the cross-check of the mode);
* `/config_dump?resource=dynamic_active_clusters&mask=…` and `/clusters?format=json`: cluster
  types and the endpoints each cluster has now.

The presence of BlackHoleCluster / PassthroughCluster in `/clusters` says nothing about the mode
(both always exist); only the catch-all chain and route "80" do. A missing or unreachable admin
port is a `SidecarView(present=False)` with a warning, never an exception. Parsing is split from
fetching (`parse_*` are pure) so both can be tested on their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from egress_doctor.istio.mesh_config import Mode
from egress_doctor.model import Symptom
from egress_doctor.net import json_body
from egress_doctor.net.http import HttpResult, request
from egress_doctor.sources.envoy_queries import VIRTUAL_OUTBOUND, read_requests
from egress_doctor.sources.view import BLACKHOLE, PASSTHROUGH, ClusterInfo, SidecarView, SniChain, VirtualHostInfo

DEFAULT_ADMIN_URL = "http://127.0.0.1:15000"
READY_PORT = 15021  # Envoy's static readiness listener in an injected pod
CALL_TIMEOUT = 1.0  # seconds per admin call (connect and each read)
SMALL_BODY = 1 << 20  # /server_info carries every extension's name: ~130 KB
# Each answer is asked only for the probed ports and hosts (read_requests); parsed, it takes 10-25
# times its size (a 3.7 MiB dump of filter chains adds ~50 MiB to the peak RSS, 56 → 106 MiB:
# benchmarks/hostile_inputs.py): 4 MiB fit the 256 MiB the manifests (k8s/) give egress-doctor.
LARGE_BODY = 4 << 20
CATCH_ALL_CHAIN = "virtualOutbound-catchall-tcp"
CATCH_ALL_VHOSTS = ("block_all", "allow_any")

Json = dict[str, Any]


class _Unavailable(Exception):
    """An admin call got no usable answer (the reason is the message)."""


@dataclass(frozen=True)
class _Budget:
    deadline: float | None
    timeout: float

    def left(self) -> float:
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, self.deadline - time.monotonic())


def read_sidecar(
    admin_url: str = DEFAULT_ADMIN_URL,
    *,
    deadline: float | None = None,
    timeout: float = CALL_TIMEOUT,
    ready_url: str | None = None,
    hosts: Sequence[tuple[str, int]] = (),
) -> SidecarView:
    """Everything the admin port says about outbound traffic; never raises for I/O trouble.

    ready_url: default `http://<admin host>:15021/healthz/ready`.
    hosts: (host, port) the run used; their coverage is kept in `view.hosts`.
    """
    admin_url = admin_url.rstrip("/")
    view = SidecarView(admin_url=admin_url)
    budget = _Budget(deadline, timeout)
    try:
        info = _get_json(admin_url + "/server_info", budget, SMALL_BODY)
    except _Unavailable as exc:
        view.warnings.append(f"no Envoy admin at {admin_url} ({exc}): no sidecar in this pod, or its admin "
                             "port is elsewhere (--envoy-admin)")
        return view
    view.present = True
    view.envoy_version, view.istio_version = parse_server_info(info)
    view.ready = _readiness(ready_url or default_ready_url(admin_url), info, budget, view.notes)
    _read_config(view, budget, list(dict.fromkeys(hosts)))
    view.hosts = [view.coverage(host, port) for host, port in dict.fromkeys(hosts)]
    return view


def default_ready_url(admin_url: str) -> str:
    host = urlsplit(admin_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{READY_PORT}/healthz/ready"


def _read_config(view: SidecarView, budget: _Budget, hosts: Sequence[tuple[str, int]]) -> None:
    """Each answer is parsed, reduced to the facts kept, and dropped before the next is read: the
    peak memory is one answer's, not four."""
    listeners = ListenerFacts([], {}, None)
    types: dict[str, tuple[str, tuple[str, ...]]] = {}
    endpoints: dict[str, tuple[tuple[str, ...], int]] = {}
    read: set[str] = set()
    for name, step_url in read_requests(view.admin_url, hosts):
        try:
            body = _get_json(step_url, budget, LARGE_BODY)
        except _Unavailable as exc:
            view.warnings.append(f"could not read the sidecar's {name} ({exc}); conclusions from them are missing")
            continue
        read.add(name)
        if name == "listeners":
            listeners = parse_listeners(body)
        elif name == "routes":
            view.http_routes = parse_routes(body)
        elif name == "cluster config":
            types = cluster_types(body)
        else:
            endpoints = cluster_endpoints(body)
        del body
    view.listeners = listeners.names
    view.sni_chains = listeners.sni_chains
    view.clusters = join_clusters(types, endpoints)
    if "listeners" in read or "routes" in read:
        view.outbound_mode, view.mode_evidence, mode_warnings = decide_mode(
            listeners.catch_all_cluster, view.http_routes.get("80")
        )
        view.warnings += mode_warnings


def _readiness(ready_url: str, info: Json, budget: _Budget, notes: list[str]) -> bool | None:
    result = _get(ready_url, budget, 4096)
    if result.ok and result.evidence.status is not None:
        return result.evidence.status == 200
    state = info.get("state")
    if isinstance(state, str):
        notes.append(f"{ready_url} did not answer ({_why(result)}); readiness is Envoy's state {state}")
        return state == "LIVE"
    return None


# ---- fetching --------------------------------------------------------------------------------------


def _get(url: str, budget: _Budget, max_body: int) -> HttpResult:
    """One admin call, over by min(its timeout, the run's deadline) whatever the peer does: the
    whole exchange is bounded (headers that drip one byte a second included), not each read."""
    left = budget.left()
    if left <= 0:
        raise _Unavailable("the run's deadline expired before the call")
    result = request("GET", url, connect_timeout=left, read_timeout=left, max_body=max_body,
                     deadline=time.monotonic() + left)
    if result.symptom is Symptom.DEADLINE and left >= budget.timeout:
        result.symptom = Symptom.HTTP_TIMEOUT  # the call's own timeout ran out, not the run's deadline
    return result


def _why(result: HttpResult) -> str:
    if result.error is not None:
        return str(result.symptom or result.error.type)
    return f"HTTP {result.evidence.status}"


def _get_json(url: str, budget: _Budget, max_body: int) -> Json:
    result = _get(url, budget, max_body)
    if not result.ok:
        raise _Unavailable(_why(result))
    if result.evidence.status != 200:
        raise _Unavailable(f"HTTP {result.evidence.status}")
    if result.evidence.body_truncated:
        raise _Unavailable(f"answer larger than {max_body >> 20} MB")
    try:
        data = json_body.loads(result.body)
    except json_body.JsonLimitError as exc:
        raise _Unavailable(f"not parsed: {exc}") from None
    except ValueError as exc:
        raise _Unavailable(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Unavailable("not a JSON object")
    return data


# ---- parsing (pure) -------------------------------------------------------------------------------


def parse_server_info(info: Json) -> tuple[str | None, str | None]:
    """(Envoy version "1.40.0", Istio version "1.30.3") from /server_info."""
    raw = info.get("version")
    envoy = None
    if isinstance(raw, str) and raw:
        parts = raw.split("/")  # "<sha>/1.40.0/Clean/RELEASE/BoringSSL"
        envoy = parts[1] if len(parts) > 1 else raw
    node = info.get("node") if isinstance(info.get("node"), dict) else {}
    metadata = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    istio = metadata.get("ISTIO_VERSION")
    return envoy, istio if isinstance(istio, str) and istio else None


@dataclass
class ListenerFacts:
    names: list[str]
    sni_chains: dict[int, list[SniChain]]
    catch_all_cluster: str | None  # virtualOutbound's catch-all tcp_proxy cluster


def _configs(dump: Json) -> Iterator[Json]:
    configs = dump.get("configs")
    for item in configs if isinstance(configs, list) else ():
        if isinstance(item, dict):
            yield item


def _listener_port(name: str) -> int | None:
    """`0.0.0.0_443` / `10.96.0.1_443` → 443 (istiod names listeners `<bind>_<port>`)."""
    _, sep, port = name.rpartition("_")
    return int(port) if sep and port.isdigit() else None


def _tcp_cluster(chain: Json) -> str:
    for f in chain.get("filters") or ():
        config = f.get("typed_config") if isinstance(f, dict) else None
        if isinstance(config, dict) and isinstance(config.get("cluster"), str):
            return str(config["cluster"])
    return ""


def parse_listeners(dump: Json) -> ListenerFacts:
    facts = ListenerFacts([], {}, None)
    for item in _configs(dump):
        listener = (item.get("active_state") or {}).get("listener") or item.get("listener")
        if not isinstance(listener, dict):
            continue
        name = str(listener.get("name", ""))
        facts.names.append(name)
        chains = [c for c in listener.get("filter_chains") or () if isinstance(c, dict)]
        if name == VIRTUAL_OUTBOUND:
            catch_all = next((c for c in chains if c.get("name") == CATCH_ALL_CHAIN), None)
            if catch_all is not None:
                facts.catch_all_cluster = _tcp_cluster(catch_all) or None
            continue
        port = _listener_port(name)
        for chain in chains:
            names = (chain.get("filter_chain_match") or {}).get("server_names") or ()
            if port is not None and names:
                facts.sni_chains.setdefault(port, []).append(
                    SniChain(name, tuple(str(n) for n in names), _tcp_cluster(chain)))
    return facts


def _route_clusters(vhost: Json) -> tuple[tuple[str, ...], int | None]:
    clusters: list[str] = []
    status = None
    for route in vhost.get("routes") or ():
        action = route.get("route") or {}
        if isinstance(action.get("cluster"), str):
            clusters.append(action["cluster"])
        for weighted in (action.get("weighted_clusters") or {}).get("clusters") or ():
            clusters.append(str(weighted.get("name", "")))
        direct = route.get("direct_response")
        if isinstance(direct, dict) and status is None:
            status = int(direct.get("status", 0)) or None
    return tuple(dict.fromkeys(clusters)), status


def parse_routes(dump: Json) -> dict[str, list[VirtualHostInfo]]:
    routes: dict[str, list[VirtualHostInfo]] = {}
    for item in _configs(dump):
        config = item.get("route_config")
        if not isinstance(config, dict):
            continue
        name = str(config.get("name", ""))
        vhosts = []
        for vhost in config.get("virtual_hosts") or ():
            clusters, status = _route_clusters(vhost)
            vhosts.append(VirtualHostInfo(name, str(vhost.get("name", "")),
                                          tuple(str(d) for d in vhost.get("domains") or ()), clusters, status))
        routes[name] = vhosts
    return routes


def _service_refs(cluster: Json) -> tuple[str, ...]:
    """`ns/host` of the Istio services behind a cluster (filter_metadata.istio.services)."""
    services = (((cluster.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}).get("services")
    refs = []
    for svc in services if isinstance(services, list) else ():
        if isinstance(svc, dict) and svc.get("host"):
            refs.append(f"{svc.get('namespace', '')}/{svc['host']}")
    return tuple(refs)


def _healthy(host: Json) -> bool:
    health = host.get("health_status") or {}
    failed = any(v is True for k, v in health.items() if k.startswith("failed") or k == "pending_dynamic_removal")
    return not failed and health.get("eds_health_status", "HEALTHY") in ("HEALTHY", "DEGRADED", "UNKNOWN")


def _endpoint(host: Json) -> str:
    address = (host.get("address") or {}).get("socket_address") or {}
    ip, port = address.get("address", ""), address.get("port_value", "")
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def cluster_types(config_dump: Json) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Cluster name → (type, owning services) from the masked cluster config dump."""
    types: dict[str, tuple[str, tuple[str, ...]]] = {}
    for item in _configs(config_dump):
        cluster = item.get("cluster")
        if isinstance(cluster, dict) and cluster.get("name"):
            kind = cluster.get("type") or ((cluster.get("cluster_type") or {}).get("name") or "")
            types[str(cluster["name"])] = (str(kind), _service_refs(cluster))
    return types


def cluster_endpoints(statuses: Json) -> dict[str, tuple[tuple[str, ...], int]]:
    """Cluster name → (endpoints, healthy count) from /clusters?format=json."""
    endpoints: dict[str, tuple[tuple[str, ...], int]] = {}
    for status in statuses.get("cluster_statuses") or ():
        if isinstance(status, dict) and status.get("name"):
            hosts = [h for h in status.get("host_statuses") or () if isinstance(h, dict)]
            endpoints[str(status["name"])] = (tuple(_endpoint(h) for h in hosts), sum(_healthy(h) for h in hosts))
    return endpoints


def join_clusters(types: dict[str, tuple[str, tuple[str, ...]]],
                  endpoints: dict[str, tuple[tuple[str, ...], int]]) -> dict[str, ClusterInfo]:
    out = {}
    for name in dict.fromkeys([*types, *endpoints]):
        kind, services = types.get(name, ("", ()))
        found, healthy = endpoints.get(name, ((), 0))
        out[name] = ClusterInfo(name, kind, found, healthy, services)
    return out


def parse_clusters(config_dump: Json, statuses: Json) -> dict[str, ClusterInfo]:
    """Types (and owning services) from the config dump, endpoints from /clusters?format=json."""
    return join_clusters(cluster_types(config_dump), cluster_endpoints(statuses))


def decide_mode(
    catch_all_cluster: str | None, route_80: list[VirtualHostInfo] | None
) -> tuple[Mode | None, list[str], list[str]]:
    """(mode, evidence lines, warnings) from virtualOutbound's catch-all and route "80"'s last vhost."""
    evidence: list[str] = []
    by_listener = by_route = None
    if catch_all_cluster in (BLACKHOLE, PASSTHROUGH):
        by_listener = Mode.REGISTRY_ONLY if catch_all_cluster == BLACKHOLE else Mode.ALLOW_ANY
        evidence.append(f"listener {VIRTUAL_OUTBOUND} chain {CATCH_ALL_CHAIN} → {catch_all_cluster}")
    last = route_80[-1] if route_80 else None
    if last is not None and last.name in CATCH_ALL_VHOSTS:
        by_route = Mode.REGISTRY_ONLY if last.name == "block_all" else Mode.ALLOW_ANY
        evidence.append(f'route "80" ends with virtual host {last.name}')
    warnings = []
    if by_listener and by_route and by_listener is not by_route:
        warnings.append(f"the sidecar's catch-all chain says {by_listener} but route \"80\" says {by_route}; "
                        f"reporting {by_listener}")
    mode = by_listener or by_route
    if mode is None:
        warnings.append("the sidecar's outbound mode could not be read (no virtualOutbound catch-all, no route 80)")
    return mode, evidence, warnings


def istio_api_for(istio_version: str | None) -> str | None:
    """networking.istio.io version to write for a release: v1 from 1.22, v1beta1 for 1.5-1.21,
    v1alpha3 below; None when the version is unknown or unreadable."""
    if not istio_version:
        return None
    parts = istio_version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return None
    if (major, minor) >= (1, 22):
        return "v1"
    return "v1beta1" if (major, minor) >= (1, 5) else "v1alpha3"
