"""`egress-doctor serve` in-process against the fakes: /readyz, /livez, /metrics, one run at a time.

Each test builds the service exactly as the CLI does (`build_service` from parsed `serve`
flags) and, where the order of events matters, drives runs itself with `scheduler.run_once()`
instead of starting the scheduler thread.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from egress_doctor.cli import build_parser
from egress_doctor.commands.serve import build_service
from egress_doctor.context import Environment
from egress_doctor.redact import MARK, Redactor
from egress_doctor.serve import ListenAddress, ReadinessService, Scheduler
from tests.checkrun import ENV_SECRET_KEY, ENV_SESSION_TOKEN, REGION, aws_world
from tests.sockets import refused_port
from tests.test_secrets import moto_issued_secrets, spellings

ENV_KEY_ID = "AKIAPLANTEDEXAMPLE12"  # World.static_keys()
BURST = 200
WAIT = 30.0  # seconds: a safety bound for waits on events, never an expectation


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


@pytest.fixture
def service_factory() -> Iterator[object]:
    made: list[ReadinessService] = []

    def make(*flags: str, interval: str = "1h") -> ReadinessService:
        args = build_parser().parse_args(["serve", "--listen", "127.0.0.1:0", "--interval", interval, *flags])
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
        service = build_service(args, env, Redactor())
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


def get(service: ReadinessService, path: str) -> tuple[int, str, bytes]:
    parts = urlsplit(service.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def eventually(condition, step: float = 0.02) -> bool:
    """Poll `condition` until it holds or WAIT passes (a bound on a hang, not a timing claim)."""
    pause = threading.Event()
    for _ in range(int(WAIT / step)):
        if condition():
            return True
        pause.wait(step)
    return False


def readyz(service: ReadinessService) -> tuple[int, dict]:
    status, _type, body = get(service, "/readyz")
    return status, json.loads(body)


def test_readyz_is_503_starting_before_the_first_run_completes(world, service_factory):
    service = service_factory().start(schedule=False)
    status, body = readyz(service)
    assert status == 503
    assert body["state"] == "starting" and body["ready"] is False and body["checks"] == []


def test_readyz_is_200_after_a_run_where_every_check_passes(world, service_factory):
    service = service_factory().start(schedule=False)
    service.scheduler.run_once()
    status, body = readyz(service)
    assert status == 200, body
    assert body["state"] == "ready"
    assert [(c["id"], c["status"], c["layer"]) for c in body["checks"]] == [
        ("credentials.source", "pass", None),
        ("sts.get-caller-identity", "pass", None),
        ("dynamodb.list-tables", "pass", None),
    ]
    assert body["run"]["number"] == 1


def test_readyz_turns_503_with_the_failed_check_and_finding_after_an_injected_aws_error(world, service_factory):
    service = service_factory().start(schedule=False)
    service.scheduler.run_once()
    world.aws.answer("sts", "GetCallerIdentity", status=403, code="AccessDenied")
    service.scheduler.run_once()
    status, body = readyz(service)
    assert status == 503
    assert body["state"] == "not-ready"
    sts = next(c for c in body["checks"] if c["id"] == "sts.get-caller-identity")
    assert (sts["status"], sts["layer"]) == ("fail", "api")
    assert sts["reason"]
    assert body["findings"], "a failed run must say why"
    assert {"code", "level", "title", "message", "hosts"} <= set(body["findings"][0])


def test_readyz_is_503_and_names_the_tcp_layer_when_connect_to_points_at_a_refused_port(world, service_factory):
    with refused_port() as port:
        service = service_factory(
            "--connect-to", f"sts.{REGION}.amazonaws.com:443:127.0.0.1:{port}", "--connect-timeout", "0.5"
        ).start(schedule=False)
        service.scheduler.run_once()
    status, body = readyz(service)
    assert status == 503
    sts = next(c for c in body["checks"] if c["id"] == "sts.get-caller-identity")
    assert (sts["status"], sts["layer"]) == ("fail", "tcp")


def test_readyz_is_503_with_the_error_when_the_run_itself_cannot_start(world, service_factory):
    world.use(AWS_METADATA_SERVICE_TIMEOUT="abc")  # botocore refuses to build its chain
    service = service_factory().start(schedule=False)
    service.scheduler.run_once()
    status, body = readyz(service)
    assert status == 503
    assert body["state"] == "error"
    assert "UsageError" in body["error"]


def test_a_burst_of_200_concurrent_requests_triggers_no_extra_probe_run(world, service_factory):
    service = service_factory().start()
    assert service.scheduler.wait_for_runs(1, WAIT)
    paths = ["/readyz", "/metrics", "/livez", "/readyz"] * (BURST // 4)
    start = threading.Barrier(BURST, timeout=WAIT)

    def hit(path: str) -> int:
        start.wait()
        return get(service, path)[0]

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        statuses = list(pool.map(hit, paths))
    assert statuses == [200] * BURST
    assert service.scheduler.runs_started == 1
    assert service.scheduler.snapshot.runs == 1


def counting_probe(pause: float, counts: dict[str, int]):
    """A probe that only counts how many runs overlap, then fails the run (the scheduler survives)."""
    lock = threading.Lock()

    def probe(_redactor):
        with lock:
            counts["active"] += 1
            counts["most"] = max(counts["most"], counts["active"])
        threading.Event().wait(pause)
        with lock:
            counts["active"] -= 1
        raise RuntimeError("this probe only counts")

    return probe


def test_the_scheduler_never_runs_two_probes_at_once_even_with_an_interval_shorter_than_a_run():
    counts = {"active": 0, "most": 0}
    scheduler = Scheduler(counting_probe(0.01, counts), interval=0.001, deadline=1, redactor=Redactor())
    scheduler.start()
    assert scheduler.wait_for_runs(20, WAIT)
    assert scheduler.stop(WAIT)
    assert counts["most"] == 1


def test_a_probe_that_raises_leaves_the_scheduler_alive_and_readyz_in_error():
    scheduler = Scheduler(counting_probe(0, {"active": 0, "most": 0}), interval=3600, deadline=1, redactor=Redactor())
    with ReadinessService(scheduler, ListenAddress("127.0.0.1", 0), run_timeout=WAIT) as service:
        service.start()
        assert scheduler.wait_for_runs(1, WAIT)
        status, body = readyz(service)
        assert (status, body["state"], body["error"]) == (503, "error", "RuntimeError: this probe only counts")
        assert get(service, "/livez")[0] == 200


def test_metrics_parse_as_prometheus_text_with_per_check_success_and_findings(world, service_factory):
    world.aws.create_tables(["orders"], REGION)
    world.aws.answer("dynamodb", "DescribeTable", status=400, code="AccessDeniedException")
    service = service_factory("--table", "orders").start(schedule=False)
    service.scheduler.run_once()
    status, content_type, body = get(service, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = families["egress_doctor_check_success"].samples
    success = {(s.labels["check"], s.labels["subject"]): s.value for s in samples}
    assert success[("sts.get-caller-identity", "")] == 1
    assert success[("dynamodb.describe-table", "orders")] == 0
    durations = families["egress_doctor_check_duration_seconds"].samples
    assert {s.labels["check"] for s in durations} == {c for c, _ in success}
    assert families["egress_doctor_ready"].samples[0].value == 0
    assert families["egress_doctor_last_run_timestamp_seconds"].samples[0].value > 0
    assert families["egress_doctor_run_duration_seconds"].samples[0].value > 0
    findings = families["egress_doctor_findings"].samples
    assert findings and all(s.labels["code"].startswith("ED") and s.value >= 1 for s in findings)
    runs = {s.labels["result"]: s.value for s in families["egress_doctor_runs"].samples if s.name.endswith("_total")}
    assert runs == {"not_ready": 1}


def test_metrics_drop_the_series_of_checks_the_last_run_did_not_make(world, service_factory):
    world.aws.answer("sts", "GetCallerIdentity", status=403)
    service = service_factory().start(schedule=False)
    service.scheduler.run_once()
    world.aws.clear_answers()
    service.scheduler.run_once()
    families = {f.name: f for f in text_string_to_metric_families(get(service, "/metrics")[2].decode())}
    assert families["egress_doctor_findings"].samples == []
    assert {s.value for s in families["egress_doctor_check_success"].samples} == {1}


def test_livez_is_200_while_the_scheduler_runs_and_503_once_it_stopped(world, service_factory):
    service = service_factory().start()
    assert service.scheduler.wait_for_runs(1, WAIT)
    assert get(service, "/livez")[0] == 200
    service.scheduler.stop(WAIT)
    assert get(service, "/livez")[0] == 503


def test_livez_turns_503_when_a_run_hangs_past_the_staleness_bound():
    release = threading.Event()

    def hanging_probe(_redactor):
        release.wait(WAIT)
        raise RuntimeError("released")

    scheduler = Scheduler(hanging_probe, interval=0.02, deadline=0.01, redactor=Redactor())
    with ReadinessService(scheduler, ListenAddress("127.0.0.1", 0), run_timeout=WAIT) as service:
        service.start()
        assert get(service, "/livez")[0] == 200  # the run started just now
        went_stale = eventually(lambda: get(service, "/livez")[0] == 503)
        release.set()
        assert went_stale


def test_unknown_paths_are_404_and_no_handler_runs_a_probe(world, service_factory):
    service = service_factory().start(schedule=False)
    assert get(service, "/")[0] == 404
    assert get(service, "/readyz?verbose=1")[0] == 503
    assert service.scheduler.runs_started == 0


def test_secrets_planted_in_the_env_and_echoed_by_aws_never_reach_readyz_or_metrics(world, service_factory):
    echoed = f"session {ENV_SESSION_TOKEN} and key {ENV_SECRET_KEY} were rejected"
    world.aws.answer("sts", "GetCallerIdentity", status=403, message=echoed)
    world.aws.answer("dynamodb", "ListTables", status=400, code="UnrecognizedClientException", message=echoed)
    service = service_factory().start(schedule=False)
    service.scheduler.run_once()
    bodies = [get(service, path)[2].decode() for path in ("/readyz", "/metrics", "/livez")]
    assert "rejected" in bodies[0], "the echoed message should be shown, redacted"
    secrets = [ENV_SECRET_KEY, ENV_SESSION_TOKEN, ENV_KEY_ID, *moto_issued_secrets()]
    for body in bodies:
        for secret in secrets:
            for spelling in spellings(secret):
                assert spelling not in body


def test_irsa_token_never_reaches_readyz_or_metrics(monkeypatch, tmp_path, service_factory):
    from tests.checkrun import WEB_IDENTITY_JWT

    with aws_world(monkeypatch, tmp_path) as world:
        world.irsa()
        world.aws.answer("dynamodb", "ListTables", status=400, message=f"bad token {WEB_IDENTITY_JWT}")
        service = service_factory().start(schedule=False)
        service.scheduler.run_once()
        status, body = readyz(service)
        assert status == 503
        text = json.dumps(body) + get(service, "/metrics")[2].decode()
        for secret in [WEB_IDENTITY_JWT, *moto_issued_secrets()]:
            for spelling in spellings(secret):
                assert spelling not in text


def test_a_long_running_serve_does_not_pile_up_every_runs_fresh_irsa_credentials_in_one_redactor(
    monkeypatch, tmp_path, service_factory
):
    from moto.sts.models import sts_backends

    def issued_secret_keys() -> list[str]:
        return [role.secret_access_key for regions in sts_backends.values() for b in regions.values()
                for role in b.assumed_roles]  # fmt: skip

    with aws_world(monkeypatch, tmp_path) as world:
        world.irsa()
        service = service_factory().start(schedule=False)
        seen: list[Redactor] = []
        probe = service.scheduler._probe
        service.scheduler._probe = lambda redactor: seen.append(redactor) or probe(redactor)
        service.scheduler.run_once()
        first_runs_key = issued_secret_keys()[-1]
        service.scheduler.run_once()
        service.scheduler.run_once()
        assert readyz(service)[0] == 200
        assert len(set(issued_secret_keys())) >= 3, "STS should have issued new keys on every run"
    assert len({id(r) for r in seen}) == 3, "each run gets its own redactor"
    assert seen[0].redact(first_runs_key) == MARK
    assert seen[2].redact(first_runs_key) == first_runs_key, "run 3 must not carry run 1's credentials"


def test_serve_builds_each_services_client_once_while_the_credentials_stay_the_same(
        world, service_factory, monkeypatch):
    from egress_doctor.aws.resources import parse
    from egress_doctor.aws.session import ProbeSession

    built: list[str] = []
    original = ProbeSession._new_client

    def counting(self, service, *args):
        built.append(service)
        return original(self, service, *args)

    monkeypatch.setattr(ProbeSession, "_new_client", counting)
    world.aws.create_resources([parse("bucket", "invoice-archive"), parse("secret", "billing/db")])
    service = service_factory("--bucket", "invoice-archive", "--secret", "billing/db").start(schedule=False)
    for _ in range(3):
        service.scheduler.run_once()
    assert readyz(service)[0] == 200
    assert sorted(built) == ["s3", "secretsmanager", "sts"]
    heads = [r for r in world.aws.requests if r.service == "s3"]
    assert len(heads) == 3  # every run still calls every service
