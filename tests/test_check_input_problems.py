"""Input problems are the user's, never "a bug in egress-doctor": each is a usage error (exit 2, one
line naming the variable, file or flag, nothing probed, no traceback even with -v) or a finding
about the answer that caused it."""

from __future__ import annotations

import pytest

from egress_doctor.model import ExitStatus
from tests.canned import CannedServer, Reply
from tests.checkrun import REGION, aws_world, run_cli
from tests.test_check_bad_input import assert_nothing_probed, assert_usage_error

DDB = f"dynamodb.{REGION}.amazonaws.com"


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("", "invalid region '' (AWS_DEFAULT_REGION)", id="empty"),
        pytest.param("us-east-1; rm", "invalid region 'us-east-1; rm' (AWS_DEFAULT_REGION)", id="shell-junk"),
    ],
)
def test_a_region_variable_botocore_would_misuse_is_a_usage_error_naming_it(world, value, fragment):
    world.use(AWS_DEFAULT_REGION=value)
    for args in (("check",), ("check", "-v")):
        assert_usage_error(run_cli(*args), fragment)
    assert_nothing_probed(world)


def test_a_malformed_region_in_the_config_file_names_the_file(world):
    world.drop("AWS_DEFAULT_REGION")
    (world.tmp / "no-aws-config").write_text("[default]\nregion = us east 1\n")
    assert_usage_error(run_cli("check"), f"(region in the config file {world.tmp / 'no-aws-config'})")
    assert_nothing_probed(world)


def test_an_empty_region_flag_is_refused_not_ignored(world):
    assert_usage_error(run_cli("check", "--region", ""), "invalid region '' (--region)")
    assert_nothing_probed(world)


def test_a_credentials_file_line_without_equals_is_a_usage_error_naming_the_file(world):
    world.drop("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    credentials = world.tmp / "no-aws-credentials"
    credentials.write_text("[default]\naws_access_key_id\n")
    result = run_cli("check", "-v")
    assert_usage_error(result, f"ConfigParseError: Unable to parse config file: {credentials}")
    assert "Traceback" not in result.stderr
    assert_nothing_probed(world)


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1]:99999", "http://[fe80::1%]:15000"])
def test_an_unparsable_envoy_admin_url_is_a_usage_error_even_with_verbose(world, url):
    result = run_cli("check", "-v", "--envoy-admin", url)
    assert_usage_error(result, f"--envoy-admin: {url!r} is not an http://HOST:PORT URL")
    assert_nothing_probed(world)


def test_a_dynamodb_answer_that_is_not_utf8_is_a_reply_that_is_not_aws_not_an_internal_error(world):
    body = b"\xff\xfe{\"TableNames\": []}"
    reply = Reply(200, (("content-type", "application/x-amz-json-1.0"), ("x-amzn-requestid", "r-1")), body)
    with CannedServer(reply, tls=world.aws.pki.ca, hostnames=[DDB]) as server:
        result = run_cli("check", "-o", "json", "--connect-to", f"{DDB}:443:127.0.0.1:{server.port}")
    assert result.code == ExitStatus.CHECK_FAILED, result.stderr
    check = result.check("dynamodb.list-tables")
    assert (check["status"], check["layer"], check["symptom"]) == ("fail", "http", "not-aws"), check
    assert "not UTF-8" in check["reason"]
    codes = [f["code"] for f in result.json()["findings"]]
    assert "ED902" not in codes, codes


@pytest.mark.parametrize("flag", ["--deadline", "--connect-timeout", "--read-timeout"])
@pytest.mark.parametrize(("value", "seconds"), [("5s", 5.0), ("1500ms", 1.5), ("1m", 60.0), ("2.5", 2.5)])
def test_deadline_and_timeouts_take_durations_like_interval(world, flag, value, seconds):
    result = run_cli("check", "-o", "json", "--no-envoy-admin", flag, value)
    assert result.code == ExitStatus.OK, result.stderr
    if flag == "--deadline":
        assert result.json()["deadline_ms"] == seconds * 1000
