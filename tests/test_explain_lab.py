"""End to end against the lab's real Envoy: `check` explains with the sidecar it reads, the fixes
that edit what exists are applied to the lab (like `kubectl apply`), and the calls then pass.

The objects for `check` come the way the cluster reader brings them (a `MeshView` with objects)
or, for the edits, from `analyze` on the scenario's file: both paths must print fixes a real Envoy
configured by the same model accepts and routes.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.aws.resources import parse
from egress_doctor.cli import main
from egress_doctor.commands.mesh_view import probed_hosts
from egress_doctor.context import Environment
from egress_doctor.diagnose import DiagnoseOptions, diagnose
from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.lab.runner import Lab, LabConfig
from egress_doctor.net.connect_to import parse_connect_to_env
from egress_doctor.probes.check import CheckOptions, run_check
from egress_doctor.probes.plan import Footprint
from egress_doctor.redact import Redactor
from egress_doctor.sources.envoy_admin import read_sidecar
from egress_doctor.sources.files import read_files
from egress_doctor.sources.view import MeshView

SCENARIOS = Path(__file__).resolve().parents[1] / "egress_doctor" / "lab" / "scenarios"
ACCOUNT = "111122223333"


@pytest.fixture
def pod(monkeypatch: pytest.MonkeyPatch) -> Any:
    def enter(lab: Lab) -> None:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in lab.env.items():
            monkeypatch.setenv(key, value)

    return enter


def lab_for(credentials: str, namespace: str) -> Iterator[Lab]:
    """env credentials without AWS_ACCOUNT_ID: DynamoDB's regional endpoint; the others carry the account."""
    account = None if credentials == "env" else ACCOUNT
    config = LabConfig(files=(str(SCENARIOS / "no-service-entries"),), namespace=namespace, credentials=credentials,
                       tables=("orders",), account_id=account)  # type: ignore[arg-type]
    with Lab(config) as lab:
        yield lab


@pytest.fixture(scope="module")
def irsa_payments() -> Iterator[Lab]:
    yield from lab_for("irsa", "payments")


@pytest.fixture(scope="module")
def irsa_default() -> Iterator[Lab]:
    yield from lab_for("irsa", "default")


@pytest.fixture(scope="module")
def env_default() -> Iterator[Lab]:
    yield from lab_for("env", "default")


def check(*args: str) -> tuple[int, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", "-o", "json", "--table", "orders", "--deadline", "6", *args],
                Environment(environ=os.environ, stdout=out, stderr=err))
    return int(code), json.loads(out.getvalue())


def analyze_fix(lab: Lab, scenario: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    account = ["--account", lab.config.account_id] if lab.config.account_id else []
    args = ["analyze", "-f", str(SCENARIOS / scenario), "--region", "us-east-1", *account,
            "--credentials", lab.config.credentials, "-n", lab.config.namespace, "--mode", "REGISTRY_ONLY",
            "--table", "orders", "--fix-only"]
    assert main(args, Environment(environ={}, stdout=out, stderr=io.StringIO())) == 1
    return [d for d in yaml.safe_load_all(out.getvalue()) if d]


def use(lab: Lab, scenario: str) -> None:
    lab.reconfigure(read_files([SCENARIOS / scenario], lab.config.namespace).objects, mode=Mode.REGISTRY_ONLY)


@pytest.mark.parametrize(
    ("lab_name", "scenario", "sidecar_code"),
    [
        ("irsa_payments", "hidden-by-export-to", "ED625"),
        ("irsa_payments", "hidden-by-sidecar", "ED625"),
        ("irsa_default", "blog-2018", "ED625"),
        ("env_default", "dynamodb-declared-http", "ED613"),
    ],
)
def test_check_explains_from_the_sidecar_and_the_edited_objects_make_it_pass(
        request: pytest.FixtureRequest, pod: Any, lab_name: str, scenario: str, sidecar_code: str) -> None:
    lab: Lab = request.getfixturevalue(lab_name)
    use(lab, scenario)
    pod(lab)
    code, report = check()
    assert code == 1
    assert sidecar_code in [f["code"] for f in report["findings"]]
    sidecar = report["mesh"]["sidecar"]
    assert (sidecar["present"], sidecar["outbound_mode"], sidecar["istio_version"]) == (True, "REGISTRY_ONLY", "1.30.3")
    fixed = analyze_fix(lab, scenario)
    assert fixed and all(not m["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") for m in fixed)
    lab.apply(fixed)
    code, report = check()
    assert code == 0, [(f["code"], f["message"]) for f in report["findings"]]


def test_check_with_the_clusters_objects_edits_the_dns_entry_whose_endpoint_does_not_resolve(
        irsa_default: Lab, pod: Any) -> None:
    lab = irsa_default
    use(lab, "dns-typo")
    pod(lab)
    started = time.monotonic()
    rules = parse_connect_to_env(os.environ["EGRESS_DOCTOR_CONNECT_TO"])
    footprint = Footprint(resources=(parse("table", "orders"),))
    report = run_check(CheckOptions(footprint=footprint, deadline=6, connect_to=rules), os.environ,
                       Environment().facts("default", []), Redactor())
    assert lab.admin_url is not None
    view = MeshView(sidecar=read_sidecar(lab.admin_url, deadline=started + 6, hosts=probed_hosts(report)),
                    objects=lab.objects, mesh=MeshConfig(Mode.REGISTRY_ONLY), pod_namespace="default",
                    source="cluster")
    diagnosis = diagnose(report.identity, report.checks, report.facts, DiagnoseOptions(), mesh=view)
    assert [f.code for f in diagnosis.findings] == ["ED619"]
    assert [f.id for f in diagnosis.fixes] == ["edit/serviceentry/default/aws-sts"]
    lab.apply(diagnosis.fixes[0].manifests)
    code, after = check()
    assert code == 0, after["findings"]


def test_no_envoy_admin_skips_the_read_and_the_report_says_so(irsa_default: Lab, pod: Any) -> None:
    use(irsa_default, "correct")
    pod(irsa_default)
    code, report = check("--no-envoy-admin")
    assert code == 0 and report["mesh"] is None
