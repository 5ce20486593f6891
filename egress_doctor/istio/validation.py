"""istiod's validating-webhook rules that the CRD schema does not express.

Messages are istiod's own text, so a user can search for them. Source: istio/istio 1.30.3,
`pkg/config/validation/validation.go` (ValidateServiceEntry, ValidateSidecar, validateExportTo,
ValidateDestinationRule, ValidateVirtualService) and `pkg/config/validation/agent/validation.go`
(ValidateWildcardDomain, ValidateDNS1123Labels, ValidateFQDN, ValidatePartialWildCard,
ValidateNamespaceSlashWildcardHostname, ValidateIPSubnet). Only the rules that matter for egress
objects are here; each function returns every message, not just the first, like the webhook.

Note the IP-as-host message: ValidateWildcardDomain checks the first label ("169") as a wildcard
label and the *rest* with ValidateDNS1123Labels, so the webhook names "254.169.254", not the
whole address: `domain name "254.169.254" invalid (top level domain "254" cannot be all-numeric)`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from egress_doctor.istio.names import (
    fqdn_error,
    ip_subnet_error,
    is_dns1123_label,
    is_ip,
    partial_wildcard_error,
    quote,
    wildcard_domain_error,
)
from egress_doctor.istio.objects import (
    DestinationRule,
    IstioObject,
    Protocol,
    Resolution,
    ServiceEntry,
    Sidecar,
    VirtualService,
)


class Level(enum.StrEnum):
    ERROR = "error"  # the webhook refuses the object: it never reaches istiod's config
    WARNING = "warning"  # accepted, printed by kubectl as "Warning: ..."


@dataclass(frozen=True)
class ValidationMessage:
    level: Level
    message: str
    path: str = ""  # "spec.hosts[0]"

    def __str__(self) -> str:
        return f"{self.level}: {self.message}" + (f" ({self.path})" if self.path else "")


def validate(obj: IstioObject) -> list[ValidationMessage]:
    """Every webhook message for one object (errors and warnings)."""
    if isinstance(obj, ServiceEntry):
        return validate_service_entry(obj)
    if isinstance(obj, Sidecar):
        return validate_sidecar(obj)
    if isinstance(obj, DestinationRule):
        return validate_destination_rule(obj)
    if isinstance(obj, VirtualService):
        return validate_virtual_service(obj)
    return []  # Gateway, Kubernetes Service: the CRD and API schemas decide


def errors(messages: Iterable[ValidationMessage]) -> list[ValidationMessage]:
    return [m for m in messages if m.level is Level.ERROR]


def is_admitted(obj: IstioObject) -> bool:
    """Would `kubectl apply` succeed (warnings allowed)?"""
    return not errors(validate(obj))


def denial(obj: IstioObject) -> str | None:
    """The text kubectl prints when the webhook refuses the object, or None."""
    found = errors(validate(obj))
    if not found:
        return None
    detail = "; ".join(m.message for m in found)
    return (f'admission webhook "validation.istio.io" denied the request: '
            f"configuration is invalid: {detail}")


# ---- ServiceEntry ---------------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.messages: list[ValidationMessage] = []

    def error(self, message: str | None, path: str = "") -> None:
        if message:
            self.messages.append(ValidationMessage(Level.ERROR, message, path))

    def warn(self, message: str | None, path: str = "") -> None:
        if message:
            self.messages.append(ValidationMessage(Level.WARNING, message, path))


def validate_service_entry(se: ServiceEntry) -> list[ValidationMessage]:
    out = _Collector()
    _selector(out, se.workload_selector, "service entry")
    if se.workload_selector is not None and se.endpoints:
        out.error("only one of WorkloadSelector or Endpoints is allowed in Service Entry", "spec")
    _se_hosts(out, se)
    _se_addresses(out, se)
    _se_ports(out, se)
    _se_resolution(out, se)
    plain_ports = any(not (p.protocol.is_http or p.protocol.is_tls) for p in se.ports)
    if se.resolution is not Resolution.NONE and len(se.hosts) > 1 and plain_ports:
        out.error("multiple hosts provided with non-HTTP, non-TLS ports", "spec.ports")
    _export_to(out, se.meta.namespace, se.export_to, is_service_entry=True)
    return out.messages


def _selector(out: _Collector, selector: dict[str, str] | None, what: str) -> None:
    if selector is None:
        return
    path = "spec.workloadSelector"
    for key, value in selector.items():
        if not key:
            out.error(f"empty key is not supported in selector: {quote(f'{key}={value}')}", path)
        if "*" in key or "*" in value:
            out.error(f"wildcard is not supported in selector: {quote(f'{key}={value}')}", path)
    if not selector:
        out.warn(f"{what}: workload selector specified without labels, will be applied to all services in "
                 "namespace", path)


def _se_hosts(out: _Collector, se: ServiceEntry) -> None:
    if not se.hosts:
        out.error("service entry must have at least one host", "spec.hosts")
    for i, host in enumerate(se.hosts):
        path = f"spec.hosts[{i}]"
        if host == "*":
            out.error(f"invalid host {host}", path)
            continue
        out.error(wildcard_domain_error(host), path)
        if se.resolution is not Resolution.DYNAMIC_DNS:
            out.warn(partial_wildcard_error(host), path)


def _se_addresses(out: _Collector, se: ServiceEntry) -> None:
    for i, address in enumerate(se.addresses):
        out.error(ip_subnet_error(address), f"spec.addresses[{i}]")
    if any("/" in a for a in se.addresses) and se.resolution not in (Resolution.NONE, Resolution.STATIC):
        out.error("CIDR addresses are allowed only for NONE/STATIC resolution types", "spec.addresses")


def auto_allocates(se: ServiceEntry) -> bool:
    """istiod 1.30 v2 IP auto-allocation (PILOT_ENABLE_IP_AUTOALLOCATE, default on): not for NONE, not
    with user addresses, not with label networking.istio.io/enable-autoallocate-ip=false."""
    opted_out = se.meta.labels.get("networking.istio.io/enable-autoallocate-ip", "").lower() == "false"
    return se.resolution is not Resolution.NONE and not se.addresses and not opted_out


def _se_ports(out: _Collector, se: ServiceEntry) -> None:
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(se.ports):
        path = f"spec.ports[{i}]"
        if port.name in names:
            out.error(f"service entry port name {quote(port.name)} already defined", path)
        if port.number in numbers:
            out.error(f"service entry port {port.number} already defined", path)
        names.add(port.name)
        numbers.add(port.number)
        if port.target_port:
            out.error(_port_error(port.target_port), path)
        if not se.addresses and not auto_allocates(se) and port.protocol_name.upper() in ("", "TCP"):
            out.warn("addresses are required for ports serving TCP (or unset) protocol when IP "
                     "Autoallocation is not enabled", path)
        if not is_dns1123_label(port.name):
            out.error(f"invalid port name: {port.name}", path)
        if port.protocol_name and port.protocol is Protocol.UNSUPPORTED:
            out.error(f"unsupported protocol: {port.protocol_name}", path)
        out.error(_port_error(port.number), path)


def _port_error(number: int) -> str | None:
    return None if 1 <= number <= 65535 else f"port number {number} must be in the range 1..65535"


def _se_resolution(out: _Collector, se: ServiceEntry) -> None:
    port_names = {p.name for p in se.ports}
    if se.resolution is Resolution.NONE:
        if se.endpoints:
            out.error("no endpoints should be provided for resolution type none", "spec.endpoints")
        if se.workload_selector is not None:
            out.warn("workloadSelector should not be set when resolution mode is NONE",
                     "spec.workloadSelector")
    elif se.resolution is Resolution.STATIC:
        for i, ep in enumerate(se.endpoints):
            path = f"spec.endpoints[{i}]"
            if not ep.address and not ep.network:
                out.error("address is required", path)
            elif ep.address and not ep.address.startswith("unix://") and not is_ip(ep.address):
                out.error(f"endpoint address {quote(ep.address)} is not a valid IP address", path)
            _endpoint_ports(out, ep.ports, port_names, path)
    elif se.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        _se_dns(out, se, port_names)
    elif se.resolution is Resolution.DYNAMIC_DNS:
        _se_dynamic_dns(out, se)


def _endpoint_ports(out: _Collector, ports: dict[str, int], port_names: set[str], path: str) -> None:
    for name, number in ports.items():
        if name not in port_names:
            out.error(f"endpoint port {number} is not defined by the service entry", path)
        if not is_dns1123_label(name):
            out.error(f"invalid port name: {name}", path)
        out.error(_port_error(number), path)


def _se_dns(out: _Collector, se: ServiceEntry, port_names: set[str]) -> None:
    if not se.endpoints:
        for i, host in enumerate(se.hosts):
            if problem := fqdn_error(host):
                out.error("hosts must be FQDN or contain only prefix wildcards if no endpoints are provided "
                          f"for resolution mode {se.resolution}, {problem}", f"spec.hosts[{i}]")
                break
    if se.resolution is Resolution.DNS_ROUND_ROBIN and len(se.endpoints) > 1:
        out.error(f"there must only be 0 or 1 endpoint for resolution mode {se.resolution}", "spec.endpoints")
    for i, ep in enumerate(se.endpoints):
        path = f"spec.endpoints[{i}]"
        if not is_ip(ep.address) and fqdn_error(ep.address):
            out.error(f"endpoint address {quote(ep.address)} is not a valid FQDN or an IP address", path)
        _endpoint_ports(out, ep.ports, port_names, path)
    if se.addresses and len(se.hosts) > 1 and any(p.protocol.is_tcp for p in se.ports):
        out.warn("service entry can not have more than one host specified simultaneously with address and "
                 "tcp port", "spec.hosts")


def _se_dynamic_dns(out: _Collector, se: ServiceEntry) -> None:
    mode = se.resolution
    for i, host in enumerate(se.hosts):
        if not host.startswith("*"):
            out.error(f"host must be wildcarded for resolution mode {mode}", f"spec.hosts[{i}]")
    if se.addresses:
        out.error(f"addresses cannot be set for resolution type {mode}. HTTP route domains will only be "
                  "generatedfrom the hosts field values", "spec.addresses")
    if se.endpoints:
        out.error(f"endpoints cannot be set for resolution type {mode}. Destination IP address determined "
                  "from hostsfield values", "spec.endpoints")
    allowed = (Protocol.HTTP, Protocol.TLS, Protocol.GRPC, Protocol.HTTP2)
    if any(p.protocol not in allowed for p in se.ports):
        out.error(f"only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type {mode}",
                  "spec.ports")


# ---- exportTo -------------------------------------------------------------------------------------


def _export_to(out: _Collector, namespace: str, export_to: Sequence[str], is_service_entry: bool) -> None:
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        path = f"spec.exportTo[{i}]"
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                out.error(f"duplicate entries in exportTo: . and current namespace {namespace}", path)
            else:
                out.error(f"duplicate entries in exportTo for entry {entry}", path)
            continue
        if is_service_entry and entry == "~":
            seen.add(key)
        elif key == "~":
            out.error("exportTo ~ (none) is not allowed for Istio configuration objects", path)
        elif key not in (".", "*") and not is_dns1123_label(key):
            out.error("only .,*, or a valid DNS 1123 label is allowed as exportTo entry", path)
        else:
            seen.add(key)


# ---- Sidecar --------------------------------------------------------------------------------------


def validate_sidecar(sc: Sidecar) -> list[ValidationMessage]:
    out = _Collector()
    _selector(out, sc.workload_selector, "sidecar")
    if not sc.egress and not sc.has_ingress and sc.outbound_traffic_policy is None:
        out.error("sidecar: empty configuration provided", "spec")
        return out.messages
    ports: set[int] = set()
    for index, egress in enumerate(sc.egress):
        path = f"spec.egress[{index}]"
        if egress.port is None:
            if index != len(sc.egress) - 1:
                out.error("sidecar: the egress listener with empty port should be the last listener in "
                          "the list", path)
        elif egress.port.number:
            if egress.port.number in ports:
                out.error("sidecar: ports on IP bound listeners must be unique", path)
            ports.add(egress.port.number)
        if not egress.hosts:
            out.error("sidecar: egress listener must contain at least one host", path)
        for i, host in enumerate(egress.hosts):
            for problem in namespace_slash_host_errors(host):
                out.error(problem, f"{path}.hosts[{i}]")
    return out.messages


def namespace_slash_host_errors(value: str) -> list[str]:
    """Sidecar egress `hosts` entries: `ns/dnsName` with ns one of *, . or a namespace, optionally
    `~`-prefixed to exclude it (istiod master, agent/validation.go ValidateNamespaceSlashWildcardHostname;
    1.30 refused the prefix)."""
    ns, slash, name = value.partition("/")
    if not slash or "/" in name:
        return ["host must be of form namespace/dnsName"]
    problems = []
    if not ns or not name:
        problems.append("config namespace and dnsName in host entry cannot be empty")
    bare = ns.removeprefix("~")
    if bare not in ("", "*", ".") and not is_dns1123_label(bare):
        problems.append(f"invalid namespace value {quote(ns)} in sidecar")
    if name != "*" and "." not in name:
        problems.append("short names (non FQDN) are not allowed")
    if problem := wildcard_domain_error(name):
        problems.append(problem)
    if problem := partial_wildcard_error(name):
        problems.append(problem)
    return problems


# ---- DestinationRule and VirtualService (the egress-relevant subset) ------------------------------


def validate_destination_rule(dr: DestinationRule) -> list[ValidationMessage]:
    out = _Collector()
    out.error(wildcard_domain_error(dr.host), "spec.host")
    seen: set[str] = set()
    for i, subset in enumerate(dr.subsets):
        path = f"spec.subsets[{i}]"
        if subset.name in seen:
            out.error(f"duplicate subset names: {subset.name}", path)
        seen.add(subset.name)
        if not subset.name:
            out.error("subset name cannot be empty", path)
        elif not is_dns1123_label(subset.name):
            out.error(f"subset name is invalid: {subset.name}", path)
    _export_to(out, dr.meta.namespace, dr.export_to, is_service_entry=False)
    return out.messages


def validate_virtual_service(vs: VirtualService) -> list[ValidationMessage]:
    out = _Collector()
    if not vs.hosts and vs.gateways:
        out.error("delegate virtual service must have no gateways specified", "spec.gateways")
    for i, host in enumerate(vs.hosts):
        problem = wildcard_domain_error(host)
        if problem and not is_ip(host):
            out.error(problem, f"spec.hosts[{i}]")
        elif not problem and host == "*" and vs.applies_to_sidecars:
            out.error("wildcard host * is not allowed for virtual services bound to the mesh gateway",
                      f"spec.hosts[{i}]")
    if not vs.http and not vs.tls and not vs.has_tcp:
        out.error("http, tcp or tls must be provided in virtual service", "spec")
    for i, route in enumerate(vs.tls):
        path = f"spec.tls[{i}]"
        if not route.match:
            out.error("TLS route must have at least one match condition", path)
        for match in route.match:
            if not match.sni_hosts:
                out.error("TLS match must have at least one SNI host", f"{path}.match")
        if not route.route:
            out.error("TLS route is required", path)
    _export_to(out, vs.meta.namespace, vs.export_to, is_service_entry=False)
    return out.messages
