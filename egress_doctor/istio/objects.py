"""The one typed model of the Istio objects that decide a sidecar's egress.

`networking.istio.io` ServiceEntry, Sidecar, DestinationRule and VirtualService in versions v1,
v1beta1 and v1alpha3 (one schema, three names) are modelled as frozen dataclasses. Only the fields
that change egress are kept; everything else is ignored, as Istio's CRDs preserve unknown fields.
Defaults are the proto's enum zero values: `resolution: NONE`, `location: MESH_EXTERNAL`, and a
Sidecar `outboundTrafficPolicy: {}` means REGISTRY_ONLY.

YAML and dicts become these objects in `istio.parse`, which only checks shape (what the CRD schema
would reject); istiod's webhook rules live in `istio.validation`, what a proxy sees in
`istio.scope`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from egress_doctor.istio.authz_objects import AuthorizationPolicy
from egress_doctor.istio.mesh_config import ROOT_NAMESPACE, MeshConfig, Mode

__all__ = ["ROOT_NAMESPACE", "MeshConfig", "Mode"]  # re-exported: the mesh settings live in istio.mesh_config

GROUP = "networking.istio.io"
API_VERSIONS = ("v1", "v1beta1", "v1alpha3")
KINDS = ("ServiceEntry", "Sidecar", "DestinationRule", "VirtualService", "Gateway")
# A Kubernetes Service (core/v1) is a service of the registry too (the egress gateway's, …).
KUBE_SERVICE = "Service"
MESH_GATEWAY = "mesh"  # the reserved gateway name that means "all sidecars"


class IstioParseError(ValueError):
    """An object the API server itself would refuse (wrong shape), with where it came from."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class Resolution(enum.StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    DYNAMIC_DNS = "DYNAMIC_DNS"


class Location(enum.StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


class Protocol(enum.StrEnum):
    """pkg/config/protocol: parsed case-insensitively; anything unknown or empty is UNSUPPORTED
    (istiod then sniffs the protocol)."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP_PROXY = "HTTP_PROXY"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNSUPPORTED = "UnsupportedProtocol"

    @classmethod
    def parse(cls, value: str) -> Protocol:
        return _PROTOCOLS.get(value.lower(), cls.UNSUPPORTED)

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.TLS)

    @property
    def is_tcp(self) -> bool:
        return self in (Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS,
                        Protocol.MYSQL)


_PROTOCOLS = {p.value.lower(): p for p in Protocol if p is not Protocol.UNSUPPORTED}


@dataclass(frozen=True)
class Meta:
    kind: str
    name: str
    namespace: str
    api_version: str = f"{GROUP}/v1"
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # "file.yaml#2" (document index), for messages
    created: str = ""  # metadata.creationTimestamp (RFC 3339); istiod orders conflicts by it

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    number: int
    name: str
    protocol_name: str = ""  # as written; see .protocol
    target_port: int = 0

    @property
    def protocol(self) -> Protocol:
        return Protocol.parse(self.protocol_name)


@dataclass(frozen=True)
class WorkloadEntry:
    address: str
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""


@dataclass(frozen=True)
class ServiceEntry:
    meta: Meta
    hosts: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    location: Location = Location.MESH_EXTERNAL
    resolution: Resolution = Resolution.NONE
    endpoints: tuple[WorkloadEntry, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SidecarPort:
    number: int
    protocol_name: str = ""
    name: str = ""


@dataclass(frozen=True)
class EgressListener:
    hosts: tuple[str, ...]
    port: SidecarPort | None = None
    bind: str = ""


@dataclass(frozen=True)
class Sidecar:
    meta: Meta
    egress: tuple[EgressListener, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    # None: not set, the mesh value applies. Set but without mode: REGISTRY_ONLY (enum zero).
    outbound_traffic_policy: Mode | None = None
    has_ingress: bool = False


@dataclass(frozen=True)
class ClientTls:
    mode: str = "DISABLE"  # DISABLE | SIMPLE | MUTUAL | ISTIO_MUTUAL
    sni: str = ""
    ca_certificates: str = ""
    credential_name: str = ""


@dataclass(frozen=True)
class PortTrafficPolicy:
    """`trafficPolicy.portLevelSettings[]`: settings for one port. A port-level entry does not
    inherit the rule-level `tls`: without its own, that port has none (GetPortLevelTrafficPolicy)."""

    port: int
    tls: ClientTls | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    tls: ClientTls | None = None
    port_level: tuple[PortTrafficPolicy, ...] = ()

    def tls_for(self, port: int) -> ClientTls | None:
        """The TLS settings that apply on `port`: the port's entry when there is one."""
        for entry in self.port_level:
            if entry.port == port:
                return entry.tls
        return self.tls


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: TrafficPolicy | None = None

    @property
    def tls(self) -> ClientTls | None:
        return self.policy.tls if self.policy else None


@dataclass(frozen=True)
class DestinationRule:
    meta: Meta
    host: str
    policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None

    @property
    def tls(self) -> ClientTls | None:
        return self.policy.tls if self.policy else None


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    port: int = 0


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True)
class TlsMatch:
    sni_hosts: tuple[str, ...] = ()
    port: int = 0
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsRoute:
    match: tuple[TlsMatch, ...]
    route: tuple[RouteDestination, ...]


