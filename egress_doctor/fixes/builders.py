"""Build the Istio objects (or pod-template patches) that let a blocked call through.

Pure functions from "this exact host:port was blocked, and why" to `Fix`es. Each ServiceEntry
names the host the SDK really used (regional STS, `<account>.ddb.<region>…`, the link-local
metadata addresses), one per AWS service and region, so the output is stable and reviewable:

    build_fixes([EgressNeed("sts.us-east-1.amazonaws.com", 443, "ED301", "TLS closed")],
                FixOptions(namespace="payments")).fixes

Every object passes the CRD schema and istiod's webhook rules (tests check both): no IP in
`hosts`, no wildcard with `resolution: DNS`, no endpoints with `NONE`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.aws.hosts import is_account_ddb_host, is_ip, is_s3_bucket_host, wildcard_of
from egress_doctor.model import Fix

ISTIO_APIS = ("v1", "v1beta1", "v1alpha3")
IMDS_FIXES = ("serviceentry", "annotation")
MANAGED_BY = {"app.kubernetes.io/managed-by": "egress-doctor"}
EXCLUDE_ANNOTATION = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


@dataclass(frozen=True)
class MetadataEndpoint:
    """A link-local credentials endpoint: what the SDK dials, and how a ServiceEntry names it."""

    address: str
    name: str  # ServiceEntry name
    placeholder: str  # a valid FQDN for `hosts` (istiod rejects IPs there)
    label: str  # what a user calls it

    @property
    def cidr(self) -> str:
        return f"{self.address}/{ipaddress.ip_address(self.address).max_prefixlen}"


IMDS_IPV4 = "169.254.169.254"
IMDS_IPV6 = "fd00:ec2::254"
POD_IDENTITY_IPV4 = "169.254.170.23"
POD_IDENTITY_IPV6 = "fd00:ec2::23"
ECS_IPV4 = "169.254.170.2"

METADATA_ENDPOINTS: dict[str, MetadataEndpoint] = {
    e.address: e
    for e in (
        MetadataEndpoint(IMDS_IPV4, "aws-imds", "imds.aws.internal", "EC2 instance metadata (IMDS)"),
        MetadataEndpoint(IMDS_IPV6, "aws-imds-ipv6", "imds-ipv6.aws.internal",
                         "EC2 instance metadata (IMDS, IPv6)"),
        MetadataEndpoint(POD_IDENTITY_IPV4, "aws-eks-pod-identity", "eks-pod-identity.aws.internal",
                         "EKS Pod Identity agent"),
        MetadataEndpoint(POD_IDENTITY_IPV6, "aws-eks-pod-identity-ipv6", "eks-pod-identity-ipv6.aws.internal",
                         "EKS Pod Identity agent (IPv6)"),
        MetadataEndpoint(ECS_IPV4, "aws-ecs-credentials", "ecs-credentials.aws.internal",
                         "ECS container credentials endpoint"),
    )
}


def metadata_endpoint(address: str) -> MetadataEndpoint:
    """The known link-local endpoint at `address`, else one named after the address (an IMDS or
    credentials endpoint moved by AWS_EC2_METADATA_SERVICE_ENDPOINT &c.: any IP, v4 or v6)."""
    address = address.strip("[]")
    known = METADATA_ENDPOINTS.get(address)
    if known is not None:
        return known
    label = "ip-" + re.sub(r"[^0-9a-f]+", "-", address.lower()).strip("-")
    return MetadataEndpoint(address, _dns_label(f"egress-{label}"), f"{label}.egress.internal",
                            f"the endpoint at {address}")


@dataclass(frozen=True)
class EgressNeed:
    """One blocked destination, exactly as the SDK dialled it, and the finding that blocked it."""

    host: str  # DNS name, or a metadata address from METADATA_ENDPOINTS
    port: int
    code: str  # the finding code, e.g. ED301
    reason: str  # "TLS closed during handshake"
    scheme: str = "https"  # https → port protocol TLS; http → HTTP
    export_to: tuple[str, ...] = ()  # overrides FixOptions.export_to (a host an egress gateway routes)


@dataclass(frozen=True)
class FixOptions:
    namespace: str = "default"
    istio_api: str = "v1"  # v1 for Istio ≥1.22, v1beta1 for 1.5-1.21
    wildcard: bool = False  # *.ddb.<region>…, *.s3.<region>… (resolution NONE) instead of one account or bucket
    imds_fix: str = "serviceentry"  # or "annotation": exclude the metadata addresses from capture
    export_to: tuple[str, ...] = (".",)
    # --egress-via: "" follows the mesh (its VirtualServices' gateway routes), "direct" never
    # routes through a gateway, "NS/GATEWAY" only through that Gateway (docs/egress-gateway.md)
    egress_via: str = ""
    # (kind, namespace, name) of every object in view: a new object never takes one of these names
    taken: frozenset[tuple[str, str, str]] = frozenset()

    def __post_init__(self) -> None:
        if self.istio_api not in ISTIO_APIS:
            raise ValueError(f"istio_api must be one of {', '.join(ISTIO_APIS)}, not {self.istio_api!r}")
        if self.imds_fix not in IMDS_FIXES:
            raise ValueError(f"imds_fix must be one of {', '.join(IMDS_FIXES)}, not {self.imds_fix!r}")
        if not self.namespace:
            raise ValueError("namespace must not be empty")


@dataclass
class FixPlan:
    fixes: list[Fix] = field(default_factory=list)
    by_host: dict[str, str] = field(default_factory=dict)  # need host → Fix.id


# --- host names ---------------------------------------------------------------------------------


def _dns_label(text: str, limit: int = 63) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(label) <= limit:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"{label[: limit - 9].rstrip('-')}-{digest}"


def service_entry_name(host: str) -> str:
    """A name that says the host: `sts-us-east-1-amazonaws-com`, `wildcard-ddb-us-east-1-amazonaws-com`;
    a metadata address gets its endpoint's name (aws-imds). A name longer than a DNS label ends in
    a digest of the host. `fixes.names.unique_name` keeps it clear of the objects in view."""
    if is_ip(host):
        return metadata_endpoint(host).name
    return _dns_label(host.lower().rstrip(".").replace("*", "wildcard"))


def unique_name(kind: str, namespace: str, base: str, taken: frozenset[tuple[str, str, str]]) -> str:
    """`base`, or `base-2`, `base-3`… when an object of that kind and namespace already has it."""
    name, index = base, 1
    while (kind, namespace, name) in taken:
        index += 1
        name = f"{base[: 63 - len(str(index)) - 1]}-{index}"
    return name


def entry_name(host: str, options: FixOptions) -> str:
    """The name of the ServiceEntry a fix creates for `host`, clear of the objects in view."""
    return unique_name("ServiceEntry", options.namespace, service_entry_name(host), options.taken)


# --- objects ------------------------------------------------------------------------------------


def api_version(istio_api: str = "v1") -> str:
    if istio_api not in ISTIO_APIS:
        raise ValueError(f"istio_api must be one of {', '.join(ISTIO_APIS)}")
    return f"networking.istio.io/{istio_api}"


def _port(number: int, protocol: str) -> dict[str, Any]:
    base = protocol.lower()
    default = 443 if protocol == "TLS" else 80
    return {"number": number, "name": base if number == default else f"{base}-{number}", "protocol": protocol}


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)}


def external_service_entry(
    name: str,
    hosts: Sequence[str],
    ports: Iterable[tuple[int, str]] = ((443, "TLS"),),
    *,
    namespace: str = "default",
    istio_api: str = "v1",
    export_to: Sequence[str] = (".",),
) -> dict[str, Any]:
    """A MESH_EXTERNAL ServiceEntry for DNS names; NONE resolution when any host is a wildcard."""
    if not hosts:
        raise ValueError("a ServiceEntry needs at least one host")
    if any(is_ip(h) for h in hosts):
        raise ValueError("istiod rejects IP addresses in hosts; use metadata_service_entry")
    wildcard = any(h.startswith("*.") for h in hosts)
    return {
        "apiVersion": api_version(istio_api),
        "kind": "ServiceEntry",
        "metadata": _metadata(name, namespace),
        "spec": {
            "hosts": sorted(set(hosts)),
            "exportTo": list(export_to),
            "location": "MESH_EXTERNAL",
            "ports": [_port(n, p) for n, p in sorted(set(ports))],
            # NONE: forward to the address the app resolved (the only valid mode for a wildcard
            # without endpoints); DNS: Envoy resolves each host itself.
            "resolution": "NONE" if wildcard else "DNS",
        },
    }


def metadata_service_entry(
    address: str,
    port: int = 80,
    *,
    namespace: str = "default",
    istio_api: str = "v1",
    export_to: Sequence[str] = (".",),
) -> dict[str, Any]:
    """Plain-HTTP ServiceEntry for a link-local endpoint: placeholder host + the address.

    `addresses` puts the IP into the HTTP route's domains (the SDK sends `Host: 169.254.169.254`);
    without it the request still lands on `block_all`.
    """
    endpoint = metadata_endpoint(address)
    return {
        "apiVersion": api_version(istio_api),
        "kind": "ServiceEntry",
        "metadata": _metadata(endpoint.name, namespace),
        "spec": {
            "hosts": [endpoint.placeholder],
            "addresses": [address],
            "exportTo": list(export_to),
            "location": "MESH_EXTERNAL",
            "ports": [_port(port, "HTTP")],
            "resolution": "STATIC",
            "endpoints": [{"address": address}],
        },
    }


def pod_template_annotations_patch(annotations: dict[str, str]) -> dict[str, Any]:
    """A strategic-merge patch of a workload's pod template (Deployment, StatefulSet, ...)."""
    return {"spec": {"template": {"metadata": {"annotations": dict(sorted(annotations.items()))}}}}


