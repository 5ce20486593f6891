"""Is there a sidecar to explain? ED623 (ambient: no sidecar, ztunnel) and ED624 (no Envoy admin
answered), from the view alone. Pure and light: an all-pass run with no Istio objects read needs
these and nothing of the model (diagnose.engine imports rules.mesh only when there is more)."""

from __future__ import annotations

from egress_doctor.diagnose.rules.base import Cause
from egress_doctor.sources.view import MeshView


def ambient(view: MeshView) -> bool:
    sidecar = view.sidecar
    return view.ambient and (sidecar is None or not sidecar.present)


def presence_causes(view: MeshView, namespace: str) -> list[Cause]:
    sidecar = view.sidecar
    if ambient(view):
        return [Cause("ED623", {"namespace": namespace})]
    if sidecar is not None and not sidecar.present:
        detail = sidecar.warnings[0].split("(", 1)[-1].split(")", 1)[0] if sidecar.warnings else "no answer"
        return [Cause("ED624", {"url": sidecar.admin_url, "detail": detail})]
    return []


def pod_namespace(view: MeshView, namespace: str | None) -> str:
    """The pod's namespace: the view's, else the one given, else `default` (mesh_context's too)."""
    return view.pod_namespace or namespace or "default"
