"""Istio objects back to manifests, and RFC 6902 JSON patches applied to them (pure).

Fixes that edit an existing object start from the object as it was read (`MeshView.manifests`)
when available, so fields egress-doctor does not model are kept; otherwise from `to_manifest`,
which writes back only the modelled fields. The same JSON patch is printed as a `kubectl patch`
command, which keeps every field whatever was read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from egress_doctor.istio.objects import (
    ClientTls,
    DestinationRule,
    IstioObject,
    Meta,
    ServiceEntry,
    Sidecar,
    TrafficPolicy,
)

Json = dict[str, Any]
Op = dict[str, Any]  # {"op": "add"|"replace"|"remove", "path": "/spec/hosts/-", "value": ...}


def _metadata(meta: Meta) -> Json:
    out: Json = {"name": meta.name, "namespace": meta.namespace}
    if meta.labels:
        out["labels"] = dict(meta.labels)
    return out


def _drop_empty(spec: Json) -> Json:
    """Unset fields out: the proto's zero values (0 for a targetPort) are never written."""
    return {k: v for k, v in spec.items() if v not in (None, "", [], {}, 0) or isinstance(v, bool)}


def _tls(tls: ClientTls | None) -> Json | None:
    if tls is None:
        return None
    return _drop_empty({"mode": tls.mode, "sni": tls.sni, "caCertificates": tls.ca_certificates,
                        "credentialName": tls.credential_name})


def _policy(policy: TrafficPolicy | None) -> Json | None:
    if policy is None:
        return None
    ports = [_drop_empty({"port": {"number": p.port}, "tls": _tls(p.tls)}) for p in policy.port_level]
    return _drop_empty({"tls": _tls(policy.tls), "portLevelSettings": ports}) or None


def _service_entry(se: ServiceEntry) -> Json:
    ports = [_drop_empty({"number": p.number, "name": p.name, "protocol": p.protocol_name,
                          "targetPort": p.target_port}) for p in se.ports]
    endpoints = [_drop_empty({"address": e.address, "ports": dict(e.ports), "labels": dict(e.labels),
                              "network": e.network}) for e in se.endpoints]
    selector = {"labels": dict(se.workload_selector)} if se.workload_selector is not None else None
    return _drop_empty({"hosts": list(se.hosts), "addresses": list(se.addresses), "ports": ports,
                        "location": se.location.value, "resolution": se.resolution.value,
                        "endpoints": endpoints, "exportTo": list(se.export_to), "workloadSelector": selector})


def _sidecar(sc: Sidecar) -> Json:
    egress = []
    for listener in sc.egress:
        port = None
        if listener.port is not None:
            port = _drop_empty({"number": listener.port.number, "protocol": listener.port.protocol_name,
                                "name": listener.port.name})
        egress.append(_drop_empty({"port": port, "bind": listener.bind, "hosts": list(listener.hosts)}))
    policy = {"mode": sc.outbound_traffic_policy.value} if sc.outbound_traffic_policy is not None else None
    selector = {"labels": dict(sc.workload_selector)} if sc.workload_selector is not None else None
    return _drop_empty({"workloadSelector": selector, "egress": egress, "outboundTrafficPolicy": policy})


def _destination_rule(dr: DestinationRule) -> Json:
    subsets = [_drop_empty({"name": s.name, "labels": dict(s.labels), "trafficPolicy": _policy(s.policy)})
               for s in dr.subsets]
    selector = {"matchLabels": dict(dr.workload_selector)} if dr.workload_selector is not None else None
    return _drop_empty({"host": dr.host, "trafficPolicy": _policy(dr.policy), "subsets": subsets,
                        "exportTo": list(dr.export_to), "workloadSelector": selector})


def to_manifest(obj: IstioObject) -> Json:
    """The modelled fields of an object as a manifest (VirtualServices are not written back)."""
    if isinstance(obj, ServiceEntry):
        spec = _service_entry(obj)
    elif isinstance(obj, Sidecar):
        spec = _sidecar(obj)
    elif isinstance(obj, DestinationRule):
        spec = _destination_rule(obj)
    else:
        raise ValueError(f"{obj.meta.kind}s are rewritten by egress-doctor only from the object as read")
    return {"apiVersion": obj.meta.api_version, "kind": obj.meta.kind, "metadata": _metadata(obj.meta),
            "spec": spec}


def base_manifest(obj: IstioObject, read: Mapping[str, Mapping[str, Any]]) -> tuple[Json, bool]:
    """(manifest to edit, complete?): the object as read when known, else the modelled fields."""
    raw = read.get(obj.meta.ref)
    if raw is not None:
        doc = copy.deepcopy(dict(raw))
        metadata = {k: v for k, v in (doc.get("metadata") or {}).items()
                    if k in ("name", "namespace", "labels", "annotations")}
        metadata.setdefault("namespace", obj.meta.namespace)
        return {"apiVersion": doc.get("apiVersion", obj.meta.api_version), "kind": obj.meta.kind,
                "metadata": metadata, "spec": doc.get("spec") or {}}, True
    return to_manifest(obj), False


# ---- JSON patch ----------------------------------------------------------------------------------


def _tokens(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc: Any, tokens: Sequence[str]) -> Any:
    node = doc
    for token in tokens:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def apply_patch(doc: Json, ops: Sequence[Op]) -> Json:
    """A copy of `doc` with the RFC 6902 add / replace / remove operations applied in order."""
    out = copy.deepcopy(doc)
    for op in ops:
        tokens = _tokens(op["path"])
        parent = _parent(out, tokens[:-1])
        key = tokens[-1]
        value = copy.deepcopy(op.get("value"))
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key)
            if op["op"] == "add":
                parent.insert(index, value)
            elif op["op"] == "replace":
                parent[index] = value
            elif op["op"] == "remove":
                del parent[index]
            else:
                raise ValueError(f"unsupported op {op['op']!r}")
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace" and key not in parent:
                raise KeyError(f"replace of a missing member {op['path']}")
            parent[key] = value
        elif op["op"] == "remove":
            del parent[key]
        else:
            raise ValueError(f"unsupported op {op['op']!r}")
    return out


def patch_command(kind: str, namespace: str, name: str, ops: Sequence[Op]) -> str:
    """`kubectl patch` with a JSON patch: edits only what the ops name, keeps every other field."""
    body = json.dumps(list(ops), separators=(",", ":"))
    return f"kubectl -n {namespace} patch {kind.lower()} {name} --type=json -p '{body}'"
