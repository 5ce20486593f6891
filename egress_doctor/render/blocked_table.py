"""`blocked`'s human output: one line per destination, then the findings and the fix."""

from __future__ import annotations

from typing import Any

from egress_doctor.model_blocked import BlockedReport, RefusedDestination
from egress_doctor.render.printable import cell, visible
from egress_doctor.render.table import _findings_section


def render_blocked_table(report: BlockedReport, *, color: bool = False, fix_yaml: str = "") -> str:
    from tabulate import tabulate

    lines = [visible(_header(report))]  # names and text from the logs and the API server: shown, never obeyed
    lines += [f"  ! {visible(w)}" for w in report.warnings]
    if report.destinations:
        rows = [_row(d) for d in report.destinations]
        lines += ["", tabulate(rows, headers=["destination", "port", "how", "AWS", "count", "pods", "first seen",
                                              "last seen"])]
    elif report.logs_read:
        lines += ["", "No refusal in these logs." + ("" if report.passthrough else
                                                     " (--passthrough: what left through PassthroughCluster)")]
    if report.unparsed_samples:
        lines += ["", "Lines not parsed (previews, credentials masked):"]
        lines += [f"  {visible(sample)}" for sample in report.unparsed_samples]
    lines += _findings_section(report, color)  # type: ignore[arg-type]  # reads .findings only
    if fix_yaml:
        lines += ["", "Fix (pipe `egress-doctor blocked --fix-only` into `kubectl apply -f -`):", "",
                  visible(fix_yaml.rstrip(), newlines=True)]
    lines += ["", _summary(report)]
    return "\n".join(lines) + "\n"


def _header(report: BlockedReport) -> str:
    lines = sum(p.lines for p in report.pods)
    records = sum(p.access for p in report.pods)
    read = report.logs_read
    since = _since(report.since_seconds)
    return (f"blocked: {report.selection}; istio-proxy logs of the last {since}: {read} of {len(report.pods)} "
            f"read, {lines:,} lines, {records:,} access-log records")


def _since(seconds: float) -> str:
    from egress_doctor.diagnose.blocked import duration_text

    return duration_text(seconds)


def destination_label(d: RefusedDestination) -> str:
    if d.resolved_from:
        return f"{d.host} (address {d.resolved_from}, resolved)"
    if not d.named_by and d.finding == "ED651":
        return f"{d.host} (unknown host)"
    return d.host


def _row(d: RefusedDestination) -> list[Any]:
    aws = f"{d.service} {d.region}" if d.service else "-"
    pods = d.pods[0] + (f" +{len(d.pods) - 1}" if len(d.pods) > 1 else "") if d.pods else "-"
    return [cell(destination_label(d)), d.port, cell(d.how), cell(aws), d.count, cell(pods), cell(d.first or "-"),
            cell(d.last or "-")]


def _summary(report: BlockedReport) -> str:
    refused = report.refused
    total = sum(d.count for d in refused)
    passed = [d for d in report.destinations if not d.refused]
    text = f"{len(refused)} refused destination(s), {total} refusal(s)"
    if report.passthrough:
        text += f"; {len(passed)} destination(s) through PassthroughCluster"
    return f"{text}; {report.logs_read} pod log(s) read in {report.duration_ms / 1000:.2f} s"