@dataclass(frozen=True)
class HttpMatch:
    prefix: str = ""  # uri.prefix; "" with exact "" means any
    exact: str = ""  # uri.exact
    port: int = 0
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpRoute:
    match: tuple[HttpMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class TcpMatch:
    port: int = 0
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class TcpRoute:
    match: tuple[TcpMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class VirtualService:
    meta: Meta
    hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ()
    http: tuple[HttpRoute, ...] = ()
    tls: tuple[TlsRoute, ...] = ()
    export_to: tuple[str, ...] = ()
    tcp: tuple[TcpRoute, ...] = ()

    @property
    def has_tcp(self) -> bool:
        return bool(self.tcp)

    @property
    def applies_to_sidecars(self) -> bool:
        """No gateways means `mesh`; otherwise only when `mesh` is listed."""
        return not self.gateways or MESH_GATEWAY in self.gateways


@dataclass(frozen=True)
class ServerPort:
    number: int
    name: str = ""
    protocol_name: str = ""
    target_port: int = 0

    @property
    def protocol(self) -> Protocol:
        return Protocol.parse(self.protocol_name)


@dataclass(frozen=True)
class Server:
    """One `Gateway.spec.servers[]` entry; `hosts` as written (`ns/host` or `host`)."""

    port: ServerPort
    hosts: tuple[str, ...]
    tls_mode: str = ""  # PASSTHROUGH | SIMPLE | MUTUAL | ISTIO_MUTUAL | AUTO_PASSTHROUGH | ""
    name: str = ""


@dataclass(frozen=True)
class Gateway:
    meta: Meta
    selector: Mapping[str, str] = field(default_factory=dict)
    servers: tuple[Server, ...] = ()


@dataclass(frozen=True)
class KubeService:
    """A Kubernetes Service (core/v1): host `<name>.<namespace>.svc.cluster.local`."""

    meta: Meta
    ports: tuple[ServicePort, ...] = ()  # target_port: the pod port
    cluster_ip: str = ""  # "" or "None" (headless)
    selector: Mapping[str, str] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return f"{self.meta.name}.{self.meta.namespace}.svc.{CLUSTER_DOMAIN}"


CLUSTER_DOMAIN = "cluster.local"

IstioObject = ServiceEntry | Sidecar | DestinationRule | VirtualService | Gateway | KubeService | AuthorizationPolicy


@dataclass(frozen=True)
class Ignored:
    """A document that is not one of the kinds above (a Deployment, a Gateway, ...)."""

    source: str
    kind: str
    reason: str


T = TypeVar("T")


def of_kind(objects: Iterable[object], kind: type[T]) -> list[T]:
    return [o for o in objects if isinstance(o, kind)]
