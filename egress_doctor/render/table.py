"""The default human output: one line per call, then the findings and the fix."""

from __future__ import annotations

from typing import Any

from egress_doctor.model import CheckResult, Report, Status
from egress_doctor.render.printable import cell, visible

_MARKS = {Status.PASS: "pass", Status.FAIL: "FAIL", Status.WARN: "warn", Status.SKIP: "skip"}
_COLORS = {Status.PASS: "32", Status.FAIL: "31", Status.WARN: "33", Status.SKIP: "90"}
_LEVEL_COLORS = {"error": "31", "warning": "33", "info": "36"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def target_label(check: CheckResult) -> str:
    if check.target is None:
        return "-"
    label = f"{check.target.host}:{check.target.port}"
    if check.target.connect_to:
        label += f" (via {check.target.connect_to})"
    return label


def render_table(
    report: Report, *, color: bool = False, verbose: bool = False, fix_yaml: str = "", command: str = "check"
) -> str:
    """`command` is the subcommand that produced the report, named in the hint to pipe the fix."""
    from tabulate import tabulate

    identity = report.identity
    # Everything that came from the network or from files is shown through `visible`/`cell` (escape
    # sequences shown, not obeyed); only the colours added here reach the terminal as they are.
    lines = [visible(_identity_line(report))]
    lines += [f"  ! {visible(w)}" for w in identity.warnings + report.warnings]
    rows: list[list[Any]] = []
    for check in report.checks:
        rows.append(
            [
                cell(check.title),
                cell(target_label(check)),
                _paint(_MARKS[check.status], _COLORS[check.status], color),
                check.layer.value if check.layer else "",
                f"{check.duration_ms:.0f} ms" if check.status is not Status.SKIP else "",
                cell(check.reason),
            ]
        )
    lines.append("")
    lines.append(tabulate(rows, headers=["check", "target", "result", "layer", "time", "reason"],
                          disable_numparse=True))
    if verbose:
        lines += [visible(line) for line in _verbose_sections(report)]
    lines += _findings_section(report, color)
    if fix_yaml:
        hint = f"Fix (pipe `egress-doctor {command} --fix-only` into `kubectl apply -f -`):"
        lines += ["", hint, "", visible(fix_yaml.rstrip(), newlines=True)]
    lines.append("")
    lines.append(_summary_line(report))
    return "\n".join(lines) + "\n"


def _identity_line(report: Report) -> str:
    identity = report.identity
    parts = [f"credentials: {identity.source}"]
    parts.append(
        f"region: {identity.region or 'none'}" + (f" ({identity.region_source})" if identity.region_source else "")
    )
    if identity.account_id:
        parts.append(f"account: {identity.account_id}")
    if identity.role_arn:
        parts.append(f"role: {identity.role_arn}")
    return "  ".join(parts)


def _verbose_sections(report: Report) -> list[str]:
    out: list[str] = []
    for check in report.checks:
        if check.status is Status.SKIP:
            continue
        out += ["", f"── {check.id}" + (f" [{check.subject}]" if check.subject else "") + f" ({check.status.value})"]
        evidence = check.evidence
        for url in evidence.requests:
            out.append(f"  request   {url}")
        if evidence.dns:
            dns = evidence.dns
            answer = dns.skipped or ", ".join(dns.addresses) or f"error {dns.error}"
            out.append(f"  dns       {dns.name} → {answer}")
        if evidence.tcp:
            tcp = evidence.tcp
            state = "connected" if tcp.connected else f"failed: {tcp.error}"
            out.append(f"  tcp       {tcp.address}:{tcp.port} {state}")
        if evidence.tls:
            tls = evidence.tls
            state = f"{tls.protocol} {tls.peer_subject or ''}".strip() if tls.ok else f"failed: {tls.error}"
            out.append(f"  tls       sni={tls.sni} trust={tls.trust} {state}")
        if evidence.http and evidence.http.status is not None:
            http = evidence.http
            headers = ", ".join(f"{k}: {v}" for k, v in sorted(http.headers.items()))
            out.append(f"  http      {http.status} {{{headers}}}")
            if http.body_prefix:
                out.append(f"  body      {http.body_prefix[:200]!r}")
        if evidence.aws and evidence.aws.error_code:
            out.append(f"  aws       {evidence.aws.error_code}: {evidence.aws.error_message or ''}")
        if check.error:
            chain = " → ".join(link.type for link in check.error.chain) or check.error.type
            out.append(f"  error     {chain}: {check.error.message[:300]}")
        out += [f"  note      {note}" for note in evidence.notes]
        if evidence.transcript:
            out.append("  transcript:")
            for record in evidence.transcript:
                out += ["    " + line for line in record.splitlines()]
    return out


def _findings_section(report: Report, color: bool) -> list[str]:
    if not report.findings:
        return []
    out = ["", "Findings:"]
    for finding in report.findings:
        level = _paint(finding.level, _LEVEL_COLORS.get(finding.level, "0"), color)
        out.append(f"  {finding.code} {level}: {visible(finding.title)}")
        out.append(f"      {visible(finding.message)}")
        if finding.docs:
            out.append(f"      see {visible(finding.docs)}")
    return out


def _summary_line(report: Report) -> str:
    counts = {s: sum(1 for c in report.checks if c.status is s) for s in Status}
    parts = [f"{counts[s]} {s.value}" for s in Status if counts[s]]
    deadline = f" (deadline {report.deadline_ms / 1000:g} s)" if report.deadline_ms else ""  # analyze has none
    return f"{', '.join(parts)} in {report.duration_ms / 1000:.2f} s{deadline}"