def patch_text(patch: dict[str, Any]) -> str:
    import yaml  # only when a patch is printed

    return yaml.safe_dump(patch, sort_keys=False, default_flow_style=False)


def _patch_command(namespace: str, patch: dict[str, Any]) -> str:
    body = json.dumps(patch, separators=(",", ":"))
    return f"kubectl -n {namespace} patch deployment/<name> --type=strategic -p '{body}'"


# --- fixes ----------------------------------------------------------------------------------------


def _need_line(need: EgressNeed) -> str:
    host = f"[{need.host}]" if ":" in need.host else need.host
    return f"egress-doctor: {need.code} — allows {host}:{need.port} (blocked: {need.reason})"


def _export_to(needs: Sequence[EgressNeed], options: FixOptions) -> tuple[str, ...]:
    """The needs' own exportTo (a host an egress gateway routes) merged, else the options'."""
    own = [ns for n in needs for ns in n.export_to]
    return tuple(dict.fromkeys(own)) if own else tuple(options.export_to)


def _scope_line(options: FixOptions, export_to: Sequence[str]) -> str:
    line = f"Namespace {options.namespace}; exportTo {json.dumps(list(export_to))}."
    if tuple(export_to) != tuple(options.export_to):
        line += " (Exported beyond this namespace: an egress gateway routes it.)"
    return line


