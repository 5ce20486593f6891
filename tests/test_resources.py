"""Resources as the user names them: the spellings each AWS API takes are read (and their region
and account kept), and what the service would refuse is a one-line usage error."""

from __future__ import annotations

import pytest

from egress_doctor.aws.resources import bucket_name_problem, parse
from egress_doctor.validate import UsageError


@pytest.mark.parametrize(
    ("kind", "text", "form", "name", "region", "account"),
    [
        ("table", "invoices", "name", "invoices", None, None),
        ("table", "arn:aws:dynamodb:eu-west-1:111122223333:table/invoices", "arn", "invoices", "eu-west-1",
         "111122223333"),
        ("bucket", "invoice-archive", "name", "invoice-archive", None, None),
        ("bucket", "arn:aws:s3:::invoice-archive", "name", "invoice-archive", None, None),
        ("bucket", "arn:aws:s3:us-west-2:111122223333:accesspoint/reports", "accesspoint", "reports", "us-west-2",
         "111122223333"),
        ("queue", "billing-events", "name", "billing-events", None, None),
        ("queue", "billing-events.fifo", "name", "billing-events.fifo", None, None),
        ("queue", "https://sqs.eu-west-1.amazonaws.com/111122223333/billing-events", "url", "billing-events",
         "eu-west-1", "111122223333"),
        ("queue", "https://eu-west-1.queue.amazonaws.com/111122223333/billing-events", "url", "billing-events",
         "eu-west-1", "111122223333"),
        ("queue", "arn:aws:sqs:ap-southeast-2:111122223333:billing-events", "arn", "billing-events",
         "ap-southeast-2", "111122223333"),
        ("secret", "billing/db", "name", "billing/db", None, None),
        ("secret", "arn:aws:secretsmanager:us-east-1:111122223333:secret:billing/db-AbCdEf", "arn",
         "billing/db-AbCdEf", "us-east-1", "111122223333"),
        ("topic", "arn:aws:sns:us-east-1:111122223333:billing", "arn", "billing", "us-east-1", "111122223333"),
        ("key", "alias/billing", "alias", "alias/billing", None, None),
        ("key", "1234abcd-12ab-34cd-56ef-1234567890ab", "id", "1234abcd-12ab-34cd-56ef-1234567890ab", None, None),
        ("key", "mrk-1234abcd12ab34cd56ef1234567890ab", "id", "mrk-1234abcd12ab34cd56ef1234567890ab", None, None),
        ("key", "arn:aws:kms:eu-west-1:111122223333:alias/billing", "arn", "alias/billing", "eu-west-1",
         "111122223333"),
        ("parameter", "/billing/db-url", "name", "/billing/db-url", None, None),
        ("stream", "events", "name", "events", None, None),
        ("stream", "arn:aws:kinesis:us-east-1:111122223333:stream/events", "arn", "events", "us-east-1",
         "111122223333"),
        ("function", "resize", "name", "resize", None, None),
        ("function", "arn:aws:lambda:eu-west-1:111122223333:function:resize:live", "arn", "resize", "eu-west-1",
         "111122223333"),
        ("log-group", "/app/billing", "name", "/app/billing", None, None),
        ("log-group", "arn:aws:logs:us-east-1:111122223333:log-group:/app/billing:*", "arn", "/app/billing",
         "us-east-1", "111122223333"),
    ],
)
def test_each_spelling_an_api_accepts_is_read_with_its_region_and_account(kind, text, form, name, region, account):
    resource = parse(kind, text)
    assert (resource.form, resource.name, resource.region, resource.account) == (form, name, region, account)
    assert resource.text == text


@pytest.mark.parametrize(
    ("kind", "text", "says"),
    [
        ("bucket", "Invoice_Archive", "S3 bucket names are"),
        ("bucket", "ab", "S3 bucket names are"),
        ("bucket", "192.168.1.10", "IP address"),
        ("bucket", "my..bucket", "adjacent periods"),
        ("bucket", "xn--bucket", "prefix"),
        ("bucket", "data-s3alias", "suffix"),
        ("bucket", "arn:aws:s3:us-west-2:111122223333:bucket/x", "access point"),
        ("queue", "billing events", "queue name"),
        ("queue", "http://sqs.eu-west-1.amazonaws.com/111122223333/q", "queue URL"),
        ("queue", "https://sqs.eu-west-1.amazonaws.com/12345/q", "queue URL"),
        ("queue", "https://example.com/111122223333/q", "queue URL"),
        ("queue", "https://sqs.eu-west-1.amazonaws.com:99999/111122223333/q", "queue URL"),
        ("queue", "arn:aws:sqs:eu-west-1:111122223333", "SQS queue ARN"),
        ("secret", "billing db", "secret id"),
        ("secret", "arn:aws:secretsmanager:us-east-1:111122223333:billing/db", "Secrets Manager ARN"),
        ("topic", "billing", "SNS topic ARN"),
        ("topic", "arn:aws:sns:us-east-1:1111:billing", "12 digits"),
        ("topic", "arn:aws:sns:useast1:111122223333:billing", "not a region"),
        ("topic", "arn:aws:sqs:us-east-1:111122223333:billing", "SNS topic ARN"),
        ("key", "billing", "KMS key"),
        ("key", "alias/", "KMS alias"),
        ("key", "arn:aws:kms:us-east-1:111122223333:key/not-a-uuid", "KMS ARN"),
        ("parameter", "billing db", "SSM parameter name"),
        ("parameter", "aws-config", "may not start with aws or ssm"),
        ("stream", "events!", "Kinesis stream name"),
        ("function", "resize.py", "Lambda function name"),
        ("function", "arn:aws:lambda:us-east-1:111122223333:layer:x", "Lambda function ARN"),
        ("log-group", "app billing", "log group name"),
        ("table", "ab", "invalid table name"),
        ("table", "arn:aws:dynamodb:us-east-1:123:table/orders", "invalid table ARN"),
        ("secret", "  ", "empty"),
    ],
)
def test_what_the_service_would_refuse_is_a_one_line_usage_error(kind: str, text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse(kind, text)
    message = str(raised.value)
    assert says in message and "\n" not in message


def test_a_valid_bucket_name_has_no_problem() -> None:
    assert bucket_name_problem("invoice-archive.2024") is None
