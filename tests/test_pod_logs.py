"""The sidecars' logs read through a fake Kubernetes API (real HTTPS on 127.0.0.1): which pods,
which requests, and the bounds: bytes per pod, the deadline, 403s, a server that ignores limitBytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from egress_doctor.sources.kube_client import Problem, kubeconfig_connection
from egress_doctor.sources.pod_logs import LogOptions, LogsRead, pod_info, read_pod_logs
from tests.kube_api import Answer, FakeApiServer, status_answer, write_kubeconfig
from tests.kube_logs import FakePod, log_routes, text_log
from tests.sockets import Pki

WALL_CLOCK_BOUND = 10.0  # seconds: far below the slow answers' 30 s, far above a cold import
REFUSED = (b'[2026-12-02T14:01:53.177Z] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" BlackHoleCluster - '
           b"52.94.0.9:443 10.0.0.1:45662 sqs.us-east-1.amazonaws.com -\n")


def read(api: FakeApiServer, pki: Pki, tmp_path: Path, deadline: float = 10.0, **options: Any) -> LogsRead:
    kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
    connection = kubeconfig_connection(str(kubeconfig), None)
    defaults: dict[str, Any] = {"namespace": "payments"}
    return read_pod_logs(LogOptions(**{**defaults, **options}), connection, time.monotonic() + deadline)


def refused(result: LogsRead) -> dict[str, int]:
    return {log.pod.ref: sum(s.count for s in log.tally.seen.values()) for log in result.pods}


def queries(api: FakeApiServer, suffix: str) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(r.target).query) for r in api.requests if urlsplit(r.target).path.endswith(suffix)]


def test_pods_with_a_sidecar_are_read_and_the_others_named_and_skipped(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod("api-1", log=text_log(REFUSED * 2)), FakePod("api-2", native=True, log=text_log(REFUSED)),
            FakePod("job-1", sidecar=False)]
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    assert refused(result) == {"payments/api-1": 2, "payments/api-2": 1}
    assert [p.ref for p in result.without_sidecar] == ["payments/job-1"]
    assert all(log.read and not log.truncated for log in result.pods)
    assert "/api/v1/namespaces/payments/pods/job-1/log" not in api.paths


def test_each_log_request_asks_for_the_istio_proxy_container_the_window_and_the_byte_bound(pki: Pki, tmp_path: Path):
    with FakeApiServer(log_routes([FakePod("api-1", log=text_log(REFUSED))]), tls=pki.ca) as api:
        read(api, pki, tmp_path, since=1800, max_bytes=4096)
    (query,) = queries(api, "/log")
    assert query == {"container": ["istio-proxy"], "sinceSeconds": ["1800"], "limitBytes": ["4096"]}
    assert {r.method for r in api.requests} == {"GET"}


def test_a_label_selector_and_all_namespaces_choose_the_pods(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod("api-1", log=text_log(REFUSED)), FakePod("web-1", labels={"app": "web"}, log=text_log(REFUSED)),
            FakePod("api-9", namespace="orders", log=text_log(REFUSED))]
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        selected = read(api, pki, tmp_path, namespace=None, all_namespaces=True, selector="app=payments-api")
    assert sorted(refused(selected)) == ["orders/api-9", "payments/api-1"]
    assert "/api/v1/pods" in api.paths


def test_one_pod_by_name_is_read_without_listing(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod("api-1", log=text_log(REFUSED)), FakePod("api-2", log=text_log(REFUSED))]
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        result = read(api, pki, tmp_path, pod="api-2")
    assert list(refused(result)) == ["payments/api-2"]
    assert "/api/v1/namespaces/payments/pods" not in api.paths


def test_many_pods_are_listed_page_by_page_up_to_the_pod_bound(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod(f"api-{i}", log=text_log(REFUSED)) for i in range(260)]
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        result = read(api, pki, tmp_path, max_pods=210, parallel=16)
    assert len(result.pods) == 210 and all(log.read for log in result.pods)
    assert len(queries(api, "/payments/pods")) == 2  # pages of 200


def test_a_server_that_ignores_limit_bytes_is_cut_off_at_the_bound_and_the_partial_line_dropped(
        pki: Pki, tmp_path: Path) -> None:
    pod = FakePod("api-1", log=text_log(REFUSED * 1000), honour_limit=False)
    with FakeApiServer(log_routes([pod]), tls=pki.ca) as api:
        result = read(api, pki, tmp_path, max_bytes=10_000)
    (log,) = result.pods
    assert (log.bytes, log.truncated) == (10_000, True)
    assert refused(result) == {"payments/api-1": 10_000 // len(REFUSED)}
    assert log.tally.unparsed == 0


def test_a_hundred_megabyte_log_is_read_to_the_bound_only(pki: Pki, tmp_path: Path) -> None:
    def endless() -> Iterator[bytes]:
        block = REFUSED * (65536 // len(REFUSED))
        for _ in range((100 << 20) // len(block)):
            yield block

    pod = FakePod("api-1", log=endless, honour_limit=False)
    with FakeApiServer(log_routes([pod]), tls=pki.ca) as api:
        result = read(api, pki, tmp_path, max_bytes=1 << 20)
    (log,) = result.pods
    assert log.truncated and log.bytes == 1 << 20
    assert len(log.tally.seen) == 1


def test_a_line_too_long_to_be_a_record_is_skipped_up_to_its_end(pki: Pki, tmp_path: Path) -> None:
    pod = FakePod("api-1", log=text_log(REFUSED + b"y" * 200_000 + b"\n" + REFUSED))
    with FakeApiServer(log_routes([pod]), tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    (log,) = result.pods
    assert (log.tally.too_long, log.tally.access, log.tally.unparsed) == (1, 2, 0)


def test_a_forbidden_pod_log_is_recorded_per_pod_and_the_others_read(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod("api-1", log=text_log(REFUSED)), FakePod("api-2", log=text_log(REFUSED))]
    routes = log_routes(pods)
    routes["/api/v1/namespaces/payments/pods/api-2/log"] = status_answer("status-403-pods-log")
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    by_pod = {log.pod.name: log for log in result.pods}
    assert by_pod["api-1"].read
    error = by_pod["api-2"].error
    assert error is not None and (error.verb, error.resource, error.problem) == ("get", "pods/log", Problem.FORBIDDEN)


def test_a_forbidden_pod_list_is_the_only_record_and_nothing_else_is_asked(pki: Pki, tmp_path: Path) -> None:
    routes = {"/api/v1/namespaces/payments/pods": status_answer("status-403-pods-list")}
    with FakeApiServer(routes, tls=pki.ca) as api:
        result = read(api, pki, tmp_path)
    (error,) = result.errors
    assert (error.verb, error.resource, error.problem, error.namespace) == ("list", "pods", Problem.FORBIDDEN,
                                                                            "payments")
    assert result.pods == [] and len(api.requests) == 1


def test_the_deadline_stops_the_read_and_names_the_pods_left_unread(pki: Pki, tmp_path: Path) -> None:
    pods = [FakePod(f"api-{i}", log=text_log(REFUSED)) for i in range(6)]
    routes = log_routes(pods)
    for i in range(6):
        routes[f"/api/v1/namespaces/payments/pods/api-{i}/log"] = Answer(b"", delay=30)
    with FakeApiServer(routes, tls=pki.ca) as api:
        started = time.monotonic()
        result = read(api, pki, tmp_path, deadline=0.8, parallel=2)
        took = time.monotonic() - started
    assert took < WALL_CLOCK_BOUND, "the read waited for answers that come after 30 s, past its 0.8 s deadline"
    assert any(e.problem is Problem.DEADLINE for e in result.errors)
    assert len(result.not_read) == 6


def test_an_api_server_that_cannot_be_reached_is_one_record(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer({}, tls=pki.ca) as api:
        url = api.url
    kubeconfig = write_kubeconfig(tmp_path, {"lab": url}, pki.ca_file, current="lab")
    result = read_pod_logs(LogOptions(namespace="payments"), kubeconfig_connection(str(kubeconfig), None),
                           time.monotonic() + 5)
    (error,) = result.errors
    assert error.problem is Problem.UNREACHABLE


@pytest.mark.parametrize(
    ("image", "version"),
    [("docker.io/istio/proxyv2:1.30.3", "1.30.3"), ("gcr.io/istio-release/proxyv2:1.21.0-distroless", "1.21.0"),
     ("proxyv2@sha256:abc", None), ("registry:5000/istio/proxyv2:latest", None)],
)
def test_the_sidecars_istio_version_comes_from_its_image_tag(image: str, version: str | None) -> None:
    doc = FakePod("p", image=image).doc()
    assert pod_info(doc).istio_version == version


def test_only_non_secret_aws_settings_of_the_app_containers_are_kept() -> None:
    pod = FakePod("p", env={"AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnPLANTEDsecretKEY",
                            "AWS_ACCESS_KEY_ID": "AKIAPLANTEDEXAMPLE12", "PATH": "/bin"})
    assert dict(pod_info(pod.doc()).env) == {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "set"}
