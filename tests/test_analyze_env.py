"""`analyze` computes the SDK's hosts with the app's own environment — from its workload's manifest,
`--env-file` and `--env` — and botocore reads it (AWS_STS_REGIONAL_ENDPOINTS, FIPS, dual-stack,
AWS_ENDPOINT_URL_*); the fix is written in the networking.istio.io version the files use."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from egress_doctor.cli import main
from egress_doctor.context import Environment

ENTRY = """
apiVersion: networking.istio.io/%s
kind: ServiceEntry
metadata: {name: partner, namespace: payments}
spec:
  hosts: [api.partner.example]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""
DEPLOYMENT = """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: payments}
spec:
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - name: app
        env:
        - {name: AWS_REGION, value: eu-west-1}
        - {name: AWS_ROLE_ARN, value: "arn:aws:iam::444455556666:role/app"}
        - {name: AWS_WEB_IDENTITY_TOKEN_FILE, value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token}
        - {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: s, key: k}}}
      - name: istio-proxy
"""


def analyze(tmp_path: Path, text: str, *args: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = main(["analyze", "-f", str(path), "-n", "payments", "--mode", "REGISTRY_ONLY", "-o", "json", *args],
                Environment(environ={}, stdout=out, stderr=err))
    assert err.getvalue() == "", err.getvalue()
    return int(code), json.loads(out.getvalue())


def hosts(report: dict[str, Any]) -> list[str]:
    return [c["target"]["host"] for c in report["checks"] if c.get("target")]


@pytest.mark.parametrize(("env", "sts"), [
    ([], "sts.us-east-1.amazonaws.com"),
    (["--env", "AWS_STS_REGIONAL_ENDPOINTS=legacy"], "sts.amazonaws.com"),
    (["--env", "AWS_USE_FIPS_ENDPOINT=true"], "sts-fips.us-east-1.amazonaws.com"),
    (["--env", "AWS_USE_DUALSTACK_ENDPOINT=true"], "sts.us-east-1.api.aws"),
    (["--env", "AWS_ENDPOINT_URL_STS=https://sts.internal.example:8443"], "sts.internal.example"),
])
def test_botocore_reads_the_apps_environment_for_the_sts_host(tmp_path: Path, env: list[str], sts: str) -> None:
    _, report = analyze(tmp_path, ENTRY % "v1", "--region", "us-east-1", "--credentials", "env", *env)
    assert sts in hosts(report)


def test_the_workloads_container_env_gives_region_credentials_and_account(tmp_path: Path) -> None:
    _, report = analyze(tmp_path, ENTRY % "v1" + DEPLOYMENT, "--table", "orders")
    assert report["identity"]["source"] == "irsa" and report["identity"]["account_id"] == "444455556666"
    assert "sts.eu-west-1.amazonaws.com" in hosts(report)
    assert "444455556666.ddb.eu-west-1.amazonaws.com" in hosts(report)
    said = " ".join(report["warnings"])
    assert "AWS_SECRET_ACCESS_KEY comes from valueFrom" in said and "Deployment payments/app" in said


def test_an_env_file_and_env_flags_win_over_the_manifest_in_that_order(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# the app's settings\nexport AWS_REGION=ap-south-1\nAWS_STS_REGIONAL_ENDPOINTS='legacy'\n")
    _, report = analyze(tmp_path, ENTRY % "v1" + DEPLOYMENT, "--env-file", str(env_file),
                        "--env", "AWS_STS_REGIONAL_ENDPOINTS=regional")
    assert "sts.ap-south-1.amazonaws.com" in hosts(report)


def test_a_secret_given_with_env_never_appears_in_the_output(tmp_path: Path) -> None:
    secret = "PlantedSecretKey/AnalyzeEnvFLAG0123456789"
    path = tmp_path / "mesh.yaml"
    path.write_text(ENTRY % "v1")
    for output in ("table", "json", "yaml"):
        out = io.StringIO()
        main(["analyze", "-f", str(path), "-n", "payments", "--region", "us-east-1", "-o", output, "--env",
              "AWS_ACCESS_KEY_ID=AKIAPLANTEDEXAMPLE12", "--env", f"AWS_SECRET_ACCESS_KEY={secret}"],
             Environment(environ={}, stdout=out, stderr=io.StringIO()))
        assert secret not in out.getvalue()


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha3", "v1"])
def test_without_istio_api_the_fix_is_written_in_the_version_the_files_use(tmp_path: Path, version: str) -> None:
    _, report = analyze(tmp_path, ENTRY % version, "--region", "us-east-1")
    assert {m["apiVersion"] for f in report["fixes"] for m in f["manifests"]} == {f"networking.istio.io/{version}"}


@pytest.mark.parametrize(("args", "complaint"), [
    (["--env", "NOEQUALS"], "--env: 'NOEQUALS' is not NAME=VALUE"),
    (["--workload", "Deployment/missing"], "--workload Deployment/missing: no such"),
    (["--container", "sidecar-thing"], "--container sidecar-thing"),
])
def test_bad_environment_flags_are_usage_errors(tmp_path: Path, args: list[str], complaint: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(ENTRY % "v1" + DEPLOYMENT)
    err = io.StringIO()
    code = main(["analyze", "-f", str(path), "-n", "payments", *args],
                Environment(environ={}, stdout=io.StringIO(), stderr=err))
    assert code == 2 and complaint in err.getvalue()