def _metadata_fix(address: str, needs: list[EgressNeed], options: FixOptions) -> Fix:
    endpoint = metadata_endpoint(address)
    export_to = _export_to(needs, options)
    manifest = metadata_service_entry(
        address, needs[0].port, namespace=options.namespace, istio_api=options.istio_api, export_to=export_to,
    )
    manifest["metadata"]["name"] = entry_name(address, options)
    lines = [_need_line(n) for n in needs] + [
        f"{endpoint.label}: placeholder host {endpoint.placeholder}, addresses [{address}], STATIC.",
        f'Alternative: pod annotation {EXCLUDE_ANNOTATION}: "{endpoint.cidr}"'
        " (pods restart; --imds-fix annotation).",
        _scope_line(options, export_to),
    ]
    return Fix(id=f"serviceentry/{manifest['metadata']['name']}", description="\n".join(lines), manifests=[manifest])


def _exclusion_fix(needs: list[EgressNeed], options: FixOptions) -> Fix:
    cidrs = sorted({metadata_endpoint(n.host).cidr for n in needs})
    patch = pod_template_annotations_patch({EXCLUDE_ANNOTATION: ",".join(cidrs)})
    lines = [_need_line(n) for n in needs] + [
        "Not a manifest: exclude the address from the sidecar's capture (pods restart), e.g.",
        "  " + _patch_command(options.namespace, patch),
        "If the pod template already sets this annotation, keep its ranges and add these.",
    ]
    return Fix(
        id="patch/exclude-outbound-ip-ranges", description="\n".join(lines), patch=patch_text(patch)
    )


