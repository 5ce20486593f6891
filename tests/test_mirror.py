"""`check --mirror-pid`: probe as the app would, against the fakes.

A child process started with an IRSA environment (role ARN + a token file holding a planted JWT)
stands in for the app; the tool's own environment has no credentials at all, so without
mirroring the SDK would take IMDS. Mirroring must reproduce the app's path: identity `irsa`,
AssumeRoleWithWebIdentity at the fake STS, and the JWT nowhere in any output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.checkrun import (
    ENV_SECRET_KEY,
    ENV_SESSION_TOKEN,
    POD_IDENTITY_TOKEN,
    REGION,
    ROLE_ARN,
    WEB_IDENTITY_JWT,
    aws_world,
    run_cli,
)
from tests.procs import wait_for_exec
from tests.test_secrets import moto_issued_secrets, spellings

REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0


@pytest.fixture
def world(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # "outside a pod": no automatic mirroring
    with aws_world(monkeypatch, tmp_path) as world:
        yield world


def start_app(tmp: Path, **aws: str) -> subprocess.Popen[bytes]:
    """A process that only sleeps, with the given environment: the app as /proc shows it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp / "app-home"), **aws}
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    wait_for_exec(app.pid)
    return app


@pytest.fixture
def irsa_app(world, tmp_path) -> Iterator[subprocess.Popen[bytes]]:
    token = tmp_path / "app-web-identity-token"
    token.write_text(WEB_IDENTITY_JWT)
    app = start_app(
        tmp_path,
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        AWS_DEFAULT_REGION=REGION,
        AWS_STS_REGIONAL_ENDPOINTS="regional",
        AWS_CA_BUNDLE=os.environ["AWS_CA_BUNDLE"],
    )
    yield app
    app.kill()
    app.wait(WAIT)


def test_without_mirroring_the_tool_would_take_imds_not_the_apps_irsa(world, irsa_app):
    result = run_cli("check", "-o", "json", "--no-mirror", proc_root="/proc")
    assert result.json()["identity"]["source"] == "imds"


def test_mirror_pid_reproduces_the_apps_irsa_path_up_to_assume_role_at_the_fake_sts(world, irsa_app):
    result = run_cli("check", "-o", "json", "--mirror-pid", str(irsa_app.pid), proc_root="/proc")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["identity"]["source"] == "irsa"
    assert doc["identity"]["role_arn"] == ROLE_ARN
    assert result.check("sts.assume-role-with-web-identity")["status"] == "pass"
    assume = [r for r in world.aws.requests if r.operation == "AssumeRoleWithWebIdentity"]
    assert assume and assume[0].host == f"sts.{REGION}.amazonaws.com" and not assume[0].signed
    assert world.imds.requests == [], "the app's path never touches IMDS"


def test_mirror_says_which_process_it_probed_as(world, irsa_app):
    result = run_cli("check", "-o", "json", "--mirror-pid", str(irsa_app.pid), proc_root="/proc")
    warnings = result.json()["warnings"]
    said = " ".join(warnings)
    assert f"process {irsa_app.pid} (python" in said
    assert "AWS_ROLE_ARN" in said and "AWS_WEB_IDENTITY_TOKEN_FILE" in said


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
def test_the_mirrored_apps_token_and_issued_keys_never_appear_in_any_output(world, irsa_app, output):
    result = run_cli("check", "-v", "-o", output, "--mirror-pid", str(irsa_app.pid), proc_root="/proc")
    assert result.code == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    for secret in [WEB_IDENTITY_JWT, *moto_issued_secrets()]:
        for spelling in spellings(secret):
            assert spelling not in text


def test_the_tools_own_environment_is_back_after_a_mirrored_run(world, irsa_app):
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    run_cli("check", "-o", "json", "--mirror-pid", str(irsa_app.pid), proc_root="/proc")
    assert {k: v for k, v in os.environ.items() if k.startswith("AWS_")} == before
    assert "AWS_ROLE_ARN" not in os.environ


