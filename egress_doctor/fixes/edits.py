"""Fixes that edit what exists: JSON-patch operations on one existing object, or a new object
where nothing exists to edit (a missing Gateway or DestinationRule).

    edit = add_service_entry_host(entry, "sts.us-east-1.amazonaws.com")
    fixes = edit_fixes([edit, ...], manifests_as_read, FixOptions(...))

An `Edit` names its object by `Meta.ref`; edits of the same object are merged into one fix whose
manifest is the object as read (or as modelled) with every operation applied, so `kubectl apply`
replaces it in place (same name and namespace). The description also carries the equivalent
`kubectl patch --type=json` command, which keeps every field whatever egress-doctor read. Every
edited object is parsed again and checked against istiod's webhook rules; an edit that would be
refused is dropped (the finding then has no fix rather than a wrong one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.fixes.builders import MANAGED_BY, METADATA_ENDPOINTS, api_version, service_entry_name, unique_name
from egress_doctor.fixes.manifest import Json, Op, apply_patch, base_manifest, patch_command
from egress_doctor.istio.objects import (
    DestinationRule,
    Ignored,
    IstioObject,
    IstioParseError,
    Resolution,
    ServiceEntry,
    Sidecar,
)
from egress_doctor.istio.parse import parse_object
from egress_doctor.istio.validation import errors, validate
from egress_doctor.model import Fix


@dataclass(frozen=True)
class Edit:
    """Operations on one object (`target`), or a new object (`create`) when `target` is None."""

    ref: str  # "ServiceEntry platform/aws-sts"
    summary: str  # "add sts.us-east-1.amazonaws.com to spec.hosts"
    ops: tuple[Op, ...] = ()
    target: IstioObject | None = None
    create: Json | None = field(default=None, compare=False)
    # The object as read, for kinds outside the typed model (Gateway): edited like `target`.
    base: Json | None = field(default=None, compare=False)
    in_cluster: bool = True  # False: the webhook refused the object, only its file exists
    # The pod's namespace when `target` sits in the root namespace and applies to every namespace
    # (a root Sidecar): the fix then also offers the same object for that namespace alone.
    mesh_wide_for: str = ""

    @property
    def existing(self) -> bool:
        return self.target is not None or self.base is not None

    @property
    def fix_id(self) -> str:
        kind, _, rest = self.ref.partition(" ")
        return f"{'edit' if self.existing else 'create'}/{kind.lower()}/{rest}"


# ---- ServiceEntry ------------------------------------------------------------------------------


def _port_name(se: ServiceEntry, number: int, protocol: str) -> str:
    taken = {p.name for p in se.ports}
    for name in (protocol.lower(), f"{protocol.lower()}-{number}"):
        if name not in taken:
            return name
    return f"{protocol.lower()}-{number}-egress-doctor"


def add_port(se: ServiceEntry, number: int, protocol: str) -> Op:
    value = {"number": number, "name": _port_name(se, number, protocol), "protocol": protocol}
    return {"op": "add", "path": "/spec/ports/-", "value": value}


def add_service_entry_host(se: ServiceEntry, host: str, port: int, protocol: str) -> Edit:
    ops: list[Op] = [{"op": "add", "path": "/spec/hosts/-", "value": host}]
    if all(p.number != port for p in se.ports):
        ops.append(add_port(se, port, protocol))
    return Edit(se.meta.ref, f"add {host} to spec.hosts", tuple(ops), se)


def export_to_namespace(se: ServiceEntry, namespace: str, reach: Sequence[str] = (".",)) -> Edit:
    """Add `namespace` to the entry's exportTo, keeping every namespace that sees it today:
    without exportTo, the mesh's defaultServiceExportTo (`reach`) is written out first."""
    if not se.export_to:
        value = [*dict.fromkeys([*(r for r in reach if r != "~"), namespace])]
        op: Op = {"op": "add", "path": "/spec/exportTo", "value": value}
    elif "~" in se.export_to:
        op = {"op": "replace", "path": "/spec/exportTo", "value": [namespace]}
    else:
        op = {"op": "add", "path": "/spec/exportTo/-", "value": namespace}
    return Edit(se.meta.ref, f"add {namespace} to spec.exportTo", (op,), se)


