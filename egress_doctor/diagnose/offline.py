"""`analyze`'s diagnosis: the hosts the SDK will contact against the Istio objects, no probes.

    result = analyze(view, endpoints, options)   # checks (one per host), findings, fixes

Each host gets one check: pass when the model of istiod says this pod reaches it (the whole path,
through an egress gateway when the route goes there; or ALLOW_ANY), fail otherwise. A failing
host's findings come from the same plan as `check`'s (diagnose.rules.mesh_plan): every cause,
each fix applied to the model until the host is reachable; when nothing exists to edit, ED630
with a new ServiceEntry; when no fix opens it, ED626 and no fix. Findings and fixes go through
the same catalogue and fix builders as `check`. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from egress_doctor.aws.endpoints import SdkEndpoint
from egress_doctor.aws.hosts import is_ip
from egress_doctor.diagnose.engine import DiagnoseOptions, _finding, _merge
from egress_doctor.diagnose.rules.base import Cause, Observation, observe
from egress_doctor.diagnose.rules.mesh import mesh_fixes, plan_causes
from egress_doctor.diagnose.rules.mesh_context import ExplainOptions, Explanation, MeshContext, mesh_context
from egress_doctor.diagnose.rules.mesh_explain import checked, passes, registry_only_override, visible_service
from egress_doctor.diagnose.rules.mesh_plan import ModelState, plan_host
from egress_doctor.diagnose.rules.notes import modern_endpoint
from egress_doctor.fixes.builders import EgressNeed, FixOptions, build_fixes
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


def _short(e: Explanation) -> str:
    entry = e.args.get("entry") or e.args.get("rule") or e.args.get("route") or ""
    return f"{entry}".strip() or "see the finding"


def _covered_by(ctx: MeshContext, host: str) -> str:
    svc = visible_service(ctx.scope, host) if ctx.scope is not None else None
    if svc is not None:
        return f"covered by {svc.ref} ({svc.hostname})"
    return "not registered: passes through (ALLOW_ANY)"


def analyze(view: MeshView, endpoints: Sequence[SdkEndpoint], identity: Identity,
            options: DiagnoseOptions) -> Analysis:
    facts = RunFacts(uid=1000, gid=1000, namespace=view.pod_namespace)
    fix_options = options.fix_options(facts, view)
    ctx = mesh_context(view, fix_options.namespace, ExplainOptions(fix_options.wildcard, fix_options.istio_api,
                                                                         fix_options.egress_via))
    state = ModelState(ctx)
    result = Analysis()
    causes: list[Cause] = []
    for endpoint in endpoints:
        observation, found = _host(state, ctx, endpoint, identity, facts, fix_options)
        result.checks.append(observation.check)
        causes += found
    causes += _refused(ctx, result, identity, facts, {c.args.get("entry") for c in causes})
    override = registry_only_override(ctx)
    if override is not None and any(c.status is Status.FAIL for c in result.checks):
        causes.append(Cause(override.code, override.args))
    causes += [note for c in causes for note in modern_endpoint(c)]
    plan = build_fixes((c.need for c in causes if c.need is not None), fix_options)
    result.findings = _merge(_finding(c, plan, None) for c in causes)
    result.fixes = sorted(plan.fixes + mesh_fixes(causes, view, fix_options), key=lambda f: f.id)
    return result


def _host(state: ModelState, ctx: MeshContext, endpoint: SdkEndpoint, identity: Identity, facts: RunFacts,
          fix_options: FixOptions) -> tuple[Observation, list[Cause]]:
    """One endpoint's check and causes; the plan's fixes stay in the model for the next host."""
    host, port, scheme = endpoint.host, endpoint.port, endpoint.scheme
    base = {"host": host, "port": port, "purpose": endpoint.purpose, "namespace": ctx.namespace}
    if passes(state.ctx, host, port, scheme):
        observation = observe([_check(endpoint, Status.PASS, _covered_by(state.ctx, host))], identity, facts)[0]
        unregistered = state.ctx.mode is Mode.ALLOW_ANY and state.ctx.scope is not None \
            and visible_service(state.ctx.scope, host) is None
        return observation, [Cause("ED631", base, (observation,), (host,))] if unregistered else []
    source = ctx.scope.mode_source if ctx.scope is not None else "mesh"
    args = {**base, "mode_source": "mesh config" if source == "mesh" else source}
    fallback = Explanation("ED630", args, host, port, new_entry=True)
    plan = plan_host(state, host, port, scheme, fix_options, fallback)
    reason = (f"{plan.explanations[0].code}: {_short(plan.explanations[0])}" if plan.explanations
              else "no ServiceEntry this pod sees covers it (REGISTRY_ONLY)")
    observation = observe([_check(endpoint, Status.FAIL, reason)], identity, facts)[0]
    replaced = Cause("ED630", args, (observation,), (host,), _need(endpoint, "ED630"))
    if not plan.explanations:
        return observation, [replaced]
    return observation, plan_causes(plan, plan.explanations, replaced, fallback)


def _refused(ctx: MeshContext, result: Analysis, identity: Identity, facts: RunFacts,
             reported: set[object]) -> list[Cause]:
    """Objects in the files that istiod's webhook refuses (`kubectl apply` fails), each a failed check."""
    causes: list[Cause] = []
    for ref, problems in (ctx.scope.refused.items() if ctx.scope is not None else ()):
        check = CheckResult(id="analyze.admission", title=f"{ref} is admitted by istiod's webhook",
                            status=Status.FAIL, reason=problems[0].message, subject=ref)
        result.checks.append(check)
        obj = next((o for o in ctx.view.objects or () if o.meta.ref == ref), None)
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
