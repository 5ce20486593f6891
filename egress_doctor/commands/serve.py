"""`egress-doctor serve`: parse options, then run the readiness server until SIGTERM or SIGINT.

Takes every probe option of `check` (parsed by `commands.check.check_options`), plus where to
listen and how often to run. Prints `egress-doctor serve: listening on http://HOST:PORT` on
stderr once the socket is bound (port 0 picks a free one; the line says which).
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from egress_doctor.commands.footprint import FOOTPRINT_DESTS
from egress_doctor.context import Environment
from egress_doctor.model import ExitStatus, Report
from egress_doctor.redact import Redactor
from egress_doctor.validate import UsageError

if TYPE_CHECKING:
    from egress_doctor.probes.check import CheckOptions
    from egress_doctor.serve import ReadinessService

SERVE_EPILOG = """endpoints:
  /readyz   200 when every check of the last completed run passed (warnings allowed),
            503 before the first run completes and after a failed run; JSON body
  /livez    200 while the scheduler runs (its last run started within max(3 x interval, deadline + 2 x interval))
  /metrics  Prometheus text format: per-check success and duration, findings by code

SIGTERM or SIGINT: stop accepting, let an in-flight run end (it aborts at --deadline), exit 0.

examples:
  egress-doctor serve --listen :8080 --interval 30s --table orders
  egress-doctor serve --config /etc/egress-doctor/footprint.yaml   # or EGRESS_DOCTOR_CONFIG
"""

# Time allowed beyond --deadline for an in-flight run to wind down at shutdown.
SHUTDOWN_GRACE = 2.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=":8080",
        metavar="[HOST]:PORT",
        help="address to serve on (default :8080, every interface; 127.0.0.1:0 picks a free local port)",
    )
    parser.add_argument(
        "--interval",
        default="30s",
        metavar="DURATION",
        help="time between runs, start to start, with ±10%% jitter (default 30s; 500ms, 1m, ...)",
    )


def run_serve_command(args: argparse.Namespace, env: Environment, redactor: Redactor) -> ExitStatus:
    service = build_service(args, env, redactor)
    stop = threading.Event()
    with _stop_on_signals(stop):
        service.start()
        env.stderr.write(redactor.redact(f"egress-doctor serve: listening on {service.url}\n"))
        env.stderr.flush()
        while not stop.wait(1.0):  # a timed wait keeps the main thread responsive to signals
            pass
        env.stderr.write("egress-doctor serve: stopping\n")
        service.close()  # still under our handlers: a second signal cannot cut the wind-down short
    return ExitStatus.OK


def build_service(args: argparse.Namespace, env: Environment, redactor: Redactor) -> ReadinessService:
    """Validate every option (UsageError: exit 2 before binding), bind the socket, start nothing."""
    from egress_doctor.commands.check import check_options
    from egress_doctor.serve import ReadinessService, Scheduler, parse_duration, parse_listen

    options = check_options(args, env)
    listen = parse_listen(args.listen)
    interval = parse_duration("--interval", args.interval)
    probe = build_probe(args, env, options)
    scheduler = Scheduler(probe, interval=interval, deadline=options.deadline, redactor=redactor)
    try:
        return ReadinessService(scheduler, listen, run_timeout=options.deadline + SHUTDOWN_GRACE)
    except OSError as exc:  # address in use, unknown host, no permission for the port
        raise UsageError(f"--listen {args.listen}: cannot listen there: {exc}") from None


def build_probe(args: argparse.Namespace, env: Environment, options: CheckOptions) -> Callable[[Redactor], Report]:
    """One run of `check`, diagnosed. Options and facts are made once per process; the redactor
    is the run's own (see serve.Scheduler)."""
    import dataclasses

    from egress_doctor.aws.loader import create_model_loader
    from egress_doctor.commands.check import add_counter_findings, add_diagnosis
    from egress_doctor.commands.counters import AppCounters
    from egress_doctor.commands.mesh_view import admin_url
    from egress_doctor.probes.check import probe_session, run_check

    facts = env.facts(env.pod_namespace(args.namespace), [str(r) for r in options.connect_to])
    # One botocore data loader and one probe session for every run: service models are parsed once
    # per process, and a service's client is built again only when the credentials change (IRSA
    # gets new ones every run); connections are closed after each run, so every run dials anew.
    options = dataclasses.replace(options, data_loader=create_model_loader())
    options = dataclasses.replace(options, session=probe_session(options, env.environ))
    # The sidecar's counters of the app's own traffic, read around each run (egress-doctor's excluded).
    app = AppCounters(admin_url(args, env.environ))

    def probe(redactor: Redactor) -> Report:
        counters = app.before_run()
        try:
            report = run_check(options, env.environ, facts, redactor)
        finally:
            app.after_run()
        add_diagnosis(report, args)
        add_counter_findings(report, counters)
        return report

    return probe


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM/SIGINT instead of raising; the previous handlers come back after."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# `check` options that `serve` takes too (argparse dests): the probe and the fix, not the output.
SHARED_CHECK_OPTIONS = (
    "region", "deadline", "connect_timeout", "read_timeout", "connect_to",
    "namespace", "istio_api", "wildcard", "imds_fix", "egress_via", *FOOTPRINT_DESTS,
)  # fmt: skip


def share_check_options(check: argparse.ArgumentParser, serve: argparse.ArgumentParser) -> None:
    """Give `serve` the very option objects of `check` (what argparse's `parents=` does), so that
    both always parse, default and document them alike; `check_options()` then reads either."""
    for action in check._actions:
        if action.dest in SHARED_CHECK_OPTIONS:
            serve._add_action(action)