def set_port_protocol(se: ServiceEntry, port: int, protocol: str) -> Edit | None:
    index = next((i for i, p in enumerate(se.ports) if p.number == port), None)
    if index is None:
        return None
    op = {"op": "replace", "path": f"/spec/ports/{index}/protocol", "value": protocol}
    return Edit(se.meta.ref, f"declare port {port} as {protocol}", (op,), se)


def declare_port(se: ServiceEntry, port: int, protocol: str) -> Edit:
    return Edit(se.meta.ref, f"declare port {port} ({protocol})", (add_port(se, port, protocol),), se)


def add_address(se: ServiceEntry, address: str) -> Edit:
    path, value = ("/spec/addresses/-", address) if se.addresses else ("/spec/addresses", [address])
    return Edit(se.meta.ref, f"add {address} to spec.addresses", ({"op": "add", "path": path, "value": value},), se)


def drop_endpoints(se: ServiceEntry) -> Edit:
    return Edit(se.meta.ref, "remove spec.endpoints (Envoy resolves the hosts themselves)",
                ({"op": "remove", "path": "/spec/endpoints"},), se)


def _placeholder(ip: str) -> str:
    known = METADATA_ENDPOINTS.get(ip)
    return known.placeholder if known else "ip-" + ip.replace(".", "-").replace(":", "-") + ".egress.internal"


def repair_refused_entry(se: ServiceEntry, is_ip: Any) -> Edit | None:
    """Make a refused entry admissible: IP hosts become a placeholder name + `addresses` (STATIC
    with the IP as endpoint when the entry resolved by DNS); a wildcard with DNS becomes NONE."""
    ops: list[Op] = []
    ips = [h for h in se.hosts if is_ip(h)]
    for index, host in enumerate(se.hosts):
        if is_ip(host):
            ops.append({"op": "replace", "path": f"/spec/hosts/{index}", "value": _placeholder(host)})
    missing = [ip for ip in ips if ip not in se.addresses]
    if missing:
        path, value = ("/spec/addresses/-", missing[0]) if se.addresses else ("/spec/addresses", missing)
        ops.append({"op": "add", "path": path, "value": value})
    dns = se.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
    if ips and dns:
        ops.append({"op": "replace", "path": "/spec/resolution", "value": "STATIC"})
        if not se.endpoints:
            ops.append({"op": "add", "path": "/spec/endpoints", "value": [{"address": ip} for ip in ips]})
    elif dns and not se.endpoints and any(h.startswith("*") for h in se.hosts):
        ops.append({"op": "replace", "path": "/spec/resolution", "value": "NONE"})
    if not ops:
        return None
    summary = "placeholder host + addresses" if ips else "resolution NONE for the wildcard"
    return Edit(se.meta.ref, summary, tuple(ops), se, in_cluster=False)


# ---- Sidecar, DestinationRule ----------------------------------------------------------------------


def import_into_sidecar(sc: Sidecar, entry: str, port: int, protocol: str = "TLS") -> Edit:
    """Add `ns/host` to the egress listener that builds the listeners on `port`: the one declared
    for that port (it owns the port: istiod locks it, the catch-all adds nothing to it), else the
    catch-all; with neither, a listener for the port is added before any catch-all."""
    listeners = list(sc.egress)
    index = next((i for i, e in enumerate(listeners) if e.port and e.port.number == port), None)
    if index is None:
        index = next((i for i, e in enumerate(listeners) if e.port is None), None)
    if index is None:
        value = {"port": {"number": port, "protocol": protocol, "name": f"{protocol.lower()}-{port}"},
                 "hosts": [entry]}
        op: Op = {"op": "add", "path": "/spec/egress/0", "value": value}  # a catch-all must stay last
    else:
        op = {"op": "add", "path": f"/spec/egress/{index}/hosts/-", "value": entry}
    return Edit(sc.meta.ref, f'add "{entry}" to spec.egress[{index if index is not None else "new"}].hosts',
                (op,), sc)


