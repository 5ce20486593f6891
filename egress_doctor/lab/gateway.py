"""The lab's egress gateway: a second real Envoy, configured from the model's gateway proxy
(istio.gateway_proxy, rendered by lab.translate.translate_gateway) for the pods labelled
`istio: egressgateway` in `istio-system`, as the istio-egressgateway chart deploys them.

Each of the gateway's listeners (`0.0.0.0_<targetPort>`) binds a loopback port of its own; the
sidecar's clusters for the gateway's Service (`istio-egressgateway.istio-system.svc.cluster.local`)
send to those ports (`Upstreams.services`), as kube-proxy would send a Service port to the pod's
targetPort. A pod port no listener serves stays a closed loopback port: the sidecar's connection
is refused, as it would be by a gateway pod with no listener on that port.

"Enforce" (only the gateway may leave, a NetworkPolicy or firewall refusing the pods' own
connections): the sidecar's direct clusters (and PassthroughCluster) point at a closed loopback
port, while the gateway's reach the fake AWS.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from egress_doctor.istio.objects import IstioObject, KubeService, MeshConfig, of_kind
from egress_doctor.istio.reach import EGRESS_GATEWAY_LABELS, assumed_services
from egress_doctor.istio.scope import Proxy, ProxyKind, Scope, proxy_scope
from egress_doctor.lab.envoy import EnvoyProcess, write_dynamic
from egress_doctor.lab.ports import LOOPBACK, free_port
from egress_doctor.lab.translate import EnvoyResources, LabPorts, translate_gateway
from egress_doctor.lab.upstreams import Endpoint, Upstreams

GATEWAY_NAMESPACE = "istio-system"


def gateway_proxy() -> Proxy:
    return Proxy(GATEWAY_NAMESPACE, dict(EGRESS_GATEWAY_LABELS), ProxyKind.GATEWAY)


def with_gateway_service(objects: Sequence[IstioObject]) -> list[IstioObject]:
    """The objects plus the gateway's Kubernetes Service when the routes name it but the objects
    lack it (the same assumption `check` makes reading a cluster: istio.reach.assumed_services)."""
    return [*objects, *assumed_services(tuple(objects))]


def closed_port() -> tuple[int, socket.socket]:
    """A loopback port nothing listens on — a connection to it is refused — and the socket that
    holds it (bound, never listening) so that nothing else takes it while the lab runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    return int(sock.getsockname()[1]), sock


@dataclass
class GatewayEnvoy:
    """The running gateway; launch() (re)configures it on the same ports."""

    directory: Path
    admin: int = field(default_factory=free_port)
    listener_ports: dict[tuple[str, int], int] = field(default_factory=dict)
    scope: Scope | None = None
    resources: EnvoyResources | None = None
    _envoy: EnvoyProcess | None = None
    _generation: int = 0
    _held: list[socket.socket] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin}"

    @property
    def pid(self) -> int | None:
        return self._envoy.pid if self._envoy else None

    @property
    def log_path(self) -> Path:
        return self.directory / "gateway-envoy.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _port(self, key: tuple[str, int]) -> int:
        if key not in self.listener_ports:
            self.listener_ports[key] = free_port()
        return self.listener_ports[key]

    def launch(self, objects: Sequence[IstioObject], mesh: MeshConfig, upstreams: Upstreams,
               istio_version: str, access_log: str | None) -> None:
        from egress_doctor.istio.gateway_proxy import build_gateway

        scope = proxy_scope(objects, gateway_proxy(), mesh)
        ports = {key: self._port(key) for key in build_gateway(scope).listeners}
        # translate binds a 0.0.0.0 listener on 80 / 443 to LabPorts.http / .tls: the same table
        if not self._held:
            self._held.append(closed_port()[1])
        lab_ports = LabPorts(http=self._port(("0.0.0.0", 80)), tls=self._port(("0.0.0.0", 443)),
                             catch_all=int(self._held[0].getsockname()[1]), admin=self.admin)
        resources = translate_gateway(scope, lab_ports, upstreams, ports, istio_version, access_log)
        self.stop()
        self.scope, self.resources = scope, resources
        if not resources.listeners:  # no Gateway selects the pods: nothing listens, connections refused
            return
        self._generation += 1
        bootstrap = write_dynamic(resources, self.directory / f"gateway-{self._generation}")
        self._envoy = EnvoyProcess(bootstrap, self.admin_url, self.log_path).start()

    def service_endpoints(self, objects: Sequence[IstioObject]) -> dict[str, Endpoint]:
        """`<service host>:<port>` → the loopback port of the gateway listener on its targetPort."""
        labels = gateway_proxy().labels or {}
        out = {}
        for svc in of_kind(objects, KubeService):
            if svc.meta.namespace != GATEWAY_NAMESPACE or not svc.selector:
                continue
            if not all(labels.get(k) == v for k, v in svc.selector.items()):
                continue
            for port in svc.ports:
                pod_port = port.target_port or port.number
                out[f"{svc.hostname}:{port.number}"] = Endpoint(LOOPBACK, self._port(("0.0.0.0", pod_port)))
        return out

    def stop(self) -> None:
        envoy, self._envoy = self._envoy, None
        if envoy is not None:
            envoy.stop()

    def close(self) -> None:
        self.stop()
        for sock in self._held:
            sock.close()
        self._held.clear()


def sidecar_upstreams(upstreams: Upstreams, services: dict[str, Endpoint], refused: int | None) -> Upstreams:
    """What the sidecar reaches: the gateway's Service on the gateway Envoy; with `refused` (a
    closed port: "only the gateway may leave"), AWS directly not at all: connection refused."""
    aws = Endpoint(LOOPBACK, refused) if refused is not None else upstreams.aws
    return replace(upstreams, aws=aws, services={**upstreams.services, **services})
