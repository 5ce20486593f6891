"""The closed loop for an app with a wide AWS footprint: every call at the host boto3 really uses,
the fix applied once to the lab's real Envoy, and everything passes.

One lab per region (module-scoped: bring-ups are the expensive part), reconfigured per test with
a scenario's ServiceEntries. The app: IRSA or static keys with an account, DynamoDB table
`invoices`, S3 bucket `invoice-archive`, SQS queue `billing-events`, Secrets Manager secret
`billing/db`. Fixes come from `check` as a user runs it (sidecar view) and, where the cluster's
objects are known, as edits of the object that covers a near miss.
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

from egress_doctor.aws.resources import Resource, parse
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
from tests.checkrun import become_the_pod

pytestmark = pytest.mark.lab

SCENARIOS = Path(__file__).resolve().parents[1] / "egress_doctor" / "lab" / "scenarios"
ACCOUNT = "111122223333"
APP = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events", "--secret", "billing/db")
RESOURCES = tuple(parse(kind, name) for kind, name in
                  (("bucket", "invoice-archive"), ("queue", "billing-events"), ("secret", "billing/db")))
# A bucket that lives in eu-west-1 while the app's S3 client is in us-east-1.
EU_BUCKET = Resource("bucket", "eu-archive", "name", "eu-archive", region="eu-west-1")


def lab_in(region: str, credentials: str, extra: tuple[Resource, ...] = ()) -> Iterator[Lab]:
    config = LabConfig(files=(str(SCENARIOS / "no-service-entries"),), mode=Mode.REGISTRY_ONLY, namespace="payments",
                       region=region, account_id=ACCOUNT, credentials=credentials,  # type: ignore[arg-type]
                       tables=("invoices",), resources=RESOURCES + extra)
    with Lab(config) as lab:
        yield lab


@pytest.fixture(scope="module")
def us_east_1() -> Iterator[Lab]:
    yield from lab_in("us-east-1", "irsa", (EU_BUCKET,))


@pytest.fixture(scope="module")
def eu_west_1() -> Iterator[Lab]:
    yield from lab_in("eu-west-1", "env")


@pytest.fixture
def pod(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Enter the lab's pod: this process's environment becomes the pod's (botocore reads os.environ)."""

    def enter(lab: Lab, scenario: str) -> Lab:
        assert lab.fakes is not None
        lab.fakes.aws.clear_answers()
        lab.reconfigure(read_files([SCENARIOS / scenario], "payments").objects, mode=Mode.REGISTRY_ONLY)
        environ = lab.command_env()
        become_the_pod(monkeypatch, environ)
        return lab

    return enter


