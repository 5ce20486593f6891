"""The closed loop on the lab: diagnose, apply the printed fix, check again — everything passes.

Each case is a pod behind the lab's real Envoy (configured like an istiod sidecar) with a broken
mesh. egress-doctor runs inside it exactly as a user runs it; its `--fix-only` output is applied
to the lab as `kubectl apply -f -` would apply it; the second run must pass entirely. Cases whose
cause is not the mesh must print no Istio fix at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml

from egress_doctor.commands.demo import scenario_path
from egress_doctor.istio.objects import Mode
from egress_doctor.lab.runner import Lab, LabConfig
from tests.checkrun import CliResult, become_the_pod, run_cli

pytestmark = pytest.mark.lab

ACCOUNT = "111122223333"


@contextmanager
def lab_pod(monkeypatch: pytest.MonkeyPatch, config: LabConfig) -> Iterator[Lab]:
    """The lab, with this process's environment replaced by the pod's (botocore reads os.environ)."""
    with Lab(config) as lab:
        environ = lab.command_env()
        become_the_pod(monkeypatch, environ)
        yield lab


def check(*extra: str) -> CliResult:
    return run_cli("check", "--table", "orders", "-o", "json", *extra)


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def failing(result: CliResult) -> list[str]:
    return [f"{c['id']}: {c['reason']}" for c in result.json()["checks"] if c["status"] != "pass"]


MESH_CASES = [
    # (scenario, credentials, account id in the pod's environment, rounds of check + apply)
    ("no-service-entries", "irsa", None, 1),
    # Pod Identity: the account (hence the DynamoDB host) is only known once the agent answers,
    # so the first fix cannot name the DynamoDB host; the second run finds and fixes it.
    ("no-service-entries", "pod-identity", None, 2),
    ("no-service-entries", "imds", None, 1),
    ("no-service-entries", "env", ACCOUNT, 1),
    ("blog-2018", "irsa", None, 1),
    ("blog-2018", "env", ACCOUNT, 1),
    ("hidden-by-export-to", "irsa", None, 1),
    ("hidden-by-sidecar", "irsa", None, 1),
]


@pytest.mark.parametrize(
    ("scenario", "credentials", "account", "rounds"), MESH_CASES, ids=[f"{s}-{c}" for s, c, *_ in MESH_CASES]
)
def test_the_printed_fix_applied_to_the_lab_makes_every_check_pass(monkeypatch, scenario, credentials, account, rounds):
    config = LabConfig(
        files=(scenario_path(scenario),),
        mode=Mode.REGISTRY_ONLY,
        namespace="payments",
        credentials=credentials,  # type: ignore[arg-type]
        account_id=account or ACCOUNT,
        tables=("orders",),
    )
    with lab_pod(monkeypatch, config) as lab:
        if account is None and credentials == "env":
            monkeypatch.delenv("AWS_ACCOUNT_ID", raising=False)
        before = check()
        assert before.code == 1, "the broken mesh should fail: " + before.stdout[:400]
        for _ in range(rounds):
            fix = check("--fix-only")
            objects = manifests(fix.stdout)
            assert objects, f"no fix printed for {scenario}/{credentials}: {failing(check())}"
            assert all(o["metadata"]["namespace"] == "payments" for o in objects)
            lab.apply(objects)
        after = check()
        assert after.code == 0, f"still failing after the fix: {failing(after)}\nfix:\n{fix.stdout}"


NOT_MESH_CASES = [
    ("AccessDeniedException", "dynamodb", "DescribeTable", 400),
    ("AccessDenied", "sts", "GetCallerIdentity", 403),
    ("ExpiredTokenException", "dynamodb", "DescribeTable", 400),
    ("ThrottlingException", "dynamodb", "DescribeTable", 400),
]


@pytest.mark.parametrize(("code", "service", "operation", "status"), NOT_MESH_CASES, ids=[c[0] for c in NOT_MESH_CASES])
def test_an_aws_answer_on_a_correct_mesh_prints_no_istio_fix(monkeypatch, code, service, operation, status):
    config = LabConfig(
        files=(scenario_path("correct"),), mode=Mode.REGISTRY_ONLY, credentials="irsa", tables=("orders",)
    )
    with lab_pod(monkeypatch, config) as lab:
        lab.fakes.aws.answer(service, operation, status=status, code=code)
        result = check()
        assert result.code == 1
        doc = result.json()
        assert doc["fixes"] == []
        assert all(f["fix"] is None for f in doc["findings"])
        assert check("--fix-only").stdout == ""


def test_a_missing_table_is_not_a_mesh_problem(monkeypatch):
    config = LabConfig(files=(scenario_path("correct"),), mode=Mode.REGISTRY_ONLY, credentials="irsa", tables=())
    with lab_pod(monkeypatch, config):
        result = check()
        codes = [f["code"] for f in result.json()["findings"]]
        assert "ED543" in codes
        assert result.json()["fixes"] == []


def test_make_demo_tells_the_story_and_ends_green():
    from tests.checkrun import run_cli as run

    result = run("demo", "--no-color")
    assert result.code == 0, result.stdout[-2000:] + result.stderr
    out = result.stdout
    assert "refused by the Istio webhook" in out  # the blog's IMDS entry with an IP as host
    assert "sts.us-east-1.amazonaws.com:443" in out  # regional STS, not the blog's global host
    assert "111122223333.ddb.us-east-1.amazonaws.com:443" in out  # the account-based DynamoDB host
    assert "Before the fix: exit 1. After: exit 0" in out
