"""Read the Istio objects around this pod from the Kubernetes API: read-only, bounded, forgiving.

    read = read_cluster(ClusterOptions(namespace="payments", hosts=("sts.us-east-1.amazonaws.com",)))
    read.view      # a MeshView (source "cluster"): objects, mesh, pod labels/annotations, read_errors
    read.errors    # ReadError records: what could not be read, and why (403, 404, unreachable, ...)
    read.istio_api # "v1" or "v1beta1": the networking.istio.io version the cluster serves

Where the client configuration comes from (`connect`): `--kubeconfig`/`--context` when given, else
the pod's service account when `KUBERNETES_SERVICE_HOST` is set, else nowhere: a laptop's current
kubectl context is never read unless asked for.

What is read, in order (only GET requests; `k8s/rbac.yaml` grants exactly these):
1. the pod (`POD_NAME`, else the hostname in a pod) and its namespace (labels: ambient, revision);
2. the mesh config: ConfigMap `istio` (`istio-<rev>` for a revisioned pod) key `mesh`;
3. ServiceEntries in all namespaces; on 403, in the pod's and the root namespace only;
4. Sidecars in the pod's and the root namespace;
5. VirtualServices and DestinationRules (like ServiceEntries), kept when they name a probed host,
   and the Gateways those VirtualServices bind to;
6. `security.istio.io` AuthorizationPolicies in all namespaces (else the root namespace's): those
   on the egress gateway's pods decide what it lets out.

Every request has a short timeout, the whole read a deadline. `networking.istio.io/v1` is tried
first and `v1beta1` on 404 (Istio < 1.22). A 403 or 404 is recorded and the read goes on; an API
server that cannot be reached, or the deadline, ends the read with one record. Nothing raises.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from egress_doctor.istio.authz_objects import SECURITY_GROUP, SECURITY_VERSIONS
from egress_doctor.istio.objects import (
    GROUP,
    Ignored,
    IstioObject,
    IstioParseError,
    MeshConfig,
)
from egress_doctor.istio.parse import parse_object
from egress_doctor.sources.kube_client import (
    ClusterConfigError,
    Connection,
    Problem,
    ReadError,
    Request,
    Send,
    Session,
    bound_answers,
    in_cluster_connection,
    kubeconfig_connection,
)
from egress_doctor.sources.kube_facts import PodFacts, mesh_config_from_configmap, pod_facts
from egress_doctor.sources.kube_narrow import narrowed_view
from egress_doctor.sources.view import GatewayInfo, MeshView, gateway_info

__all__ = ["ClusterConfigError", "ClusterOptions", "ClusterRead", "Problem", "ReadError", "connect",
           "read_cluster"]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ISTIO_NAMESPACE = "istio-system"  # where istiod and its mesh ConfigMap live (--istio-namespace)
MESH_CONFIGMAP = "istio"
SERVED_VERSIONS = ("v1", "v1beta1")  # v1 from Istio 1.22; v1beta1 from 1.5
REVISION_LABEL = "istio.io/rev"
DEFAULT_DEADLINE = 5.0  # seconds for the whole read
REQUEST_TIMEOUT = 2.0  # seconds per request (never past the deadline)


@dataclass(frozen=True)
class ClusterOptions:
    context: str | None = None  # kubeconfig context (implies a kubeconfig)
    kubeconfig: str | None = None  # path; default $KUBECONFIG, else ~/.kube/config (only with --context)
    namespace: str | None = None  # the pod's namespace; default the kubeconfig context's, else "default"
    istio_namespace: str = ISTIO_NAMESPACE
    pod_name: str | None = None  # default POD_NAME, else (in a pod) the hostname
    deadline: float = DEFAULT_DEADLINE
    hosts: tuple[str, ...] = ()  # probed hosts: VirtualServices/DestinationRules naming none are dropped
    request_timeout: float = REQUEST_TIMEOUT
    # A time.monotonic() value the read never outlasts (the run's --deadline); None: only `deadline`.
    deadline_at: float | None = None
    token_file: str = f"{SERVICE_ACCOUNT_DIR}/token"  # in-cluster credentials
    ca_file: str = f"{SERVICE_ACCOUNT_DIR}/ca.crt"


@dataclass
class ClusterRead:
    """What the read produced: a MeshView for the diagnosis plus the facts the view has no field for."""

    view: MeshView
    errors: list[ReadError] = field(default_factory=list)
    source: str = ""  # "in-cluster service account", "kubeconfig <path> context <name>"; "" not read
    server: str | None = None  # the API server URL
    istio_api: str | None = None  # networking.istio.io version served; None: not known
    pod: PodFacts | None = None
    mesh_hold_default: bool | None = None  # meshConfig.defaultConfig.holdApplicationUntilProxyStarts
    duration_ms: float = 0.0

    @property
    def attempted(self) -> bool:
        return bool(self.source or self.errors)


def connect(options: ClusterOptions, environ: Mapping[str, str]) -> Connection | None:
    """The configuration the flags and environment call for; None when there is no cluster to read.

    Raises ClusterConfigError when the configuration asked for cannot be loaded.
    """
    if options.kubeconfig or options.context:
        return kubeconfig_connection(options.kubeconfig or environ.get("KUBECONFIG") or "~/.kube/config",
                                     options.context)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_connection(options.token_file, options.ca_file, environ)
    return None


# ---- the read ------------------------------------------------------------------------------------


def read_cluster(
    options: ClusterOptions, environ: Mapping[str, str] | None = None, connection: Connection | None = None
) -> ClusterRead:
    """Read what the diagnosis needs from the cluster; never raises for cluster trouble."""
    environ = os.environ if environ is None else environ
    if connection is None:
        try:
            connection = connect(options, environ)
        except ClusterConfigError as exc:
            error = ReadError("connect", "the Kubernetes API", None, None, str(exc), Problem.CONFIG)
            return ClusterRead(MeshView(read_errors=[str(error)]), [error])
        if connection is None:
            return ClusterRead(MeshView())
    from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi  # ~1 s the first time

    from egress_doctor.net.watchdog import abort_at

    with ApiClient(connection.configuration) as client:
        bound_answers(client)
        apis = (CoreV1Api(client), CustomObjectsApi(client))
        started = time.monotonic()  # after imports and configuration: the deadline is the API server's
        reader = _Reader(apis, connection, options, environ, started)
        # Every socket of the read is shut at its deadline: a server that accepts and never answers
        # (or drips) cannot hold the read, or the process, past it.
        with abort_at(reader.session.deadline_at):
            reader.run()
    read = narrowed(reader.result(), options.hosts)
    read.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return read


def narrowed(read: ClusterRead, hosts: Sequence[str]) -> ClusterRead:
    """The read with only the objects that concern `hosts` (sources.kube_narrow)."""
    return replace(read, view=narrowed_view(read.view, hosts))


class _Reader:
    def __init__(self, apis: tuple[Any, Any], connection: Connection, options: ClusterOptions,
                 environ: Mapping[str, str], started: float) -> None:
        self.core, self.custom = apis  # CoreV1Api, CustomObjectsApi
        self.started = started
        self.connection = connection
        self.options = options
        until = started + options.deadline
        self.session = Session(until if options.deadline_at is None else min(until, options.deadline_at),
                               options.request_timeout)
        self.namespace = options.namespace or connection.namespace or "default"
        self.pod_name = _pod_name(options, environ, connection.in_cluster)
        self.errors: list[ReadError] = []
        self.objects: list[IstioObject] = []
        self.istio_api: str | None = None
        self.pod: PodFacts | None = None
        self.namespace_labels: dict[str, str] = {}
        self.mesh: MeshConfig | None = None
        self.mesh_hold: bool | None = None
        self.manifests: dict[str, dict[str, Any]] = {}  # as read, by Meta.ref
        self.gateways: list[GatewayInfo] | None = None  # None: not read

    def run(self) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the pod", self._read_pod),
            ("the namespace", self._read_namespace),
            ("the mesh config", self._read_mesh),
            ("ServiceEntries", lambda: self._read_wide("serviceentries")),
            ("Sidecars", self._read_sidecars),
            ("VirtualServices", lambda: self._read_wide("virtualservices")),
            ("DestinationRules", lambda: self._read_wide("destinationrules")),
            ("Gateways", lambda: self._read_wide("gateways")),
            ("AuthorizationPolicies", self._read_policies),
        ]
        for index, (_, step) in enumerate(steps):
            step()
            halted = self.session.halted
            if halted is None:
                continue
            if halted.problem is Problem.DEADLINE:
                unread = ", ".join(label for label, _ in steps[index:])
                spent = self.session.deadline_at - self.started
                message = f"{spent:.2g} s passed; not read: {unread}"
                halted = ReadError("read", "the cluster", None, None, message, Problem.DEADLINE)
            self.errors.append(halted)
            return

    def result(self) -> ClusterRead:
        view = MeshView(
            objects=list(self.objects) if self._objects_known() else None,
            mesh=self.mesh,
            pod_namespace=self.namespace,
            namespace_labels=dict(self.namespace_labels),
            pod_labels=dict(self.pod.labels) if self.pod else None,
            pod_annotations=dict(self.pod.annotations) if self.pod else {},
            source="cluster",
            read_errors=[str(e) for e in self.errors],
            manifests=dict(self.manifests),
            gateways=self.gateways,
        )
        return ClusterRead(view, list(self.errors), self.connection.source, self.connection.server,
                           self.istio_api, self.pod, self.mesh_hold)

    def _objects_known(self) -> bool:
        """Some Istio list answered, or every one said the CRD is missing (then there are none)."""
        istio_errors = [e for e in self.errors if e.resource.endswith(GROUP)]
        missing = bool(istio_errors) and all(e.problem is Problem.NOT_SERVED for e in istio_errors)
        return self.istio_api is not None or missing

    # -- helpers --

    def _record(self, error: ReadError) -> None:
        if error is self.session.halted:
            return  # reported once, by run()
        if error.problem is Problem.NOT_SERVED and any(
            e.problem is Problem.NOT_SERVED and e.resource == error.resource for e in self.errors
        ):
            return
        self.errors.append(error)

    def _get(self, call: Request, send: Send) -> dict[str, Any] | None:
        got = self.session.fetch(call, send)
        if isinstance(got, ReadError):
            self._record(got)
            return None
        return got

    def _root_namespace(self) -> str:
        return (self.mesh or MeshConfig()).root_namespace

    def _namespaces(self) -> list[str]:
        return list(dict.fromkeys((self.namespace, self._root_namespace())))

    # -- steps --

    def _read_pod(self) -> None:
        if not self.pod_name:
            return
        call = Request("get", "pods", self.namespace, self.pod_name)
        doc = self._get(call, lambda t: self.core.read_namespaced_pod(
            self.pod_name, self.namespace, _request_timeout=t, _preload_content=False))
        if doc is not None:
            self.pod = pod_facts(doc)

    def _read_namespace(self) -> None:
        call = Request("get", "namespaces", None, self.namespace)
        doc = self._get(call, lambda t: self.core.read_namespace(
            self.namespace, _request_timeout=t, _preload_content=False))
        if doc is not None:
            labels = (doc.get("metadata") or {}).get("labels") or {}
            self.namespace_labels = {str(k): str(v) for k, v in labels.items()}

    def _read_mesh(self) -> None:
        name = _mesh_configmap(self.pod, self.namespace_labels)
        namespace = self.options.istio_namespace
        call = Request("get", "configmaps", namespace, name)
        doc = self._get(call, lambda t: self.core.read_namespaced_config_map(
            name, namespace, _request_timeout=t, _preload_content=False))
        if doc is None:
            return
        try:
            self.mesh, self.mesh_hold = mesh_config_from_configmap(doc)
        except IstioParseError as exc:
            self._record(call.error(Problem.UNPARSEABLE, str(exc)))

    def _read_sidecars(self) -> None:
        for namespace in self._namespaces():
            self._keep("sidecars", self._list_istio("sidecars", namespace))

    def _read_wide(self, plural: str) -> None:
        """All namespaces; when that is forbidden, the pod's and the root namespace."""
        got = self._list_istio(plural, None)
        if not (isinstance(got, ReadError) and got.problem is Problem.FORBIDDEN):
            self._keep(plural, got)
            return
        self._record(got)
        for namespace in self._namespaces():
            self._keep(plural, self._list_istio(plural, namespace))

    def _read_policies(self) -> None:
        """AuthorizationPolicies (those on the egress gateway's pods decide what it lets out): all
        namespaces, else the root namespace's; security.istio.io v1, else v1beta1."""
        for namespace in (None, self._root_namespace()):
            call = Request("list", f"authorizationpolicies.{SECURITY_GROUP}", namespace)
            for version in SECURITY_VERSIONS:
                got = self.session.fetch(call, self._lister(version, "authorizationpolicies", namespace,
                                                            SECURITY_GROUP))
                if not (isinstance(got, ReadError) and got.problem is Problem.NOT_SERVED):
                    break
            else:
                return  # no such CRD: no policies
            self._keep("authorizationpolicies", got)
            if not (isinstance(got, ReadError) and got.problem is Problem.FORBIDDEN):
                return

    def _list_istio(self, plural: str, namespace: str | None) -> dict[str, Any] | ReadError:
        """List in the served version: v1, else (404) v1beta1; remembered once one answers."""
        call = Request("list", f"{plural}.{GROUP}", namespace)
        got: dict[str, Any] | ReadError = call.error(Problem.NOT_SERVED, "not tried")
        for version in (self.istio_api,) if self.istio_api else SERVED_VERSIONS:
            got = self.session.fetch(call, self._lister(version, plural, namespace))
            if not isinstance(got, ReadError):
                self.istio_api = version
                return got
            if got.problem is not Problem.NOT_SERVED:
                return got
        if isinstance(got, ReadError) and got.problem is Problem.NOT_SERVED and not self.istio_api:
            versions = " or ".join(f"{GROUP}/{v}" for v in SERVED_VERSIONS)
            got = call.error(Problem.NOT_SERVED, f"{got.message} (tried {versions})", got.status)
        return got

    def _lister(self, version: str, plural: str, namespace: str | None, group: str = GROUP) -> Send:
        if namespace is None:
            return lambda t: self.custom.list_cluster_custom_object(
                group, version, plural, _request_timeout=t, _preload_content=False)
        return lambda t: self.custom.list_namespaced_custom_object(
            group, version, namespace, plural, _request_timeout=t, _preload_content=False)

    def _keep(self, plural: str, got: dict[str, Any] | ReadError) -> None:
        if isinstance(got, ReadError):
            self._record(got)
            return
        if plural == "gateways":
            found = [g for item in _items(got) if (g := gateway_info(item, self.namespace)) is not None]
            self.gateways = (self.gateways or []) + found
        for item in _items(got):
            parsed = self._parse(plural, item)
            if parsed is not None:
                self.objects.append(parsed)
                self.manifests[parsed.meta.ref] = item

    def _parse(self, plural: str, item: dict[str, Any]) -> IstioObject | None:
        """The object through `istio.parse`'s parser; one it refuses is recorded and left out."""
        meta = item.get("metadata") or {}
        where = f"cluster:{plural}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        try:
            parsed = parse_object(item, str(meta.get("namespace") or self.namespace), where)
        except IstioParseError as exc:
            group = SECURITY_GROUP if plural == "authorizationpolicies" else GROUP
            call = Request("list", f"{plural}.{group}", meta.get("namespace"), meta.get("name"))
            self._record(call.error(Problem.UNPARSEABLE, str(exc)))
            return None
        return None if isinstance(parsed, Ignored) else parsed


def _items(listing: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The items of a List, each with its apiVersion and kind (filled from the list when absent)."""
    kind = str(listing.get("kind", "")).removesuffix("List")
    for item in listing.get("items") or []:
        if isinstance(item, dict):
            yield {"apiVersion": listing.get("apiVersion"), "kind": kind, **item}


def _pod_name(options: ClusterOptions, environ: Mapping[str, str], in_cluster: bool) -> str | None:
    """options.pod_name, POD_NAME, else in a pod the hostname (the pod's name unless spec.hostname
    is set). Outside a pod (a kubeconfig) without a name, the pod is not read."""
    if options.pod_name or environ.get("POD_NAME"):
        return options.pod_name or environ.get("POD_NAME")
    return socket.gethostname() if in_cluster else None


def _mesh_configmap(pod: PodFacts | None, namespace_labels: Mapping[str, str]) -> str:
    """`istio`, or `istio-<rev>` for a pod (or namespace) injected by a revision other than default."""
    revision = (pod.revision if pod else None) or namespace_labels.get(REVISION_LABEL)
    return MESH_CONFIGMAP if revision in (None, "", "default") else f"{MESH_CONFIGMAP}-{revision}"
