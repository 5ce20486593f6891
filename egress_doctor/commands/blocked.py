"""`egress-doctor blocked`: the destinations the apps were really refused, from the sidecars' own
access logs (docs/blocked.md).

Which cluster: `--context`/`--kubeconfig`, else (in a pod) the service account, else the current
context of the kubeconfig, as kubectl does; the header of the output names it. Only GET requests.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import time
from typing import Any

from egress_doctor import __version__, validate
from egress_doctor.context import Environment
from egress_doctor.validate import UsageError

BLOCKED_EPILOG = """exit codes:
  0    the logs were read and no sidecar refused anything (PassthroughCluster is not a refusal)
  1    a sidecar refused a destination (the findings and the fix say which), or no log could be read
  2    usage or configuration error: nothing was read
  3    internal error in egress-doctor (run with -v for a redacted traceback)

examples:
  egress-doctor blocked -n payments
  egress-doctor blocked -n payments -l app=api --since 30m --fix-only | kubectl apply -f -
  egress-doctor blocked -A --passthrough -o json     # what breaks when the mesh goes REGISTRY_ONLY
"""
_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi|K|M|G)?$")
_SIZE_UNITS = {None: 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
MAX_SINCE = 30 * 24 * 3600.0


def add_blocked_parser(commands: Any) -> None:
    p = commands.add_parser(
        "blocked",
        help="read the sidecars' access logs: the hosts your apps were really refused, and the fix",
        description="Read the istio-proxy container log of each selected pod through the Kubernetes API and "
        "list, per destination, how the sidecar refused it (BlackHoleCluster, 502 block_all, reset, NR), "
        "which pods, how often, first and last seen; print the ServiceEntries that let it through.",
        epilog=BLOCKED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-n", "--namespace", help="the pods' namespace (default: the context's, else POD_NAMESPACE)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="pods of every namespace")
    p.add_argument("-l", "--selector", help="label selector, as kubectl's (app=api,tier=web)")
    p.add_argument("--pod", metavar="NAME", help="one pod (in --namespace)")
    p.add_argument("--since", default="1h", metavar="DURATION", help="how much log to read (default 1h)")
    p.add_argument("--passthrough", action="store_true",
                   help="also what left through PassthroughCluster under ALLOW_ANY: what breaks with REGISTRY_ONLY")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    p.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--istio-namespace", default="istio-system", metavar="NAMESPACE",
                   help="where the mesh ConfigMap `istio` lives (read when no access log is found)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.add_argument("--fix-only", action="store_true", help="print only the fix as multi-document YAML")
    p.add_argument("--istio-api", choices=("v1", "v1beta1", "v1alpha3"),
                   help="networking.istio.io version of the fix (default: from the sidecars' image tag, else v1)")
    p.add_argument("--wildcard", action="store_true",
                   help="allow *.ddb.<region>.amazonaws.com (resolution NONE) instead of one account's host")
    p.add_argument("--imds-fix", choices=("serviceentry", "annotation"), default="serviceentry")
    p.add_argument("--deadline", default="30", metavar="SECONDS", help="deadline for the whole run (default 30)")
    p.add_argument("--max-pods", default="500", metavar="N", help="pods read at most (default 500)")
    p.add_argument("--max-log-bytes", default="8Mi", metavar="SIZE",
                   help="log bytes read per pod at most (default 8Mi; the start of the --since window is kept)")
    p.add_argument("--parallel", default="8", metavar="N", help="pod logs read at once (default 8)")
    p.add_argument("--no-color", action="store_true")
    p.set_defaults(handler=run_blocked_command, verbose=False)


def _count(flag: str, text: str, maximum: int) -> int:
    if not text.isdigit() or not 0 < int(text) <= maximum:
        raise UsageError(f"{flag} {text!r}: expected a whole number from 1 to {maximum}")
    return int(text)


def parse_size(flag: str, text: str) -> int:
    """`8Mi`, `500K`, `1048576`: bytes, at least 1 KiB, at most 1 GiB."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise UsageError(f"{flag} {text!r}: expected a size such as 8Mi, 512Ki or 1000000")
    size = int(match[1]) * _SIZE_UNITS[match[2]]
    if not 1024 <= size <= 1 << 30:
        raise UsageError(f"{flag} {text!r}: expected from 1Ki to 1Gi")
    return size


def log_options(args: argparse.Namespace, env: Environment, context_namespace: str | None) -> Any:
    from egress_doctor.sources.pod_logs import LogOptions

    if args.pod and (args.all_namespaces or args.selector):
        raise UsageError("--pod names one pod: it goes with -n, not with -A or -l")
    namespace = None if args.all_namespaces else (args.namespace or context_namespace
                                                  or env.pod_namespace(None) or "default")
    return LogOptions(
        namespace=namespace, all_namespaces=args.all_namespaces, selector=args.selector, pod=args.pod,
        since=validate.duration("--since", args.since, maximum=MAX_SINCE),
        max_pods=_count("--max-pods", args.max_pods, 10000),
        max_bytes=parse_size("--max-log-bytes", args.max_log_bytes),
        parallel=_count("--parallel", args.parallel, 64),
    )


