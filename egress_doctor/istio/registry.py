"""The service registry as istiod builds it, and who may see what (exportTo). Pure.

- One `Service` per host of a ServiceEntry (serviceentry/conversion.go), and one per Kubernetes
  Service (`<name>.<ns>.svc.cluster.local`); ServiceEntries for the same host in the same
  namespace with the same resolution, selector and exportTo are one service with the union of
  their ports (sidecar.go canMergeServices); a Kubernetes Service wins over a ServiceEntry for
  the same host and namespace (sidecar.go appendSidecarServices).
- Creation order decides conflicts (oldest first); objects without a creationTimestamp keep the
  order they were read in.
- exportTo (push_context.go serviceExportTo / IsServiceVisible): an empty exportTo takes the
  mesh's `defaultServiceExportTo`; `*` is everyone, `.` the object's namespace, a name that
  namespace, `~` alone nobody. VirtualServices and DestinationRules follow their own defaults
  (`exported`); a DestinationRule's default honours only `.` and `*` (setDestinationRules).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from egress_doctor.istio.objects import (
    IstioObject,
    KubeService,
    Location,
    MeshConfig,
    Resolution,
    ServiceEntry,
    ServicePort,
    WorkloadEntry,
)

WILDCARD_IP = "0.0.0.0"


@dataclass(frozen=True)
class Service:
    """istiod's model.Service: one host, its ports and addresses, where it comes from."""

    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    origin: ServiceEntry | KubeService
    order: int  # creation order: lower is older
    addresses: tuple[str, ...] = ()  # IPs or CIDRs (ServiceEntry addresses, a ClusterIP)
    resolution: Resolution = Resolution.NONE
    location: Location = Location.MESH_EXTERNAL
    export_to: tuple[str, ...] = ()  # as written; empty: the mesh default
    endpoints: tuple[WorkloadEntry, ...] = ()

    @property
    def ref(self) -> str:
        return self.origin.meta.ref

    @property
    def is_kube(self) -> bool:
        return isinstance(self.origin, KubeService)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)

    @property
    def listen_address(self) -> str:
        """GetAddressForProxy: the first address (a CIDR stays a CIDR), else 0.0.0.0."""
        return _normalised(self.addresses[0]) if self.addresses else WILDCARD_IP

    @property
    def extra_addresses(self) -> tuple[str, ...]:
        return tuple(_normalised(a) for a in self.addresses[1:])


def _normalised(address: str) -> str:
    """A /32 (or /128) CIDR is a plain IP (serviceentry/conversion.go)."""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return address
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _creation_key(obj: IstioObject, index: int) -> tuple[str, int]:
    return (obj.meta.created or "~", index)  # "~" sorts after any timestamp: unknown is newest


def by_creation(objects: Sequence[IstioObject]) -> list[IstioObject]:
    """Oldest first (istiod's sortConfigByCreationTime); read order breaks ties."""
    return [o for _, o in sorted(((_creation_key(o, i), o) for i, o in enumerate(objects)), key=lambda x: x[0])]


def build_services(objects: Iterable[IstioObject]) -> list[Service]:
    """Every service of the registry, oldest first (merged as istiod merges them)."""
    ordered = by_creation(list(objects))
    services: list[Service] = []
    for order, obj in enumerate(ordered):
        if isinstance(obj, ServiceEntry):
            for host in obj.hosts:
                services.append(Service(host, obj.meta.namespace, obj.ports, obj, order, obj.addresses,
                                        obj.resolution, obj.location, obj.export_to, obj.endpoints))
        elif isinstance(obj, KubeService):
            address = () if obj.cluster_ip in ("", "None") else (obj.cluster_ip,)
            resolution = Resolution.NONE if obj.cluster_ip == "None" else Resolution.STATIC
            services.append(Service(obj.hostname, obj.meta.namespace, obj.ports, obj, order, address,
                                    resolution, Location.MESH_INTERNAL))
    return _merged(services)


def _mergeable(a: Service, b: Service) -> bool:
    if not isinstance(a.origin, ServiceEntry) or not isinstance(b.origin, ServiceEntry):
        return False
    return (a.resolution == b.resolution and set(a.export_to) == set(b.export_to)
            and a.origin.workload_selector == b.origin.workload_selector)


def _merged(services: list[Service]) -> list[Service]:
    out: list[Service] = []
    index: dict[tuple[str, str], int] = {}
    for svc in services:
        key = (svc.hostname, svc.namespace)
        if key not in index:
            index[key] = len(out)
            out.append(svc)
            continue
        current = out[index[key]]
        if svc.is_kube and not current.is_kube:
            out[index[key]] = svc  # a Kubernetes Service takes the host; the entry's ports are lost
        elif _mergeable(current, svc):
            extra = tuple(p for p in svc.ports if current.port(p.number) is None)
            out[index[key]] = Service(current.hostname, current.namespace, current.ports + extra, current.origin,
                                      current.order, current.addresses, current.resolution, current.location,
                                      current.export_to, current.endpoints + svc.endpoints)
        # else: not mergeable; istiod keeps the first for this host and namespace
    return out


def effective_export(export_to: Sequence[str], default: Sequence[str]) -> frozenset[str]:
    return frozenset(export_to or default)


def exported(export_to: frozenset[str], object_namespace: str, namespace: str) -> bool:
    """Does an object in `object_namespace` with this (effective) exportTo reach `namespace`?"""
    if export_to == {"~"}:
        return False
    return "*" in export_to or ("." in export_to and object_namespace == namespace) or namespace in export_to


def service_visible(svc: Service, namespace: str, mesh: MeshConfig) -> bool:
    """IsServiceVisible."""
    return exported(effective_export(svc.export_to, mesh.default_service_export_to), svc.namespace, namespace)


def service_export_reach(svc: Service, mesh: MeshConfig) -> tuple[str, ...]:
    """The exportTo that applies (written, else the mesh default), in the order written."""
    return tuple(svc.export_to or mesh.default_service_export_to)
