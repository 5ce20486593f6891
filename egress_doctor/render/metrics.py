"""`/metrics` of `egress-doctor serve`: the last completed run in Prometheus text format.

One `RunMetrics` per process, with its own `CollectorRegistry` (never prometheus-client's
global one, so importing a library that registers there cannot leak into our page). The
scheduler calls `observe` once per run and keeps the rendered bytes; a scrape only copies them.

Series (all gauges describe the last completed run unless named `_total`):

    egress_doctor_ready                                  1 when every check passed (warnings allowed)
    egress_doctor_check_success{check,subject}           1 pass or warn, 0 fail or skip
    egress_doctor_check_duration_seconds{check,subject}
    egress_doctor_findings{code,level}                   findings of this code in the last run
    egress_doctor_last_run_timestamp_seconds             Unix time the last run completed
    egress_doctor_run_duration_seconds
    egress_doctor_runs_total{result}                     ready | not_ready | error
    egress_doctor_sidecar_refused{kind}                  the app's traffic the sidecar refused since it
                                                         started (tcp: connections, http: requests),
                                                         egress-doctor's own probes excluded
    egress_doctor_sidecar_passthrough{kind}              the app's traffic let out through PassthroughCluster
    egress_doctor_sidecar_connect_failures{host,port}    failed connections to registered hosts
    egress_doctor_sidecar_uptime_seconds                 how long the sidecar has been up

Series of checks or codes that the last run did not produce are dropped, not left stale.
"""

from __future__ import annotations

from collections import Counter as _Tally
from typing import TYPE_CHECKING, Any

from egress_doctor.model import Report, Status

if TYPE_CHECKING:
    from egress_doctor.redact import Redactor
    from egress_doctor.sources.envoy_stats import SidecarCounters

# The classic text format (0.0.4): every Prometheus version and agent accepts it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PASSED = (Status.PASS, Status.WARN)


class RunMetrics:
    """The metric families of one `serve` process and their rendered page."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["check", "subject"]
        self.ready = Gauge("egress_doctor_ready", "1 when every check of the last run passed", registry=self.registry)
        self.check_success = Gauge(
            "egress_doctor_check_success", "1 if the check passed (or warned), 0 if it failed or was skipped",
            labels, registry=self.registry,
        )  # fmt: skip
        self.check_duration = Gauge(
            "egress_doctor_check_duration_seconds", "How long the check took in the last run",
            labels, registry=self.registry,
        )  # fmt: skip
        self.findings = Gauge(
            "egress_doctor_findings", "Findings of this code in the last run", ["code", "level"], registry=self.registry
        )
        self.last_run = Gauge(
            "egress_doctor_last_run_timestamp_seconds", "Unix time the last run completed", registry=self.registry
        )
        self.run_duration = Gauge(
            "egress_doctor_run_duration_seconds", "How long the last run took", registry=self.registry
        )
        self.runs = Counter("egress_doctor_runs", "Runs completed, by outcome", ["result"], registry=self.registry)
        self.sidecar = _SidecarGauges(Gauge, self.registry)

    def observe(self, report: Report | None, *, ready: bool, finished_at: float, duration: float) -> None:
        """Record one completed run; `report` is None when the run itself raised."""
        self.ready.set(1 if ready else 0)
        self.last_run.set(finished_at)
        self.run_duration.set(duration)
        self.runs.labels("error" if report is None else "ready" if ready else "not_ready").inc()
        self.check_success.clear()
        self.check_duration.clear()
        self.findings.clear()
        self.sidecar.observe(report.counters if report is not None else None)
        if report is None:
            return
        for check in report.checks:
            subject = check.subject or ""
            self.check_success.labels(check.id, subject).set(1 if check.status in _PASSED else 0)
            self.check_duration.labels(check.id, subject).set(check.duration_ms / 1000)
        for (code, level), count in _Tally((f.code, f.level) for f in report.findings).items():
            self.findings.labels(code, level).set(count)

    def render(self, redactor: Redactor) -> bytes:
        """The whole page, through the run's redactor (label values come from the run: table names...)."""
        from prometheus_client import generate_latest

        return redactor.redact(generate_latest(self.registry).decode("utf-8")).encode("utf-8")


class _SidecarGauges:
    """The app's traffic as the sidecar counted it (sources.envoy_stats, commands.counters)."""

    def __init__(self, gauge: Any, registry: Any) -> None:
        self.refused = gauge("egress_doctor_sidecar_refused", "The app's traffic the sidecar refused since it "
                             "started (tcp: connections, http: requests); egress-doctor's probes excluded",
                             ["kind"], registry=registry)
        self.passthrough = gauge("egress_doctor_sidecar_passthrough", "The app's traffic the sidecar let out "
                                 "through PassthroughCluster (ALLOW_ANY)", ["kind"], registry=registry)
        self.failures = gauge("egress_doctor_sidecar_connect_failures", "Failed connections to registered hosts",
                              ["host", "port"], registry=registry)
        self.uptime = gauge("egress_doctor_sidecar_uptime_seconds", "Seconds since the sidecar started",
                            registry=registry)

    def observe(self, counters: SidecarCounters | None) -> None:
        """Set from the last run's counters; a run without them drops every series."""
        for family in (self.refused, self.passthrough, self.failures):
            family.clear()
        if counters is None:
            self.uptime.set(float("nan"))
            return
        for kind, count in counters.refused().items():
            self.refused.labels(kind).set(count)
        for kind, count in counters.passed().items():
            self.passthrough.labels(kind).set(count)
        for (host, port), count in counters.connect_failures.items():
            self.failures.labels(host, str(port)).set(count)
        self.uptime.set(counters.uptime if counters.uptime is not None else float("nan"))
