"""The model's clusters (istio.xds.Cluster) as Envoy clusters whose endpoints are loopback fakes.

`outbound|<port>|<subset>|<host>` typed by resolution (DNS: STRICT_DNS / LOGICAL_DNS; STATIC and
NONE: STATIC to the loopback fake the app would have reached, the Istio type kept in metadata),
with the TLS the model says the cluster originates; BlackHoleCluster STATIC without endpoints and
PassthroughCluster to the fake AWS. Each cluster carries Istio's own metadata
(`filter_metadata.istio`: its services, and `config`, the DestinationRule that configured it),
as a real sidecar's do.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from egress_doctor.istio.objects import Mode, Resolution, ServicePort
from egress_doctor.istio.registry import Service
from egress_doctor.istio.xds import BLACKHOLE, PASSTHROUGH, Cluster, ProxyConfig
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Endpoint, Upstreams

Json = dict[str, Any]

LAB_METADATA = "egress-doctor.lab"  # filter_metadata key for lab-only facts (the Istio original)
CONNECT_TIMEOUT = "10s"  # meshConfig.connectTimeout default


def lab_passthrough(ip: str) -> str:
    return f"lab|passthrough|{ip}"


def build_clusters(config: ProxyConfig, upstreams: Upstreams, notes: list[str]) -> list[Json]:
    clusters = [
        {"name": BLACKHOLE, "type": "STATIC", "connect_timeout": CONNECT_TIMEOUT},
        _static_cluster(PASSTHROUGH, [upstreams.aws] if upstreams.aws else [], "ORIGINAL_DST"),
    ]
    for ip in LINK_LOCAL_STANDINS:
        if (target := upstreams.for_ip(ip)) is not None and config.mode is Mode.ALLOW_ANY:
            clusters.append(_static_cluster(lab_passthrough(ip), [target], "ORIGINAL_DST"))
    for cluster in config.clusters.values():
        if cluster.service is None or cluster.port is None:
            continue
        built = _service_cluster(cluster, cluster.service, cluster.port, upstreams, notes)
        if cluster.tls is not None and cluster.tls.mode == "SIMPLE":
            built["transport_socket"] = _upstream_tls(cluster.tls.sni or cluster.service.hostname,
                                                      upstreams.ca_bundle)
        clusters.append(built)
    return clusters


def _service_cluster(cluster: Cluster, svc: Service, port: ServicePort, upstreams: Upstreams,
                     notes: list[str]) -> Json:
    name = cluster.name
    targets = _targets(svc, port, upstreams)
    istio: Json = {"services": [{"host": svc.hostname, "name": svc.hostname, "namespace": svc.namespace}]}
    if cluster.rule is not None:
        rule = cluster.rule.rule
        istio["config"] = (f"/apis/networking.istio.io/v1/namespaces/{rule.meta.namespace}/destination-rule/"
                           f"{rule.meta.name}")
    if svc.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        kind = "STRICT_DNS" if svc.resolution is Resolution.DNS or len(targets) != 1 else "LOGICAL_DNS"
        if not targets:
            notes.append(f"{name}: no endpoint the lab can reach; the cluster stays empty (DNS failure)")
        built: Json = {"name": name, "type": kind, "connect_timeout": CONNECT_TIMEOUT, "lb_policy": "ROUND_ROBIN",
                       "dns_lookup_family": "V4_ONLY", "respect_dns_ttl": True,
                       "load_assignment": _load_assignment(name, targets)}
    else:
        built = _static_cluster(name, targets, cluster.istio_type)
    built.setdefault("metadata", {}).setdefault("filter_metadata", {})["istio"] = istio
    return built


def _targets(svc: Service, port: ServicePort, upstreams: Upstreams) -> list[Endpoint]:
    """Where the lab sends what istiod would send to the service's endpoints or original dst."""
    if (served_here := upstreams.services.get(f"{svc.hostname}:{port.number}")) is not None:
        return [served_here]
    original_dst = svc.resolution is Resolution.NONE
    if original_dst or (not svc.endpoints and svc.resolution is not Resolution.STATIC):
        for address in svc.addresses:
            if target := upstreams.for_ip(address.split("/")[0]):
                return [target]
        # NONE forwards to whatever the app dialled: for a wildcard under amazonaws.com, AWS.
        wildcard_aws = original_dst and svc.hostname.startswith("*.") and ".amazonaws.com" in svc.hostname
        served = upstreams.serves(svc.hostname) or wildcard_aws
        return [upstreams.aws] if served and upstreams.aws else []
    out: list[Endpoint] = []
    for ep in svc.endpoints:
        number = ep.ports.get(port.name, port.target_port or port.number)
        out += _endpoint_target(ep.address, number, svc, upstreams)
    return out


def _endpoint_target(address: str, port: int, svc: Service, upstreams: Upstreams) -> list[Endpoint]:
    if target := upstreams.for_ip(address):
        return [target]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return [upstreams.aws] if upstreams.aws and upstreams.serves(address) else []
    if ip.is_loopback:
        return [Endpoint(address, port)]
    return [upstreams.aws] if upstreams.aws and upstreams.serves(svc.hostname) else []


def _static_cluster(name: str, targets: list[Endpoint], istio_type: str) -> Json:
    return {"name": name, "type": "STATIC", "connect_timeout": CONNECT_TIMEOUT, "lb_policy": "ROUND_ROBIN",
            "load_assignment": _load_assignment(name, targets),
            "metadata": {"filter_metadata": {LAB_METADATA: {"istio_type": istio_type}}}}


def _load_assignment(name: str, targets: list[Endpoint]) -> Json:
    endpoints = [{"endpoint": {"address": socket_address(t.address, t.port)}} for t in dict.fromkeys(targets)]
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}] if endpoints else []}


def _upstream_tls(sni: str, ca_bundle: str) -> Json:
    context: Json = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                              "UpstreamTlsContext", "sni": sni}
    if ca_bundle:
        context["common_tls_context"] = {"validation_context": {"trusted_ca": {"filename": ca_bundle}}}
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def socket_address(ip: str, port: int) -> Json:
    return {"socket_address": {"address": ip, "port_value": port}}