def test_a_pid_that_does_not_exist_is_a_usage_error_naming_the_flag_and_nothing_is_probed(world, tmp_path):
    gone = start_app(tmp_path, AWS_ROLE_ARN=ROLE_ARN)
    gone.kill()
    gone.wait(WAIT)
    result = run_cli("check", "-o", "json", "--mirror-pid", str(gone.pid), proc_root="/proc")
    assert (result.code, result.stdout) == (2, ""), result.stdout + result.stderr
    assert result.stderr.startswith(f"egress-doctor: error: --mirror-pid {gone.pid}: no such process")
    assert "--target" in result.stderr and result.stderr.count("\n") == 1
    assert world.imds.requests == [] and world.aws.requests == []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) is not installed")
def test_a_pid_whose_environment_is_permission_denied_gives_a_warning_and_the_run_goes_on(world, irsa_app):
    """`unshare -r` runs the tool as root of a new user namespace: like a debug container without
    CAP_SYS_PTRACE over the app, it may not read the app's /proc/<pid>/environ."""
    probe = subprocess.run(["unshare", "-r", "true"], capture_output=True, timeout=WAIT, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged user namespaces are not available: {probe.stderr.decode().strip()}")
    command = [sys.executable, "-m", "egress_doctor.cli", "check", "-o", "json", "--mirror-pid", str(irsa_app.pid)]
    done = subprocess.run(
        ["unshare", "-r", *command], cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=WAIT
    )
    doc = json.loads(done.stdout)
    assert doc["identity"]["source"] == "imds"
    said = " ".join(doc["warnings"])
    assert f"cannot read the environment of process {irsa_app.pid}" in said and "permission denied" in said
    assert WEB_IDENTITY_JWT not in done.stdout + done.stderr


def test_no_mirror_together_with_mirror_pid_is_a_usage_error(world, irsa_app):
    result = run_cli("check", "--no-mirror", "--mirror-pid", str(irsa_app.pid), proc_root="/proc")
    assert result.code == 2
    assert "--mirror-pid" in result.stderr


def test_outside_a_pod_check_does_not_mirror_by_default(world, irsa_app):
    result = run_cli("check", "-o", "json", proc_root="/proc")
    doc = result.json()
    assert doc["identity"]["source"] == "imds"
    assert not any("--mirror" in w for w in doc["warnings"])


def test_mirroring_an_app_with_pod_identity_calls_its_agent_with_its_token_and_never_prints_it(world, tmp_path):
    token = world.agent.write_token_file(tmp_path / "app-pod-identity-token")
    app = start_app(
        tmp_path,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=world.agent.full_uri,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token),
        AWS_DEFAULT_REGION=REGION,
        AWS_CA_BUNDLE=os.environ["AWS_CA_BUNDLE"],
    )
    try:
        result = run_cli("check", "-v", "-o", "json", "--mirror-pid", str(app.pid), proc_root="/proc")
    finally:
        app.kill()
        app.wait(WAIT)
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["identity"]["source"] == "pod-identity"
    assert world.agent.requests and world.agent.requests[0].authorized
    for spelling in spellings(POD_IDENTITY_TOKEN):
        assert spelling not in result.stdout + result.stderr


def test_mirroring_an_app_with_static_keys_names_them_but_never_prints_their_values(world, tmp_path):
    key_id = "AKIAPLANTEDMIRROR001"
    app = start_app(
        tmp_path,
        AWS_ACCESS_KEY_ID=key_id,
        AWS_SECRET_ACCESS_KEY=ENV_SECRET_KEY,
        AWS_SESSION_TOKEN=ENV_SESSION_TOKEN,
        AWS_DEFAULT_REGION=REGION,
        AWS_CA_BUNDLE=os.environ["AWS_CA_BUNDLE"],
    )
    try:
        results = [run_cli("check", "-v", "-o", output, "--mirror-pid", str(app.pid), proc_root="/proc")
                   for output in ("table", "json")]
    finally:
        app.kill()
        app.wait(WAIT)
    assert results[1].json()["identity"]["source"] == "env"
    said = " ".join(results[1].json()["warnings"])
    assert "AWS_ACCESS_KEY_ID, AWS_CA_BUNDLE, AWS_DEFAULT_REGION, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN" in said
    text = "".join(r.stdout + r.stderr for r in results)
    for secret in (key_id, ENV_SECRET_KEY, ENV_SESSION_TOKEN):
        for spelling in spellings(secret):
            assert spelling not in text
