"""The sidecar reader's parsing and its behaviour when the admin port misbehaves (a local HTTP
server stands in for Envoy's admin: slow, broken, partial, too big)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from egress_doctor.istio.objects import Mode
from egress_doctor.sources.envoy_admin import (
    decide_mode,
    istio_api_for,
    parse_clusters,
    parse_server_info,
    read_sidecar,
)
from egress_doctor.sources.view import VirtualHostInfo

SERVER_INFO = {"version": "abc/1.40.0/Clean/RELEASE/BoringSSL", "state": "LIVE",
               "node": {"metadata": {"ISTIO_VERSION": "1.21.2"}}}


def _vhosts(*names: str) -> list[VirtualHostInfo]:
    return [VirtualHostInfo("80", n, ("*",)) for n in names]


@pytest.mark.parametrize(
    ("catch_all", "route", "mode", "warned"),
    [
        ("BlackHoleCluster", _vhosts("x:80", "block_all"), Mode.REGISTRY_ONLY, False),
        ("PassthroughCluster", _vhosts("allow_any"), Mode.ALLOW_ANY, False),
        (None, _vhosts("block_all"), Mode.REGISTRY_ONLY, False),
        ("BlackHoleCluster", None, Mode.REGISTRY_ONLY, False),
        ("PassthroughCluster", _vhosts("block_all"), Mode.ALLOW_ANY, True),
        (None, None, None, True),
        ("outbound|443||x", _vhosts("x:80"), None, True),
    ],
    ids=["blackhole", "passthrough", "route-only", "listener-only", "disagree-listener-wins", "nothing",
         "unknown-names"],
)
def test_mode_comes_from_the_catch_all_chain_then_route_80(
        catch_all: str | None, route: list[VirtualHostInfo] | None, mode: Mode | None, warned: bool) -> None:
    got, _, warnings = decide_mode(catch_all, route)
    assert got is mode
    assert bool(warnings) is warned


@pytest.mark.parametrize(
    ("version", "api"),
    [("1.30.3", "v1"), ("1.22.0", "v1"), ("1.21.6", "v1beta1"), ("1.5.0", "v1beta1"), ("1.4.10", "v1alpha3"),
     ("1.24.0-distroless", "v1"), ("v1.23.1", "v1"), (None, None), ("", None), ("master", None)],
)
def test_the_fix_api_version_follows_the_sidecars_istio_release(version: str | None, api: str | None) -> None:
    assert istio_api_for(version) == api


def test_server_info_gives_envoy_and_istio_versions() -> None:
    assert parse_server_info(SERVER_INFO) == ("1.40.0", "1.21.2")
    assert parse_server_info({}) == (None, None)


def test_clusters_join_types_and_endpoints_and_count_only_healthy_hosts() -> None:
    dump = {"configs": [{"cluster": {"name": "outbound|443||a.example.com", "type": "STRICT_DNS"}}]}
    statuses = {"cluster_statuses": [{"name": "outbound|443||a.example.com", "host_statuses": [
        {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 443}},
         "health_status": {"eds_health_status": "HEALTHY"}},
        {"address": {"socket_address": {"address": "2001:db8::1", "port_value": 443}},
         "health_status": {"failed_outlier_check": True, "eds_health_status": "HEALTHY"}},
    ]}, {"name": "only-in-status", "host_statuses": []}]}
    clusters = parse_clusters(dump, statuses)
    a = clusters["outbound|443||a.example.com"]
    assert (a.type, a.endpoints, a.healthy, a.host, a.port) == (
        "STRICT_DNS", ("10.0.0.1:443", "[2001:db8::1]:443"), 1, "a.example.com", 443)
    assert clusters["only-in-status"].type == ""


# ---- a misbehaving admin port ---------------------------------------------------------------------

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@pytest.fixture
def admin() -> Iterator[Callable[[dict[str, Handler]], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(routes: dict[str, Handler]) -> str:
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handler = routes.get(self.path.split("?")[0])
                if handler is None:
                    self.send_error(404)
                    return
                handler(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def body(payload: bytes, delay: float = 0.0) -> Handler:
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(delay)
        h.send_response(200)
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    return handle


def test_an_admin_port_that_only_knows_server_info_degrades_to_warnings(admin: Any) -> None:
    url = admin({"/server_info": body(json.dumps(SERVER_INFO).encode()), "/healthz/ready": body(b"")})
    view = read_sidecar(url, ready_url=url + "/healthz/ready")
    assert view.present and view.istio_version == "1.21.2" and view.ready is True
    assert view.outbound_mode is None
    assert len([w for w in view.warnings if w.startswith("could not read")]) == 4


def test_answers_that_are_not_json_are_warnings_not_crashes(admin: Any) -> None:
    url = admin({"/server_info": body(b"<html>not envoy</html>")})
    view = read_sidecar(url)
    assert not view.present and "not JSON" in view.warnings[0]


def test_a_stalled_admin_port_costs_one_call_timeout_not_the_whole_deadline(admin: Any) -> None:
    url = admin({"/server_info": body(b"{}", delay=3)})
    started = time.monotonic()
    view = read_sidecar(url, deadline=time.monotonic() + 10, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert not view.present and "http-timeout" in view.warnings[0]


def test_the_runs_deadline_bounds_every_admin_call(admin: Any) -> None:
    url = admin({"/server_info": body(json.dumps(SERVER_INFO).encode()),
                 "/config_dump": body(b"{}", delay=2), "/clusters": body(b"{}", delay=2)})
    started = time.monotonic()
    view = read_sidecar(url, deadline=time.monotonic() + 0.6, timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert view.present and any("deadline" in w or "timeout" in w for w in view.warnings)


def test_a_deadline_already_past_makes_no_call_at_all() -> None:
    view = read_sidecar("http://127.0.0.1:9", deadline=time.monotonic() - 1)
    assert not view.present and "deadline expired before the call" in view.warnings[0]


def test_a_config_dump_larger_than_the_limit_is_reported_not_parsed(admin: Any, monkeypatch: Any) -> None:
    import egress_doctor.sources.envoy_admin as sidecar

    monkeypatch.setattr(sidecar, "LARGE_BODY", 1 << 20)
    url = admin({"/server_info": body(json.dumps(SERVER_INFO).encode()),
                 "/config_dump": body(b"{" + b" " * (2 << 20) + b"}")})
    view = read_sidecar(url)
    assert any("larger than 1 MB" in w for w in view.warnings)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:15000", "http://:15000", "http://127.0.0.1:99999", "localhost"])
def test_a_malformed_envoy_admin_url_is_a_usage_error_before_any_probe(url: str) -> None:
    from tests.checkrun import run_cli

    result = run_cli("check", "--envoy-admin", url, env={})
    assert result.code == 2 and result.stdout == ""
    assert "--envoy-admin" in result.stderr and result.stderr.count("\n") == 1
