"""The `egress-doctor/v1` document: the versioned JSON (and YAML) shape of a report.

Built field by field from the model, so the internal classes can change without breaking
the contract documented in docs/json-schema.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from egress_doctor.model import CheckResult, Evidence, Finding, Fix, Identity, Report
from egress_doctor.render.mesh_v1 import mesh_to_v1

SCHEMA = "egress-doctor/v1"


def report_to_v1(report: Report, *, transcript: bool = False) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "egress-doctor", "version": report.tool_version},
        "started_at": report.started_at,
        "duration_ms": report.duration_ms,
        "deadline_ms": report.deadline_ms,
        "exit_code": int(report.exit_status),
        "identity": identity_to_v1(report.identity),
        "checks": [check_to_v1(c, transcript=transcript) for c in report.checks],
        "findings": [finding_to_v1(f) for f in report.findings],
        "fixes": [fix_to_v1(f) for f in report.fixes],
        "warnings": list(report.warnings),
        "mesh": mesh_to_v1(report.mesh),
    }


def identity_to_v1(identity: Identity) -> dict[str, Any]:
    return {
        "source": identity.source,
        "region": identity.region,
        "region_source": identity.region_source,
        "account_id": identity.account_id,
        "role_arn": identity.role_arn,
        "chain": list(identity.chain),
        "details": dict(identity.details),
        "warnings": list(identity.warnings),
    }


def check_to_v1(check: CheckResult, *, transcript: bool) -> dict[str, Any]:
    target = None
    if check.target is not None:
        target = {
            "url": check.target.url,
            "host": check.target.host,
            "port": check.target.port,
            "connect_to": check.target.connect_to,
        }
    error = None
    if check.error is not None:
        error = {
            "type": check.error.type,
            "message": check.error.message,
            "chain": [_drop_none(dataclasses.asdict(link)) for link in check.error.chain],
        }
    return {
        "id": check.id,
        "title": check.title,
        "subject": check.subject,
        "status": check.status.value,
        "target": target,
        "layer": check.layer.value if check.layer else None,
        "symptom": check.symptom.value if check.symptom else None,
        "reason": check.reason,
        "error": error,
        "evidence": evidence_to_v1(check.evidence, transcript=transcript),
        "duration_ms": check.duration_ms,
    }


def evidence_to_v1(evidence: Evidence, *, transcript: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("dns", "tcp", "tls", "http", "aws"):
        value = getattr(evidence, name)
        if value is not None:
            out[name] = _drop_none(dataclasses.asdict(value))
    out["requests"] = list(evidence.requests)
    out["notes"] = list(evidence.notes)
    if transcript:
        out["transcript"] = list(evidence.transcript)
    return out


def finding_to_v1(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "level": finding.level,
        "title": finding.title,
        "message": finding.message,
        "checks": list(finding.checks),
        "hosts": list(finding.hosts),
        "docs": finding.docs,
        "fix": finding.fix,
    }


def fix_to_v1(fix: Fix) -> dict[str, Any]:
    return {"id": fix.id, "description": fix.description, "manifests": list(fix.manifests), "patch": fix.patch}


def _drop_none(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None and v != [] and v != {}}
