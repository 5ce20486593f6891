"""What egress-doctor knows about the mesh around one pod: a plain, read-only data model.

Two sources fill it, and the diagnosis reads it without caring which:

* `SidecarView`: what **this** pod's Envoy really has, read from its admin port
  (`sources.envoy_admin.read_sidecar`): version, readiness, the effective outbound mode, clusters with
  their endpoints, SNI filter chains and HTTP virtual hosts.
* `MeshView.objects` / `.mesh` / pod facts: *why* it has it — the Istio objects (from the
  Kubernetes API, `sources.kube`, or from files, `analyze -f`), parsed by `istio.parse` into `istio.objects`'s model.

Every field is optional in spirit: a view with `sidecar=None` (no admin port) or `objects=None`
(no cluster access) still feeds the rules that can use what is there. Nothing here does I/O.

    MeshView(sidecar=read_sidecar(url, deadline), objects=objs, mesh=MeshConfig(),
             pod_namespace="payments", source="cluster")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from egress_doctor.istio.mesh_config import MeshConfig, Mode

if TYPE_CHECKING:
    from egress_doctor.istio.objects import IstioObject

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
AMBIENT_LABEL = "istio.io/dataplane-mode"  # namespace (or pod) label; value "ambient"
WAYPOINT_LABEL = "istio.io/use-waypoint"

Source = Literal["cluster", "files"]


def cluster_name(port: int, host: str, subset: str = "") -> str:
    """istiod's outbound cluster name: `outbound|443||sts.us-east-1.amazonaws.com`."""
    return f"outbound|{port}|{subset}|{host}"


def parse_cluster_name(name: str) -> tuple[str, int, str, str] | None:
    """('outbound', 443, '', 'sts.us-east-1.amazonaws.com'), or None for BlackHoleCluster & co."""
    parts = name.split("|")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2], parts[3]


def host_matches(host: str, pattern: str) -> bool:
    """Does an Envoy domain / SNI pattern (`*.ddb.us-east-1.amazonaws.com`, `*`) match `host`?"""
    host, pattern = host.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class ClusterInfo:
    """One Envoy cluster as /clusters and the cluster config dump describe it."""

    name: str
    type: str = ""  # STRICT_DNS | LOGICAL_DNS | EDS | STATIC | ORIGINAL_DST | "" (unknown)
    endpoints: tuple[str, ...] = ()  # "ip:port" of every host /clusters lists
    healthy: int = 0  # endpoints whose health_flags are "healthy"
    services: tuple[str, ...] = ()  # "ns/host" of the Istio services behind it (filter_metadata.istio)

    @property
    def parsed(self) -> tuple[str, int, str, str] | None:
        return parse_cluster_name(self.name)

    @property
    def host(self) -> str | None:
        parsed = self.parsed
        return parsed[3] if parsed else None

    @property
    def port(self) -> int | None:
        parsed = self.parsed
        return parsed[1] if parsed else None

    @property
    def resolves_by_dns(self) -> bool:
        """STRICT_DNS / LOGICAL_DNS: no endpoints here means Envoy's DNS lookup found nothing.
        ORIGINAL_DST clusters list hosts only after traffic, so an empty one proves nothing."""
        return self.type in ("STRICT_DNS", "LOGICAL_DNS")


@dataclass(frozen=True)
class SniChain:
    """A filter chain that matches TLS server names (a TLS/HTTPS ServiceEntry port)."""

    listener: str  # "0.0.0.0_443"
    server_names: tuple[str, ...]
    cluster: str = ""  # tcp_proxy cluster ("" for weighted or non-tcp chains)


@dataclass(frozen=True)
class VirtualHostInfo:
    """A virtual host of an HTTP route configuration (route "80" holds port 80's services)."""

    route: str  # "80"
    name: str  # "imds.aws.internal:80", or block_all / allow_any (the last one)
    domains: tuple[str, ...]
    clusters: tuple[str, ...] = ()  # clusters its routes send to
    direct_status: int | None = None  # direct_response status (block_all: 502)


@dataclass(frozen=True)
class HostCoverage:
    """What this sidecar has for one host:port the SDK contacted."""

    host: str
    port: int
    cluster: ClusterInfo | None = None  # outbound|<port>||<host>, exact
    wildcard_cluster: ClusterInfo | None = None  # outbound|<port>||*.<suffix> covering it
    sni_chain: SniChain | None = None  # a chain whose server_names match the host
    virtual_host: VirtualHostInfo | None = None  # a vhost (not the catch-all) whose domains match

    @property
    def covered(self) -> bool:
        """The sidecar has an entry that would carry this host (not the catch-all)."""
        return bool(self.cluster or self.wildcard_cluster or self.sni_chain or self.virtual_host)

    @property
    def effective_cluster(self) -> ClusterInfo | None:
        return self.cluster or self.wildcard_cluster


