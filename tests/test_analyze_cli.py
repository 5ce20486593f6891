"""`egress-doctor analyze` end to end, in-process: the lab scenarios, a generated GitOps repo, exit
codes, output formats, and no network at all."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.cli import main
from egress_doctor.context import Environment

SCENARIOS = Path(__file__).resolve().parents[1] / "egress_doctor" / "lab" / "scenarios"
BASE = ["--region", "us-east-1", "--account", "111122223333"]


def run(*args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["analyze", *args], Environment(environ=environ or {}, stdout=out, stderr=err))
    return int(code), out.getvalue(), err.getvalue()


def codes(*args: str) -> tuple[int, list[str]]:
    code, out, err = run(*args, "-o", "json")
    assert err == "", err
    return code, [f["code"] for f in json.loads(out)["findings"]]


@pytest.mark.parametrize(
    ("scenario", "flags", "exit_code", "found"),
    [
        ("correct", ["--mode", "REGISTRY_ONLY"], 0, []),
        ("correct", ["--mode", "REGISTRY_ONLY", "--credentials", "imds"], 0, []),
        ("correct", ["--mode", "REGISTRY_ONLY", "--credentials", "pod-identity"], 0, []),
        ("blog-2018", ["--mode", "REGISTRY_ONLY"], 1, ["ED617", "ED617", "ED618"]),
        ("blog-2018", [], 1, ["ED618", "ED631", "ED631"]),
        ("hidden-by-export-to", ["--mode", "REGISTRY_ONLY", "-n", "payments"], 1, ["ED610", "ED610", "ED610"]),
        ("hidden-by-sidecar", ["--mode", "REGISTRY_ONLY", "-n", "payments"], 1, ["ED611", "ED611", "ED611"]),
        ("dynamodb-declared-http", ["--mode", "REGISTRY_ONLY", "--credentials", "env"], 1, ["ED613"]),
        ("no-service-entries", ["--mode", "REGISTRY_ONLY"], 1, ["ED630", "ED630", "ED630", "ED601", "ED602"]),
        ("allow-any", ["--mode", "REGISTRY_ONLY"], 0, ["ED631", "ED631", "ED631"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_lab_scenarios(scenario: str, flags: list[str], exit_code: int, found: list[str]) -> None:
    assert codes("-f", str(SCENARIOS / scenario), *BASE, *flags) == (exit_code, found)


def test_analyze_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network call {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    code, _ = codes("-f", str(SCENARIOS / "blog-2018"), *BASE, "--mode", "REGISTRY_ONLY", "--table",
                    "arn:aws:dynamodb:us-east-1:444455556666:table/orders")
    assert code == 1


# ---- a generated GitOps repository ---------------------------------------------------------------


def write_repo(root: Path, mode: str = "REGISTRY_ONLY") -> Path:
    (root / "istio-system").mkdir(parents=True)
    (root / "apps" / "payments" / "templates").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "junk.yaml").write_text("{not: [valid")
    (root / "istio-system" / "operator.yaml").write_text(yaml.safe_dump({
        "apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
        "metadata": {"name": "control-plane", "namespace": "istio-system"},
        "spec": {"meshConfig": {"outboundTrafficPolicy": {"mode": mode}}}}))
    entries = [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "aws-sts", "namespace": "platform", "annotations": {"owner": "team-a"}},
         "spec": {"hosts": ["sts.amazonaws.com"], "exportTo": ["."], "location": "MESH_EXTERNAL",
                  "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}], "resolution": "DNS"}},
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "aws-dynamodb", "namespace": "platform"},
         "spec": {"hosts": ["*.ddb.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"],
                  "location": "MESH_EXTERNAL", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                  "resolution": "NONE"}},
    ]
    (root / "apps" / "platform.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                                                 "items": entries}))
    (root / "apps" / "payments" / "deploy.yml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app, namespace: payments}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {istio-injection: enabled}}\n")
    (root / "apps" / "payments" / "templates" / "se.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {{ .Values.name }}\n")
    return root


def test_a_gitops_repo_is_walked_recursively_with_mode_from_its_istio_operator(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    code, out, err = run("-f", str(repo), *BASE, "-n", "payments", "-o", "json")
    assert err == ""
    report = json.loads(out)
    assert code == 1
    assert [f["code"] for f in report["findings"]] == ["ED610", "ED617"]
    assert report["mesh"]["source"] == "files" and report["mesh"]["objects"] == 2
    warnings = report["warnings"]
    assert "mesh mode REGISTRY_ONLY from IstioOperator" in warnings[0] and "3 files" not in warnings[0]
    assert any("templates/se.yaml: a template" in w for w in warnings)
    assert [c["status"] for c in report["checks"]] == ["fail", "pass", "pass"]


def test_the_printed_fix_applied_to_the_repo_makes_analyze_pass(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    code, fix, _ = run("-f", str(repo), *BASE, "-n", "payments", "--fix-only")
    assert code == 1
    fixed = list(yaml.safe_load_all(fix))
    assert [(d["kind"], d["metadata"]["name"]) for d in fixed] == [("ServiceEntry", "aws-sts")]
    assert fixed[0]["metadata"]["annotations"] == {"owner": "team-a"}  # fields kept from the file
    assert fixed[0]["spec"]["exportTo"] == [".", "payments"]
    assert fixed[0]["spec"]["hosts"] == ["sts.amazonaws.com", "sts.us-east-1.amazonaws.com"]
    platform = yaml.safe_load((repo / "apps" / "platform.yaml").read_text())
    platform["items"] = [fixed[0] if i["metadata"]["name"] == "aws-sts" else i for i in platform["items"]]
    (repo / "apps" / "platform.yaml").write_text(yaml.safe_dump(platform))
    assert codes("-f", str(repo), *BASE, "-n", "payments") == (0, [])


def test_under_allow_any_from_the_operator_the_same_repo_passes(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", mode="ALLOW_ANY")
    assert codes("-f", str(repo), *BASE, "-n", "payments") == (0, ["ED631"])


def test_table_output_names_each_host_and_the_entry_that_covers_it() -> None:
    code, out, _ = run("-f", str(SCENARIOS / "correct"), *BASE, "--mode", "REGISTRY_ONLY")
    assert code == 0
    assert "covered by ServiceEntry default/aws-sts (sts.us-east-1.amazonaws.com)" in out
    assert "111122223333.ddb.us-east-1.amazonaws.com:443" in out


def test_yaml_output_is_the_json_document() -> None:
    _, out, _ = run("-f", str(SCENARIOS / "correct"), *BASE, "-o", "yaml")
    assert yaml.safe_load(out)["schema"] == "egress-doctor/v1"


# ---- exit 2: input that cannot be analysed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "not valid YAML"),
        ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {ports: 443}\n",
         "spec.ports: must be a list"),
        ("apiVersion: networking.istio.io/v9\nkind: ServiceEntry\nmetadata: {name: x}\n", "unknown version"),
        ("- just\n- a list\n", "a document must be a mapping"),
    ],
    ids=["not-yaml", "wrong-shape", "unknown-version", "not-a-mapping"],
)
def test_invalid_input_exits_2_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run("-f", str(path), *BASE)
    assert (code, out) == (2, "")
    assert message in err and str(path) in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "/nonexistent/mesh.yaml", *BASE], "no such file or directory"),
        (["-f", str(SCENARIOS / "correct"), "--region", "us-east-1", "--account", "12345"], "12 digits"),
        (["-f", str(SCENARIOS / "correct")], "--region is required"),
        (["-f", str(SCENARIOS / "correct"), *BASE, "--label", "novalue"], "KEY=VALUE"),
        (["-f", str(SCENARIOS / "correct"), *BASE, "--credentials", "magic"], "invalid choice"),
        ([*BASE], "-f/--filename"),
    ],
    ids=["missing-path", "bad-account", "no-region", "bad-label", "bad-credentials", "no-files"],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    assert message in err and err.count("\n") == 1, err


def test_region_may_come_from_the_environment() -> None:
    code, out, _ = run("-f", str(SCENARIOS / "correct"), "-o", "json", environ={"AWS_REGION": "us-east-1"})
    assert code == 0 and json.loads(out)["identity"]["region"] == "us-east-1"


def test_the_table_tells_to_pipe_analyze_not_check_into_kubectl(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    code, out, _ = run("-f", str(repo), *BASE, "-n", "payments", "--no-color")
    assert code == 1
    assert "egress-doctor analyze --fix-only" in out
    assert "egress-doctor check --fix-only" not in out
