"""Every cause of one blocked host, each fix applied to the model, until the model says the host
is reachable (pure). Only a verified plan is printed; otherwise ED626 says what blocks it still.

    plan, ctx = plan_host(ctx, "sts.us-east-1.amazonaws.com", 443, "https", NewEntries(...))

Round by round: the model's root cause for host:port (diagnose.rules.mesh_explain), its edit
applied to the object (the JSON patch on the manifest as read or as edited so far) or, where
nothing exists to edit, the new ServiceEntry the fix will print added to the model; then the
whole path (sidecar, egress gateway) is evaluated again. A host hidden by exportTo *and* declared
HTTP gets both edits in one plan; a new entry that the pod's Sidecar does not import gets the
Sidecar edit too; a new entry the egress gateway must route is exported to the gateway's
namespace; a new entry for a host the mesh would send out directly while its VirtualServices
send the other external hosts through a gateway is routed the same way (ED662). Hosts are
planned one after the other on the same model, so the fixes of every host
hold together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from egress_doctor.aws.hosts import is_ip
from egress_doctor.diagnose.rules.mesh_context import Explanation, MeshContext
from egress_doctor.diagnose.rules.mesh_egress_policy import ROUTED_LIKE_SIBLINGS, follow_the_mesh, listed_on_gateway
from egress_doctor.diagnose.rules.mesh_explain import explain, passes
from egress_doctor.fixes.builders import FixOptions, entry_name, external_service_entry, metadata_service_entry
from egress_doctor.fixes.edits import Edit, edited_manifest
from egress_doctor.istio.objects import Ignored, IstioObject, IstioParseError
from egress_doctor.istio.parse import parse_object
from egress_doctor.istio.reach import Stop, reach

ROUNDS = 6  # causes of one host found and mended at most; more means the plan does not converge
PLANNED = "planned"  # Meta.source of an object a fix creates: it does not exist yet


@dataclass
class HostPlan:
    host: str
    port: int
    scheme: str
    explanations: list[Explanation] = field(default_factory=list)
    verified: bool = False
    created: str = ""  # the ref of the new ServiceEntry the plan adds, if any
    remaining: str = ""  # what still blocks it, in words, when not verified
    export_to: tuple[str, ...] = ()  # a new entry's exportTo, when the plan creates one


@dataclass
class ModelState:
    """The model under construction: the context and the manifests as edited so far."""

    ctx: MeshContext
    manifests: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def read(self) -> Mapping[str, Mapping[str, Any]]:
        return {**self.ctx.view.manifests, **self.manifests}


def plan_host(state: ModelState, host: str, port: int, scheme: str, options: FixOptions,
              fallback: Explanation | None = None) -> HostPlan:
    """Find and apply causes until the host is reachable in the model (or no fix is left).
    `fallback`: the cause when the model finds none but the path is blocked (nothing registers the
    host: a new entry)."""
    plan = HostPlan(host, port, scheme, export_to=tuple(options.export_to))
    if state.ctx.world is None and state.ctx.sidecar is None:
        return plan
    for _ in range(ROUNDS):
        if state.ctx.world is not None and passes(state.ctx, host, port, scheme):
            follow = follow_the_mesh(state.ctx, plan.created, host, port, scheme, options.egress_via)
            if follow is None and any(e.code in ROUTED_LIKE_SIBLINGS for e in plan.explanations) and not any(
                    e.code == "ED665" for e in plan.explanations):
                follow = listed_on_gateway(state.ctx, host, port, scheme)
            if follow is None:
                plan.verified = bool(plan.explanations)
                return plan
            plan.explanations.append(follow)  # a new entry goes out the way the mesh sends the others
            _apply(state, plan, follow, options)
            continue
        found = [e for e in explain(_with_read(state), host, port, scheme) if e.blocks]
        if not found and fallback is not None and not plan.created and _blocked_at_sidecar(state, host, port,
                                                                                          scheme):
            found = [fallback]
        if not found:
            plan.remaining = _unexplained(state, host, port, scheme) or (
                "the model finds no further cause" if plan.explanations else "")
            return plan
        cause = found[0]
        if plan.created and cause.edit is not None and cause.edit.ref == plan.created:
            # the entry this plan creates must reach further (the egress gateway's namespace): it
            # is printed that way rather than edited after the fact
            plan.export_to = _widened(plan.export_to, cause)
            _apply(state, plan, replace(cause, edit=None, new_entry=True), options)
            continue
        plan.explanations.append(cause)
        if cause.edit is None and not cause.new_entry:
            plan.remaining = f"{cause.code} has no edit egress-doctor can make"
            return plan
        _apply(state, plan, cause, options)
    plan.remaining = f"still blocked after {ROUNDS} rounds of fixes"
    return plan


def _blocked_at_sidecar(state: ModelState, host: str, port: int, scheme: str) -> bool:
    """Nothing explains it, and nothing carries it: the model's sidecar blocks it (no objects
    read: what the admin port showed decided that already)."""
    world = state.ctx.world
    return world is None or reach(world, host, port, scheme).stop is Stop.SIDECAR


_STOPS = {
    Stop.NO_CLUSTER: "this pod's sidecar routes it to a cluster it does not have",
    Stop.TLS_ORIGINATION: "a DestinationRule originates TLS on it",
    Stop.GATEWAY_NO_ROUTE: "the egress gateway has no listener or route for it (a VirtualService bound to "
                           "the Gateway needs a route for the host)",
    Stop.GATEWAY_NO_CLUSTER: "the egress gateway has no cluster for it",
    Stop.GATEWAY_DENIED: "an AuthorizationPolicy on the egress gateway refuses it",
}


def _unexplained(state: ModelState, host: str, port: int, scheme: str) -> str:
    """Where the model's path breaks when no explanation says why (beyond the sidecar)."""
    world = state.ctx.world
    if world is None:
        return ""
    return _STOPS.get(reach(world, host, port, scheme).stop, "")


