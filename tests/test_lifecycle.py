"""`check` as a one-off Job: wait for the sidecar, probe, report, ask the sidecar to quit.

The sidecar is tests/pilot_agent.py's fake pilot-agent on loopback; AWS is the lab's fake
(`aws_world`), with static keys from the environment unless a test says otherwise.
"""

from __future__ import annotations

import json
import time

import pytest

from egress_doctor import sidecar_lifecycle
from egress_doctor.cli import build_parser
from egress_doctor.validate import UsageError
from tests import sockets
from tests.checkrun import REGION, CliResult, World, aws_world, run_cli
from tests.pilot_agent import FakePilotAgent

STS = f"sts.{REGION}.amazonaws.com"
# Time a run against the fakes may take on top of the wait (moto's first answer is the slowest).
RUN_SLACK = 6.0
# Time a bounded wait may overrun its bound (thread scheduling, closing the connection).
WAIT_SLACK = 0.5


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


def job_run(agent_url: str, *extra: str, wait: str = "5s") -> CliResult:
    return run_cli(
        "check", "-o", "json",
        "--wait-for-sidecar", wait, "--sidecar-status", agent_url, "--quit-sidecar", agent_url,
        *extra,
    )  # fmt: skip


def aws_calls(world: World) -> int:
    return len(world.aws.requests)


# --- waiting -----------------------------------------------------------------------------------


def test_check_polls_until_the_sidecar_is_ready_and_only_then_talks_to_aws(world):
    with FakePilotAgent(not_ready_polls=3, observe=lambda: aws_calls(world)) as agent:
        result = job_run(agent.url)
    assert result.code == 0, result.stdout + result.stderr
    polls = agent.ready_polls
    assert [p.status for p in polls] == [503, 503, 503, 200]
    assert all(p.method == "GET" for p in polls)
    assert all(p.observed == 0 for p in polls), "AWS was called before the sidecar was ready"
    assert aws_calls(world) > 0
    assert result.json()["warnings"] == []
    assert "sidecar ready after" in result.stderr and "4 polls" in result.stderr


def test_wait_gives_up_after_the_duration_and_the_run_still_happens(world):
    with FakePilotAgent(not_ready_polls=None) as agent:
        url = agent.url
        started = time.monotonic()
        result = job_run(url, wait="1s")
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed <= 1.0 + RUN_SLACK, f"the run took {elapsed:.2f} s with --wait-for-sidecar 1s"
    assert result.code == 0, "a sidecar that never got ready must not fail a run whose checks passed"
    doc = result.json()
    assert all(c["status"] == "pass" for c in doc["checks"]), doc["checks"]
    [warning] = doc["warnings"]
    assert warning.startswith("sidecar not ready after 1.")
    assert "last: HTTP 503" in warning and f"{url}/healthz/ready" in warning
    assert len(agent.ready_polls) >= 3, "polled too rarely for a short interval"
    assert len(agent.quits) == 1


def test_a_pod_without_a_sidecar_is_named_in_the_wait_warning(world):
    with sockets.refused_port() as port:
        result = run_cli("check", "-o", "json", "--wait-for-sidecar", "0.5", "--sidecar-status", f"http://127.0.0.1:{port}")
    [warning] = result.json()["warnings"]
    assert "last: connect-refused" in warning
    assert "is a sidecar injected into this pod?" in warning


def test_a_sidecar_port_that_never_answers_cannot_stretch_the_wait_past_its_duration():
    with sockets.BacklogFullServer() as stalled:
        started = time.monotonic()
        warnings = sidecar_lifecycle.SidecarLifecycle(
            note=lambda _text: None, wait_for=1.0, status_base=f"http://127.0.0.1:{stalled.port}"
        ).wait()
        elapsed = time.monotonic() - started
    assert elapsed <= 1.0 + WAIT_SLACK, f"waited {elapsed:.2f} s for --wait-for-sidecar 1s"
    [warning] = warnings
    assert "last: connect-timeout" in warning or "last: deadline" in warning, warning


def test_a_stalled_agent_cannot_hold_the_exit_longer_than_the_quit_bound():
    with sockets.BacklogFullServer() as stalled:
        started = time.monotonic()
        line = sidecar_lifecycle.quit_sidecar(f"http://127.0.0.1:{stalled.port}")
        elapsed = time.monotonic() - started
    assert elapsed <= sidecar_lifecycle.QUIT_DEADLINE + WAIT_SLACK
    assert "(the sidecar may keep the pod running)" in line


def test_the_wait_warning_is_in_the_table_too(world):
    with FakePilotAgent(not_ready_polls=None) as agent:
        result = run_cli("check", "--wait-for-sidecar", "0.3s", "--sidecar-status", agent.url)
    assert "  ! sidecar not ready after" in result.stdout


def test_wait_does_not_eat_the_probe_deadline(world):
    # Were the wait part of the deadline, it would have expired before the first probe.
    with FakePilotAgent(not_ready_polls=None) as agent:
        result = job_run(agent.url, "--deadline", "2", wait="2.5s")
    assert result.code == 0, result.stdout
    assert result.json()["deadline_ms"] == 2000


# --- quitting ----------------------------------------------------------------------------------


def test_quit_is_one_post_after_the_report_and_noted_on_stderr(world):
    with FakePilotAgent(observe=lambda: aws_calls(world)) as agent:
        url = agent.url
        result = job_run(url)
    assert result.code == 0
    [quit_call] = agent.quits
    assert quit_call.method == "POST"
    assert quit_call.observed == aws_calls(world), "the sidecar was asked to quit while probes still ran"
    assert agent.calls[-1] == quit_call, "something reached the agent after the quit"
    assert f"POST {url}/quitquitquit -> HTTP 200" in result.stderr
    json.loads(result.stdout)  # the stderr note never lands in the JSON


