"""`blocked`'s diagnosis: the sidecars' tallies in, destinations, findings and fixes out. Pure.

    report = diagnose_blocked(logs, naming, BlockedOptions(istio_api="v1"))

Per destination (merged over every pod that logged it): how the sidecar treated it, which pods,
how often, first and last seen; an address without a name is named only by evidence
(`diagnose.naming`). Findings come from the one catalogue (ED650-ED655; ED640/ED91x for what could
not be read); the ServiceEntries come from the builders `check` uses (`fixes.builders.build_fixes`:
one per host, metadata addresses as `check` writes them), one set per namespace of the pods; the
Telemetry that turns access logging on from `fixes.telemetry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from egress_doctor.aws.hosts import classify, is_ip
from egress_doctor.diagnose.catalogue import entry
from egress_doctor.diagnose.engine import LEVEL_ORDER
from egress_doctor.diagnose.naming import Prediction, Resolved, match_address
from egress_doctor.diagnose.refusals import IN_MESH_SUFFIXES, Destination, Refusal, Seen
from egress_doctor.fixes.builders import METADATA_ENDPOINTS, EgressNeed, FixOptions, build_fixes
from egress_doctor.fixes.telemetry import access_logging_fix
from egress_doctor.model import Finding, Fix
from egress_doctor.model_blocked import PodSummary, RefusedDestination
from egress_doctor.sources.kube_client import Problem, ReadError
from egress_doctor.sources.pod_logs import LogsRead, PodLog

MAX_NAMED_PODS = 3  # pods a message names before "and N more"
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_CODES = {Refusal.BLOCK_ALL: "ED650", Refusal.BLACKHOLE: "ED650", Refusal.NO_ROUTE: "ED652",
          Refusal.RESET: "ED653", Refusal.PASSTHROUGH: "ED654", Refusal.RBAC: "ED658", Refusal.UPSTREAM: "ED659"}


@dataclass(frozen=True)
class BlockedOptions:
    passthrough: bool = False  # also what left through PassthroughCluster (the REGISTRY_ONLY what-if)
    istio_api: str = "v1"
    wildcard: bool = False
    imds_fix: str = "serviceentry"
    since_seconds: float = 3600.0
    namespace: str = "default"  # where the Telemetry goes when no pod was read


@dataclass
class Naming:
    """Evidence gathered for addresses without a name (by the command: the resolving is I/O)."""

    predictions: Mapping[str, Prediction] = field(default_factory=dict)  # pod ref → its SDK's hosts
    resolved: Resolved = field(default_factory=dict)


@dataclass
class Diagnosis:
    destinations: list[RefusedDestination] = field(default_factory=list)
    pods: list[PodSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


@dataclass
class _Merged:
    seen: Seen = field(default_factory=Seen)
    pods: set[str] = field(default_factory=set)
    resolved_from: str | None = None
    tried: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # what the address carried elsewhere in the logs


def diagnose_blocked(logs: LogsRead, naming: Naming, options: BlockedOptions, mesh_logging: str = "") -> Diagnosis:
    """`mesh_logging`: what the mesh config says about access logging (for ED655), "" when not read."""
    result = Diagnosis(pods=[_summary(log) for log in logs.pods])
    merged = _merge(logs, naming, options)
    findings: list[Finding] = []
    needs: dict[str, list[EgressNeed]] = {}
    for (refusal, dest), m in merged.items():
        row = _row(refusal, dest, m)
        code, args = _finding_args(refusal, dest, m, options)
        row.finding = code
        if code in ("ED650", "ED654") and fixable(dest.host):
            for namespace in sorted({p.split("/", 1)[0] for p in m.pods}):
                scheme = "http" if dest.protocol == "http" else "https"
                needs.setdefault(namespace, []).append(EgressNeed(dest.host, dest.port, code, row.how, scheme))
        result.destinations.append(row)
        findings.append(_finding(code, args, dest.host))
    fixes, by_host = _fixes(needs, options)
    for row, finding in zip(result.destinations, findings, strict=True):
        finding.fix = row.fix = by_host.get(row.host) if row.finding in ("ED650", "ED654") else None
    if logging_off(logs):
        telemetry = access_logging_fix(_namespaces(logs) or [options.namespace], options.istio_api)
        fixes.append(telemetry)
        findings.append(_finding("ED655", _off_args(logs, options, mesh_logging), "", fix=telemetry.id))
    findings += read_findings(logs.errors + [log.error for log in logs.pods if log.error is not None])
    result.findings = sorted(findings, key=lambda f: (LEVEL_ORDER[f.level], f.code, f.hosts, f.message))
    result.fixes = sorted(fixes, key=lambda f: f.id)
    result.destinations.sort(key=lambda d: (not d.refused, -d.count, d.host, d.port))
    result.warnings, result.samples = _warnings(logs)
    return result


# ---- merging and naming ----------------------------------------------------------------------------


def _merge(logs: LogsRead, naming: Naming, options: BlockedOptions) -> dict[tuple[Refusal, Destination], _Merged]:
    merged: dict[tuple[Refusal, Destination], _Merged] = {}
    for log in logs.pods:
        for (refusal, dest), seen in log.tally.seen.items():
            if refusal is Refusal.PASSTHROUGH and not options.passthrough:
                continue
            named, resolved_from, tried = _named(dest, log.pod.ref, naming)
            m = merged.setdefault((refusal, named), _Merged())
            m.seen.merge(seen)
            m.pods.add(log.pod.ref)
            m.resolved_from = m.resolved_from or resolved_from
            if tried and tried not in m.tried:
                m.tried.append(tried)
            for address in seen.addresses:
                m.names |= log.tally.names.get(address, set())
    return merged


def _named(dest: Destination, pod: str, naming: Naming) -> tuple[Destination, str | None, str]:
    """The destination, renamed after the one SDK host that resolves to its address (else as is)."""
    if not needs_a_name(dest.host):
        return dest, None, ""
    prediction = naming.predictions.get(pod, Prediction(reason="not predicted"))
    match = match_address(dest.host, dest.port, prediction, naming.resolved)
    if match.endpoint is None:
        return dest, None, match.tried
    protocol = "http" if match.endpoint.scheme == "http" else "tls"
    return Destination(match.endpoint.host, dest.port, protocol, "resolved"), dest.host, match.tried


def needs_a_name(host: str) -> bool:
    """An address that is not one of the metadata endpoints (those have their own entries)."""
    return is_ip(host) and host not in METADATA_ENDPOINTS


def fixable(host: str) -> bool:
    """A host a ServiceEntry can name: a metadata address, or an external DNS name."""
    if host in METADATA_ENDPOINTS:
        return True
    return bool(_DNS_NAME.match(host)) and not host.endswith(IN_MESH_SUFFIXES)


def _row(refusal: Refusal, dest: Destination, m: _Merged) -> RefusedDestination:
    aws = classify(dest.host) if not is_ip(dest.host) else None
    service, region = (aws.service, aws.region) if aws else (None, None)
    if dest.host in METADATA_ENDPOINTS:  # the credential endpoints: named like check names them
        service, region = METADATA_ENDPOINTS[dest.host].name.removeprefix("aws-"), "link-local"
    return RefusedDestination(
        host=dest.host, port=dest.port, protocol=dest.protocol, how=refusal.value, count=m.seen.count,
        first=m.seen.first, last=m.seen.last, pods=sorted(m.pods), addresses=sorted(m.seen.addresses),
        named_by=dest.source if dest.source != "address" else "", resolved_from=m.resolved_from,
        service=service, region=region,
    )


def pods_phrase(pods: Iterable[str]) -> str:
    names = sorted(pods)
    shown = ", ".join(names[:MAX_NAMED_PODS])
    more = len(names) - MAX_NAMED_PODS
    label = "pod" if len(names) == 1 else "pods"
    return f"{label} {shown}" + (f" and {more} more" if more > 0 else "")


def _finding_args(refusal: Refusal, dest: Destination, m: _Merged,
                  options: BlockedOptions) -> tuple[str, dict[str, object]]:
    code = _CODES[refusal]
    phrase = pods_phrase(m.pods)
    pods = phrase[0].upper() + phrase[1:]
    if code == "ED650" and needs_a_name(dest.host):
        seen = (f" Elsewhere in the logs this address carried {', '.join(sorted(m.names))}; that proves nothing "
                "about these connections.") if m.names else ""
        return "ED651", {"address": dest.host, "port": dest.port, "how": refusal.value, "count": m.seen.count,
                         "pods": pods, "tried": "; ".join(m.tried) or "none", "seen": seen}
    if code == "ED650":
        named = ""
        if m.resolved_from:
            named = (f" The sidecar logged only the address {m.resolved_from}; {dest.host} is the one host the "
                     f"pod's SDK calls that resolves to it.")
        if not fixable(dest.host):
            named += f" {dest.host} is not an external DNS name, so no ServiceEntry is printed for it."
        return code, {"host": dest.host, "port": dest.port, "how": refusal.value, "count": m.seen.count,
                      "pods": pods, "when": _when(m.seen), "named": named}
    return code, {"host": dest.host, "port": dest.port, "count": m.seen.count, "pods": pods}


def _when(seen: Seen) -> str:
    if not seen.first:
        return "(the log format has no start time)"
    return f"at {seen.first}" if seen.first == seen.last else f"between {seen.first} and {seen.last}"


def _finding(code: str, args: Mapping[str, object], host: str, fix: str | None = None) -> Finding:
    e = entry(code)
    return Finding(code=e.code, level=e.level, title=e.title, message=e.render(args),
                   hosts=[host] if host else [], docs=e.docs, fix=fix)


# ---- fixes -------------------------------------------------------------------------------------------


def _fixes(needs: Mapping[str, Sequence[EgressNeed]], options: BlockedOptions) -> tuple[list[Fix], dict[str, str]]:
    """ServiceEntries per namespace; fix ids carry the namespace when there is more than one."""
    fixes: list[Fix] = []
    by_host: dict[str, str] = {}
    several = len(needs) > 1
    for namespace, wanted in sorted(needs.items()):
        plan = build_fixes(wanted, FixOptions(namespace=namespace, istio_api=options.istio_api,
                                              wildcard=options.wildcard, imds_fix=options.imds_fix))
        renamed = {f.id: f"{f.id}@{namespace}" if several else f.id for f in plan.fixes}
        fixes += [replace(f, id=renamed[f.id]) for f in plan.fixes]
        for host, fix_id in plan.by_host.items():
            by_host.setdefault(host, renamed[fix_id])
    return fixes, by_host


# ---- access logging off ----------------------------------------------------------------------------


def logging_off(logs: LogsRead) -> bool:
    """Logs were read, and not one of them holds an access-log record."""
    read = [log for log in logs.pods if log.read]
    return bool(read) and all(log.tally.access == 0 for log in read)


def _namespaces(logs: LogsRead) -> list[str]:
    return sorted({log.pod.namespace for log in logs.pods if log.read})


def _off_args(logs: LogsRead, options: BlockedOptions, mesh_logging: str) -> dict[str, object]:
    read = [log.pod.ref for log in logs.pods if log.read]
    mesh = mesh_logging or "the mesh config was not read, so whether logging is on elsewhere is unknown"
    return {"pods": pods_phrase(read), "since": duration_text(options.since_seconds), "mesh": mesh}


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# ---- what could not be read ---------------------------------------------------------------------


def read_findings(errors: Iterable[ReadError]) -> list[Finding]:
    """403s (one per verb and resource, every scope named), the API server and the deadline.
    Other failures of single pods are warnings (see _warnings)."""
    findings: list[Finding] = []
    forbidden: dict[tuple[str, str], list[ReadError]] = {}
    for e in errors:
        if e.problem is Problem.FORBIDDEN:
            forbidden.setdefault((e.verb, e.resource), []).append(e)
    for (verb, resource), group in forbidden.items():
        scopes = " and ".join(dict.fromkeys(e.scope for e in group if e.scope))
        consequence = ("the sidecars' logs of those pods were not read (k8s/rbac-blocked.yaml grants get on "
                       "pods/log)") if resource == "pods/log" else (
            "the pods to read could not be selected (k8s/rbac-blocked.yaml grants list on pods)")
        args = {"verb": verb, "resource": resource, "scope": f" {scopes}" if scopes else "",
                "consequence": consequence, "message": group[0].message}
        findings.append(_finding("ED640", args, ""))
    unique = {str(e): e for e in errors}.values()
    for e in unique:
        if e.problem is Problem.UNREACHABLE:
            findings.append(_finding("ED910", {"server": "the Kubernetes API server", "detail": e.message}, ""))
        elif e.problem is Problem.DEADLINE:
            findings.append(_finding("ED911", {"detail": e.message}, ""))
        elif e.problem is Problem.CONFIG:
            findings.append(_finding("ED912", {"detail": e.message}, ""))
        elif e.problem is not Problem.FORBIDDEN and e.resource == "pods" and e.verb == "list":
            findings.append(_finding("ED913", {"request": f"{e.verb} {e.target} {e.scope}".strip(),
                                               "detail": f"HTTP {e.status}: {e.message}" if e.status else e.message},
                                     ""))
    return findings


def _summary(log: PodLog) -> PodSummary:
    tally, error = log.tally, log.error
    return PodSummary(ref=log.pod.ref, lines=tally.lines, access=tally.access, proxy=tally.proxy,
                      unparsed=tally.unparsed, too_long=tally.too_long, bytes=log.bytes,
                      truncated=log.truncated, error=str(error) if error else None, read=log.read)


def _warnings(logs: LogsRead) -> tuple[list[str], list[str]]:
    out: list[str] = []
    if not logs.pods and not logs.without_sidecar and not logs.errors:
        out.append("no pod matched the selection: nothing to read")
    if logs.without_sidecar:
        refs = [p.ref for p in logs.without_sidecar]
        out.append(f"no istio-proxy container (not in the mesh), skipped: {_listing(refs)}")
    for log in logs.pods:
        if log.truncated:
            out.append(f"{log.pod.ref}: log larger than {log.bytes >> 10} KiB in the window; read up to the "
                       f"record of {log.tally.last_record or '?'} (shorten --since or raise --max-log-bytes)")
        if log.error is not None and log.error.problem is not Problem.FORBIDDEN:
            out.append(f"{log.pod.ref}: log not read: {log.error}")
    if logs.not_read:
        out.append(f"the deadline left {len(logs.not_read)} pod log(s) unread: {_listing(logs.not_read)}")
    unparsed = sum(log.tally.unparsed for log in logs.pods)
    samples = [s for log in logs.pods for s in log.tally.samples][:3]
    if unparsed:
        pods = sum(1 for log in logs.pods if log.tally.unparsed)
        out.append(f"{unparsed} line(s) in {pods} pod log(s) are neither Istio's access-log format (text or JSON) "
                   "nor the proxy's own messages; skipped (previews below, credentials masked)")
    too_long = sum(log.tally.too_long for log in logs.pods)
    if too_long:
        out.append(f"{too_long} line(s) longer than 64 KiB skipped")
    overflow = sum(log.tally.overflow for log in logs.pods)
    if overflow:
        out.append(f"{overflow} record(s) of destinations beyond the first 5000 per pod were counted, not listed")
    return out, samples


def _listing(items: Sequence[str], limit: int = 10) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")
