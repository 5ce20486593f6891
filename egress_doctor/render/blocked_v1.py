"""The `egress-doctor/blocked-v1` document: `blocked -o json|yaml` (docs/blocked.md lists the fields).

Built field by field from the model; findings and fixes have the shape of `egress-doctor/v1`'s.
"""

from __future__ import annotations

from typing import Any

from egress_doctor.model_blocked import BlockedReport, PodSummary, RefusedDestination
from egress_doctor.render.json_v1 import finding_to_v1, fix_to_v1

SCHEMA = "egress-doctor/blocked-v1"


def blocked_to_v1(report: BlockedReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "egress-doctor", "version": report.tool_version},
        "started_at": report.started_at,
        "duration_ms": report.duration_ms,
        "deadline_ms": report.deadline_ms,
        "exit_code": int(report.exit_status),
        "selection": report.selection,
        "since_seconds": report.since_seconds,
        "passthrough": report.passthrough,
        "destinations": [destination_to_v1(d) for d in report.destinations],
        "pods": [pod_to_v1(p) for p in report.pods],
        "findings": [finding_to_v1(f) for f in report.findings],
        "fixes": [fix_to_v1(f) for f in report.fixes],
        "warnings": list(report.warnings),
        "unparsed_samples": list(report.unparsed_samples),
    }


def destination_to_v1(d: RefusedDestination) -> dict[str, Any]:
    return {
        "host": d.host, "port": d.port, "protocol": d.protocol, "how": d.how, "refused": d.refused,
        "count": d.count, "first_seen": d.first or None, "last_seen": d.last or None, "pods": list(d.pods),
        "addresses": list(d.addresses), "named_by": d.named_by or None, "resolved_from": d.resolved_from,
        "aws": {"service": d.service, "region": d.region} if d.service else None,
        "finding": d.finding, "fix": d.fix,
    }


def pod_to_v1(p: PodSummary) -> dict[str, Any]:
    return {
        "pod": p.ref, "read": p.read, "bytes": p.bytes, "truncated": p.truncated, "lines": p.lines,
        "access_records": p.access, "proxy_lines": p.proxy, "unparsed_lines": p.unparsed,
        "too_long_lines": p.too_long, "error": p.error,
    }