def _connection(args: argparse.Namespace, env: Environment) -> Any:
    from egress_doctor.sources.kube import ClusterConfigError, ClusterOptions, connect

    kubeconfig = args.kubeconfig
    if not (kubeconfig or args.context or env.environ.get("KUBERNETES_SERVICE_HOST")):
        kubeconfig = env.environ.get("KUBECONFIG") or "~/.kube/config"  # kubectl's default
    try:
        connection = connect(ClusterOptions(context=args.context, kubeconfig=kubeconfig), env.environ)
    except ClusterConfigError as exc:
        raise UsageError(str(exc)) from None
    if connection is None:
        raise UsageError("no cluster to read: pass --context or --kubeconfig")
    return connection


def _selection(args: argparse.Namespace, options: Any, source: str) -> str:
    where = "all namespaces" if options.all_namespaces else f"namespace {options.namespace}"
    what = f"pod {options.pod}" if options.pod else f"pods in {where}"
    if options.selector:
        what += f" matching {options.selector}"
    return f"{what} ({source})"


def run_blocked_command(args: argparse.Namespace, env: Environment) -> int:
    from egress_doctor.diagnose.access_logging import mesh_logging
    from egress_doctor.diagnose.blocked import BlockedOptions, diagnose_blocked, logging_off
    from egress_doctor.model_blocked import BlockedReport
    from egress_doctor.sources.pod_logs import read_configmap, read_pod_logs

    started = time.monotonic()
    deadline_seconds = validate.positive_seconds("--deadline", args.deadline)
    deadline = started + deadline_seconds
    connection = _connection(args, env)
    options = log_options(args, env, connection.namespace)
    logs = read_pod_logs(options, connection, deadline)
    naming = gather_naming(logs, env, deadline)
    mesh = None
    if logging_off(logs):  # the same test decides ED655
        mesh = read_configmap(connection, args.istio_namespace, "istio", deadline)
    blocked_options = BlockedOptions(
        passthrough=args.passthrough, istio_api=args.istio_api or _istio_api(logs), wildcard=args.wildcard,
        imds_fix=args.imds_fix, since_seconds=options.since, namespace=options.namespace or "default")
    diagnosis = diagnose_blocked(logs, naming, blocked_options, mesh_logging(mesh))
    report = BlockedReport(
        destinations=diagnosis.destinations, pods=diagnosis.pods, findings=diagnosis.findings,
        fixes=diagnosis.fixes, warnings=diagnosis.warnings, unparsed_samples=diagnosis.samples,
        selection=_selection(args, options, connection.source), since_seconds=options.since,
        passthrough=args.passthrough, started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        duration_ms=round((time.monotonic() - started) * 1000, 1), deadline_ms=deadline_seconds * 1000,
        tool_version=__version__)
    write_blocked(report, args, env)
    return int(report.exit_status)


def gather_naming(logs: Any, env: Environment, deadline: float) -> Any:
    """Predictions for the pods whose refusals carry only an address, and those hosts resolved."""
    from egress_doctor.diagnose.blocked import Naming, needs_a_name
    from egress_doctor.diagnose.naming import names_to_resolve, predict
    from egress_doctor.sources.resolver import resolve_all, system_resolve

    pods = [log.pod for log in logs.pods if any(needs_a_name(d.host) for _, d in log.tally.seen)]
    if not pods:
        return Naming()
    predictions = {pod.ref: predict(pod.env) for pod in pods}
    names = names_to_resolve(predictions.values())
    resolve_until = min(deadline, time.monotonic() + 3.0)
    resolved = resolve_all(names, env.resolver or system_resolve, resolve_until) if names else {}
    return Naming(predictions, resolved)


def _istio_api(logs: Any) -> str:
    """The networking API the oldest sidecar's Istio serves (v1 from 1.22), else v1."""
    from egress_doctor.sources.envoy_admin import istio_api_for

    apis = [istio_api_for(log.pod.istio_version) for log in logs.pods]
    order = ("v1alpha3", "v1beta1", "v1")
    known = [a for a in apis if a in order]
    return min(known, key=order.index) if known else "v1"


def write_blocked(report: Any, args: argparse.Namespace, env: Environment) -> None:
    from egress_doctor.redact import Redactor
    from egress_doctor.render.blocked_table import render_blocked_table
    from egress_doctor.render.blocked_v1 import blocked_to_v1
    from egress_doctor.render.fix_yaml import render_fixes

    redactor = Redactor()
    if args.fix_only:
        text = render_fixes(report.fixes)
    elif args.output == "table":
        color = not args.no_color and "NO_COLOR" not in env.environ and env.stdout_is_tty()
        text = render_blocked_table(report, color=color, fix_yaml=render_fixes(report.fixes))
    else:
        document = redactor.redact_obj(blocked_to_v1(report))
        if args.output == "json":
            text = json.dumps(document, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    env.stdout.write(redactor.redact(text))
