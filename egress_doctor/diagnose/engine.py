"""diagnose(): one run's evidence in, findings and fixes out. Pure: no I/O, no clock.

    diagnosis = diagnose(identity, checks, facts, DiagnoseOptions(namespace="payments"))

Order of work: run-level rules (they may explain checks away), then one verdict per check for
AWS answers and credential-stage errors, then one root cause per destination for everything
that broke on the wire. Causes that only a mesh change can cure carry a need; the needs become
ServiceEntries (or pod-template patches) and each finding names the fix that addresses it.
Findings whose cause is not the mesh have `fix=None`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from egress_doctor.diagnose.catalogue import entry
from egress_doctor.diagnose.rules import CHECK_RULES, HOST_RULES, RUN_RULES
from egress_doctor.diagnose.rules.base import Cause, HostGroup, Observation, RunContext, observe
from egress_doctor.diagnose.rules.mesh_presence import pod_namespace, presence_causes
from egress_doctor.diagnose.rules.notes import modern_endpoint
from egress_doctor.diagnose.rules.predicted import predicted_destinations
from egress_doctor.fixes.builders import (
    FixOptions,
    FixPlan,
    build_fixes,
    hold_until_proxy_starts_fix,
)
from egress_doctor.model import CheckResult, Finding, Fix, Identity, RunFacts, Symptom
from egress_doctor.sources.view import MeshView

LEVEL_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class DiagnoseOptions:
    namespace: str | None = None  # where fixes go; default: the pod's namespace, else "default"
    istio_api: str = "v1"  # "v1beta1" for Istio 1.5-1.21, "v1alpha3" for older
    wildcard: bool = False  # allow *.ddb.<region>… (resolution NONE) instead of one account's host
    imds_fix: str = "serviceentry"  # or "annotation": exclude metadata addresses from capture
    export_to: Sequence[str] = field(default=(".",))
    egress_via: str = ""  # --egress-via: "", "direct" or "NS/GATEWAY"

    def fix_options(self, facts: RunFacts, mesh: MeshView | None = None) -> FixOptions:
        """`mesh`: the objects in view, whose names a new object must not take."""
        objects = mesh.objects if mesh is not None and mesh.objects is not None else ()
        return FixOptions(
            namespace=self.namespace or facts.namespace or "default",
            istio_api=self.istio_api,
            wildcard=self.wildcard,
            imds_fix=self.imds_fix,
            export_to=tuple(self.export_to),
            egress_via=self.egress_via,
            taken=frozenset((o.meta.kind, o.meta.namespace, o.meta.name) for o in objects),
        )


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)


def diagnose(
    identity: Identity,
    checks: Sequence[CheckResult],
    facts: RunFacts,
    options: DiagnoseOptions | None = None,
    mesh: MeshView | None = None,
) -> Diagnosis:
    """`mesh`: what the sidecar's admin port and the Istio objects say (None: not read)."""
    options = options or DiagnoseOptions()
    fix_options = options.fix_options(facts, mesh)  # validates the options before any work
    ctx = RunContext(identity, facts, observe(list(checks), identity, facts))
    causes = find_causes(ctx)
    causes = [_gate(c, ctx) for c in causes]
    if mesh is not None and (causes or mesh.objects is not None):
        from egress_doctor.diagnose.rules.mesh import refine_causes
        from egress_doctor.diagnose.rules.mesh_context import ExplainOptions

        explain_options = ExplainOptions(wildcard=fix_options.wildcard, istio_api=fix_options.istio_api,
                                         egress_via=fix_options.egress_via)
        causes = refine_causes(causes, ctx, mesh, fix_options, explain_options)
    elif mesh is not None:  # nothing failed, no Istio objects: only whether a sidecar answered
        causes = presence_causes(mesh, pod_namespace(mesh, fix_options.namespace))
    causes += [note for c in causes for note in modern_endpoint(c)]
    plan = build_fixes((c.need for c in causes if c.need is not None), fix_options)
    hold = _hold_fix(causes, fix_options)
    findings = _merge(_finding(c, plan, hold) for c in causes)
    fixes = sorted(plan.fixes + _mesh_fixes(causes, mesh, fix_options) + ([hold] if hold else []), key=lambda f: f.id)
    return Diagnosis(findings=findings, fixes=fixes)


def _mesh_fixes(causes: Sequence[Cause], mesh: MeshView | None, fix_options: FixOptions) -> list[Fix]:
    if not any(c.edit is not None for c in causes):
        return []
    from egress_doctor.diagnose.rules.mesh import mesh_fixes

    return mesh_fixes(causes, mesh, fix_options)


