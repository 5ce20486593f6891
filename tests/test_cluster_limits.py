"""The cluster reader's bounds: a slow API server is cut off at the deadline, one slow request times
out alone, and an API server that cannot be reached (refused, untrusted) is reported once.

Times are asserted on the read's own clock (`duration_ms`, which starts once the client is
configured: importing the kubernetes package can take a second the first time) and, loosely, on
the wall clock: the slow answers come after 30 s, so any bound below that proves they were not
awaited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from egress_doctor.sources.kube import ClusterOptions, ClusterRead, Problem, read_cluster
from tests.kube_api import NAMESPACE, POD, Answer, FakeApiServer, cluster_routes, istio_path, pod_path, write_kubeconfig
from tests.sockets import Pki, refused_port

WALL_CLOCK_BOUND = 10.0  # seconds: far below the slow answers' 30 s, far above a cold import


def read_at(server: str, pki: Pki, tmp_path: Path, **options: Any) -> ClusterRead:
    kubeconfig = write_kubeconfig(tmp_path, {"lab": server}, pki.ca_file, current="lab")
    defaults: dict[str, Any] = {"kubeconfig": str(kubeconfig), "namespace": NAMESPACE, "pod_name": POD}
    return read_cluster(ClusterOptions(**{**defaults, **options}), environ={})


def slowed(path: str, delay: float) -> dict[str, Answer]:
    routes = cluster_routes()
    routes[path] = Answer(routes[path].body, delay=delay)
    return routes


def test_a_slow_api_server_is_cut_off_at_the_deadline_and_the_unread_steps_are_named(
    pki: Pki, tmp_path: Path
) -> None:
    with FakeApiServer(slowed(istio_path("serviceentries"), delay=30), tls=pki.ca) as api:
        started = time.monotonic()
        result = read_at(api.url, pki, tmp_path, deadline=0.8, request_timeout=5)
        elapsed = time.monotonic() - started
    assert result.duration_ms < 1300, f"the read took {result.duration_ms} ms with a 0.8 s deadline"
    assert elapsed < WALL_CLOCK_BOUND
    [error] = result.errors
    assert error.problem is Problem.DEADLINE
    assert error.message == ("0.8 s passed; not read: ServiceEntries, Sidecars, VirtualServices, "
                             "DestinationRules, Gateways, AuthorizationPolicies")
    assert result.pod is not None and result.view.mesh is not None, "what came before the deadline is kept"
    assert result.view.objects is None


def test_one_slow_request_times_out_alone_and_the_read_goes_on(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(slowed(pod_path(), delay=30), tls=pki.ca) as api:
        result = read_at(api.url, pki, tmp_path, deadline=5, request_timeout=0.4)
    [error] = result.errors
    assert (error.target, error.problem, error.message) == (f"pods/{POD}", Problem.TIMEOUT, "no answer within 0.4 s")
    assert result.view.objects is not None and len(result.view.objects) == 12  # Gateways included
    assert result.duration_ms < 1300


def test_a_refused_api_server_is_reported_once_and_nothing_else_is_tried(pki: Pki, tmp_path: Path) -> None:
    with refused_port() as port:
        result = read_at(f"https://127.0.0.1:{port}", pki, tmp_path)
    [error] = result.errors
    assert (error.verb, error.target, error.problem, error.status) == ("get", f"pods/{POD}", Problem.UNREACHABLE, None)
    assert error.message == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert result.view.objects is None and result.view.mesh is None
    assert result.duration_ms < 500, "one refused connection, no retries"


def test_an_api_server_with_an_untrusted_certificate_counts_as_unreachable(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.rogue_ca) as api:
        result = read_at(api.url, pki, tmp_path)
    [error] = result.errors
    assert error.problem is Problem.UNREACHABLE and "CERTIFICATE_VERIFY_FAILED" in error.message
    assert api.paths == [], "no request got past the TLS handshake"


def test_a_slow_api_server_never_stretches_a_check_past_its_deadline(
    pki: Pki, tmp_path: Path, monkeypatch: Any
) -> None:
    """The issue's deadline holds for the whole run, cluster read included (its own bound is longer)."""
    from tests.checkrun import aws_world, run_cli

    with aws_world(monkeypatch, tmp_path) as world, FakeApiServer(
        slowed(istio_path("serviceentries"), delay=30), tls=pki.ca
    ) as api:
        world.static_keys()
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        started = time.monotonic()
        result = run_cli("check", "-o", "json", "--deadline", "2", "--kubeconfig", str(kubeconfig),
                         "--no-envoy-admin")
        elapsed = time.monotonic() - started
    assert result.code in (0, 1), result.stderr
    assert elapsed < 2 + 1.5, f"check took {elapsed:.1f} s with --deadline 2"


def test_huge_answers_success_or_error_are_read_to_a_bound_and_the_connection_dropped(pki: Pki, tmp_path: Path) -> None:
    from egress_doctor.sources.kube_client import MAX_ANSWER
    from tests import canned
    from tests.canned import CannedServer, Reply

    size = 100 * 2**20
    huge = canned.huge_body(size)
    for status in (200, 500):  # a 500 becomes the client's ApiException, which reads the body itself
        with CannedServer(Reply(status, huge.headers, huge.body, content_length=size), tls=pki.ca) as api:
            result = read_at(api.url(""), pki, tmp_path, deadline=20, request_timeout=10)
            per_request = api.bytes_sent / len(api.requests)
        assert result.errors and all(e.problem is Problem.FAILED for e in result.errors), result.errors
        if status == 200:
            assert "larger than 16 MiB" in result.errors[0].message
        assert per_request < 2 * MAX_ANSWER, f"{per_request:.0f} bytes sent per request: the answers were drained"
