"""The sidecar's own counters: parsed from /stats (the lab's real Envoy, and Istio's metrics in the
shape a sidecar prints them), turned into ED656/ED657, and for `serve` the app's share only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from egress_doctor.commands.counters import AppCounters
from egress_doctor.diagnose import Diagnosis
from egress_doctor.diagnose.counters import counter_findings, uptime_text
from egress_doctor.model import Identity, Report
from egress_doctor.redact import Redactor
from egress_doctor.render.metrics import RunMetrics
from egress_doctor.sources.envoy_stats import SidecarCounters, parse_stats, read_counters
from tests.canned import CannedServer, Reply, Request

RECORDED = Path(__file__).parent / "recorded" / "envoy-stats"


def stats(name: str) -> str:
    return (RECORDED / name).read_text(encoding="utf-8")


def test_the_lab_envoys_counters_give_its_blackholed_connection_and_block_all_reply() -> None:
    counters = parse_stats(stats("lab-registry-only.txt"))
    assert counters.refused() == {"tcp": 1, "http": 1}
    assert counters.direct_responses == {80: 1}
    assert counters.passed() == {"tcp": 0, "http": 0}


def test_istios_metrics_count_only_what_this_sidecar_sent_to_the_catch_all_clusters() -> None:
    counters = parse_stats(stats("istio-sidecar.txt"))
    assert counters.istio == {("BlackHoleCluster", "tcp"): 7, ("BlackHoleCluster", "http"): 3,
                              ("PassthroughCluster", "tcp"): 12}
    assert counters.refused() == {"tcp": 7, "http": 3}
    assert counters.uptime == 11532


@dataclass
class Case:
    id: str
    stats: str
    codes: list[str]
    messages: tuple[str, ...] = ()

    def run(self) -> Diagnosis:
        return Diagnosis(findings=counter_findings(parse_stats(self.stats)))


CASES = [
    Case("a sidecar that refused nothing says nothing", "server.uptime: 60\ncluster_manager.active_clusters: 3\n", []),
    Case("blackholed connections and block_all replies are counted with the port they name",
         stats("lab-registry-only.txt"), ["ED656"],
         ("1 TCP/TLS connection(s) and 1 HTTP request(s)", "On port 80, 1 HTTP request(s)",
          "do not say on which port")),
    Case("istio's metrics alone tell refusals and passthrough apart",
         stats("istio-sidecar.txt"), ["ED656", "ED657"],
         ("7 TCP/TLS connection(s) and 3 HTTP request(s)", "3 h 12 min", "passed 12 TCP/TLS connection(s)")),
    Case("failed connections to a registered host are named with their port",
         "cluster.outbound|443||sqs.us-east-1.amazonaws.com.upstream_cx_connect_fail: 4\nserver.uptime: 5\n",
         ["ED656"], ("sqs.us-east-1.amazonaws.com:443 (4)",)),
    # Istio ends HCM and cluster stat prefixes with `;` (pilot/pkg/networking/util/util.go
    # DelimitedStatsPrefix); sidecars before it do not: both are the same counters
    Case("counters whose names end with istio's ';' delimiter are read like the others",
         "http.outbound_0.0.0.0_80;.rq_direct_response: 2\n"
         "cluster.outbound|443||sqs.us-east-1.amazonaws.com;.upstream_cx_connect_fail: 4\nserver.uptime: 5\n",
         ["ED656"], ("On port 80, 2 HTTP request(s)", "sqs.us-east-1.amazonaws.com:443 (4)")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_counter_rule_table(case: Case) -> None:
    findings = case.run().findings
    assert [f.code for f in findings] == case.codes
    text = " ".join(f.message for f in findings)
    for expected in case.messages:
        assert expected in text


def test_lines_that_are_not_counters_are_ignored() -> None:
    assert parse_stats("garbage\nserver.uptime: abc\n: 3\nhttp.outbound_x.rq_direct_response: 9\n") == SidecarCounters()


@pytest.mark.parametrize(("seconds", "text"), [(None, "time"), (42, "42 s"), (3660, "1 h 1 min"), (90000, "1 d 1 h")])
def test_uptime_reads_like_a_person_would_say_it(seconds: float | None, text: str) -> None:
    assert uptime_text(seconds) == text


class StatsAdmin:
    """An Envoy admin whose BlackHoleCluster counter the test moves between reads."""

    def __init__(self) -> None:
        self.blackholed = 0
        self.uptime = 100
        self.server = CannedServer(self.reply)

    def reply(self, request: Request) -> Reply:
        body = (f"cluster.BlackHoleCluster.upstream_cx_none_healthy: {self.blackholed}\n"
                f"server.uptime: {self.uptime}\n").encode()
        return Reply(200, (("content-type", "text/plain"),), body)


def test_serve_counts_the_apps_refusals_between_runs_never_its_own_probes() -> None:
    admin = StatsAdmin()
    with admin.server:
        app = AppCounters(admin.server.url("").rstrip("/"))
        admin.blackholed = 3  # the app, before the first run
        assert app.before_run().refused()["tcp"] == 3  # type: ignore[union-attr]
        admin.blackholed = 5  # our probes
        app.after_run()
        admin.blackholed = 6  # the app again
        assert app.before_run().refused()["tcp"] == 4  # type: ignore[union-attr]
        admin.blackholed = 9  # our probes
        app.after_run()
        admin.blackholed, admin.uptime = 2, 3  # the sidecar restarted, then the app was refused twice
        assert app.before_run().refused()["tcp"] == 6  # type: ignore[union-attr]


def test_no_admin_port_means_no_counters_and_no_finding() -> None:
    with CannedServer(Reply(200)) as server:
        url = server.url("").rstrip("/")
    assert read_counters(url, deadline=10**9) is None
    assert counter_findings(None) == []


def test_serve_exports_the_apps_refusals_as_metrics() -> None:
    metrics = RunMetrics()
    report = Report(identity=Identity(source="irsa"), checks=[], counters=parse_stats(stats("istio-sidecar.txt")))
    metrics.observe(report, ready=True, finished_at=1.0, duration=0.1)
    page = metrics.render(Redactor()).decode()
    assert 'egress_doctor_sidecar_refused{kind="tcp"} 7.0' in page
    assert 'egress_doctor_sidecar_refused{kind="http"} 3.0' in page
    assert 'egress_doctor_sidecar_passthrough{kind="tcp"} 12.0' in page
    assert "egress_doctor_sidecar_uptime_seconds 11532.0" in page
    metrics.observe(Report(identity=Identity(source="irsa"), checks=[]), ready=True, finished_at=2.0, duration=0.1)
    assert "egress_doctor_sidecar_refused{" not in metrics.render(Redactor()).decode()


def test_check_reports_what_the_sidecar_refused_before_its_probes(monkeypatch, tmp_path: Path) -> None:
    from tests.checkrun import aws_world, run_cli

    admin = StatsAdmin()
    admin.blackholed, admin.uptime = 4, 7260
    with aws_world(monkeypatch, tmp_path) as world, admin.server:
        world.static_keys()
        result = run_cli("check", "-o", "json", "--envoy-admin", admin.server.url("").rstrip("/"))
    stats_reads = [r for r in admin.server.requests if r.target.startswith("/stats")]
    assert len(stats_reads) == 1, "the counters are read once, before the probes"
    (finding,) = [f for f in result.json()["findings"] if f["code"] == "ED656"]
    assert "refused 4 TCP/TLS connection(s) in the 2 h 1 min since it started" in finding["message"]


def test_check_says_nothing_of_the_kind_when_the_sidecar_refused_nothing(monkeypatch, tmp_path: Path) -> None:
    from tests.checkrun import aws_world, run_cli

    admin = StatsAdmin()
    with aws_world(monkeypatch, tmp_path) as world, admin.server:
        world.static_keys()
        result = run_cli("check", "-o", "json", "--envoy-admin", admin.server.url("").rstrip("/"))
    assert not {"ED656", "ED657"} & {f["code"] for f in result.json()["findings"]}