def find_causes(ctx: RunContext) -> list[Cause]:
    """Every rule's verdict for this run, before any fix is decided."""
    causes: list[Cause] = []
    for run_rule in RUN_RULES:
        causes += run_rule(ctx)
    consumed = frozenset().union(*(c.consumes for c in causes))
    pending = [o for o in ctx.observations if o.failed and o.index not in consumed]
    by_check = [o for o in pending if _judged_alone(o)]
    for o in by_check:
        causes.append(_first_check_cause(o, ctx))
    for group in host_groups(o for o in pending if not _judged_alone(o)):
        causes.append(_first_host_cause(group, ctx))
    causes += predicted_destinations(ctx, causes)
    return causes


def _judged_alone(o: Observation) -> bool:
    """Checks whose verdict needs no other check: no destination, AWS answers, the tool's own trouble."""
    if o.host is None or o.symptom in (Symptom.CREDENTIALS, Symptom.DEADLINE, None):
        return True
    return o.symptom is Symptom.AWS_ERROR and not o.is_metadata


def host_groups(observations: Iterable[Observation]) -> list[HostGroup]:
    """Failing checks by destination, in the order destinations first appear."""
    groups: dict[tuple[str, int], list[Observation]] = {}
    for o in observations:
        groups.setdefault((str(o.host), int(o.port or 0)), []).append(o)
    return [HostGroup(host, port, obs[0].scheme, tuple(obs)) for (host, port), obs in groups.items()]


def _context_group(group: HostGroup, ctx: RunContext) -> HostGroup:
    """The group with the passing and skipped checks on the same destination (rules compare them)."""
    same = tuple(o for o in ctx.observations if o.host == group.host and o.port == group.port)
    kept = tuple(o for o in same if not o.failed or o in group.observations)
    return HostGroup(group.host, group.port, group.scheme, kept)


def _first_host_cause(group: HostGroup, ctx: RunContext) -> Cause:
    full = _context_group(group, ctx)
    for rule in HOST_RULES:
        try:
            found = rule(full, ctx)
        except Exception as exc:  # a rule bug must not hide the other findings
            return _internal(group.root, f"rule {rule.__name__} raised {type(exc).__name__}: {exc}")
        if found is not None:
            return found
    return _internal(group.root, f"no rule explains {group.root.symptom or 'this failure'}")


def _first_check_cause(o: Observation, ctx: RunContext) -> Cause:
    if o.symptom is Symptom.DEADLINE:
        return Cause("ED901", {"check": o.check.title or o.id}, checks=(o,), hosts=_hosts(o))
    if o.symptom is None:
        return _internal(o, o.detail() + " (no symptom was classified)")
    for rule in CHECK_RULES:
        try:
            found = rule(o, ctx)
        except Exception as exc:
            return _internal(o, f"rule {rule.__name__} raised {type(exc).__name__}: {exc}")
        if found is not None:
            return found
    return _internal(o, f"no rule explains {o.symptom}")


def _hosts(o: Observation) -> tuple[str, ...]:
    return (o.host,) if o.host else ()


def _internal(o: Observation, detail: str) -> Cause:
    return Cause("ED902", {"check": o.id, "detail": detail}, checks=(o,), hosts=_hosts(o))


def _gate(c: Cause, ctx: RunContext) -> Cause:
    """Drop a need no manifest can serve: proxied destinations, IPs that are not metadata addresses."""
    need = c.need
    if need is None:
        return c
    proxied = ctx.proxy_for(need.scheme, need.host) is not None
    if not (proxied or not ctx.sidecar_in_path):
        return c
    return Cause(c.code, c.args, c.checks, c.hosts, None, c.hold_proxy, c.consumes)


def _hold_fix(causes: list[Cause], options: FixOptions) -> Fix | None:
    held = next((c for c in causes if c.hold_proxy), None)
    if held is None:
        return None
    return hold_until_proxy_starts_fix(held.code, "sidecar not listening (connections refused)", options)


def _fix_id(c: Cause, plan: FixPlan, hold: Fix | None) -> str | None:
    if c.edit is not None:
        return c.edit.fix_id
    if c.need is not None:
        return plan.by_host[c.need.host]
    if c.hold_proxy and hold is not None:
        return hold.id
    return None


def _finding(c: Cause, plan: FixPlan, hold: Fix | None) -> Finding:
    e = entry(c.code)
    return Finding(
        code=e.code,
        level=e.level,
        title=e.title,
        message=e.render(c.args),
        checks=list(dict.fromkeys(o.id for o in c.checks)),
        hosts=list(dict.fromkeys(c.hosts)),
        docs=e.docs,
        fix=_fix_id(c, plan, hold),
    )


def _merge(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per (code, message); sorted by level, code, hosts, message."""
    merged: dict[tuple[str, str], Finding] = {}
    for f in findings:
        seen = merged.get((f.code, f.message))
        if seen is None:
            merged[(f.code, f.message)] = f
            continue
        seen.checks = list(dict.fromkeys(seen.checks + f.checks))
        seen.hosts = list(dict.fromkeys(seen.hosts + f.hosts))
        seen.fix = seen.fix or f.fix
    return sorted(merged.values(), key=lambda f: (LEVEL_ORDER[f.level], f.code, f.hosts, f.message))
