"""Parse Istio YAML, or documents already loaded, into the typed model of `istio.objects`.

    objects, ignored = load_files(["deploy/"], namespace="app")

Parsing only checks shape (what the CRD schema would reject) and raises `IstioParseError` naming
the source and the field; unknown fields are ignored, as Istio's CRDs preserve them. Documents of
other kinds come back as `Ignored`. `yaml` is imported when YAML is read, not when this module is:
`egress-doctor --help` must stay light.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from egress_doctor.istio.authz_objects import AUTHORIZATION_POLICY, SECURITY_GROUP, SECURITY_VERSIONS
from egress_doctor.istio.authz_parse import parse_policy
from egress_doctor.istio.objects import (
    API_VERSIONS,
    GROUP,
    KINDS,
    KUBE_SERVICE,
    ClientTls,
    Destination,
    DestinationRule,
    EgressListener,
    Gateway,
    HttpMatch,
    HttpRoute,
    Ignored,
    IstioObject,
    IstioParseError,
    KubeService,
    Location,
    Meta,
    Mode,
    PortTrafficPolicy,
    Protocol,
    Resolution,
    RouteDestination,
    Server,
    ServerPort,
    ServiceEntry,
    ServicePort,
    Sidecar,
    SidecarPort,
    Subset,
    TcpMatch,
    TcpRoute,
    TlsMatch,
    TlsRoute,
    TrafficPolicy,
    VirtualService,
    WorkloadEntry,
)
from egress_doctor.istio.spec import Spec, mapping


def load_files(paths: Iterable[str | Path], namespace: str) -> tuple[list[IstioObject], list[Ignored]]:
    """Parse every YAML file (multi-document, `kind: List` too); directories are read *.yaml/*.yml."""
    objects: list[IstioObject] = []
    ignored: list[Ignored] = []
    for path in _expand(paths):
        got, skipped = parse_yaml(_read_bounded(path), namespace, source=str(path))
        objects += got
        ignored += skipped
    return objects, ignored


def _read_bounded(path: Path) -> str:
    from egress_doctor.istio.yaml_load import MAX_FILE_BYTES

    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise IstioParseError(f"larger than {MAX_FILE_BYTES >> 20} MiB", str(path))
    return data.decode("utf-8")


def _expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def parse_yaml(text: str, namespace: str, source: str = "<yaml>") -> tuple[list[IstioObject], list[Ignored]]:
    try:
        import yaml  # here, not at import time: `egress-doctor --help` must stay light

        from egress_doctor.istio.yaml_load import load_all

        documents = [d for d in load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise IstioParseError(f"not valid YAML: {exc}", source) from exc
    return parse_documents(documents, namespace, source)


def parse_documents(
    documents: Sequence[Any], namespace: str, source: str = "<objects>"
) -> tuple[list[IstioObject], list[Ignored]]:
    objects: list[IstioObject] = []
    ignored: list[Ignored] = []
    for index, doc in enumerate(_flatten(documents)):
        where = f"{source}#{index}"
        parsed = parse_object(doc, namespace, where)
        if isinstance(parsed, Ignored):
            ignored.append(parsed)
        else:
            objects.append(parsed)
    return objects, ignored


def _flatten(documents: Sequence[Any]) -> Iterator[Any]:
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def parse_object(doc: Any, namespace: str, source: str = "") -> IstioObject | Ignored:
    """One Kubernetes object; `namespace` is used when metadata.namespace is absent."""
    if not isinstance(doc, dict):
        raise IstioParseError("a document must be a mapping", source)
    kind = str(doc.get("kind", ""))
    api_version = str(doc.get("apiVersion", ""))
    group, _, version = api_version.partition("/")
    if api_version == "v1" and kind == KUBE_SERVICE:
        return _kube_service(_meta(doc, kind, api_version, namespace, source),
                             Spec(mapping(doc.get("spec", {}), "spec", source), source))
    if group == SECURITY_GROUP and kind == AUTHORIZATION_POLICY:
        if version not in SECURITY_VERSIONS:
            raise IstioParseError(f"unknown version {api_version} for {kind}", source)
        metadata = mapping(doc.get("metadata", {}), "metadata", source)
        return parse_policy(_meta(doc, kind, api_version, namespace, source),
                            Spec(mapping(doc.get("spec", {}), "spec", source), source),
                            mapping(metadata.get("annotations"), "metadata.annotations", source))
    if group != GROUP or kind not in KINDS:
        return Ignored(source, kind or "?", f"not an egress kind ({api_version or 'no apiVersion'} {kind})")
    if version not in API_VERSIONS:
        raise IstioParseError(f"unknown version {api_version} for {kind}", source)
    meta = _meta(doc, kind, api_version, namespace, source)
    spec = mapping(doc.get("spec", {}), "spec", source)
    builder = _BUILDERS[kind]
    return builder(meta, Spec(spec, source))


def _meta(doc: dict[str, Any], kind: str, api_version: str, namespace: str, source: str) -> Meta:
    metadata = mapping(doc.get("metadata", {}), "metadata", source)
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise IstioParseError(f"{kind} without metadata.name", source)
    return Meta(
        kind=kind,
        name=name,
        namespace=str(metadata.get("namespace") or namespace),
        api_version=api_version,
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        source=source,
        created=str(metadata.get("creationTimestamp") or ""),
    )


def _service_entry(meta: Meta, spec: Spec) -> ServiceEntry:
    return ServiceEntry(
        meta=meta,
        hosts=spec.strings("hosts"),
        addresses=spec.strings("addresses"),
        ports=tuple(_service_port(p) for p in spec.items("ports")),
        location=spec.enum("location", Location, Location.MESH_EXTERNAL),
        resolution=spec.enum("resolution", Resolution, Resolution.NONE),
        endpoints=tuple(_workload_entry(e) for e in spec.items("endpoints")),
        export_to=spec.strings("exportTo"),
        workload_selector=spec.selector("workloadSelector"),
    )


def _service_port(spec: Spec) -> ServicePort:
    return ServicePort(
        number=spec.integer("number"),
        name=spec.string("name"),
        protocol_name=spec.string("protocol"),
        target_port=spec.integer("targetPort"),
    )


def _workload_entry(spec: Spec) -> WorkloadEntry:
    ports = spec.data.get("ports") or {}
    if not isinstance(ports, dict):
        raise spec.fail("ports", "must be a map of port name to number")
    return WorkloadEntry(
        address=spec.string("address"),
        ports={str(k): int(v) for k, v in ports.items()},
        labels=spec.labels("labels") or {},
        network=spec.string("network"),
    )


def _sidecar(meta: Meta, spec: Spec) -> Sidecar:
    policy: Mode | None = None
    if "outboundTrafficPolicy" in spec.data:
        policy_spec = spec.child("outboundTrafficPolicy", spec.data["outboundTrafficPolicy"])
        policy = policy_spec.enum("mode", Mode, Mode.REGISTRY_ONLY)
    return Sidecar(
        meta=meta,
        egress=tuple(_egress_listener(e) for e in spec.items("egress")),
        workload_selector=spec.selector("workloadSelector"),
        outbound_traffic_policy=policy,
        has_ingress=bool(spec.data.get("ingress")),
    )


def _egress_listener(spec: Spec) -> EgressListener:
    port = None
    if spec.data.get("port") is not None:
        p = spec.child("port", spec.data["port"])
        port = SidecarPort(number=p.integer("number"), protocol_name=p.string("protocol"),
                           name=p.string("name"))
    return EgressListener(hosts=spec.strings("hosts"), port=port, bind=spec.string("bind"))


def _client_tls(spec: Spec, name: str = "tls") -> ClientTls | None:
    if spec.data.get(name) is None:
        return None
    tls = spec.child(name, spec.data[name])
    return ClientTls(
        mode=tls.string("mode", "DISABLE") or "DISABLE",
        sni=tls.string("sni"),
        ca_certificates=tls.string("caCertificates"),
        credential_name=tls.string("credentialName"),
    )


def _traffic_policy(spec: Spec) -> TrafficPolicy | None:
    if spec.data.get("trafficPolicy") is None:
        return None
    policy = spec.child("trafficPolicy", spec.data["trafficPolicy"])
    ports = []
    for entry in policy.items("portLevelSettings"):
        port = entry.child("port", entry.data.get("port"))
        ports.append(PortTrafficPolicy(port=port.integer("number"), tls=_client_tls(entry)))
    return TrafficPolicy(tls=_client_tls(policy), port_level=tuple(ports))


def _destination_rule(meta: Meta, spec: Spec) -> DestinationRule:
    subsets = [Subset(name=sub.string("name"), labels=sub.labels("labels") or {}, policy=_traffic_policy(sub))
               for sub in spec.items("subsets")]
    return DestinationRule(
        meta=meta,
        host=spec.string("host"),
        policy=_traffic_policy(spec),
        subsets=tuple(subsets),
        export_to=spec.strings("exportTo"),
        workload_selector=spec.selector("workloadSelector", "matchLabels"),
    )


def _route_destinations(spec: Spec) -> tuple[RouteDestination, ...]:
    out = []
    for item in spec.items("route"):
        dest = item.child("destination", item.data.get("destination"))
        port = dest.child("port", dest.data.get("port"))
        out.append(RouteDestination(
            destination=Destination(host=dest.string("host"), subset=dest.string("subset"),
                                    port=port.integer("number")),
            weight=item.integer("weight"),
        ))
    return tuple(out)


def _tls_route(spec: Spec) -> TlsRoute:
    matches = tuple(
        TlsMatch(sni_hosts=m.strings("sniHosts"), port=m.integer("port"), gateways=m.strings("gateways"))
        for m in spec.items("match")
    )
    return TlsRoute(match=matches, route=_route_destinations(spec))


def _http_route(spec: Spec) -> HttpRoute:
    matches = []
    for m in spec.items("match"):
        uri = m.child("uri", m.data.get("uri"))
        matches.append(HttpMatch(prefix=uri.string("prefix"), exact=uri.string("exact"),
                                 port=m.integer("port"), gateways=m.strings("gateways")))
    return HttpRoute(match=tuple(matches), route=_route_destinations(spec), name=spec.string("name"))


def _virtual_service(meta: Meta, spec: Spec) -> VirtualService:
    return VirtualService(
        meta=meta,
        hosts=spec.strings("hosts"),
        gateways=spec.strings("gateways"),
        http=tuple(_http_route(r) for r in spec.items("http")),
        tls=tuple(_tls_route(r) for r in spec.items("tls")),
        export_to=spec.strings("exportTo"),
        tcp=tuple(_tcp_route(r) for r in spec.items("tcp")),
    )


def _tcp_route(spec: Spec) -> TcpRoute:
    matches = tuple(TcpMatch(port=m.integer("port"), gateways=m.strings("gateways")) for m in spec.items("match"))
    return TcpRoute(match=matches, route=_route_destinations(spec))


def _gateway(meta: Meta, spec: Spec) -> Gateway:
    servers = []
    for server in spec.items("servers"):
        port = server.child("port", server.data.get("port"))
        tls = server.child("tls", server.data.get("tls"))
        servers.append(Server(
            port=ServerPort(number=port.integer("number"), name=port.string("name"),
                            protocol_name=port.string("protocol"), target_port=port.integer("targetPort")),
            hosts=server.strings("hosts"), tls_mode=tls.string("mode"), name=server.string("name")))
    return Gateway(meta=meta, selector=spec.labels("selector") or {}, servers=tuple(servers))


def kube_port_protocol(name: str, app_protocol: str) -> str:
    """A Kubernetes Service port's protocol as istiod reads it: `appProtocol`, else the name's
    prefix before `-` (`http-web`, `tls`), else unset (sniffed). pkg/config/kube/conversion.go"""
    if app_protocol:
        return app_protocol
    prefix = name.split("-", 1)[0]
    return prefix if Protocol.parse(prefix) is not Protocol.UNSUPPORTED else ""


def _kube_service(meta: Meta, spec: Spec) -> KubeService:
    ports = []
    for port in spec.items("ports"):
        name = port.string("name")
        target = port.data.get("targetPort")
        number = port.integer("port")
        ports.append(ServicePort(number=number, name=name,
                                 protocol_name=kube_port_protocol(name, port.string("appProtocol")),
                                 target_port=target if isinstance(target, int) else number))
    return KubeService(meta=meta, ports=tuple(ports), cluster_ip=spec.string("clusterIP"),
                       selector=spec.labels("selector") or {})


_BUILDERS: dict[str, Any] = {
    "ServiceEntry": _service_entry,
    "Sidecar": _sidecar,
    "DestinationRule": _destination_rule,
    "VirtualService": _virtual_service,
    "Gateway": _gateway,
}
