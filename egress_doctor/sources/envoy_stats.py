"""The sidecar's own counters (Envoy admin `GET /stats?usedonly`): what it refused and let through
since it started, without a name but without cluster access either.

    counters = read_counters("http://127.0.0.1:15000", deadline=time.monotonic() + 1)
    counters.blackhole_connections, counters.passthrough_connections, counters.direct_responses

Two families, whichever the sidecar keeps:

* Istio's standard metrics, always kept (the bootstrap's `reporter=` inclusion): in `/stats`
  their tags are spelled into the name, `reporter=.=source;.;…;.;destination_service_name=.=
  BlackHoleCluster;.;…;.;istio_tcp_connections_opened_total: 3` (and `istio_requests_total`): the
  istio_stats filter names BlackHoleCluster for block_all and PassthroughCluster for allow_any. They
  carry no port.
* Envoy's own counters, which Istio's stats matcher drops unless the pod asks
  (`sidecar.istio.io/statsInclusionPrefixes: cluster.BlackHoleCluster,cluster.PassthroughCluster,
  cluster.outbound,http.outbound`): `cluster.BlackHoleCluster.upstream_cx_none_healthy` and
  `tcp.BlackHoleCluster.downstream_cx_total` (connections sent to the black hole),
  `http.outbound_0.0.0.0_<port>;.rq_direct_response` (HTTP requests the sidecar answered itself on
  that port: block_all's 502, or a VirtualService's direct response),
  `cluster.PassthroughCluster.upstream_cx_total`, and `cluster.outbound|<port>||<host>.
  upstream_cx_connect_fail` (connections to a registered host that failed).

Istio ends the HCM's and the clusters' stat names with `;` (`util.DelimitedStatsPrefix`, for its
tag extraction); older sidecars do not, and both spellings are read. `server.uptime` says since
when. Parsing is pure (`parse_stats`); a missing admin port is None.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from egress_doctor.net.http import request

STATS_PATH = "/stats?usedonly"
MAX_BODY = 16 << 20  # a big mesh's /stats runs to MBs
CALL_TIMEOUT = 1.0
MAX_FAILURES = 20  # registered hosts with failed connections kept
_DIRECT = re.compile(r"^http\.outbound_.*_(\d+);?\.rq_direct_response$")
_CONNECT_FAIL = re.compile(r"^cluster\.outbound\|(\d+)\|[^|]*\|(.+?);?\.upstream_cx_connect_fail$")
_ISTIO_METRICS = ("istio_tcp_connections_opened_total", "istio_requests_total")
CATCH_ALLS = ("BlackHoleCluster", "PassthroughCluster")


@dataclass
class SidecarCounters:
    uptime: float | None = None  # seconds since Envoy started
    # (catch-all cluster, "tcp" | "http") → count, from Istio's metrics (reporter=source)
    istio: dict[tuple[str, str], int] = field(default_factory=dict)
    blackhole_connections: int = 0  # Envoy's counters (max of the cluster's and tcp_proxy's)
    passthrough_connections: int = 0
    direct_responses: dict[int, int] = field(default_factory=dict)  # port → requests answered by Envoy
    connect_failures: dict[tuple[str, int], int] = field(default_factory=dict)  # (host, port) → failures

    def refused(self) -> dict[str, int]:
        """{"tcp": connections, "http": requests} refused, from whichever family counted more."""
        tcp = max(self.blackhole_connections, self.istio.get(("BlackHoleCluster", "tcp"), 0))
        http = max(sum(self.direct_responses.values()), self.istio.get(("BlackHoleCluster", "http"), 0))
        return {"tcp": tcp, "http": http}

    def passed(self) -> dict[str, int]:
        tcp = max(self.passthrough_connections, self.istio.get(("PassthroughCluster", "tcp"), 0))
        return {"tcp": tcp, "http": self.istio.get(("PassthroughCluster", "http"), 0)}

    def minus(self, earlier: SidecarCounters) -> SidecarCounters:
        """What was counted after `earlier` (the same sidecar: no counter went down), else all of self."""
        pairs = [(self.blackhole_connections, earlier.blackhole_connections),
                 (self.passthrough_connections, earlier.passthrough_connections),
                 *((v, earlier.istio.get(k, 0)) for k, v in self.istio.items()),
                 *((v, earlier.direct_responses.get(k, 0)) for k, v in self.direct_responses.items())]
        restarted = any(now < before for now, before in pairs) or (
            self.uptime is not None and earlier.uptime is not None and self.uptime < earlier.uptime)
        if restarted:
            return self
        return SidecarCounters(
            uptime=self.uptime,
            istio={k: v - earlier.istio.get(k, 0) for k, v in self.istio.items()},
            blackhole_connections=self.blackhole_connections - earlier.blackhole_connections,
            passthrough_connections=self.passthrough_connections - earlier.passthrough_connections,
            direct_responses={k: v - earlier.direct_responses.get(k, 0) for k, v in self.direct_responses.items()},
            connect_failures={k: v - earlier.connect_failures.get(k, 0) for k, v in self.connect_failures.items()},
        )

    def plus(self, other: SidecarCounters) -> SidecarCounters:
        def add(a: dict, b: dict) -> dict:  # type: ignore[type-arg]
            return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}

        return SidecarCounters(
            uptime=other.uptime if other.uptime is not None else self.uptime,
            istio=add(self.istio, other.istio),
            blackhole_connections=self.blackhole_connections + other.blackhole_connections,
            passthrough_connections=self.passthrough_connections + other.passthrough_connections,
            direct_responses=add(self.direct_responses, other.direct_responses),
            connect_failures=add(self.connect_failures, other.connect_failures),
        )


def parse_stats(text: str) -> SidecarCounters:
    """`/stats` text (`name: value` per line) → the counters above; other lines are ignored."""
    out = SidecarCounters()
    for line in text.splitlines():
        name, sep, raw = line.rpartition(": ")
        if not sep or not raw.strip().isdigit():
            continue
        value = int(raw)
        if name == "server.uptime":
            out.uptime = float(value)
        elif name in ("cluster.BlackHoleCluster.upstream_cx_none_healthy", "tcp.BlackHoleCluster.downstream_cx_total"):
            out.blackhole_connections = max(out.blackhole_connections, value)
        elif name in ("cluster.PassthroughCluster.upstream_cx_total", "tcp.PassthroughCluster.downstream_cx_total"):
            out.passthrough_connections = max(out.passthrough_connections, value)
        elif (direct := _DIRECT.match(name)) is not None:
            port = int(direct[1])
            out.direct_responses[port] = out.direct_responses.get(port, 0) + value
        elif (failed := _CONNECT_FAIL.match(name)) is not None:
            if value and len(out.connect_failures) < MAX_FAILURES:
                out.connect_failures[(failed[2], int(failed[1]))] = value
        elif name.endswith(_ISTIO_METRICS) and ";.;" in name:
            _istio_metric(out, name, value)
    return out


def _istio_metric(out: SidecarCounters, name: str, value: int) -> None:
    *tags, metric = name.split(";.;")
    labels = dict(tag.split("=.=", 1) for tag in tags if "=.=" in tag)
    destination = labels.get("destination_service_name") or labels.get("destination_service")
    if labels.get("reporter") != "source" or destination not in CATCH_ALLS:
        return
    kind = "tcp" if metric == "istio_tcp_connections_opened_total" else "http"
    out.istio[(destination, kind)] = out.istio.get((destination, kind), 0) + value


def read_counters(admin_url: str, deadline: float, timeout: float = CALL_TIMEOUT) -> SidecarCounters | None:
    """The counters now; None when the admin port gives no usable answer (no sidecar)."""
    left = min(timeout, deadline - time.monotonic())
    if left <= 0:
        return None
    result = request("GET", admin_url.rstrip("/") + STATS_PATH, connect_timeout=left, read_timeout=left,
                     max_body=MAX_BODY, deadline=time.monotonic() + left)
    if not result.ok or result.evidence.status != 200 or result.evidence.body_truncated:
        return None
    return parse_stats(result.body.decode("utf-8", "replace"))
