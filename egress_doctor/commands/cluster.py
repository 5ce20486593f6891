"""`check --context/--kubeconfig/--istio-namespace/--no-cluster`: read the cluster while the probes run.

Which cluster, if any (never a surprise):
- `--no-cluster`: none.
- `--context` or `--kubeconfig`: that kubeconfig (a file that does not load, or an unknown context,
  is a usage error: exit 2 before anything is probed).
- else, when `KUBERNETES_SERVICE_HOST` is set (in a pod): the pod's service account.
- else none: a laptop's current kubectl context is never read unless asked for.

The read runs in a background thread from just before the probes; it has its own deadline
(`sources.kube.DEFAULT_DEADLINE`), so a run waits for it at most that long after the probes.
VirtualServices and DestinationRules are then narrowed to the hosts the probes contacted.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from egress_doctor.context import Environment
from egress_doctor.model import Finding, Report
from egress_doctor.validate import UsageError

if TYPE_CHECKING:  # the reader (and the kubernetes client) load only when a cluster is read
    from egress_doctor.sources.kube import ClusterOptions, ClusterRead
    from egress_doctor.sources.view import MeshView

# Where istiod lives unless --istio-namespace says otherwise (sources.kube.ISTIO_NAMESPACE, which
# tests/test_cluster_config.py keeps equal: spelled out so that building the parser stays light).
ISTIO_NAMESPACE = "istio-system"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_GRACE = 1.0  # seconds a run waits beyond the read's own deadline before giving up on it


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the cluster (Istio objects, mesh config, the pod; see docs/cluster.md)")
    group.add_argument(
        "--context",
        metavar="NAME",
        help="read Istio objects through this kubeconfig context (default: in a pod, its service account; "
        "elsewhere no cluster is read unless --context or --kubeconfig is given)",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file to read the cluster with (default with --context: $KUBECONFIG, else ~/.kube/config)",
    )
    group.add_argument(
        "--istio-namespace",
        default=ISTIO_NAMESPACE,
        metavar="NAMESPACE",
        help=f"where istiod and its mesh ConfigMap `istio` live (default {ISTIO_NAMESPACE})",
    )
    group.add_argument("--no-cluster", action="store_true", help="do not talk to the Kubernetes API at all")


def cluster_options(args: argparse.Namespace, env: Environment) -> ClusterOptions | None:
    """The read the flags ask for; None with --no-cluster. UsageError on a malformed namespace."""
    if getattr(args, "no_cluster", False):
        return None
    istio_namespace = getattr(args, "istio_namespace", None) or ISTIO_NAMESPACE
    if not _DNS_LABEL.match(istio_namespace):
        raise UsageError(f"--istio-namespace: {istio_namespace!r} is not a namespace name")
    from egress_doctor.sources.kube import ClusterOptions

    return ClusterOptions(
        context=getattr(args, "context", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        namespace=env.pod_namespace(getattr(args, "namespace", None)),
        istio_namespace=istio_namespace,
    )


@dataclass
class PendingRead:
    future: Future[ClusterRead]
    until: float  # time.monotonic() after which the run stops waiting for the read


def start_cluster_read(
    args: argparse.Namespace, env: Environment, run_deadline: float | None = None
) -> PendingRead | None:
    """Start reading the cluster in the background; None when there is nothing to read.

    A kubeconfig asked for with --kubeconfig/--context is loaded here, so that a bad one is a usage
    error before any probe; the in-cluster configuration is loaded by the read (ED912 when unusable).
    """
    options = cluster_options(args, env)
    if options is None:
        return None
    from egress_doctor.sources.kube import ClusterConfigError, connect, read_cluster

    connection = None
    if options.kubeconfig or options.context:
        try:
            connection = connect(options, env.environ)
        except ClusterConfigError as exc:
            raise UsageError(str(exc)) from None
    elif not env.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    if run_deadline is not None:
        options = replace(options, deadline_at=run_deadline)  # its sockets are shut then
    future: Future[ClusterRead] = Future()
    future.set_running_or_notify_cancel()

    def read() -> None:
        try:
            future.set_result(read_cluster(options, env.environ, connection))
        except BaseException as exc:  # a bug: re-raised where the result is asked for
            future.set_exception(exc)

    # A daemon thread, not an executor's: interpreter exit joins executor threads, so a read stuck
    # in an import or a kubeconfig exec plugin would hold the process past the deadline.
    threading.Thread(target=read, name="egress-doctor-cluster", daemon=True).start()
    until = time.monotonic() + options.deadline + options.request_timeout + _GRACE
    # The whole run has one deadline: the read is not waited for past it.
    return PendingRead(future, until if run_deadline is None else min(until, run_deadline))


def finish_cluster_read(pending: PendingRead | None, report: Report) -> ClusterRead | None:
    """The read's result, narrowed to the hosts the probes contacted; None when nothing was read."""
    if pending is None:
        return None
    from egress_doctor.sources.kube import ClusterRead, Problem, ReadError, narrowed
    from egress_doctor.sources.view import MeshView

    try:
        read = pending.future.result(timeout=max(0.0, pending.until - time.monotonic()))
    except FutureTimeout:
        error = ReadError("read", "the cluster", None, None, "no result in time", Problem.DEADLINE)
        return ClusterRead(MeshView(source="cluster", read_errors=[str(error)]), [error])
    from egress_doctor.commands.mesh_view import probed_hosts

    return narrowed(read, [host for host, _ in probed_hosts(report)])


def with_cluster(view: MeshView | None, read: ClusterRead | None) -> MeshView | None:
    """The sidecar's view (if any) joined with what the cluster said (if anything was read)."""
    if read is None or not read.attempted:
        return view
    if view is None:
        return read.view
    return replace(read.view, sidecar=view.sidecar, read_errors=[*view.read_errors, *read.view.read_errors])


def cluster_findings(read: ClusterRead | None) -> list[Finding]:
    if read is None:
        return []
    from egress_doctor.diagnose.cluster import cluster_findings as findings

    return findings(read)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """In the diagnosis's order: level, code, hosts, message."""
    from egress_doctor.diagnose.engine import LEVEL_ORDER

    return sorted(findings, key=lambda f: (LEVEL_ORDER[f.level], f.code, f.hosts, f.message))
