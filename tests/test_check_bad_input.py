"""Bad input and hostile answers: one clear line and a documented exit code, never a traceback.

Exit codes (model.ExitStatus, listed in --help): 2 for a bad flag, value or environment
(nothing is probed), 1 when a check failed (the failure is in the report), 3 for a bug in
egress-doctor (a traceback only with -v, redacted), 130 for Ctrl-C.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_doctor.aws.session import Limits
from egress_doctor.model import ExitStatus
from tests import canned, sockets
from tests.canned import CannedServer, Reply
from tests.checkrun import ENV_SECRET_KEY, REGION, CliResult, World, aws_world, run_cli

STS = f"sts.{REGION}.amazonaws.com"
DDB = f"dynamodb.{REGION}.amazonaws.com"
API_CHECKS = ("sts.get-caller-identity", "dynamodb.list-tables")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world(monkeypatch, tmp_path, capsys):
    with aws_world(monkeypatch, tmp_path) as world:
        yield world
    # Nothing may reach the process's own stderr (threading.excepthook prints raw tracebacks).
    stray = capsys.readouterr().err
    assert "Traceback" not in stray, stray


def _steered(port: int, *extra: str) -> CliResult:
    return run_cli(
        "check", "-o", "json",
        "--connect-to", f"{STS}:443:127.0.0.1:{port}",
        "--connect-to", f"{DDB}:443:127.0.0.1:{port}",
        *extra,
    )  # fmt: skip


def assert_usage_error(result: CliResult, fragment: str) -> None:
    assert result.code == ExitStatus.USAGE, (result.code, result.stderr, result.stdout[:500])
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("egress-doctor: error: "), lines[0]
    assert fragment in lines[0], lines[0]


def assert_nothing_probed(world: World) -> None:
    assert world.aws.requests == []
    assert world.imds.requests == []
    assert world.agent.requests == []


# --- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(("--region", "us east 1"), "invalid region 'us east 1'", id="region-with-spaces"),
        pytest.param(("--region", "us_east_1!"), "invalid region", id="region-with-punctuation"),
        pytest.param(("--table", "ab"), "invalid table name 'ab'", id="table-too-short"),
        pytest.param(("--table", "orders;drop"), "invalid table name", id="table-bad-character"),
        pytest.param(("--table", "arn:aws:dynamodb:us-east-1:123:table/orders"), "invalid table ARN",
                     id="table-arn-short-account"),
        pytest.param(("--table", "arn:aws:s3:::bucket"), "invalid table ARN", id="table-arn-of-another-service"),
        pytest.param(("--connect-to", f"{STS}:443:127.0.0.1"), "bad --connect-to", id="connect-to-three-fields"),
        pytest.param(("--connect-to", f"{STS}:99999:127.0.0.1:443"), "port '99999'", id="connect-to-port-range"),
        pytest.param(("--connect-to", f"{STS}:443:bad host:443"), "'bad host' is not a host",
                     id="connect-to-host-with-space"),
        pytest.param(("--connect-to", "[::1:443:127.0.0.1:443"), "bad --connect-to", id="connect-to-open-bracket"),
        pytest.param(("--deadline", "soon"), "--deadline 'soon'", id="deadline-not-a-number"),
        pytest.param(("--deadline", "0"), "--deadline '0'", id="deadline-zero"),
        pytest.param(("--deadline", "nan"), "--deadline 'nan'", id="deadline-nan"),
        pytest.param(("--connect-timeout", "-1"), "--connect-timeout '-1'", id="connect-timeout-negative"),
        pytest.param(("--read-timeout", "1e9"), "--read-timeout '1e9'", id="read-timeout-huge"),
        pytest.param(("-o", "xml"), "invalid choice: 'xml'", id="unknown-output-format"),
        pytest.param(("--frobnicate",), "unrecognized arguments: --frobnicate", id="unknown-flag"),
    ],
)  # fmt: skip
def test_a_bad_flag_is_one_line_on_stderr_exit_2_and_nothing_is_probed(world, args, fragment):
    world.static_keys()
    result = run_cli("check", *args)
    assert_usage_error(result, fragment)
    assert_nothing_probed(world)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("nonsense", "bad --connect-to 'nonsense'", id="not-a-rule"),
        pytest.param(":443:127.0.0.1:1,oops", "bad --connect-to 'oops'", id="second-rule-broken"),
        pytest.param(":443:127.0.0.1:0", "port '0'", id="port-zero"),
    ],
)
def test_a_malformed_connect_to_environment_rule_is_a_usage_error(world, value, fragment):
    world.static_keys()
    world.use(EGRESS_DOCTOR_CONNECT_TO=value)
    assert_usage_error(run_cli("check"), fragment)
    assert_nothing_probed(world)


# --- an environment the SDK itself cannot start from ----------------------------------------------


def _partial_keys(world: World) -> None:
    world.use(AWS_ACCESS_KEY_ID="AKIAPLANTEDEXAMPLE12")


def _unparsable_config(world: World) -> None:
    (world.tmp / "no-aws-config").write_text("[default\nregion = us-east-1\n")


def _missing_profile(world: World) -> None:
    world.use(AWS_PROFILE="does-not-exist")


def _env(**values: str):
    return lambda world: world.use(**values)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        pytest.param(_env(AWS_METADATA_SERVICE_TIMEOUT="abc"), "invalid literal for int()", id="metadata-timeout"),
        pytest.param(_env(AWS_EC2_METADATA_SERVICE_ENDPOINT="not a url"), "InvalidIMDSEndpointError",
                     id="imds-endpoint-not-a-url"),
        pytest.param(_env(AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:99999/"),
                     "IMDS endpoint 'http://127.0.0.1:99999/' is not a usable URL", id="imds-endpoint-port-range"),
        pytest.param(_env(AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE="ipv5"), "InvalidIMDSEndpointModeError",
                     id="imds-endpoint-mode"),
        pytest.param(_env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:99999/v1/credentials"),
                     "container credentials URL", id="full-uri-port-range"),
        pytest.param(_env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://[::1/v1/credentials"), "Invalid IPv6 URL",
                     id="full-uri-open-bracket"),
        pytest.param(_partial_keys, "PartialCredentialsError", id="access-key-without-secret"),
        pytest.param(_unparsable_config, "ConfigParseError", id="unparsable-config-file"),
        pytest.param(_missing_profile, "ProfileNotFound", id="missing-profile"),
    ],
)  # fmt: skip
def test_an_environment_botocore_cannot_start_from_is_a_usage_error_not_an_internal_one(world, setup, fragment):
    setup(world)
    assert_usage_error(run_cli("check"), fragment)
    assert_nothing_probed(world)


def test_a_broken_container_uri_is_ignored_when_static_keys_win_the_chain_as_in_botocore(world):
    world.static_keys()
    world.use(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:99999/v1/credentials")
    assert run_cli("check", "-o", "json").code == ExitStatus.OK


# --- token files ---------------------------------------------------------------------------------


def _credentials_failure(result: CliResult, check_id: str) -> dict:
    assert result.code == ExitStatus.CHECK_FAILED, result.stderr
    assert result.stderr == ""
    check = result.check(check_id)
    assert (check["status"], check["layer"], check["symptom"]) == ("fail", "credentials", "credentials")
    for api_check in API_CHECKS:
        assert result.check(api_check)["status"] == "skip"
        assert f"skipped: {check_id} failed" in result.check(api_check)["reason"]
    return check


def test_irsa_token_file_missing_fails_the_credential_source_and_names_the_file(world):
    world.irsa().unlink()
    check = _credentials_failure(run_cli("check", "-o", "json"), "credentials.source")
    assert check["error"]["type"] == "FileNotFoundError"
    assert str(world.tmp / "web-identity-token") in check["reason"]
    assert_nothing_probed(world)


def test_irsa_token_path_that_is_a_directory_fails_the_credential_source(world):
    world.irsa()
    world.use(AWS_WEB_IDENTITY_TOKEN_FILE=str(world.tmp))
    check = _credentials_failure(run_cli("check", "-o", "json"), "credentials.source")
    assert str(world.tmp) in check["reason"]


def test_irsa_token_file_that_is_not_utf8_fails_the_assume_role_check_without_a_crash(world):
    world.irsa().write_bytes(b"\xff\xfe\x00binary token")
    check = _credentials_failure(run_cli("check", "-o", "json"), "sts.assume-role-with-web-identity")
    assert check["error"]["type"] == "UnicodeDecodeError"
    assert "not UTF-8" in check["reason"]
    assert world.aws.requests == []


def test_irsa_token_file_that_is_empty_fails_before_any_request_on_one_line(world):
    world.irsa().write_text("")
    check = _credentials_failure(run_cli("check", "-o", "json"), "sts.assume-role-with-web-identity")
    assert check["reason"] == f"web identity token file {world.tmp / 'web-identity-token'} is empty"
    assert world.aws.requests == []


def test_pod_identity_token_file_missing_fails_the_credential_source(world):
    world.pod_identity().unlink()
    check = _credentials_failure(run_cli("check", "-o", "json"), "credentials.source")
    assert check["error"]["type"] == "FileNotFoundError"
    assert world.agent.requests == []


def test_pod_identity_token_file_that_is_not_utf8_fails_the_agent_check_without_a_crash(world):
    world.pod_identity().write_bytes(b"\xff\xfe\x00binary token")
    check = _credentials_failure(run_cli("check", "-o", "json"), "container.credentials")
    assert "not UTF-8" in check["reason"]
    assert world.agent.requests == []


@pytest.mark.parametrize("content", ["token\n", "tok\nen", "token\r\n"], ids=["trailing-newline", "inner", "crlf"])
def test_pod_identity_token_with_a_line_break_fails_as_botocore_refuses_it(world, content):
    world.pod_identity().write_text(content)
    check = _credentials_failure(run_cli("check", "-o", "json"), "container.credentials")
    assert check["error"]["message"] == "Auth token value is not a legal header value"
    assert "line break" in check["reason"]
    assert world.agent.requests == [], "a token botocore refuses was sent anyway"


# --- credential documents that are not JSON ------------------------------------------------------

_NOT_JSON = b"<html><body>Service Temporarily Unavailable</body></html>"


def _imds_serving(document: Reply):
    def answer(request: canned.Request) -> Reply:
        if request.method == "PUT":
            return Reply(200, body=b"imds-token-for-the-test-0123456789")
        if request.target.endswith("/security-credentials/"):
            return Reply(200, body=b"node-role")
        return document

    return answer


def test_imds_credentials_document_that_is_not_json_is_http_not_aws(world):
    with CannedServer(_imds_serving(Reply(200, body=_NOT_JSON))) as imds:
        world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url())
        result = run_cli("check", "-o", "json")
    check = result.check("imds.credentials")
    assert (check["status"], check["layer"], check["symptom"]) == ("fail", "http", "not-aws")
    assert check["reason"] == "credentials document is not JSON"
    assert check["evidence"]["http"]["body_prefix"].startswith("<html>")
    assert result.code == ExitStatus.CHECK_FAILED and result.stderr == ""


def test_pod_identity_agent_answer_that_is_not_json_is_http_not_aws(world):
    world.pod_identity()
    world.agent.configure(response="not-json")
    result = run_cli("check", "-o", "json")
    check = result.check("container.credentials")
    assert (check["status"], check["layer"], check["symptom"]) == ("fail", "http", "not-aws")
    assert result.code == ExitStatus.CHECK_FAILED and result.stderr == ""


# --- hostile answers -----------------------------------------------------------------------------


def test_garbage_instead_of_http_from_aws_is_not_aws_and_no_traceback(world):
    world.static_keys()
    with CannedServer(canned.garbage(), tls=world.aws.pki.ca, hostnames=[STS, DDB]) as server:
        result = _steered(server.port)
    assert result.code == ExitStatus.CHECK_FAILED and result.stderr == ""
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert (check["layer"], check["symptom"]) == ("http", "not-aws"), check


def test_garbage_instead_of_http_from_imds_is_not_aws(world):
    with CannedServer(canned.garbage()) as imds:
        world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url())
        result = run_cli("check", "-o", "json")
    token = result.check("imds.token")
    assert (token["layer"], token["symptom"]) == ("http", "not-aws")
    assert result.stderr == ""


HUNDRED_MB = 100 * 2**20


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def test_a_100_mb_answer_is_read_only_up_to_a_bounded_prefix_and_memory_stays_flat(world):
    world.static_keys()
    assert run_cli("check").code == ExitStatus.OK  # warm-up: imports, service models, TLS contexts
    before = _max_rss_bytes()
    with CannedServer(canned.huge_body(HUNDRED_MB), tls=world.aws.pki.ca, hostnames=[STS, DDB]) as server:
        result = _steered(server.port)
        sent = server.bytes_sent
    growth = _max_rss_bytes() - before
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert (check["layer"], check["symptom"]) == ("http", "not-aws"), check
        http = check["evidence"]["http"]
        assert http["status"] == 200
        assert 0 < http["body_bytes"] <= Limits().max_body
        assert http["body_truncated"] is True
    assert sent < HUNDRED_MB / 4, f"the client drained {sent} bytes instead of hanging up"
    # Measured: ~20 MiB, copies of the 1 MiB prefix (botocore's parser error, its debug record,
    # the redactor); buffering the answer would add 100 MiB or more.
    assert growth < 50 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB reading a 100 MiB answer"


def test_a_100_mb_imds_credentials_document_is_cut_at_64_kib(world):
    with CannedServer(_imds_serving(canned.huge_body(HUNDRED_MB))) as imds:
        world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url())
        result = run_cli("check", "-o", "json")
    http = result.check("imds.credentials")["evidence"]["http"]
    assert http["body_bytes"] == 64 * 1024 and http["body_truncated"] is True


DEADLINE = 2.0
DEADLINE_SLACK = 0.5  # the bound: the run ends within --deadline plus this


def test_a_slow_drip_answer_cannot_stretch_the_run_past_its_deadline(world):
    world.static_keys()
    drip = canned.slow_drip(size=1 << 20, interval=0.05)  # each byte in time, the body never ends
    with CannedServer(drip, tls=world.aws.pki.ca, hostnames=[STS, DDB]) as server:
        started = time.monotonic()
        result = _steered(server.port, "--deadline", str(DEADLINE))
        elapsed = time.monotonic() - started
    assert elapsed <= DEADLINE + DEADLINE_SLACK, f"run took {elapsed:.2f} s with --deadline {DEADLINE}"
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert (check["status"], check["layer"], check["symptom"]) == ("fail", "http", "deadline"), check


# --- Ctrl-C ------------------------------------------------------------------------------------


def _wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_ctrl_c_mid_run_exits_130_with_one_line_and_leaves_nothing_running(world):
    world.static_keys()
    with sockets.TlsStallServer() as stall:
        world.use(EGRESS_DOCTOR_CONNECT_TO=f":443:127.0.0.1:{stall.port}")
        process = subprocess.Popen(
            [sys.executable, "-m", "egress_doctor.cli", "check", "--deadline", "60", "--connect-timeout", "30"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert _wait_for(lambda: stall.connections > 0, 20), "the CLI never reached the stalled endpoint"
            time.sleep(0.5)  # mid-handshake: both API checks are blocked in the TLS stall
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == ExitStatus.INTERRUPTED, stderr.decode()
    assert stderr.decode() == "egress-doctor: interrupted\n"
    assert stdout == b""
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


# --- bugs: exit 3, a traceback only with -v, and redacted ---------------------------------------


def _buggy_call(run, credentials, call) -> None:
    raise RuntimeError(f"bug while holding the secret {ENV_SECRET_KEY}")


def test_a_bug_in_a_check_is_an_internal_error_without_traceback_and_without_secrets(world, monkeypatch):
    world.static_keys()
    monkeypatch.setattr("egress_doctor.probes.api.run_call", _buggy_call)
    result = run_cli("check")
    assert result.code == ExitStatus.INTERNAL
    assert result.stderr.splitlines() == [
        "egress-doctor: internal error: RuntimeError: bug while holding the secret <redacted>",
        "run again with -v for a (redacted) traceback",
    ]
    assert result.stdout == ""


def test_a_bug_in_a_check_shows_a_redacted_traceback_with_verbose(world, monkeypatch):
    world.static_keys()
    monkeypatch.setattr("egress_doctor.probes.api.run_call", _buggy_call)
    result = run_cli("check", "-v")
    assert result.code == ExitStatus.INTERNAL
    assert "Traceback (most recent call last)" in result.stderr
    assert "_buggy_call" in result.stderr
    assert ENV_SECRET_KEY not in result.stderr