def _widened(export_to: tuple[str, ...], cause: Explanation) -> tuple[str, ...]:
    namespace = str(cause.args.get("namespace", ""))
    return tuple(dict.fromkeys([*export_to, namespace])) if namespace else export_to


def _with_read(state: ModelState) -> MeshContext:
    """The context whose edits start from the manifests as edited so far."""
    if not state.manifests:
        return state.ctx
    view = replace(state.ctx.view, manifests=state.read())
    return replace(state.ctx, view=view)


def _apply(state: ModelState, plan: HostPlan, cause: Explanation, options: FixOptions) -> None:
    world = state.ctx.world
    objects = list(world.objects) if world is not None else []
    if cause.edit is not None:
        manifest = _edited(cause.edit, state.read())
        ref = cause.edit.ref
        state.manifests[ref] = manifest
    else:
        manifest = new_entry_manifest(plan.host, plan.port, plan.scheme, options, plan.export_to)
        ref = f"ServiceEntry {manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
        state.manifests[ref] = manifest
        plan.created = ref
    obj = _parsed(manifest, PLANNED if cause.edit is None or not cause.edit.existing else "edited")
    if obj is None:
        return
    objects = [o for o in objects if o.meta.ref != ref] + [obj]
    state.ctx = state.ctx.with_objects(tuple(objects))


def _edited(edit: Edit, read: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    manifest, _, _ = edited_manifest([edit], read)
    return manifest


def _parsed(manifest: Mapping[str, Any], source: str) -> IstioObject | None:
    namespace = str((manifest.get("metadata") or {}).get("namespace") or "default")
    try:
        obj = parse_object(dict(manifest), namespace, source)
    except IstioParseError:
        return None
    return None if isinstance(obj, Ignored) else obj


def new_entry_manifest(host: str, port: int, scheme: str, options: FixOptions,
                       export_to: tuple[str, ...]) -> dict[str, Any]:
    """The ServiceEntry `fixes.builders` prints for host:port, as the model sees it."""
    if is_ip(host):
        manifest = metadata_service_entry(host, port, namespace=options.namespace, istio_api=options.istio_api,
                                          export_to=export_to)
        manifest["metadata"]["name"] = entry_name(host, options)
        return manifest
    return external_service_entry(entry_name(host, options), [host], [(port, "TLS" if scheme == "https" else "HTTP")],
                                  namespace=options.namespace, istio_api=options.istio_api, export_to=export_to)