def stop_tls_origination(rule: DestinationRule, hostname: str, port: int, client_namespace: str,
                         read: Mapping[str, Mapping[str, Any]],
                         taken: frozenset[tuple[str, str, str]] = frozenset()) -> tuple[Edit, str]:
    """Stop `rule` from originating TLS on hostname:port, touching nothing else it does.

    A rule for exactly this host: its port-level `tls` for the port, else its top-level `tls`,
    is removed. A wildcard rule applies to other hosts too:
    a rule for exactly this host in the client's namespace takes precedence there (istiod looks
    in the client's namespace first, and the exact host wins within a namespace); it keeps the
    wildcard rule's other settings for the host. Returns the edit and the remedy in words."""
    policy = rule.policy
    own = rule.host == hostname
    port_index = next((i for i, p in enumerate(policy.port_level) if p.port == port), None) if policy else None
    if own and port_index is not None:
        path = f"/spec/trafficPolicy/portLevelSettings/{port_index}/tls"
        edit = Edit(rule.meta.ref, f"remove portLevelSettings[{port_index}].tls (port {port})",
                    ({"op": "remove", "path": path},), rule)
        return edit, f"Remove the port {port} TLS setting from {rule.meta.ref}."
    if own:
        edit = Edit(rule.meta.ref, "remove spec.trafficPolicy.tls (the app already speaks TLS)",
                    ({"op": "remove", "path": "/spec/trafficPolicy/tls"},), rule)
        return edit, f"Remove trafficPolicy.tls from {rule.meta.ref}."
    raw = read.get(rule.meta.ref) or {}
    kept = {k: v for k, v in ((raw.get("spec") or {}).get("trafficPolicy") or {}).items()
            if k not in ("tls", "portLevelSettings")}
    spec: Json = {"host": hostname}
    if kept:
        spec["trafficPolicy"] = kept
    name = unique_name("DestinationRule", client_namespace, service_entry_name(hostname), taken)
    edit = new_object("DestinationRule", name, client_namespace, spec, _version_of(rule),
                      f"a DestinationRule for exactly {hostname} without TLS origination")
    return edit, (f"{rule.meta.ref} is a wildcard rule for other hosts too; a rule for exactly {hostname} in "
                  f"{client_namespace} takes precedence for this pod without touching it.")


def _version_of(obj: IstioObject) -> str:
    return obj.meta.api_version.rpartition("/")[2] or "v1"


def add_subset(dr: IstioObject, subset: str) -> Edit:
    return Edit(dr.meta.ref, f"add subset {subset}",
                ({"op": "add", "path": "/spec/subsets/-", "value": {"name": subset}},), dr)


