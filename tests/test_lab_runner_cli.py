"""`egress-doctor lab up|run|config`: exit codes, what the command sees, and clean teardown on
exit, Ctrl-C and SIGTERM (no process, no temporary directory left)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_doctor.cli import main
from egress_doctor.context import Environment

pytestmark = pytest.mark.lab

SCENARIOS = Path(__file__).parent.parent / "egress_doctor" / "lab" / "scenarios"


def run_cli(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Environment(environ=environ or dict(os.environ), stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(x) for x in text]
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_lab_run_exits_with_the_commands_code_and_gives_it_the_pods_environment(tmp_path: Path) -> None:
    seen = tmp_path / "env.txt"
    script = (f"import json, os; open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ))); "
              "raise SystemExit(7)")
    code, _, err = run_cli("lab", "run", "-f", str(SCENARIOS / "blog-2018"), "--credentials", "irsa",
                           "--", sys.executable, "-c", script, environ={**os.environ, "AWS_PROFILE": "prod"})
    env = json.loads(seen.read_text())
    assert code == 7
    assert "AWS_PROFILE" not in env and env["AWS_ROLE_ARN"].endswith(":role/egress-doctor-lab")
    assert env["EGRESS_DOCTOR_CONNECT_TO"].split(",")[-1].startswith("::127.0.0.1:")
    assert 'denied the request: configuration is invalid: domain name "254.169.254" invalid' in err
    assert not Path(env["AWS_CA_BUNDLE"]).parent.parent.exists()  # the lab's directory is gone


def test_lab_run_creates_the_apps_resources_and_check_finds_each_at_its_host() -> None:
    footprint = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events",
                 "--secret", "billing/db")
    check = (sys.executable, "-m", "egress_doctor.cli", "check", "--no-cluster", "--no-mirror", *footprint)
    code, _, err = run_cli("lab", "run", "-f", str(SCENARIOS / "wide-footprint-allowed"), "--credentials", "irsa",
                           "--account-id", "111122223333", *footprint, "--", *check)
    assert code == 0, err


def test_lab_run_refuses_a_resource_name_aws_would_refuse_before_starting() -> None:
    code, _, err = run_cli("lab", "run", "-f", str(SCENARIOS / "correct"), "--bucket", "Not_A_Bucket", "--", "true")
    assert code == 2 and "invalid bucket name" in err


def test_the_lab_parsers_choices_are_the_runners_and_the_models() -> None:
    from egress_doctor.istio.objects import Mode
    from egress_doctor.lab import cli, runner

    assert tuple(m.value for m in Mode) == cli.MODES
    assert cli.CREDENTIAL_MODES == runner.CREDENTIAL_MODES


def test_lab_run_without_a_command_is_a_usage_error() -> None:
    code, _, err = run_cli("lab", "run", "-f", str(SCENARIOS / "correct"))
    assert code == 2 and "needs a command" in err


def test_lab_with_a_malformed_file_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\n"
                   "spec: {hosts: x}\n")
    code, _, err = run_cli("lab", "run", "-f", str(bad), "--", "true")
    assert code == 2 and "bad.yaml" in err and "spec.hosts" in err


def test_lab_config_prints_the_envoy_bootstrap_it_would_run() -> None:
    code, out, _ = run_cli("lab", "config", "-f", str(SCENARIOS / "correct"), "--mode", "ALLOW_ANY")
    boot = json.loads(out)
    assert code == 0 and boot["node"]["metadata"]["ISTIO_VERSION"]
    names = [x["name"] for x in boot["static_resources"]["listeners"]]
    assert names == ["0.0.0.0_443", "0.0.0.0_80", "virtualOutbound"]


def start_up(*extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    argv = [sys.executable, "-m", "egress_doctor.cli", "lab", "up", "-f", str(SCENARIOS / "correct"), *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.match(r"export (\w+)=(.*)", line):
            exports[m.group(1)] = m.group(2).strip("'")
        if line.startswith("# up:"):
            return proc, exports
    proc.kill()
    raise AssertionError(f"lab up did not come up: {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_lab_up_stops_envoy_and_removes_its_directory_when_signalled(sig: int, code: int) -> None:
    proc, exports = start_up()
    try:
        envoy = children(proc.pid)
        assert len(envoy) == 1 and alive(envoy[0])
        directory = Path(exports["AWS_CA_BUNDLE"]).parent.parent
        assert directory.is_dir() and "EGRESS_DOCTOR_ADMIN_URL" in exports
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not alive(envoy[0]) and not directory.exists()


def test_lab_up_sidecar_not_ready_runs_no_envoy_and_prints_no_admin_url() -> None:
    proc, exports = start_up("--sidecar-not-ready")
    try:
        assert children(proc.pid) == [] and "EGRESS_DOCTOR_ADMIN_URL" not in exports
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_envoy_does_not_outlive_a_lab_process_that_is_killed_outright() -> None:
    import shutil

    proc, exports = start_up()
    envoy = children(proc.pid)
    proc.kill()  # SIGKILL: no finally runs; the parent-death signal must stop Envoy
    proc.wait(timeout=15)
    deadline = time.monotonic() + 10
    while alive(envoy[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(Path(exports["AWS_CA_BUNDLE"]).parent.parent, ignore_errors=True)  # only SIGKILL leaves it
    assert not alive(envoy[0])


def test_lab_run_of_a_command_that_does_not_exist_exits_127_like_a_shell() -> None:
    code, _, err = run_cli("lab", "run", "-f", str(SCENARIOS / "correct"), "--", "/nonexistent/tool")
    assert code == 127 and "/nonexistent/tool" in err


def test_lab_up_prints_no_secret_key_and_sources_them_from_a_private_file() -> None:
    proc, exports = start_up("--credentials", "env")
    try:
        assert "AWS_SECRET_ACCESS_KEY" not in exports and "AWS_SESSION_TOKEN" not in exports
        secrets = Path(exports["AWS_CA_BUNDLE"]).parent.parent / "credentials.env"
        assert secrets.stat().st_mode & 0o077 == 0, "the credentials file must be private (0600)"
        assert "AWS_SECRET_ACCESS_KEY=" in secrets.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