def check(*args: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", "-o", "json", *APP, *args], Environment(environ=os.environ, stdout=out, stderr=err))
    return int(code), json.loads(out.getvalue()), err.getvalue()


def fix_only(*args: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    main(["check", "--fix-only", *APP, *args], Environment(environ=os.environ, stdout=out, stderr=io.StringIO()))
    return [d for d in yaml.safe_load_all(out.getvalue()) if d]


def entry(name: str, host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "payments"},
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}


def failing(report: dict[str, Any]) -> list[str]:
    return [f"{c['id']} {c['subject']}: {c['reason']}" for c in report["checks"] if c["status"] != "pass"]


def hosts(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"] + (f" {c['subject']}" if c["subject"] else ""): c["target"]["host"]
            for c in report["checks"] if c["target"]}


def diagnose_with_objects(lab: Lab, *extra: str, wildcard: bool = False) -> Any:
    """`check`'s diagnosis with the cluster's objects known (the edits need them), as the cluster reader
    would give them: the same run, the sidecar read from its admin port, the lab's objects."""
    started = time.monotonic()
    rules = parse_connect_to_env(os.environ["EGRESS_DOCTOR_CONNECT_TO"])
    resources = tuple(parse(kind, value) for kind, value in
                      (("table", "invoices"), *((a[2:], b) for a, b in zip(extra[::2], extra[1::2], strict=True))))
    footprint = Footprint(resources=RESOURCES + resources)
    report = run_check(CheckOptions(footprint=footprint, deadline=8, connect_to=rules), os.environ,
                       Environment().facts("payments", []), Redactor())
    assert lab.admin_url is not None
    view = MeshView(sidecar=read_sidecar(lab.admin_url, deadline=started + 8, hosts=probed_hosts(report)),
                    objects=lab.objects, mesh=MeshConfig(Mode.REGISTRY_ONLY), pod_namespace="payments",
                    source="cluster")
    return diagnose(report.identity, report.checks, report.facts, DiagnoseOptions(wildcard=wildcard), mesh=view)


# --- us-east-1: the hosts, and the fix as a user pipes it --------------------------------------


def test_a_wide_footprint_in_us_east_1_is_checked_at_the_hosts_boto3_uses(us_east_1: Lab, pod: Any) -> None:
    pod(us_east_1, "wide-footprint-allowed")
    code, report, _ = check()
    assert code == 0, failing(report)
    assert hosts(report) == {
        "sts.assume-role-with-web-identity": "sts.us-east-1.amazonaws.com",
        "sts.get-caller-identity": "sts.us-east-1.amazonaws.com",
        "dynamodb.describe-table invoices": f"{ACCOUNT}.ddb.us-east-1.amazonaws.com",
        "s3.head-bucket invoice-archive": "invoice-archive.s3.amazonaws.com",  # global, virtual-hosted
        "sqs.get-queue-url billing-events": "sqs.us-east-1.amazonaws.com",
        "secretsmanager.describe-secret billing/db": "secretsmanager.us-east-1.amazonaws.com",
    }
    assert us_east_1.fakes is not None
    seen = {(r.service, r.operation, r.target) for r in us_east_1.fakes.aws.requests if r.service == "sqs"}
    assert ("sqs", "GetQueueUrl", "AmazonSQS.GetQueueUrl") in seen  # SQS's JSON protocol


def test_the_printed_fix_for_a_wide_footprint_applied_once_makes_every_check_pass(us_east_1: Lab, pod: Any) -> None:
    lab = pod(us_east_1, "wide-footprint")
    code, before, _ = check()
    assert code == 1
    assert {c["id"] for c in before["checks"] if c["status"] == "fail"} == {
        "s3.head-bucket", "secretsmanager.describe-secret"}
    assert all(c["layer"] == "tls" for c in before["checks"] if c["status"] == "fail")
    assert "ED604" in [f["code"] for f in before["findings"]]
    fixed = fix_only()
    assert sorted(h for m in fixed for h in m["spec"]["hosts"]) == [
        "invoice-archive.s3.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com"]
    lab.apply(fixed)
    code, after, _ = check()
    assert code == 0, failing(after)


def test_with_the_clusters_objects_the_guides_s3_entry_is_edited_not_duplicated(us_east_1: Lab, pod: Any) -> None:
    lab = pod(us_east_1, "wide-footprint")
    diagnosis = diagnose_with_objects(lab)
    codes = [f.code for f in diagnosis.findings]
    assert "ED617" in codes  # *.s3.us-east-1.amazonaws.com is a near miss of invoice-archive.s3.amazonaws.com
    ids = [f.id for f in diagnosis.fixes]
    assert ids == ["edit/serviceentry/payments/aws-s3", "serviceentry/secretsmanager-us-east-1-amazonaws-com"]
    edited = diagnosis.fixes[0].manifests[0]["spec"]
    assert edited["hosts"] == ["*.s3.us-east-1.amazonaws.com", "invoice-archive.s3.amazonaws.com"]
    lab.apply([m for f in diagnosis.fixes for m in f.manifests])
    code, after, _ = check()
    assert code == 0, failing(after)


def test_wildcard_allows_every_bucket_of_the_global_s3_endpoint_with_resolution_none(
        us_east_1: Lab, pod: Any) -> None:
    lab = pod(us_east_1, "wide-footprint")
    diagnosis = diagnose_with_objects(lab, wildcard=True)
    edit = next(f for f in diagnosis.fixes if f.id == "edit/serviceentry/payments/aws-s3")
    spec = edit.manifests[0]["spec"]
    assert "*.s3.amazonaws.com" in spec["hosts"] and spec["resolution"] == "NONE"
    lab.apply([m for f in diagnosis.fixes for m in f.manifests])
    _, after, _ = check("--bucket", "another-bucket-that-does-not-exist")
    assert [c["id"] for c in after["checks"] if c["status"] == "fail"] == ["s3.head-bucket"]
    assert [f["code"] for f in after["findings"]] == ["ED546"]  # reached S3: no such bucket, not the mesh


@pytest.mark.parametrize(
    ("service", "status", "code", "finding"),
    [("secretsmanager", 400, "AccessDeniedException", "ED540"), ("s3", 403, "AccessDenied", "ED540"),
     ("sqs", 400, "AWS.SimpleQueueService.NonExistentQueue", "ED546")],
)
def test_an_aws_answer_for_any_service_prints_no_istio_fix(
        us_east_1: Lab, pod: Any, service: str, status: int, code: str, finding: str) -> None:
    lab = pod(us_east_1, "wide-footprint-allowed")
    assert lab.fakes is not None
    lab.fakes.aws.answer(service, status=status, code=code)
    exit_code, report, _ = check()
    assert exit_code == 1
    assert [f["code"] for f in report["findings"]] == [finding]
    assert report["fixes"] == [] and fix_only() == []


def test_a_bucket_in_another_region_names_that_regions_host_and_the_fix_allows_it(
        us_east_1: Lab, pod: Any) -> None:
    lab = pod(us_east_1, "wide-footprint-allowed")
    # The app's bucket host is allowed (the us-east-1 client addresses it globally); S3 sends the SDK on.
    lab.apply([entry("eu-archive-global", "eu-archive.s3.amazonaws.com")])
    code, before, _ = check("--bucket", "eu-archive")
    head = next(c for c in before["checks"] if c["subject"] == "eu-archive")
    assert head["evidence"]["requests"] == ["https://eu-archive.s3.amazonaws.com/",
                                            "https://eu-archive.s3.eu-west-1.amazonaws.com/"]
    assert head["evidence"]["aws"]["bucket_region"] == "eu-west-1"
    assert (code, head["layer"], head["target"]["host"]) == (1, "tls", "eu-archive.s3.eu-west-1.amazonaws.com")
    assert "ED547" in [f["code"] for f in before["findings"]]
    fixed = fix_only("--bucket", "eu-archive")
    assert [m["spec"]["hosts"] for m in fixed] == [["eu-archive.s3.eu-west-1.amazonaws.com"]]
    lab.apply(fixed)
    code, after, _ = check("--bucket", "eu-archive")
    assert code == 0, failing(after)
    assert [f["code"] for f in after["findings"]] == ["ED547"]  # still worth knowing: a detour per client


# --- eu-west-1: another region, older guides' entries ------------------------------------------


def test_a_wide_footprint_in_eu_west_1_is_fixed_by_editing_the_near_misses(eu_west_1: Lab, pod: Any) -> None:
    lab = pod(eu_west_1, "wide-footprint-eu-west-1")
    code, before, _ = check()
    assert code == 1
    assert hosts(before)["s3.head-bucket invoice-archive"] == "invoice-archive.s3.eu-west-1.amazonaws.com"
    diagnosis = diagnose_with_objects(lab)
    assert [f.id for f in diagnosis.fixes] == [
        "edit/serviceentry/payments/aws-dynamodb", "edit/serviceentry/payments/aws-s3",
        "edit/serviceentry/payments/aws-sts", "serviceentry/sqs-eu-west-1-amazonaws-com"]
    lab.apply([m for f in diagnosis.fixes for m in f.manifests])
    code, after, _ = check()
    assert code == 0, failing(after)


def test_the_allowed_eu_west_1_footprint_passes_at_once(eu_west_1: Lab, pod: Any) -> None:
    pod(eu_west_1, "wide-footprint-eu-west-1-allowed")
    code, report, _ = check()
    assert code == 0, failing(report)
    assert report["fixes"] == []
