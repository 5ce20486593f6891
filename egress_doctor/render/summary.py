"""`--summary-to-stderr`: one paragraph for a human reading a Job's log beside the JSON.

A single line, so that a log collector keeps it as one record and `kubectl logs` shows it whole:
the verdict and exit code, the counts, each failed check with its layer and reason, the finding
codes, the report's warnings and where the fix is.
"""

from __future__ import annotations

from egress_doctor.model import CheckResult, ExitStatus, Report, Status
from egress_doctor.render.printable import visible
from egress_doctor.render.table import target_label


def render_summary(report: Report) -> str:
    verdict = "PASS" if report.exit_status is ExitStatus.OK else "FAIL"
    counts = [f"{sum(1 for c in report.checks if c.status is s)} {s.value}" for s in Status]
    sentences = [
        f"egress-doctor summary: {verdict} (exit {int(report.exit_status)}): "
        f"{', '.join(n for n in counts if not n.startswith('0 '))} in {report.duration_ms / 1000:.2f} s, "
        f"credentials {report.identity.source}, region {report.identity.region or 'none'}."
    ]
    failed = [c for c in report.checks if c.status is Status.FAIL]
    sentences.append(_sentence("Failed", [_failure(c) for c in failed]))
    sentences.append(_sentence("Findings", [f"{f.code} {f.level}: {f.title}" for f in report.findings]))
    sentences.append(_sentence("Warnings", report.identity.warnings + report.warnings))
    if report.fixes:
        sentences.append(
            f"Fix: the report's fixes ({len(report.fixes)}), or run "
            "`egress-doctor check --fix-only | kubectl apply -f -`."
        )
    return visible(" ".join(" ".join(sentences).split())) + "\n"


def _failure(check: CheckResult) -> str:
    where = [target_label(check)] if check.target else []
    where.append(f"layer {check.layer.value}" if check.layer else "no layer")
    return f"{check.title} ({', '.join(where)}): {check.reason}"


def _sentence(label: str, items: list[str]) -> str:
    """`Label: a; b.` ("" without items), not doubling the last item's own full stop."""
    if not items:
        return ""
    text = f"{label}: " + "; ".join(items)
    return text if text.endswith((".", "?", "!")) else text + "."
