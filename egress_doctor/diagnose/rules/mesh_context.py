"""The mesh as the explanations see it, prepared once per run (pure): the model's world for the
pod (istio.reach.World: the objects read, the Kubernetes Services the routes assume, the mesh
config, the pod), the sidecar's admin view while it still describes the mesh, and what an
explanation returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from egress_doctor.diagnose.rules.mesh_presence import pod_namespace
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.objects import IstioObject, MeshConfig, Mode
from egress_doctor.istio.reach import World, assumed_services
from egress_doctor.istio.scope import Proxy, Scope
from egress_doctor.sources.view import MeshView, SidecarView


@dataclass(frozen=True)
class ExplainOptions:
    wildcard: bool = False  # near-miss edits may add *.ddb.<region>… to a resolution NONE entry
    istio_api: str = "v1"  # for objects created from scratch (Gateway, DestinationRule)
    egress_via: str = ""  # --egress-via: "direct", "NS/GATEWAY", or "" (follow the mesh's siblings)


@dataclass(frozen=True)
class Explanation:
    code: str
    args: Mapping[str, object]
    host: str
    port: int
    edit: Edit | None = None
    new_entry: bool = False  # a new ServiceEntry for the host is the fix (fixes.builders)
    blocks: bool = True  # explains why the host fails (False: context for another finding)


@dataclass
class MeshContext:
    """A view prepared once per run: the model's world for the pod, and an index by ref."""

    view: MeshView
    namespace: str
    world: World | None
    options: ExplainOptions = field(default_factory=ExplainOptions)
    # The sidecar's admin view describes the mesh as it is; once a fix is applied to the model it
    # no longer does, and only the model speaks.
    live: bool = True

    @cached_property
    def by_ref(self) -> dict[str, IstioObject]:
        return {o.meta.ref: o for o in self.world.objects} if self.world else {}

    @cached_property
    def taken(self) -> frozenset[tuple[str, str, str]]:
        """(kind, namespace, name) of every object read: names a new object must not take."""
        return frozenset((o.meta.kind, o.meta.namespace, o.meta.name) for o in self.view.objects or ())

    @property
    def scope(self) -> Scope | None:
        return self.world.scope if self.world else None

    @property
    def sidecar(self) -> SidecarView | None:
        sc = self.view.sidecar
        return sc if self.live and sc is not None and sc.present else None

    @property
    def mode(self) -> Mode | None:
        """What the sidecar says when read, else what the objects say."""
        if self.sidecar is not None and self.sidecar.outbound_mode is not None:
            return self.sidecar.outbound_mode
        return self.scope.mode if self.scope else None

    def with_objects(self, objects: tuple[IstioObject, ...]) -> MeshContext:
        world = self.world.with_objects(objects) if self.world else World(objects, self._mesh(), self._proxy())
        return MeshContext(self.view, self.namespace, world, self.options, live=False)

    def _mesh(self) -> MeshConfig:
        """The mesh config read; unread, Istio's defaults with the mode the sidecar shows."""
        if self.view.mesh is not None:
            return self.view.mesh
        sc = self.view.sidecar
        if sc is not None and sc.present and sc.outbound_mode is not None:
            return MeshConfig(outbound_traffic_policy=sc.outbound_mode)
        return MeshConfig()

    def _proxy(self) -> Proxy:
        return Proxy(self.namespace, self.view.pod_labels)


def mesh_context(view: MeshView, namespace: str | None = None, options: ExplainOptions | None = None) -> MeshContext:
    ctx = MeshContext(view, pod_namespace(view, namespace), None, options or ExplainOptions())
    if view.objects is not None:
        objects = tuple(view.objects)
        ctx.world = World(objects + assumed_services(objects), ctx._mesh(), ctx._proxy())
    return ctx
