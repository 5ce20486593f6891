"""Findings from the sidecar's own counters (`sources.envoy_stats`), read before any probe: the
app's traffic the sidecar refused (ED656) or let through PassthroughCluster (ED657) since it
started. Pure. Nothing counted, nothing said.
"""

from __future__ import annotations

from egress_doctor.diagnose.catalogue import entry
from egress_doctor.model import Finding
from egress_doctor.sources.envoy_stats import SidecarCounters


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return "time"
    minutes = int(seconds) // 60
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p)


def _counts(counts: dict[str, int]) -> str:
    parts = []
    if counts["tcp"]:
        parts.append(f"{counts['tcp']} TCP/TLS connection(s)")
    if counts["http"]:
        parts.append(f"{counts['http']} HTTP request(s)")
    return " and ".join(parts)


def _ports(counters: SidecarCounters) -> str:
    parts = []
    for port, count in sorted(counters.direct_responses.items()):
        if count:
            parts.append(f" On port {port}, {count} HTTP request(s) were answered by the sidecar itself "
                         "(block_all's 502, or a VirtualService's direct response).")
    failures = [f"{host}:{port} ({count})" for (host, port), count in sorted(counters.connect_failures.items())
                if count]
    if failures:
        parts.append(" Connections to registered hosts that failed: " + ", ".join(failures) + ".")
    if counters.refused()["tcp"]:
        parts.append(" The counters do not say on which port connections went to BlackHoleCluster.")
    return "".join(parts)


def counter_findings(counters: SidecarCounters | None) -> list[Finding]:
    if counters is None:
        return []
    findings = []
    refused = counters.refused()
    failures = any(counters.connect_failures.values())
    uptime = uptime_text(counters.uptime)
    if any(refused.values()) or failures:
        counts = _counts(refused) or "no connection outright, but connections failed"
        findings.append(_finding("ED656", counts=counts, uptime=uptime, ports=_ports(counters)))
    passed = counters.passed()
    if any(passed.values()):
        findings.append(_finding("ED657", counts=_counts(passed), uptime=uptime))
    return findings


def _finding(code: str, **args: object) -> Finding:
    e = entry(code)
    return Finding(code=e.code, level=e.level, title=e.title, message=e.render(args), docs=e.docs)
