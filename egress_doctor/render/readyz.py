"""The `/readyz` body of `egress-doctor serve`: a short verdict on the last completed run.

    {"ready": false, "state": "not-ready", "run": {...},
     "checks": [{"id", "subject", "status", "layer", "reason"}, ...],
     "findings": [{"code", "level", "title", "message", "hosts"}, ...], "warnings": [...]}

`state` is `starting` (no run has completed yet), `ready`, `not-ready` (a check failed) or
`error` (the run itself could not be made: `error` says why). The full evidence is what
`egress-doctor check -o json` prints; this body stays small because probes poll it.
"""

from __future__ import annotations

import json
from typing import Any

from egress_doctor.model import CheckResult, Finding, Report
from egress_doctor.redact import Redactor


def readiness_document(
    report: Report | None, *, ready: bool, error: str | None = None, run: dict[str, Any] | None = None
) -> dict[str, Any]:
    state = _state(report, ready=ready, error=error)
    return {
        "ready": ready,
        "state": state,
        "run": run,
        "error": error,
        "checks": [_check(c) for c in report.checks] if report else [],
        "findings": [_finding(f) for f in report.findings] if report else [],
        "warnings": list(report.identity.warnings + report.warnings) if report else [],
    }


def render_readiness(document: dict[str, Any], redactor: Redactor) -> bytes:
    """JSON bytes, redacted as an object (secret-named keys) and again as text."""
    text = json.dumps(redactor.redact_obj(document), indent=2) + "\n"
    return redactor.redact(text).encode("utf-8")


def _state(report: Report | None, *, ready: bool, error: str | None) -> str:
    if report is None:
        return "error" if error else "starting"
    return "ready" if ready else "not-ready"


def _check(check: CheckResult) -> dict[str, Any]:
    return {
        "id": check.id,
        "subject": check.subject,
        "status": check.status.value,
        "layer": check.layer.value if check.layer else None,
        "reason": check.reason,
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "level": finding.level,
        "title": finding.title,
        "message": finding.message,
        "hosts": list(finding.hosts),
    }
