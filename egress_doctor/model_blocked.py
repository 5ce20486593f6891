"""The result of `egress-doctor blocked`: what the sidecars refused, read from their own records.

Filled by `diagnose.blocked` from what `sources.pod_logs` read; renderers (`render.blocked_table`,
`render.blocked_v1`, `render.fix_yaml`) only read it. Findings and fixes are the same types as
`check`'s, from the same catalogue and builders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egress_doctor.model import ExitStatus, Finding, Fix


@dataclass
class RefusedDestination:
    """One destination, as every selected sidecar together saw it."""

    host: str  # the TLS server name or HTTP authority; the address when the sidecar saw no name
    port: int
    protocol: str  # tls | http | tcp
    how: str  # 502 block_all | BlackHoleCluster | NR | reset | PassthroughCluster
    count: int
    first: str  # %START_TIME% of the earliest record ("" when the format had none)
    last: str
    pods: list[str] = field(default_factory=list)  # namespace/name
    addresses: list[str] = field(default_factory=list)  # destination IPs the app dialled
    named_by: str = ""  # sni | authority | resolved | "" (an address only)
    resolved_from: str | None = None  # the SDK host that resolves to the address (named_by resolved)
    service: str | None = None  # AWS service and region (botocore's endpoint data), None: not AWS
    region: str | None = None
    finding: str | None = None  # the code of its finding
    fix: str | None = None  # the id of the fix that lets it through

    @property
    def refused(self) -> bool:
        return self.how != "PassthroughCluster"


@dataclass
class PodSummary:
    """What was read from one pod's sidecar log."""

    ref: str  # namespace/name
    lines: int = 0
    access: int = 0  # access-log records
    proxy: int = 0  # Envoy's and pilot-agent's own messages
    unparsed: int = 0
    too_long: int = 0
    bytes: int = 0
    truncated: bool = False
    error: str | None = None
    read: bool = False


@dataclass
class BlockedReport:
    destinations: list[RefusedDestination] = field(default_factory=list)
    pods: list[PodSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unparsed_samples: list[str] = field(default_factory=list)  # masked previews
    selection: str = ""  # "namespace payments, -l app=api"
    since_seconds: float = 0.0
    passthrough: bool = False  # PassthroughCluster destinations were asked for
    started_at: str = ""
    duration_ms: float = 0.0
    deadline_ms: float = 0.0
    tool_version: str = ""

    @property
    def refused(self) -> list[RefusedDestination]:
        return [d for d in self.destinations if d.refused]

    @property
    def logs_read(self) -> int:
        return sum(1 for p in self.pods if p.read)

    @property
    def exit_status(self) -> ExitStatus:
        """1 when a sidecar refused something, or when no sidecar log could be read at all."""
        if self.refused or any(f.level == "error" for f in self.findings):
            return ExitStatus.CHECK_FAILED
        return ExitStatus.OK if self.logs_read else ExitStatus.CHECK_FAILED
