"""Mesh rules: what the `MeshView` (the sidecar's admin view, the Istio objects) says about a host
the other rules found blocked, and the run-level mesh facts.

With a view, the generic "host not in the registry" causes become the precise ones the catalogue
marks as refined by the mesh (`refines` in catalogue.yaml): not exported, hidden by a Sidecar,
declared HTTP, a near-miss name, refused by the webhook, a DNS cluster without endpoints, an
egress gateway that cannot route it, or "this sidecar has no entry for it; it has one for …".
Each host's causes come from `mesh_plan`: every cause found, each fix applied to the model and
the host re-evaluated until the model says it is reachable. A host the plan cannot open gets
ED626 and no fix at all (a wrong fix is worse than none). Without a view nothing changes. Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from egress_doctor.diagnose.catalogue import codes_with
from egress_doctor.diagnose.rules.base import Cause, RunContext
from egress_doctor.diagnose.rules.mesh_context import ExplainOptions, Explanation, MeshContext, mesh_context
from egress_doctor.diagnose.rules.mesh_explain import passes
from egress_doctor.diagnose.rules.mesh_explain import registry_only_override as _override
from egress_doctor.diagnose.rules.mesh_gateways import refused_beyond_gateway
from egress_doctor.diagnose.rules.mesh_plan import HostPlan, ModelState, new_entry_manifest, plan_host
from egress_doctor.diagnose.rules.mesh_presence import ambient, presence_causes
from egress_doctor.diagnose.rules.predicted import predicted
from egress_doctor.fixes.builders import EgressNeed, FixOptions
from egress_doctor.fixes.edits import edit_fixes, edited_manifest, namespaced_alternative
from egress_doctor.istio.objects import Ignored
from egress_doctor.istio.parse import parse_object
from egress_doctor.model import Fix
from egress_doctor.sources.view import MeshView

PREDICTED = "ED307"  # a host not called yet, predicted blocked


def refine_causes(
    causes: Sequence[Cause], ctx: RunContext, view: MeshView | None, fix_options: FixOptions,
    options: ExplainOptions | None = None,
) -> list[Cause]:
    """The causes with mesh explanations swapped in, plus the run-level mesh causes."""
    if view is None:
        return list(causes)
    state = ModelState(mesh_context(view, fix_options.namespace, options))
    out: list[Cause] = []
    for c in causes:
        out += _refine(c, ctx, state, fix_options) if ctx.sidecar_in_path else [c]
    if ctx.sidecar_in_path:
        for c in _model_predicted(causes, ctx, state):
            out += _refine(c, ctx, state, fix_options)
    blocked = any(c.code in codes_with("blocked") or c.code in codes_with("mesh_blocks") for c in out)
    return out + run_causes(state.ctx, blocked)


def _model_predicted(causes: Sequence[Cause], ctx: RunContext, state: ModelState) -> list[Cause]:
    """Calls skipped because an earlier one failed, whose host the model says this pod cannot reach
    either (the registry-block prediction covers only what a blocked host proves)."""
    if state.ctx.world is None:
        return []
    known = {(c.need.host, c.need.port) for c in causes if c.need is not None}
    known |= {(o.host, o.port) for c in causes for o in c.checks}
    known |= {(o.host, o.port) for o in ctx.observations if not o.skipped}
    failed = next((o.id for o in ctx.observations if o.failed), "an earlier check")
    out = []
    for o in ctx.observations:
        if not o.skipped or o.host is None or o.port is None or (o.host, o.port) in known:
            continue
        known.add((o.host, o.port))
        if passes(state.ctx, o.host, o.port, o.scheme) is False:
            out.append(predicted(o, failed))
    return out


def _destination(c: Cause) -> tuple[str, int, str] | None:
    if c.need is not None:
        return c.need.host, c.need.port, c.need.scheme
    o = next((o for o in c.checks if o.host is not None), None)
    if o is None or o.port is None:
        return None
    return o.host or "", o.port, o.scheme


def _ambient(mctx: MeshContext) -> bool:
    return ambient(mctx.view)


def _refine(c: Cause, ctx: RunContext, state: ModelState, fix_options: FixOptions) -> list[Cause]:
    refines = codes_with("refines")
    if c.code not in refines or (where := _destination(c)) is None:
        return [c]
    if _ambient(state.ctx) and c.code in codes_with("blocked"):
        # No sidecar blocked it: ztunnel does not enforce REGISTRY_ONLY; a ServiceEntry alone is no fix.
        return [Cause("ED623", {"namespace": state.ctx.namespace}, c.checks, c.hosts)]
    allowed = refines[c.code]
    if c.code == PREDICTED and passes(state.ctx, *where):
        return []  # the prediction assumed the host unregistered; the view says it is carried
    fallback = Explanation(c.code, c.args, where[0], where[1], new_entry=c.need is not None)
    plan = plan_host(state, *where, fix_options, fallback if c.code in codes_with("blocked") else None)
    found = [e for e in plan.explanations if allowed is None or e.code in allowed or e is fallback]
    if not found and not plan.remaining and c.code in codes_with("blocked") and (
            beyond := refused_beyond_gateway(state.ctx.world, *where, state.ctx.view.read_errors)) is not None:
        return [Cause(beyond.code, beyond.args, c.checks, c.hosts)]  # no Istio fix: the gateway's egress
    if not found and plan.remaining:  # blocked beyond the sidecar, and nothing says why
        return [dataclasses.replace(c, need=None, edit=None), unverified(plan, c)]
    if not found:
        return [c]
    return plan_causes(plan, found, c, fallback)


def plan_causes(plan: HostPlan, found: list[Explanation], replaced: Cause,
                fallback: Explanation | None = None) -> list[Cause]:
    """One cause per explanation (the fallback stays the cause it stood for); with ED626 and no
    fixes when the plan is not verified."""
    causes = [_kept(replaced, plan) if e is fallback else _cause(e, replaced, plan) for e in found]
    if plan.verified or not any(e.edit is not None or e.new_entry for e in found):
        return causes
    stripped = [dataclasses.replace(c, need=None, edit=None) for c in causes]
    return [*stripped, unverified(plan, replaced)]


def unverified(plan: HostPlan, replaced: Cause) -> Cause:
    considered = "; ".join(f"{e.code} {e.edit.summary if e.edit else 'a new ServiceEntry'}"
                           for e in plan.explanations) or "nothing"
    args = {"host": plan.host, "port": plan.port, "considered": considered,
            "remaining": plan.remaining or "the model still blocks it"}
    return Cause("ED626", args, replaced.checks, replaced.hosts)


def _kept(replaced: Cause, plan: HostPlan) -> Cause:
    if replaced.need is None:
        return replaced
    return dataclasses.replace(replaced, need=dataclasses.replace(replaced.need, export_to=plan.export_to))


def _cause(e: Explanation, replaced: Cause, plan: HostPlan) -> Cause:
    # The fix's comment must name the finding the user sees, not the one this replaced.
    need = None
    if e.new_entry and replaced.need is not None:
        need = dataclasses.replace(replaced.need, code=e.code, export_to=plan.export_to)
    elif e.new_entry:  # the call failed past the sidecar (a gateway's missing entry): the plan's host
        need = EgressNeed(plan.host, plan.port, e.code, "no ServiceEntry for it", plan.scheme, plan.export_to)
    return Cause(e.code, e.args, replaced.checks, replaced.hosts, need, replaced.hold_proxy,
                 replaced.consumes, e.edit)


def run_causes(mctx: MeshContext, blocked: bool) -> list[Cause]:
    """ED623 ambient, ED624 no admin answered, ED612 REGISTRY_ONLY from a Sidecar (with a block)."""
    out = presence_causes(mctx.view, mctx.namespace)
    override = _override(mctx)
    if blocked and override is not None:
        out.append(Cause(override.code, override.args))
    return out


def mesh_fixes(causes: Iterable[Cause], view: MeshView | None, options: FixOptions | None = None) -> list[Fix]:
    """One fix per edited (or created) object, its description naming the findings it answers."""
    causes = list(causes)
    with_edit = [c for c in causes if c.edit is not None]
    reasons: dict[str, list[str]] = {}
    for c in with_edit:
        assert c.edit is not None
        where = ", ".join(c.hosts) or "this pod"
        line = f"egress-doctor: {c.code} — {where}"
        if line not in reasons.setdefault(c.edit.fix_id, []):
            reasons[c.edit.fix_id].append(line)
    manifests = view.manifests if view is not None else {}
    edits = [c.edit for c in with_edit if c.edit is not None]
    alternatives = _alternatives(causes, view, options or FixOptions()) if view is not None else {}
    return edit_fixes(edits, manifests, {k: "\n".join(v) for k, v in reasons.items()}, alternatives)


def _alternatives(causes: list[Cause], view: MeshView, options: FixOptions) -> dict[str, dict[str, Any]]:
    """For each mesh-wide edit, the same object for the pod's namespace alone — kept only when the
    model, with it instead of the mesh-wide edit and every other fix applied, reaches each host."""
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[Cause]] = {}
    for c in causes:
        if c.edit is not None and c.edit.mesh_wide_for:
            groups.setdefault(c.edit.fix_id, []).append(c)
    for fix_id, group in groups.items():
        edits = [c.edit for c in group if c.edit is not None]
        manifest, _, _ = edited_manifest(edits, view.manifests)
        alternative = namespaced_alternative(edits[0], manifest, options.taken)
        if _verified_with(alternative, fix_id, causes, view, options):
            out[fix_id] = alternative
    return out


def _verified_with(alternative: dict[str, Any], replaced: str, causes: list[Cause], view: MeshView,
                   options: FixOptions) -> bool:
    state = ModelState(mesh_context(view, options.namespace))
    if state.ctx.world is None:
        return False
    objects = {o.meta.ref: o for o in state.ctx.world.objects}
    others: dict[str, list[Any]] = {}
    for c in causes:
        if c.edit is not None and c.edit.fix_id != replaced:
            others.setdefault(c.edit.fix_id, []).append(c.edit)
    documents = [edited_manifest(group, view.manifests)[0] for group in others.values()]
    documents += [new_entry_manifest(c.need.host, c.need.port, c.need.scheme, options, c.need.export_to or
                                     options.export_to) for c in causes if c.need is not None]
    for document in [*documents, alternative]:
        obj = parse_object(document, str(document["metadata"]["namespace"]), "planned")
        if not isinstance(obj, Ignored):
            objects[obj.meta.ref] = obj
    ctx = state.ctx.with_objects(tuple(objects.values()))
    hosts = {(d[0], d[1], d[2]) for c in causes if c.edit is not None and c.edit.fix_id == replaced
             if (d := _destination(c)) is not None}
    return all(passes(ctx, *h) for h in hosts)
