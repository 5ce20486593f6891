"""`check` with the app's footprint against the fakes: each service and resource at the host boto3
really uses (S3's many forms, SQS's JSON protocol, ARNs and queue URLs in other regions), the
footprint file, and bad input that stops before anything is probed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from egress_doctor.aws.resources import parse
from egress_doctor.model import ExitStatus
from tests.checkrun import REGION, CliResult, World, aws_world, run_cli

VPCE_SQS = "vpce-0a1b2c3d4e5f-abcdefgh.sqs.us-east-1.vpce.amazonaws.com"
APP = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events", "--secret", "billing/db")


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path, extra_names=(VPCE_SQS,)) as world:
        world.static_keys()
        world.aws.create_resources([parse("table", "invoices"), parse("bucket", "invoice-archive"),
                                    parse("queue", "billing-events"), parse("secret", "billing/db")], REGION)
        yield world


def host_of(result: CliResult, check_id: str, subject: str | None = None) -> str:
    return str(result.check(check_id, subject)["target"]["host"])


def failing(result: CliResult) -> list[str]:
    return [f"{c['id']}: {c['reason']}" for c in result.json()["checks"] if c["status"] != "pass"]


def assert_usage_error(result: CliResult, fragment: str, world: World) -> None:
    assert result.code == ExitStatus.USAGE, (result.code, result.stderr, result.stdout[:500])
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert world.aws.requests == []


def test_the_newcomers_command_checks_each_resource_at_its_exact_host_and_passes(world: World) -> None:
    result = run_cli("check", "-o", "json", *APP)
    assert result.code == 0, failing(result)
    assert [c["id"] for c in result.json()["checks"]] == [
        "credentials.source", "sts.get-caller-identity", "dynamodb.describe-table", "s3.head-bucket",
        "sqs.get-queue-url", "secretsmanager.describe-secret"]
    assert host_of(result, "s3.head-bucket") == "invoice-archive.s3.amazonaws.com"
    assert host_of(result, "sqs.get-queue-url") == f"sqs.{REGION}.amazonaws.com"
    assert host_of(result, "secretsmanager.describe-secret") == f"secretsmanager.{REGION}.amazonaws.com"
    seen = {r.operation or f"{r.method} {r.service}": r for r in world.aws.requests}
    assert seen["HEAD s3"].host == "invoice-archive.s3.amazonaws.com"
    assert seen["GetQueueUrl"].target == "AmazonSQS.GetQueueUrl"  # SQS's JSON protocol, not the query API
    assert "GetSecretValue" not in seen and "DescribeSecret" in seen


def test_the_footprint_file_asks_for_the_same_checks_as_the_options(world: World, tmp_path: Path) -> None:
    config = tmp_path / "footprint.yaml"
    config.write_text("region: us-east-1\ntables: [invoices]\nbuckets: [invoice-archive]\n"
                      "queues: [billing-events]\nsecrets: [billing/db]\n")
    from_file = run_cli("check", "-o", "json", "--config", str(config))
    from_options = run_cli("check", "-o", "json", *APP)
    assert from_file.code == 0, failing(from_file)
    assert [(c["id"], c["subject"]) for c in from_file.json()["checks"]] == [
        (c["id"], c["subject"]) for c in from_options.json()["checks"]]


def test_options_add_to_the_file_from_the_environment_and_region_wins(world: World, tmp_path: Path) -> None:
    config = tmp_path / "footprint.yaml"
    config.write_text("region: eu-west-1\nbuckets: [invoice-archive]\n")
    world.use(EGRESS_DOCTOR_CONFIG=str(config))
    result = run_cli("check", "-o", "json", "--region", REGION, "--secret", "billing/db")
    assert result.code == 0, failing(result)
    assert result.json()["identity"]["region"] == REGION
    assert [c["id"] for c in result.json()["checks"]][-2:] == ["s3.head-bucket", "secretsmanager.describe-secret"]


def test_services_by_name_get_their_cheapest_read_only_call(world: World) -> None:
    result = run_cli("check", "-o", "json", "--service", "s3", "--service", "sqs", "--service", "kms",
                     "--service", "dynamodb")
    assert result.code == 0, failing(result)
    titles = {c["id"]: c["title"] for c in result.json()["checks"]}
    assert titles == {
        "credentials.source": "credential source: env",
        "sts.get-caller-identity": "STS GetCallerIdentity",
        "s3.list-buckets": "S3 ListBuckets (MaxBuckets=1)",
        "sqs.list-queues": "SQS ListQueues (MaxResults=1)",
        "kms.list-keys": "KMS ListKeys (Limit=1)",
        "dynamodb.list-tables": "DynamoDB ListTables (Limit=1)",
    }
    assert host_of(result, "s3.list-buckets") == "s3.amazonaws.com"


@pytest.mark.parametrize(
    ("env", "config", "host"),
    [
        ({}, "", "invoice-archive.s3.amazonaws.com"),
        ({"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "regional"}, "", f"invoice-archive.s3.{REGION}.amazonaws.com"),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, "", f"invoice-archive.s3-fips.{REGION}.amazonaws.com"),
        ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "", f"invoice-archive.s3.dualstack.{REGION}.amazonaws.com"),
        ({}, "s3 =\n  addressing_style = path\n", "s3.amazonaws.com"),
        ({}, "s3 =\n  use_accelerate_endpoint = true\n", "invoice-archive.s3-accelerate.amazonaws.com"),
    ],
    ids=["global-in-us-east-1", "regional-us-east-1", "fips", "dualstack", "path-style", "accelerate"],
)
def test_the_bucket_host_is_the_one_botocore_picks_for_the_apps_configuration(
        world: World, tmp_path: Path, env: dict[str, str], config: str, host: str) -> None:
    world.use(**env)
    if config:
        (tmp_path / "no-aws-config").write_text(f"[default]\n{config}")
    result = run_cli("check", "-o", "json", "--bucket", "invoice-archive")
    assert host_of(result, "s3.head-bucket") == host


def test_an_access_point_arn_is_checked_at_its_own_host_in_its_region(world: World) -> None:
    arn = "arn:aws:s3:us-west-2:111122223333:accesspoint/reports"
    result = run_cli("check", "-o", "json", "--bucket", arn)
    assert host_of(result, "s3.head-bucket", arn) == "reports-111122223333.s3-accesspoint.us-west-2.amazonaws.com"


def test_a_queue_url_in_another_region_is_checked_at_that_regions_host(world: World) -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/eu-events"
    world.aws.create_resources([parse("queue", url)], REGION)
    result = run_cli("check", "-o", "json", "--queue", url)
    assert result.code == 0, failing(result)
    assert host_of(result, "sqs.get-queue-attributes", url) == "sqs.eu-west-1.amazonaws.com"


def test_an_endpoint_url_for_a_vpc_interface_endpoint_is_the_host_checked(world: World) -> None:
    world.use(AWS_ENDPOINT_URL_SQS=f"https://{VPCE_SQS}")
    result = run_cli("check", "-o", "json", "--queue", "billing-events")
    assert result.code == 0, failing(result)
    assert host_of(result, "sqs.get-queue-url") == VPCE_SQS


def test_a_stream_arn_goes_to_kinesis_account_endpoint(world: World) -> None:
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/events"
    result = run_cli("check", "-o", "json", "--stream", arn)
    host = host_of(result, "kinesis.describe-stream-summary", arn)
    assert host == "123456789012.control-kinesis.us-east-1.amazonaws.com"


def test_skipped_calls_still_name_the_host_each_would_use(world: World) -> None:
    world.drop("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    world.use(AWS_WEB_IDENTITY_TOKEN_FILE=str(world.tmp / "missing-token"),
              AWS_ROLE_ARN="arn:aws:iam::111122223333:role/a")
    result = run_cli("check", "-o", "json", *APP)
    assert result.code == 1
    skipped = {c["id"]: c["target"]["host"] for c in result.json()["checks"] if c["status"] == "skip"}
    assert skipped == {
        "sts.get-caller-identity": f"sts.{REGION}.amazonaws.com",
        "dynamodb.describe-table": f"111122223333.ddb.{REGION}.amazonaws.com",
        "s3.head-bucket": "invoice-archive.s3.amazonaws.com",
        "sqs.get-queue-url": f"sqs.{REGION}.amazonaws.com",
        "secretsmanager.describe-secret": f"secretsmanager.{REGION}.amazonaws.com",
    }


def test_each_services_client_is_built_once_whatever_the_number_of_resources(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from egress_doctor.aws.session import ProbeSession

    built: list[tuple[str, Any]] = []
    original = ProbeSession._new_client

    def counting(self: ProbeSession, service: str, region: str | None, *args: Any) -> Any:
        built.append((service, region))
        return original(self, service, region, *args)

    monkeypatch.setattr(ProbeSession, "_new_client", counting)
    world.aws.create_resources([parse("bucket", "logs-archive")], REGION)
    result = run_cli("check", "-o", "json", "--bucket", "invoice-archive", "--bucket", "logs-archive",
                     "--service", "s3", "--secret", "billing/db", "--secret", "nope")
    assert [c["status"] for c in result.json()["checks"]].count("pass") == 6
    assert sorted(built) == [("s3", REGION), ("secretsmanager", REGION), ("sts", REGION)]



def test_no_garbage_collection_runs_during_a_check_and_it_runs_again_after(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    monkeypatch.setattr(gc, "callbacks", [*gc.callbacks, seen])
    kept = [object()]  # what the process froze itself stays frozen
    gc.freeze()
    try:
        result = run_cli("check", "-o", "json", *APP)
        assert failing(result) == []
        during = list(collections)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert during == []
    result = run_cli("check", "-o", "json", *APP)  # nothing frozen: the run's objects are left collectable
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    assert gc.collect() >= 0 and kept


# --- bad input: one line, exit 2, nothing probed -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--service", "dynamo"), "unknown service 'dynamo'"),
        (("--service", "s4"), "did you mean s3"),
        (("--bucket", "Invoice_Archive"), "invalid bucket name"),
        (("--queue", "https://sqs.eu-west-1.amazonaws.com/1/q"), "invalid SQS queue URL"),
        (("--topic", "billing"), "invalid SNS topic ARN"),
        (("--secret", "arn:aws:secretsmanager:us-east-1:1111:secret:x"), "12 digits"),
        (("--key", "not-a-key"), "invalid KMS key"),
        (("--config", "/nonexistent/footprint.yaml"), "cannot read it"),
    ],
    ids=["unknown-service", "close-match", "bucket", "queue-url", "topic", "secret-arn", "key", "no-file"],
)
def test_bad_footprint_input_is_one_line_exit_2_and_nothing_is_probed(world: World, args: tuple[str, ...],
                                                                      fragment: str) -> None:
    assert_usage_error(run_cli("check", *args), fragment, world)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("buckets: [ok-bucket]\nbukets: [typo]\n", "unknown key 'bukets'"),
        ("buckets: invoice-archive\n", "buckets must be a list of strings"),
        ("region: 1\n", "region must be a string"),
        ("- buckets\n", "expected a mapping"),
        ("buckets: [a, [b]\n", "not valid YAML"),
        ("buckets: [Bad_Name]\n", "invalid bucket name"),
        ("region: us east\n", "invalid region"),
    ],
)
def test_a_bad_footprint_file_is_one_line_exit_2_and_nothing_is_probed(
        world: World, tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "footprint.yaml"
    config.write_text(text)
    assert_usage_error(run_cli("check", "--config", str(config)), fragment, world)


def test_serve_takes_the_footprint_options_and_refuses_bad_ones_before_listening(world: World) -> None:
    result = run_cli("serve", "--listen", "127.0.0.1:0", "--bucket", "Bad_Name")
    assert result.code == ExitStatus.USAGE and "invalid bucket name" in result.stderr