def new_object(kind: str, name: str, namespace: str, spec: Json, istio_api: str, summary: str) -> Edit:
    manifest = {"apiVersion": api_version(istio_api), "kind": kind,
                "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)}, "spec": spec}
    return Edit(f"{kind} {namespace}/{name}", summary, (), None, manifest)


# ---- merging into fixes ----------------------------------------------------------------------------


def _admissible(manifest: Json, namespace: str) -> bool:
    try:
        obj = parse_object(manifest, namespace, "edited")
    except IstioParseError:
        return False
    if isinstance(obj, Ignored):
        return True  # a kind the webhook model does not cover (Gateway): the CRD schema decides
    return not errors(validate(obj))


def edited_manifest(edits: Sequence[Edit], read: Mapping[str, Mapping[str, Any]]) -> tuple[Json, bool, list[Op]]:
    """(manifest, complete?, ops) for edits of one object, identical operations applied once."""
    first = edits[0]
    ops: list[Op] = []
    for edit in edits:
        for op in edit.ops:
            if op not in ops:
                ops.append(op)
    if first.target is None and first.base is None:
        assert first.create is not None
        return dict(first.create), True, []
    if first.target is not None:
        base, complete = base_manifest(first.target, read)
    else:
        assert first.base is not None
        base, complete = first.base, True
    return apply_patch(base, ops), complete, ops


def admissible(edit: Edit, read: Mapping[str, Mapping[str, Any]]) -> bool:
    """Would the object, with this edit alone applied, pass the webhook rules?"""
    try:
        manifest, _, _ = edited_manifest([edit], read)
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    namespace = (manifest.get("metadata") or {}).get("namespace", "default")
    return _admissible(manifest, namespace)


def edit_fixes(edits: Iterable[Edit], read: Mapping[str, Mapping[str, Any]], reasons: Mapping[str, str],
               alternatives: Mapping[str, Json] | None = None) -> list[Fix]:
    """One Fix per object; `reasons` maps a fix id to the finding lines that asked for it;
    `alternatives` a mesh-wide edit's fix id to the verified namespaced object it may be replaced by."""
    alternatives = alternatives or {}
    grouped: dict[str, list[Edit]] = {}
    for edit in edits:
        grouped.setdefault(edit.fix_id, []).append(edit)
    fixes = []
    for fix_id, group in sorted(grouped.items()):
        manifest, complete, ops = edited_manifest(group, read)
        lines = [reasons.get(fix_id, "egress-doctor"), *dict.fromkeys(f"- {e.summary}" for e in group)]
        if group[0].existing and not all(e.in_cluster for e in group):
            lines.append(f"Replaces {group[0].ref} in its file: the webhook refused it, so it is not in the cluster.")
            patch = json.dumps(ops, indent=2)
        elif group[0].existing:
            kind, _, rest = group[0].ref.partition(" ")
            ns, _, name = rest.partition("/")
            lines.append(f"Edits the existing {group[0].ref} in place (kubectl apply replaces it).")
            if not complete:
                lines.append("Built from the fields egress-doctor models; to keep every other field use:")
            else:
                lines.append("Or, touching nothing else:")
            lines.append("  " + patch_command(kind, ns, name, ops))
            patch = json.dumps(ops, indent=2)
        else:
            lines.append(f"Nothing to edit: {group[0].ref} does not exist.")
            patch = None
        if group[0].mesh_wide_for and alternatives.get(fix_id):
            lines += _alternative_lines(group[0], alternatives[fix_id])
        fixes.append(Fix(id=fix_id, description="\n".join(lines), manifests=[manifest], patch=patch))
    return fixes


def namespaced_alternative(edit: Edit, manifest: Mapping[str, Any], taken: frozenset[tuple[str, str, str]]) -> Json:
    """The edited root-namespace object as one in the pod's namespace: istiod prefers a Sidecar in
    the pod's namespace to the root one, and `./` already means the pod's namespace in both."""
    out = json.loads(json.dumps(dict(manifest)))
    kind = out.get("kind", "Sidecar")
    out["metadata"] = {"name": unique_name(kind, edit.mesh_wide_for, out["metadata"]["name"], taken),
                       "namespace": edit.mesh_wide_for, "labels": dict(MANAGED_BY)}
    return out


def _alternative_lines(edit: Edit, alternative: Json) -> list[str]:
    import yaml

    text = yaml.safe_dump(alternative, sort_keys=False, default_flow_style=False)
    return [f"Mesh-wide: {edit.ref} applies to every namespace that has no Sidecar of its own.",
            f"To change only {edit.mesh_wide_for} instead (egress-doctor checked it the same way), apply:",
            *(f"  {line}" for line in text.splitlines())]
