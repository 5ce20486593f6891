"""The closed loop of `blocked` on the lab: an app behind the lab's real Envoy is refused on hosts
nobody told egress-doctor about; inside the pod `check` reports the app's refusals from the
sidecar's counters; `blocked` (through the fake Kubernetes API serving the sidecar's container log)
first finds access logging off and prints the Telemetry, then, once it is applied, names every
refused host, and its `--fix-only` applied once makes every one of the app's calls pass.

One lab for the whole story (bring-ups are the suite's dearest resource).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
import yaml
from botocore.config import Config

from egress_doctor.cli import main
from egress_doctor.context import Environment
from egress_doctor.istio.objects import Mode
from egress_doctor.lab.pod_log import pod_log
from egress_doctor.lab.runner import Lab, LabConfig
from egress_doctor.net.connect_to import ConnectToMap, parse_connect_to_env
from egress_doctor.net.dial import dial_scope
from tests.checkrun import CliResult, become_the_pod, run_cli
from tests.kube_api import Answer, FakeApiServer, write_kubeconfig
from tests.kube_logs import FakePod, log_routes
from tests.sockets import Pki

pytestmark = pytest.mark.lab

ACCOUNT = "111122223333"
STS_ONLY = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "aws-sts", "namespace": "payments"},
            "spec": {"hosts": ["sts.us-east-1.amazonaws.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}
MESH = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n"}}
CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 1})
# What the app calls (none of it known to egress-doctor): host it reaches → how.
APP_HOSTS = {
    f"{ACCOUNT}.ddb.us-east-1.amazonaws.com": ("dynamodb", {}),
    "dynamodb-fips.us-east-1.amazonaws.com": ("dynamodb", {"AWS_USE_FIPS_ENDPOINT": "true"}),
    "sts.us-east-1.api.aws": ("sts", {"AWS_USE_DUALSTACK_ENDPOINT": "true"}),
    "169.254.169.254": ("imds", {}),
}


def app(lab: Lab) -> dict[str, str]:
    """The app's calls, steered like iptables would steer them; host → "ok" or the error's class."""
    rules = ConnectToMap(parse_connect_to_env(lab.env["EGRESS_DOCTOR_CONNECT_TO"]))
    outcome: dict[str, str] = {}
    with dial_scope(rules):
        for host, (service, env) in APP_HOSTS.items():
            os.environ.update(env)
            try:
                if service == "imds":
                    url = lab.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] + "latest/api/token"
                    reply = urllib3.request("PUT", url, headers={"x-aws-ec2-metadata-token-ttl-seconds": "60"},
                                            retries=False, timeout=3)
                    outcome[host] = "ok" if reply.status == 200 else f"HTTP {reply.status}"
                else:
                    client = boto3.session.Session().client(service, config=CONFIG)
                    client.list_tables() if service == "dynamodb" else client.get_caller_identity()
                    outcome[host] = "ok"
            except Exception as exc:  # what the app would see
                outcome[host] = type(exc).__name__
            finally:
                for name in env:
                    os.environ.pop(name, None)
    return outcome


@pytest.fixture
def pod(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    config = LabConfig(objects=(STS_ONLY,), mode=Mode.REGISTRY_ONLY, namespace="payments", credentials="env",
                       account_id=ACCOUNT, tables=("orders",), access_log=None)
    with Lab(config) as lab:
        environ = lab.command_env()
        become_the_pod(monkeypatch, environ)
        yield lab


def blocked(lab: Lab, pki: Pki, tmp_path: Path, *args: str) -> CliResult:
    """`egress-doctor blocked` against a fake API server whose pods/log is the lab sidecar's log."""
    assert lab.envoy_log_path is not None and lab.ports is not None
    path, ports = lab.envoy_log_path, lab.ports
    pods = [FakePod("payments-api-1", log=lambda: [pod_log(path, ports)])]
    routes = {**log_routes(pods), "/api/v1/namespaces/istio-system/configmaps/istio": Answer(MESH)}
    with FakeApiServer(routes, tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        out, err = io.StringIO(), io.StringIO()
        code = main(["blocked", "--kubeconfig", str(kubeconfig), "-n", "payments", *args],
                    Environment(environ={}, stdout=out, stderr=err))
    return CliResult(int(code), out.getvalue(), err.getvalue())


def wait_for(condition: Callable[[], bool], seconds: float = 8.0) -> None:
    """The sidecar flushes its access log about every second (--file-flush-interval-msec 1000)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the sidecar's access log never showed the app's calls"
        time.sleep(0.1)


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def test_blocked_names_the_apps_refused_hosts_and_its_fix_makes_every_call_pass(pod: Lab, pki: Pki,
                                                                               tmp_path: Path) -> None:
    lab = pod
    assert set(app(lab).values()) != {"ok"}

    # In the pod, without cluster access: the sidecar's counters already hold the app's refusals.
    check = run_cli("check", "--no-cluster", "-o", "json")
    (counted,) = [f for f in check.json()["findings"] if f["code"] == "ED656"]
    assert "3 TCP/TLS connection(s) and 1 HTTP request(s)" in counted["message"]

    # Access logging is off: blocked says so and prints the Telemetry that turns it on.
    off = blocked(lab, pki, tmp_path, "-o", "json").json()
    assert [f["code"] for f in off["findings"]] == ["ED655"]
    lab.apply(manifests(blocked(lab, pki, tmp_path, "--fix-only").stdout))
    assert lab.config.access_log == "TEXT"

    refused = app(lab)
    assert all(outcome != "ok" for outcome in refused.values()), refused
    wait_for(lambda: all(h.encode() in pod_log(lab.envoy_log_path, lab.ports) for h in APP_HOSTS))  # type: ignore[arg-type]

    named = blocked(lab, pki, tmp_path, "-o", "json").json()
    rows = {d["host"]: d for d in named["destinations"]}
    assert set(rows) == set(APP_HOSTS)
    assert {rows[h]["how"] for h in APP_HOSTS} == {"BlackHoleCluster", "502 block_all"}
    assert rows["dynamodb-fips.us-east-1.amazonaws.com"]["aws"] == {"service": "dynamodb", "region": "us-east-1"}
    assert all(rows[h]["pods"] == ["payments/payments-api-1"] for h in APP_HOSTS)

    fix = manifests(blocked(lab, pki, tmp_path, "--fix-only").stdout)
    assert {d["kind"] for d in fix} == {"ServiceEntry"}
    lab.apply(fix)
    assert app(lab) == dict.fromkeys(APP_HOSTS, "ok")
