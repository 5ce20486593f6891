"""What a check has seen so far. Filled in place while it runs, so a deadline can report it."""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass, field

from egress_doctor.model import CheckResult, ErrorInfo, Evidence, Layer, Status, Symptom, Target


@dataclass
class CheckProgress:
    id: str
    title: str
    subject: str | None = None
    deadline: float | None = None  # time.monotonic() by which this check must give up
    target: Target | None = None
    evidence: Evidence = field(default_factory=Evidence)
    started: float = field(default_factory=time.monotonic)
    laddered: set[str] = field(default_factory=set)
    body_truncated: bool = False
    raw_body_prefix: bytes = b""  # kept private: exposed only for replies that are not AWS answers
    bucket_region: str | None = None  # S3's x-amz-bucket-region, from any answer of this check
    result: CheckResult | None = None

    @property
    def key(self) -> str:
        """Unique within a run: checks that repeat (one per table) differ by subject."""
        return f"{self.id}[{self.subject}]" if self.subject else self.id

    def finish(
        self,
        status: Status,
        *,
        layer: Layer | None = None,
        symptom: Symptom | None = None,
        error: ErrorInfo | None = None,
        reason: str = "",
    ) -> CheckResult:
        self.result = CheckResult(
            id=self.id,
            title=self.title,
            status=status,
            target=self.target,
            layer=layer,
            symptom=symptom,
            error=error,
            evidence=self.evidence,
            duration_ms=round((time.monotonic() - self.started) * 1000, 1),
            reason=reason,
            subject=self.subject,
        )
        return self.result

    def remaining(self, default: float) -> float:
        """Seconds left before this check's deadline, capped at `default`."""
        if self.deadline is None:
            return default
        return max(0.05, min(default, self.deadline - time.monotonic()))


current_check: contextvars.ContextVar[CheckProgress | None] = contextvars.ContextVar(
    "egress_doctor_current_check", default=None
)


class Board:
    """Every check of a run in the order it was started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[CheckProgress] = []

    def add(self, progress: CheckProgress) -> CheckProgress:
        with self._lock:
            self._items.append(progress)
        return progress

    def items(self) -> list[CheckProgress]:
        with self._lock:
            return list(self._items)
