"""`egress-doctor check`: parse options, run the probes, diagnose, render through the redactor."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import time
from collections.abc import Iterator
from typing import Any

from egress_doctor import validate
from egress_doctor.context import Environment
from egress_doctor.model import ExitStatus, Report
from egress_doctor.redact import Redactor


def check_options(args: argparse.Namespace, env: Environment) -> Any:
    from egress_doctor.net.connect_to import parse_connect_to, parse_connect_to_env
    from egress_doctor.probes.check import CheckOptions

    rules = []
    try:
        rules += [parse_connect_to(spec) for spec in args.connect_to]
        rules += parse_connect_to_env(env.environ.get("EGRESS_DOCTOR_CONNECT_TO", ""))
    except ValueError as exc:
        raise validate.UsageError(str(exc)) from None
    from egress_doctor.commands.footprint import footprint_from

    footprint = footprint_from(args, env.environ)
    region = args.region if args.region is not None else footprint.region
    return CheckOptions(
        region=validate.region(region) if region is not None else None,  # '' is no region
        footprint=footprint,
        deadline=validate.positive_seconds("--deadline", args.deadline),
        connect_timeout=validate.positive_seconds("--connect-timeout", args.connect_timeout),
        read_timeout=validate.positive_seconds("--read-timeout", args.read_timeout),
        connect_to=rules,
        transcript=bool(getattr(args, "verbose", False)),
    )


# Seconds of --deadline kept for what follows the network: joining aborted checks, the diagnosis and
# the report. The process then exits within --deadline (plus Python's start-up before the clock).
OUTPUT_RESERVE = 0.3


def _load_renderers(args: argparse.Namespace) -> None:
    """Import what writing the report needs while the probes run: after the deadline, imports
    compete for the GIL with a cluster read still importing the kubernetes client."""
    import egress_doctor.diagnose
    import egress_doctor.render.fix_yaml
    import egress_doctor.render.json_v1

    if args.output == "table" and not args.fix_only:
        import tabulate  # noqa: F401

        import egress_doctor.render.table  # noqa: F401


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during one `check`; afterwards it runs as before.

    A run imports botocore and parses its service models: hundreds of thousands of new objects,
    each batch of which sets off a collection that walks them again, for garbage that reference
    counting frees anyway: 90-110 ms of a 0.7 s run went to ~150 collections, which changed
    nothing in the run's peak memory (63 MB with them, 63 MB without). A run is bounded by its
    --deadline. On the way out the run's objects join the oldest generation unexamined (freeze,
    then unfreeze: no collection of all of them at the next allocation, which would cost the
    executable as much again just before it exits); a later full collection sees them as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:  # never thaw what the process itself froze
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def run_check_command(args: argparse.Namespace, env: Environment, redactor: Redactor) -> ExitStatus:
    with cyclic_gc_paused():
        return _run_check_command(args, env, redactor)


def _run_check_command(args: argparse.Namespace, env: Environment, redactor: Redactor) -> ExitStatus:
    from egress_doctor.sidecar_lifecycle import DEFAULT_STATUS_URL, around_run

    def note(text: str) -> None:
        from egress_doctor.render.printable import visible

        env.stderr.write(redactor.redact(visible(text, newlines=True)))

    wait_for, quit_at = getattr(args, "wait_for_sidecar", None), getattr(args, "quit_sidecar", None)
    status = getattr(args, "sidecar_status", DEFAULT_STATUS_URL)
    with around_run(wait_for, status, quit_at, note) as sidecar:  # quits the sidecar however this ends
        options = check_options(args, env)
        from egress_doctor.commands.mesh_view import admin_url, read_mesh

        admin = admin_url(args, env.environ)  # a bad --envoy-admin is a usage error before any probe
        sidecar_warnings = sidecar.wait()
        # The run's one deadline, for the probes, the cluster read and the sidecar read alike; it
        # counts from the command's start (after --wait-for-sidecar, which has its own bound).
        started = env.started if wait_for is None else time.monotonic()
        options.deadline_at = started + options.deadline - min(OUTPUT_RESERVE, options.deadline / 4)
        _load_renderers(args)  # now, not after the deadline (a cluster read may be importing beside it)

        from egress_doctor.commands.counters import counters_before_probes

        # the app's own traffic: nothing of ours is counted yet
        counters = counters_before_probes(admin, options.deadline_at)
        from egress_doctor.commands.cluster import finish_cluster_read, start_cluster_read, with_cluster

        # In the background; a bad --kubeconfig is a usage error. Its sockets are shut at the deadline.
        pending = start_cluster_read(args, env, options.deadline_at)
        from egress_doctor.mirror import as_the_app
        from egress_doctor.probes.check import run_check

        with as_the_app(args, env, redactor) as (run_env, mirror_warnings):  # --mirror: the app's AWS_*
            facts = run_env.facts(env.pod_namespace(args.namespace), [str(r) for r in options.connect_to])
            report = run_check(options, run_env.environ, facts, redactor)
        report.mesh = read_mesh(admin, report, options.deadline_at)
        from egress_doctor.commands.counters import with_run_failures

        report.mesh = with_run_failures(report.mesh, counters, admin, options.deadline_at)
        cluster = finish_cluster_read(pending, report)
        report.mesh = with_cluster(report.mesh, cluster)
        report.warnings += sidecar_warnings + mirror_warnings
        add_diagnosis(report, args, cluster)
        report.duration_ms = round((time.monotonic() - started) * 1000, 1)  # the whole run, not the probes
        add_counter_findings(report, counters)
        write_report(report, args, env, redactor)
        return report.exit_status


def add_diagnosis(report: Report, args: argparse.Namespace, cluster: Any = None) -> None:
    """`cluster`: the ClusterRead of this run, if the cluster was read (its errors become findings)."""
    from egress_doctor.commands.cluster import cluster_findings, sort_findings
    from egress_doctor.diagnose import DiagnoseOptions, diagnose
    from egress_doctor.sources.envoy_admin import istio_api_for

    mesh = report.mesh
    sidecar = mesh.sidecar if mesh is not None else None
    # --istio-api, else what the cluster serves, else what the sidecar's Istio serves (v1 from 1.22), else v1
    served = cluster.istio_api if cluster is not None else None
    istio_api = args.istio_api or served or istio_api_for(sidecar.istio_version if sidecar else None) or "v1"
    options = DiagnoseOptions(
        namespace=args.namespace, istio_api=istio_api, wildcard=args.wildcard, imds_fix=args.imds_fix,
        egress_via=getattr(args, "egress_via", ""),
    )
    assert report.facts is not None
    diagnosis = diagnose(report.identity, report.checks, report.facts, options, mesh=mesh)
    report.findings = sort_findings(diagnosis.findings + cluster_findings(cluster))
    report.fixes = diagnosis.fixes


def add_counter_findings(report: Report, counters: Any) -> None:
    """ED656/ED657 from the sidecar's counters read before the probes (nothing when none counted)."""
    from egress_doctor.commands.cluster import sort_findings
    from egress_doctor.diagnose.counters import counter_findings

    report.counters = counters
    report.findings = sort_findings(report.findings + counter_findings(counters))


def write_report(report: Report, args: argparse.Namespace, env: Environment, redactor: Redactor) -> None:
    from egress_doctor.render.fix_yaml import render_fixes
    from egress_doctor.render.json_v1 import report_to_v1

    if args.fix_only:
        text = render_fixes(report.fixes)
    elif args.output == "table":
        from egress_doctor.render.table import render_table

        color = not args.no_color and "NO_COLOR" not in env.environ and env.stdout_is_tty()
        text = render_table(
            report,
            color=color,
            verbose=args.verbose,
            fix_yaml=render_fixes(report.fixes),
            command=getattr(args, "command", None) or "check",
        )
    else:
        document = redactor.redact_obj(report_to_v1(report, transcript=args.verbose))
        if args.output == "json":
            text = json.dumps(document, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    env.stdout.write(redactor.redact(text))
    if getattr(args, "summary_to_stderr", False):
        from egress_doctor.render.summary import render_summary

        env.stdout.flush()  # the JSON first, then the summary, when both streams share one log
        env.stderr.write(redactor.redact(render_summary(report)))