def test_quit_is_called_even_when_a_check_fails(world):
    with FakePilotAgent() as agent, sockets.refused_port() as port:
        result = job_run(agent.url, "--connect-to", f"{STS}:443:127.0.0.1:{port}")
    assert result.code == 1
    assert result.check("sts.get-caller-identity")["symptom"] == "connect-refused"
    assert len(agent.quits) == 1


def test_quit_is_called_when_the_run_hits_its_deadline(world):
    with FakePilotAgent() as agent, sockets.BacklogFullServer() as stalled:
        result = job_run(agent.url, "--deadline", "2", "--connect-to", f"{STS}:443:127.0.0.1:{stalled.port}")
    assert result.code == 1
    assert result.check("sts.get-caller-identity")["layer"] == "tcp"
    assert len(agent.quits) == 1


def test_quit_is_called_after_a_usage_error_so_the_job_still_completes(world):
    with FakePilotAgent() as agent:
        result = job_run(agent.url, "--region", "not a region!")
    assert result.code == 2
    assert "invalid region" in result.stderr
    assert len(agent.quits) == 1
    assert agent.ready_polls == [], "waited for the sidecar although nothing was going to be probed"


def test_a_bad_wait_duration_is_a_usage_error_and_still_quits(world):
    with FakePilotAgent() as agent:
        result = job_run(agent.url, wait="1d")
    assert result.code == 2
    assert "--wait-for-sidecar '1d': expected a duration" in result.stderr
    assert len(agent.quits) == 1


def test_a_missing_agent_on_quit_keeps_the_diagnosis_exit_code(world):
    with sockets.refused_port() as port:
        result = run_cli("check", "-o", "json", "--quit-sidecar", f"http://127.0.0.1:{port}")
    assert result.code == 0
    assert "-> connect-refused (nothing listens there" in result.stderr


def test_quit_sidecar_without_a_url_targets_pilot_agent_on_15020():
    args = build_parser().parse_args(["check", "--quit-sidecar"])
    assert args.quit_sidecar == "http://127.0.0.1:15020"
    assert args.sidecar_status == "http://127.0.0.1:15021"
    assert args.wait_for_sidecar is None


def test_without_the_flags_no_sidecar_endpoint_is_contacted(world):
    with FakePilotAgent() as agent:
        result = run_cli("check", "-o", "json", "--sidecar-status", agent.url)
    assert result.code == 0
    assert agent.calls == []


# --- the fake agent answers like pilot-agent -----------------------------------------------------


@pytest.mark.parametrize(("method", "status"), [("GET", 405), ("PUT", 405), ("POST", 200)])
def test_fake_agent_accepts_only_post_on_quitquitquit(method, status):
    from egress_doctor.net.http import request

    with FakePilotAgent() as agent:
        answer = request(method, f"{agent.url}/quitquitquit", connect_timeout=1, read_timeout=1)
    assert answer.evidence.status == status


# --- the summary on stderr ---------------------------------------------------------------------


def test_summary_to_stderr_leaves_stdout_pure_json_and_names_the_failure(world):
    with sockets.refused_port() as port:
        result = run_cli(
            "check", "-o", "json", "--summary-to-stderr", "--connect-to", f"{STS}:443:127.0.0.1:{port}"
        )
    doc = result.json()
    summary = summary_line(result)
    assert summary.startswith("egress-doctor summary: FAIL (exit 1): ")
    assert f"STS GetCallerIdentity ({STS}:443 (via 127.0.0.1:{port}), layer tcp)" in summary
    for finding in doc["findings"]:
        assert finding["code"] in summary


def test_summary_of_a_passing_run_says_pass_and_exit_0(world):
    result = run_cli("check", "-o", "json", "--summary-to-stderr")
    assert result.code == 0
    summary = summary_line(result)
    assert summary.startswith("egress-doctor summary: PASS (exit 0): 3 pass in ")
    assert "credentials env, region us-east-1." in summary


def summary_line(result: CliResult) -> str:
    """The one summary line on stderr (other stderr lines are notes)."""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("egress-doctor summary:")]
    return line


# --- flag values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5", 1.5), ("90", 90.0), ("1h", 3600.0)],
)
def test_wait_durations_read_like_kubernetes_durations(text, seconds):
    assert sidecar_lifecycle.parse_duration("--wait-for-sidecar", text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-1s", "1d", "s", "1h1", "2h", "1m 30s", "nan", "inf"])
def test_wait_durations_that_are_not_durations_are_refused(text):
    with pytest.raises(UsageError):
        sidecar_lifecycle.parse_duration("--wait-for-sidecar", text)


@pytest.mark.parametrize(
    "url", ["127.0.0.1:15021", "ftp://127.0.0.1:15021", "http://", "http://127.0.0.1:99999", "http://h/?a=1"]
)
def test_sidecar_urls_that_are_no_base_url_are_refused(url):
    with pytest.raises(UsageError):
        sidecar_lifecycle.base_url("--sidecar-status", url)


def test_a_trailing_slash_on_the_base_url_does_not_double_the_path():
    assert sidecar_lifecycle.base_url("--quit-sidecar", "http://127.0.0.1:15020/") == "http://127.0.0.1:15020"