def _entry_host(need: EgressNeed, options: FixOptions) -> str:
    """The host the ServiceEntry names: the SDK's, or with --wildcard the wildcard of a host that
    carries an account or a bucket (`*.ddb.<region>…`, `*.s3.amazonaws.com`; resolution NONE)."""
    return (wildcard_of(need.host) or need.host) if options.wildcard else need.host


def _service_fix(host: str, needs: list[EgressNeed], options: FixOptions) -> Fix:
    name = entry_name(host, options)
    ports = [(n.port, "TLS" if n.scheme == "https" else "HTTP") for n in needs]
    export_to = _export_to(needs, options)
    manifest = external_service_entry(
        name, [host], ports, namespace=options.namespace, istio_api=options.istio_api, export_to=export_to,
    )
    lines = [_need_line(n) for n in needs]
    if host.startswith("*."):
        lines.append("Wildcard host: resolution NONE forwards to the address the app resolved.")
    elif is_account_ddb_host(host):
        lines.append("Account-based DynamoDB endpoint; --wildcard allows *.ddb.<region>… (any account).")
    elif is_s3_bucket_host(host):
        lines.append(f"One bucket's S3 host; --wildcard allows {wildcard_of(host)} (every bucket).")
    lines.append(_scope_line(options, export_to))
    return Fix(id=f"serviceentry/{name}", description="\n".join(lines), manifests=[manifest])


def _unique(needs: Iterable[EgressNeed]) -> list[EgressNeed]:
    seen: dict[tuple[str, int, str], EgressNeed] = {}
    for need in needs:
        seen.setdefault((need.host, need.port, need.code), need)
    return sorted(seen.values(), key=lambda n: (n.host, n.port, n.code))


def build_fixes(needs: Iterable[EgressNeed], options: FixOptions | None = None) -> FixPlan:
    """The fixes for every blocked destination, one ServiceEntry per host, sorted by id."""
    options = options or FixOptions()
    plan = FixPlan()
    unique = _unique(needs)
    metadata = [n for n in unique if is_ip(n.host)]
    services = [n for n in unique if not is_ip(n.host)]
    fixes: list[Fix] = []
    if metadata and options.imds_fix == "annotation":
        fixes.append(_exclusion_fix(metadata, options))
        plan.by_host.update({n.host: fixes[-1].id for n in metadata})
    else:
        for address in sorted({n.host for n in metadata}):
            fixes.append(_metadata_fix(address, [n for n in metadata if n.host == address], options))
            plan.by_host[address] = fixes[-1].id
    for host in sorted({_entry_host(n, options) for n in services}):
        group = [n for n in services if _entry_host(n, options) == host]
        fixes.append(_service_fix(host, group, options))
        plan.by_host.update({n.host: fixes[-1].id for n in group})
    plan.fixes = sorted(fixes, key=lambda f: f.id)
    return plan


def hold_until_proxy_starts_fix(code: str, reason: str, options: FixOptions | None = None) -> Fix:
    """Pod-template patch: start the app only once the sidecar is ready (startup race)."""
    options = options or FixOptions()
    patch = pod_template_annotations_patch(
        {PROXY_CONFIG_ANNOTATION: json.dumps({"holdApplicationUntilProxyStarts": True})}
    )
    lines = [
        f"egress-doctor: {code} — {reason}",
        "Not a manifest: make the app wait for the sidecar (pods restart), e.g.",
        "  " + _patch_command(options.namespace, patch),
        "If proxy.istio.io/config is already set, add the key to its JSON instead.",
        'Native sidecars (sidecar.istio.io/nativeSidecar: "true"; the default with Istio ≥1.27'
        " on Kubernetes ≥1.33) start the proxy first by design.",
    ]
    return Fix(
        id="patch/hold-application-until-proxy-starts", description="\n".join(lines), patch=patch_text(patch)
    )
