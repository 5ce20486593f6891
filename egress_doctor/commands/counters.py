"""The sidecar's counters around the probes (`check` and `serve`): read before a run, so that what
egress-doctor itself sends is never counted as the app's.

`check` reads them once, before its probes. `serve` reads them before and after each run and keeps
the app's share: everything counted before the first run, plus what was counted between one run's
end and the next one's start (a sidecar restart starts the tally again from its counters).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from egress_doctor.sources.envoy_stats import SidecarCounters

READ_SECONDS = 1.0  # the admin port answers on loopback within milliseconds
RUN_SHARE = 0.2  # at most this share of what is left of a run's deadline: the probes come first


def counters_before_probes(admin_url: str | None, deadline_at: float | None = None) -> SidecarCounters | None:
    """The counters now, or None. A slow admin port costs at most READ_SECONDS, and at most a fifth
    of what is left before `deadline_at` (a run's): the probes and the sidecar read still get theirs."""
    if admin_url is None:
        return None
    from egress_doctor.sources.envoy_stats import read_counters

    now = time.monotonic()
    budget = READ_SECONDS if deadline_at is None else min(READ_SECONDS, max(0.0, deadline_at - now) * RUN_SHARE)
    return read_counters(admin_url, now + budget)


class AppCounters:
    """The app's share of the sidecar's counters over many runs (`serve`)."""

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url
        self.total: SidecarCounters | None = None
        self._after_last_run: SidecarCounters | None = None
        self._runs = 0
        self._lock = threading.Lock()

    def before_run(self) -> SidecarCounters | None:
        """Read now and add what the app did since the last run ended; the total so far.

        When the counters after the last run could not be read, that interval is left out (it
        would mix the app's traffic with the probes')."""
        now = counters_before_probes(self.admin_url)
        with self._lock:
            first, self._runs = self._runs == 0, self._runs + 1
            if now is None:
                return self.total
            if first:
                since: SidecarCounters | None = now
            elif self._after_last_run is None:
                since = None
            else:
                since = now.minus(self._after_last_run)
            if since is not None:
                self.total = since if self.total is None else self.total.plus(since)
            elif self.total is not None:
                self.total.uptime = now.uptime
            return self.total

    def after_run(self) -> None:
        after = counters_before_probes(self.admin_url)
        with self._lock:
            self._after_last_run = after


def with_run_failures(mesh: Any, before: SidecarCounters | None, admin_url: str | None,
                      deadline_at: float | None = None) -> Any:
    """The MeshView with the upstream connect failures counted while the probes ran (the sidecar's
    counters read again after them, minus those read before): what beyond the sidecar refused."""
    from dataclasses import replace

    sidecar = getattr(mesh, "sidecar", None)
    if before is None or sidecar is None or not sidecar.present:
        return mesh
    after = counters_before_probes(admin_url, deadline_at)
    if after is None:
        return mesh
    failures = {k: v for k, v in after.minus(before).connect_failures.items() if v > 0}
    if not failures:
        return mesh
    return replace(mesh, sidecar=replace(sidecar, run_connect_failures=failures))
