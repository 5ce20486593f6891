"""`analyze`'s diagnosis: the hosts the SDK will contact against the Istio objects, no probes.

    result = analyze(view, endpoints, options)   # checks (one per host), findings, fixes

Each host gets one check: pass when this pod's sidecar would carry it (an entry it sees, declared
for the SDK's protocol, nothing that breaks it; or ALLOW_ANY), fail otherwise. A failing host's
finding is the mesh explanation (ED610-ED622: the entry that exists and why it does not apply,
with the edit of that entry) or, when nothing exists, ED630 with a new ServiceEntry. Findings
and fixes go through the same catalogue and fix builders as `check`. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from egress_doctor.aws.endpoints import SdkEndpoint
from egress_doctor.aws.hosts import is_ip
from egress_doctor.diagnose.engine import DiagnoseOptions, _finding, _merge
from egress_doctor.diagnose.rules.base import Cause, Observation, observe
from egress_doctor.diagnose.rules.mesh import mesh_fixes
from egress_doctor.diagnose.rules.mesh_explain import (
    ALWAYS_BREAKS,
    ExplainOptions,
    Explanation,
    MeshContext,
    checked,
    explain,
    mesh_context,
    passes,
    registry_only_override,
    visible_service,
)
from egress_doctor.diagnose.rules.notes import modern_endpoint
from egress_doctor.fixes.builders import EgressNeed, build_fixes
from egress_doctor.fixes.edits import repair_refused_entry
from egress_doctor.istio.objects import Mode, ServiceEntry
from egress_doctor.model import CheckResult, Finding, Fix, Identity, RunFacts, Status, Target
from egress_doctor.sources.view import MeshView


@dataclass
class Analysis:
    checks: list[CheckResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)


def check_id(endpoint: SdkEndpoint) -> str:
    return f"analyze.{endpoint.service}"


def _check(endpoint: SdkEndpoint, status: Status, reason: str) -> CheckResult:
    target = Target(url=endpoint.url or f"{endpoint.scheme}://{endpoint.host}/", host=endpoint.host,
                    port=endpoint.port, scheme=endpoint.scheme)
    return CheckResult(id=check_id(endpoint), title=endpoint.purpose, status=status, target=target,
                       reason=reason, subject=endpoint.host)


def _verdict(ctx: MeshContext, endpoint: SdkEndpoint) -> tuple[Status, str, list[Explanation]]:
    host, port, scheme = endpoint.host, endpoint.port, endpoint.scheme
    found = [e for e in explain(ctx, host, port, scheme) if e.blocks]
    if ctx.mode is Mode.ALLOW_ANY:
        found = [e for e in found if e.code in ALWAYS_BREAKS]
    if found:
        return Status.FAIL, f"{found[0].code}: {_short(found[0])}", found
    if passes(ctx, host, port, scheme):
        return Status.PASS, _covered_by(ctx, host), []
    return Status.FAIL, "no ServiceEntry this pod sees covers it (REGISTRY_ONLY)", []


def _short(e: Explanation) -> str:
    entry = e.args.get("entry") or e.args.get("rule") or e.args.get("route") or ""
    return f"{entry}".strip() or "see the finding"


def _covered_by(ctx: MeshContext, host: str) -> str:
    svc = visible_service(ctx.pod, host) if ctx.pod is not None else None
    if svc is not None:
        return f"covered by {svc.entry.meta.ref} ({svc.hostname})"
    return "not registered: passes through (ALLOW_ANY)"


def analyze(view: MeshView, endpoints: Sequence[SdkEndpoint], identity: Identity,
            options: DiagnoseOptions) -> Analysis:
    facts = RunFacts(uid=1000, gid=1000, namespace=view.pod_namespace)
    fix_options = options.fix_options(facts)
    ctx = mesh_context(view, fix_options.namespace, ExplainOptions(fix_options.wildcard, fix_options.istio_api))
    result = Analysis()
    causes: list[Cause] = []
    for endpoint in endpoints:
        status, reason, found = _verdict(ctx, endpoint)
        check = _check(endpoint, status, reason)
        result.checks.append(check)
        observation = observe([check], identity, facts)[0]
        causes += _causes(ctx, endpoint, status, found, observation)
    causes += _refused(ctx, result, identity, facts, {c.args.get("entry") for c in causes})
    override = registry_only_override(ctx)
    if override is not None and any(c.status is Status.FAIL for c in result.checks):
        causes.append(Cause(override.code, override.args))
    causes += [note for c in causes for note in modern_endpoint(c)]
    plan = build_fixes((c.need for c in causes if c.need is not None), fix_options)
    result.findings = _merge(_finding(c, plan, None) for c in causes)
    result.fixes = sorted(plan.fixes + mesh_fixes(causes, view), key=lambda f: f.id)
    return result


def _refused(ctx: MeshContext, result: Analysis, identity: Identity, facts: RunFacts,
             reported: set[object]) -> list[Cause]:
    """Objects in the files that istiod's webhook refuses (`kubectl apply` fails), each a failed check."""
    causes: list[Cause] = []
    for ref, problems in (ctx.pod.refused.items() if ctx.pod is not None else ()):
        check = CheckResult(id="analyze.admission", title=f"{ref} is admitted by istiod's webhook",
                            status=Status.FAIL, reason=problems[0].message, subject=ref)
        result.checks.append(check)
        obj = ctx.by_ref.get(ref)
        if ref in reported or not isinstance(obj, ServiceEntry):
            continue
        edit = checked(ctx, repair_refused_entry(obj, is_ip))
        port = obj.ports[0].number if obj.ports else 0
        args = {"host": ", ".join(obj.hosts), "port": port, "entry": ref, "reason": problems[0].message,
                "evidence": ""}
        causes.append(Cause("ED618", args, observe([check], identity, facts), tuple(obj.hosts), edit=edit))
    return causes


def _need(endpoint: SdkEndpoint, code: str) -> EgressNeed:
    """A `*.ddb.<region>…` host (account unknown) becomes a wildcard entry with resolution NONE."""
    return EgressNeed(endpoint.host, endpoint.port, code, "not covered by any ServiceEntry", endpoint.scheme)


def _causes(ctx: MeshContext, endpoint: SdkEndpoint, status: Status, found: list[Explanation],
            observation: Observation) -> list[Cause]:
    checks = (observation,)
    hosts = (endpoint.host,)
    if found:
        return [Cause(e.code, e.args, checks, hosts, _need(endpoint, e.code) if e.new_entry else None,
                      edit=e.edit) for e in found]
    base = {"host": endpoint.host, "port": endpoint.port, "purpose": endpoint.purpose,
            "namespace": ctx.namespace}
    if status is Status.FAIL:
        source = ctx.pod.mode_source if ctx.pod is not None else "mesh"
        args = {**base, "mode_source": "mesh config" if source == "mesh" else source}
        return [Cause("ED630", args, checks, hosts, _need(endpoint, "ED630"))]
    if ctx.mode is Mode.ALLOW_ANY and ctx.pod is not None and visible_service(ctx.pod, endpoint.host) is None:
        return [Cause("ED631", base, checks, hosts)]
    return []
