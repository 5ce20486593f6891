"""What could not be read from the cluster, as findings (ED64x, ED91x). Pure: no I/O.

    findings = cluster_findings(read_cluster(options))

One finding per forbidden (verb, resource), naming every scope refused and what is therefore
unknown; one for all missing Istio CRDs; one for an unreachable API server or an expired deadline.
None of them fails the run: they say the diagnosis had less to go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from egress_doctor.diagnose.catalogue import entry
from egress_doctor.istio.objects import GROUP, MeshConfig
from egress_doctor.model import Finding
from egress_doctor.sources.kube import ClusterRead, Problem, ReadError

RBAC_MANIFEST = "k8s/rbac.yaml"
_WIDE = ("serviceentries", "virtualservices", "destinationrules")  # listed in all namespaces first
_KINDS = {
    "serviceentries": "ServiceEntries",
    "sidecars": "Sidecars",
    "virtualservices": "VirtualServices",
    "destinationrules": "DestinationRules",
}
_UNKNOWN = {
    "configmaps": "the mesh's outboundTrafficPolicy, rootNamespace and exportTo defaults are unknown "
    "(Istio's defaults are assumed)",
    "pods": "the pod's capture annotations, labels and sidecar kind are unknown",
    "namespaces": "the namespace's labels (ambient enrolment, injection revision) are unknown",
}


def cluster_findings(read: ClusterRead) -> list[Finding]:
    """Findings for every ReadError of one read, in a stable order."""
    errors = read.errors
    findings = [_forbidden(group, read) for group in _by_resource(e for e in errors if e.problem is Problem.FORBIDDEN)]
    missing = [e for e in errors if e.problem is Problem.NOT_SERVED]
    if missing:
        resources = ", ".join(dict.fromkeys(e.resource for e in missing))
        findings.append(_finding("ED641", resources=resources, server=read.server or "the API server"))
    findings += [f for e in errors if (f := _single(e, read)) is not None]
    return findings


def _by_resource(errors: Iterable[ReadError]) -> list[list[ReadError]]:
    groups: dict[tuple[str, str], list[ReadError]] = {}
    for e in errors:
        groups.setdefault((e.verb, e.target), []).append(e)
    return list(groups.values())


def _forbidden(group: Sequence[ReadError], read: ClusterRead) -> Finding:
    first = group[0]
    scopes = " and ".join(e.scope for e in group if e.scope)
    return _finding(
        "ED640",
        verb=first.verb,
        resource=first.target,
        scope=f" {scopes}" if scopes else "",
        consequence=_consequence(group, read),
        message=first.message,
    )


def _consequence(group: Sequence[ReadError], read: ClusterRead) -> str:
    first = group[0]
    plural = first.resource.removesuffix(f".{GROUP}")
    if plural not in _KINDS:
        return _UNKNOWN.get(plural, f"{first.target} is unknown")
    kind = _KINDS[plural]
    refused = {e.namespace for e in group}
    fallback = _fallback_namespaces(read)
    read_in = [ns for ns in fallback if ns not in refused]
    if plural in _WIDE and None in refused and read_in:
        return f"{kind} were read only in namespace {' and '.join(read_in)}; those elsewhere are unknown"
    where = " and ".join(ns for ns in fallback if ns in refused) or "any namespace"
    return f"{kind} in {where} are unknown"


def _fallback_namespaces(read: ClusterRead) -> list[str]:
    root = (read.view.mesh or MeshConfig()).root_namespace
    return list(dict.fromkeys(ns for ns in (read.view.pod_namespace, root) if ns))


def _single(e: ReadError, read: ClusterRead) -> Finding | None:
    """The finding of one error that is neither a 403 nor a missing CRD (those are grouped)."""
    if e.problem is Problem.NOT_FOUND and e.resource == "configmaps":
        return _finding("ED642", configmap=e.name or "istio", namespace=e.namespace or "")
    if e.problem is Problem.NOT_FOUND and e.resource == "pods":
        return _finding("ED643", pod=e.name or "", namespace=e.namespace or "")
    if e.problem is Problem.UNPARSEABLE:
        return _finding("ED644", object=f"{e.target} {e.scope}".strip(), detail=e.message)
    if e.problem is Problem.UNREACHABLE:
        return _finding("ED910", server=read.server or "the API server", detail=e.message)
    if e.problem is Problem.DEADLINE:
        return _finding("ED911", detail=e.message)
    if e.problem is Problem.CONFIG:
        return _finding("ED912", detail=e.message)
    if e.problem in (Problem.FORBIDDEN, Problem.NOT_SERVED):
        return None
    status = f"HTTP {e.status}: " if e.status else ""
    return _finding("ED913", request=f"{e.verb} {e.target} {e.scope}".strip(), detail=f"{status}{e.message}")


def _finding(code: str, **args: object) -> Finding:
    e = entry(code)
    return Finding(code=e.code, level=e.level, title=e.title, message=e.render(args), docs=e.docs)