@dataclass
class SidecarView:
    """This pod's Envoy, as its admin port describes it. `present=False`: nothing answered."""

    admin_url: str
    present: bool = False
    ready: bool | None = None  # :15021/healthz/ready (None: could not tell)
    istio_version: str | None = None  # node metadata ISTIO_VERSION
    envoy_version: str | None = None  # /server_info version
    outbound_mode: Mode | None = None  # from virtualOutbound's catch-all, cross-checked with route "80"
    mode_evidence: list[str] = field(default_factory=list)  # how the mode was decided
    clusters: dict[str, ClusterInfo] = field(default_factory=dict)
    sni_chains: dict[int, list[SniChain]] = field(default_factory=dict)  # listener port → chains
    http_routes: dict[str, list[VirtualHostInfo]] = field(default_factory=dict)  # route name → vhosts
    listeners: list[str] = field(default_factory=list)  # listener names
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth showing that are not problems
    hosts: list[HostCoverage] = field(default_factory=list)  # the entries for each host the run used
    # (host, port) → upstream connects that failed on outbound|port||host while the probes ran
    # (upstream_cx_connect_fail before and after them): refused or unreachable beyond the sidecar
    run_connect_failures: dict[tuple[str, int], int] = field(default_factory=dict)

    def cluster(self, host: str, port: int, subset: str = "") -> ClusterInfo | None:
        return self.clusters.get(cluster_name(port, host, subset))

    def coverage(self, host: str, port: int) -> HostCoverage:
        """Exact cluster, covering wildcard cluster, SNI chain and virtual host for host:port."""
        wildcard = next(
            (c for c in self.clusters.values()
             if c.port == port and (c.host or "").startswith("*") and host_matches(host, c.host or "")),
            None,
        )
        chain = next(
            (ch for ch in self.sni_chains.get(port, ())
             if any(host_matches(host, name) for name in ch.server_names)),
            None,
        )
        vhost = next(
            (v for v in self.http_routes.get(str(port), ())
             if v.name not in ("block_all", "allow_any")
             and any(host_matches(host, d.rsplit(":", 1)[0] if d.count(":") == 1 else d) for d in v.domains)),
            None,
        )
        return HostCoverage(host, port, self.cluster(host, port), wildcard, chain, vhost)

    def similar_entries(self, host: str, port: int) -> list[str]:
        """Outbound cluster hosts on the same port, for "it has one for dynamodb.us-east-1…"."""
        return sorted({c.host for c in self.clusters.values()
                       if c.port == port and c.host and c.host != host and c.parsed
                       and c.parsed[0] == "outbound" and not c.parsed[2]})


@dataclass(frozen=True)
class GatewayInfo:
    """A networking.istio.io Gateway, reduced to what an egress route through it needs."""

    name: str
    namespace: str
    selector: Mapping[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()  # every server's hosts, as written ("ns/host" or "host")
    ports: tuple[int, ...] = ()

    @property
    def ref(self) -> str:
        return f"Gateway {self.namespace}/{self.name}"


@dataclass
class MeshView:
    """Everything known about the mesh for the pod under diagnosis (see the module docstring)."""

    sidecar: SidecarView | None = None
    objects: Sequence[IstioObject] | None = None  # None: not read (no cluster access, no -f)
    mesh: MeshConfig | None = None  # None: unknown; the rules then assume Istio's defaults
    pod_namespace: str | None = None
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] | None = None  # None: unknown (every Sidecar selector may apply)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    source: Source | None = None
    read_errors: list[str] = field(default_factory=list)  # what could not be read, one line each
    # The objects as read (apiVersion/kind/metadata/spec dicts) by `Meta.ref` ("ServiceEntry ns/name"),
    # when available: fixes that edit an existing object keep the fields the typed model drops.
    manifests: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # networking.istio.io Gateways (not part of the egress model in mesh.istio); None: not read.
    gateways: Sequence[GatewayInfo] | None = None

    @property
    def ambient(self) -> bool:
        """The namespace (or pod) is enrolled in ambient mode: ztunnel, no sidecar."""
        labels = {**self.namespace_labels, **(self.pod_labels or {})}
        return labels.get(AMBIENT_LABEL) == "ambient"

    @property
    def has_sidecar(self) -> bool | None:
        """True/False when the admin port told; None when it was not read."""
        return None if self.sidecar is None else self.sidecar.present

    @property
    def mode(self) -> Mode | None:
        """The sidecar's effective mode when read, else None (the objects' view decides)."""
        return self.sidecar.outbound_mode if self.sidecar else None


def gateway_info(doc: Mapping[str, Any], namespace: str) -> GatewayInfo | None:
    """A Gateway manifest (any networking.istio.io version) → GatewayInfo; None for other kinds."""
    if doc.get("kind") != "Gateway" or not str(doc.get("apiVersion", "")).startswith("networking.istio.io/"):
        return None
    metadata = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    servers = [s for s in spec.get("servers") or () if isinstance(s, Mapping)]
    return GatewayInfo(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace") or namespace),
        selector={str(k): str(v) for k, v in (spec.get("selector") or {}).items()},
        hosts=tuple(str(h) for s in servers for h in s.get("hosts") or ()),
        ports=tuple(int((s.get("port") or {}).get("number", 0)) for s in servers),
    )
