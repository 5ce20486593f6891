"""The lab's fake AWS for the app's other services: names for each host, resources created in moto,
errors in each service's own format, and S3's answer to a request signed for another region."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from egress_doctor.aws.resources import Resource, parse
from egress_doctor.lab.fakes import FakeAws, LabPKI
from egress_doctor.net.connect_to import ConnectToMap, parse_connect_to
from egress_doctor.net.dial import DialRecorder, dial_scope, install
from tests.test_lab_fakes import tls_handshake

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=3)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAws]:
    with FakeAws(LabPKI(tmp_path_factory.mktemp("pki")), regions=("us-east-1", "eu-west-1")) as fake:
        fake.create_resources([parse("bucket", "invoice-archive"), parse("queue", "billing-events"),
                               parse("key", "alias/billing"), parse("log-group", "/app/billing"),
                               Resource("bucket", "eu-archive", "name", "eu-archive", region="eu-west-1")])
        yield fake


@pytest.fixture
def clean(aws: FakeAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAws:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    aws.clear_answers()
    aws.clear_requests()
    return aws


def by_name(aws: FakeAws, service: str, region: str = "us-east-1", **config: Any) -> Any:
    """A client under the real AWS names, steered at the fake by a connect-to rule (SNI and Host kept)."""
    install()
    return boto3.session.Session().client(
        service, region_name=region, verify=str(aws.pki.ca_bundle_path), aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", config=ONE_ATTEMPT.merge(Config(**config)))


def steered(aws: FakeAws) -> Any:
    return dial_scope(connect_to=ConnectToMap([parse_connect_to(f":443:127.0.0.1:{aws.port}")]),
                      recorder=DialRecorder(), deadline=None)


@pytest.mark.parametrize(
    "server_name",
    ["invoice-archive.s3.amazonaws.com", "invoice-archive.s3.eu-west-1.amazonaws.com", "s3.amazonaws.com",
     "sqs.us-east-1.amazonaws.com", "secretsmanager.eu-west-1.amazonaws.com", "kms-fips.us-east-1.amazonaws.com",
     "logs.us-east-1.api.aws", "invoice-archive.s3-fips.us-east-1.amazonaws.com",
     "invoice-archive.s3.dualstack.eu-west-1.amazonaws.com", "invoice-archive.s3-accelerate.amazonaws.com",
     "reports-111122223333.s3-accesspoint.eu-west-1.amazonaws.com",
     "111122223333.control-kinesis.us-east-1.amazonaws.com"],
)
def test_the_certificate_covers_every_host_botocore_uses_for_the_services(aws: FakeAws, server_name: str) -> None:
    tls_handshake(("127.0.0.1", aws.port), aws.pki.client_context(), server_name)


def test_a_name_outside_the_regions_is_not_covered(aws: FakeAws) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(("127.0.0.1", aws.port), aws.pki.client_context(), "sqs.ap-south-1.amazonaws.com")


def test_created_resources_are_found_under_their_real_names(clean: FakeAws) -> None:
    with steered(clean):
        assert by_name(clean, "s3").head_bucket(Bucket="invoice-archive")["BucketRegion"] == "us-east-1"
        assert by_name(clean, "sqs").get_queue_url(QueueName="billing-events")["QueueUrl"].endswith("/billing-events")
        assert by_name(clean, "kms").describe_key(KeyId="alias/billing")["KeyMetadata"]["Enabled"]
        groups = by_name(clean, "logs").describe_log_groups(logGroupNamePrefix="/app/billing")["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/app/billing"]
    assert [r.host for r in clean.requests][:1] == ["invoice-archive.s3.amazonaws.com"]


def test_s3_answers_a_request_signed_for_the_wrong_region_like_s3_and_botocore_follows(clean: FakeAws) -> None:
    seen: list[str] = []
    s3 = by_name(clean, "s3")
    s3.meta.events.register("before-send", lambda request, **_: seen.append(request.url))
    with steered(clean):
        answer = s3.head_bucket(Bucket="eu-archive")
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    assert seen == ["https://eu-archive.s3.amazonaws.com/", "https://eu-archive.s3.eu-west-1.amazonaws.com/"]
    first, second = clean.requests
    assert (first.status, first.injected, second.status) == (400, True, 200)  # global endpoint: 400


def test_a_regional_endpoint_of_the_wrong_region_answers_301(clean: FakeAws) -> None:
    with steered(clean):
        by_name(clean, "s3", region="us-east-1", s3={"us_east_1_regional_endpoint": "regional"}).head_bucket(
            Bucket="eu-archive")
    assert [r.status for r in clean.requests] == [301, 200]


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        ("s3", lambda c: c.head_bucket(Bucket="invoice-archive"), "403"),  # HEAD: the status is the code
        ("s3", lambda c: c.list_buckets(), "AccessDenied"),
        ("sqs", lambda c: c.get_queue_url(QueueName="billing-events"), "AccessDeniedException"),
        ("kms", lambda c: c.describe_key(KeyId="alias/billing"), "AccessDeniedException"),
        ("sns", lambda c: c.list_topics(), "AccessDenied"),
        ("lambda", lambda c: c.get_function_concurrency(FunctionName="resize"), "AccessDeniedException"),
    ],
)
def test_an_injected_error_reaches_botocore_in_the_services_own_format(
        clean: FakeAws, service: str, call: Any, code: str) -> None:
    clean.answer(service, status=403)
    with steered(clean), pytest.raises(ClientError) as raised:
        call(by_name(clean, service))
    response = raised.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"].get("RequestId") or response["ResponseMetadata"]["HTTPHeaders"].get(
        "x-amzn-requestid")


def test_the_lab_cannot_create_a_kms_key_by_id_and_says_nothing_was_made(clean: FakeAws) -> None:
    made = clean.create_resources([parse("key", "1234abcd-12ab-34cd-56ef-1234567890ab")])
    assert made == []

