"""Mesh rules: what the `MeshView` (the sidecar's admin view, the Istio objects) says about a host
the other rules found blocked, and the run-level mesh facts.

With a view, the generic "host not in the registry" causes (ED301 TLS closed, ED401 block_all,
ED205 plain-HTTP closed, ED307 predicted) become the precise one (ED610-ED625): not exported,
hidden by a Sidecar, declared HTTP, a near-miss name, refused by the webhook, a DNS cluster
without endpoints, or "this sidecar has no entry for it; it has one for …". ED305 (TLS spoken to
a plaintext listener) becomes ED620 when a DestinationRule originates TLS, ED403 (no healthy
upstream) ED619. Their fix edits the object that exists (`Cause.edit`) rather than adding a new
one beside it. Without a view nothing changes. Pure: the view was read before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from egress_doctor.diagnose.rules.base import Cause, RunContext
from egress_doctor.diagnose.rules.mesh_explain import (
    ExplainOptions,
    Explanation,
    MeshContext,
    explain,
    mesh_context,
    passes,
)
from egress_doctor.diagnose.rules.mesh_explain import registry_only_override as _override
from egress_doctor.fixes.edits import edit_fixes
from egress_doctor.model import Fix
from egress_doctor.sources.view import MeshView

# Generic "unknown destination" causes, and the mesh codes that may replace each.
PREDICTED = "ED307"  # a host not called yet, predicted blocked
BLOCKED = ("ED301", "ED401", "ED205", PREDICTED)
REFINES: dict[str, tuple[str, ...] | None] = {
    **{code: None for code in BLOCKED},  # None: any mesh explanation
    "ED305": ("ED620",),
    "ED403": ("ED619",),
}
# Mesh codes that explain a blocked destination (ED612 is context for them).
MESH_BLOCKS = ("ED610", "ED611", "ED613", "ED614", "ED615", "ED616", "ED617", "ED618", "ED619", "ED625")


def refine_causes(
    causes: Sequence[Cause], ctx: RunContext, view: MeshView | None, namespace: str,
    options: ExplainOptions | None = None,
) -> list[Cause]:
    """The causes with mesh explanations swapped in, plus the run-level mesh causes."""
    if view is None:
        return list(causes)
    mctx = mesh_context(view, namespace, options)
    out: list[Cause] = []
    for c in causes:
        out += _refine(c, ctx, mctx) if ctx.sidecar_in_path else [c]
    blocked = any(c.code in BLOCKED or c.code in MESH_BLOCKS for c in out)
    return out + run_causes(mctx, blocked)


def _destination(c: Cause) -> tuple[str, int, str] | None:
    if c.need is not None:
        return c.need.host, c.need.port, c.need.scheme
    o = next((o for o in c.checks if o.host is not None), None)
    if o is None or o.port is None:
        return None
    return o.host or "", o.port, o.scheme


def _ambient(mctx: MeshContext) -> bool:
    sidecar = mctx.view.sidecar
    return mctx.view.ambient and (sidecar is None or not sidecar.present)


def _refine(c: Cause, ctx: RunContext, mctx: MeshContext) -> list[Cause]:
    if c.code not in REFINES or (where := _destination(c)) is None:
        return [c]
    if _ambient(mctx) and c.code in BLOCKED:
        # No sidecar blocked it: ztunnel does not enforce REGISTRY_ONLY; a ServiceEntry alone is no fix.
        return [Cause("ED623", {"namespace": mctx.namespace}, c.checks, c.hosts)]
    allowed = REFINES[c.code]
    found = [e for e in explain(mctx, *where) if e.blocks and (allowed is None or e.code in allowed)]
    if not found and c.code == PREDICTED and passes(mctx, *where):
        return []  # the prediction assumed the host unregistered; the view says it is carried
    if not found:
        return [c]
    return [_cause(e, c) for e in found]


def _cause(e: Explanation, replaced: Cause) -> Cause:
    # The fix's comment must name the finding the user sees, not the one this replaced.
    need = dataclasses.replace(replaced.need, code=e.code) if e.new_entry and replaced.need else None
    return Cause(e.code, e.args, replaced.checks, replaced.hosts, need, replaced.hold_proxy,
                 replaced.consumes, e.edit)


def run_causes(mctx: MeshContext, blocked: bool) -> list[Cause]:
    """ED623 ambient, ED624 no admin answered, ED612 REGISTRY_ONLY from a Sidecar (with a block)."""
    view = mctx.view
    sidecar = view.sidecar
    out: list[Cause] = []
    absent = sidecar is not None and not sidecar.present
    if _ambient(mctx):
        out.append(Cause("ED623", {"namespace": mctx.namespace}))
    elif absent and sidecar is not None:
        detail = sidecar.warnings[0].split("(", 1)[-1].split(")", 1)[0] if sidecar.warnings else "no answer"
        out.append(Cause("ED624", {"url": sidecar.admin_url, "detail": detail}))
    override = _override(mctx)
    if blocked and override is not None:
        out.append(Cause(override.code, override.args))
    return out


def mesh_fixes(causes: Iterable[Cause], view: MeshView | None) -> list[Fix]:
    """One fix per edited (or created) object, its description naming the findings it answers."""
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
    return edit_fixes(edits, manifests, {k: "\n".join(v) for k, v in reasons.items()})
