"""Every check egress-doctor runs, in one ordered table: the probes, the prediction of skipped
calls, the options of `check` and `serve`, the renderers and docs/checks.md all read it.

    spec("s3.head-bucket")   # CheckSpec(id, title, service, operation, option, needs, layer, ...)

A row is data plus, for the calls that take a resource, the function that turns the resource
the user named into the operation's parameters. Nothing registers itself on import; the order is
the order a run reports its checks in. Every operation is read-only and returns no secret value
(tests/test_registry.py walks botocore's model of each one to prove it): Secrets Manager is
asked DescribeSecret, never GetSecretValue; SSM DescribeParameters, never GetParameter; Lambda
GetFunctionConcurrency, because GetFunctionConfiguration returns the function's environment
variables. Importing this module is cheap (no botocore): `--help` builds options from it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from egress_doctor.model import Layer

if TYPE_CHECKING:
    from egress_doctor.aws.resources import Resource

Params = Callable[["Resource"], dict[str, Any]]
Found = Callable[[dict[str, Any], "Resource"], bool]


class Stage(enum.StrEnum):
    CREDENTIALS = "credentials"  # obtains credentials: when one fails, every API check is skipped
    API = "api"  # an AWS API call signed with those credentials


# What an API check needs before it can run: credentials from the credential stage.
NEEDS_CREDENTIALS = "credentials"
# The error code of a filtered list call (`found`) whose answer does not name the resource.
NOT_LISTED = "NotListed"


@dataclass(frozen=True)
class CheckSpec:
    """One kind of check. `title` is a str.format template over the check's fields (`{subject}`,
    `{service}`, `{operation}` …)."""

    id: str  # stable: what JSON, metrics and findings name; "{service}.{operation}" for --service
    title: str
    needs: str  # a check id that must have passed first, NEEDS_CREDENTIALS, or "" (runs first)
    layer: Layer  # the highest layer the check reaches (where an answer that is not a success lands)
    stage: Stage
    when: str  # when it runs, for docs/checks.md
    service: str | None = None  # botocore service name (None: metadata endpoints, offline checks)
    operation: str | None = None  # botocore operation name
    option: str | None = None  # the option of check/serve that asks for it ("--bucket")
    resource: str | None = None  # the kind of resource it takes (aws.resources.KINDS)
    forms: tuple[str, ...] = ()  # which spellings of the resource it takes (name, arn, url, …)
    params: Params | None = None  # the operation's parameters for a resource
    expect: str | None = None  # a key every AWS answer has (a 200 without it is not AWS)
    found: Found | None = None  # for filtered list calls: whether the answer names the resource


@dataclass(frozen=True)
class OptionSpec:
    """A resource option of `check` and `serve` (repeatable), and its key in a footprint file."""

    flag: str  # --bucket
    kind: str  # bucket (aws.resources.KINDS)
    metavar: str
    help: str
    config_key: str  # buckets


def _first_named(key: str, name_key: str) -> Found:
    def found(response: dict[str, Any], resource: Resource) -> bool:
        items = response.get(key) or []
        return any(isinstance(i, dict) and i.get(name_key) == resource.name for i in items)

    return found


def _log_group_params(r: Resource) -> dict[str, Any]:
    return {"logGroupNamePrefix": r.name, "limit": 1}


def _parameter_params(r: Resource) -> dict[str, Any]:
    return {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [r.name]}], "MaxResults": 1}


def _queue_name_params(r: Resource) -> dict[str, Any]:
    params: dict[str, Any] = {"QueueName": r.name}
    if r.account:
        params["QueueOwnerAWSAccountId"] = r.account
    return params


def _bucket_params(r: Resource) -> dict[str, Any]:
    return {"Bucket": r.text if r.form == "accesspoint" else r.name}  # an access point by its ARN


def _stream_params(r: Resource) -> dict[str, Any]:
    return {"StreamARN": r.text} if r.form == "arn" else {"StreamName": r.name}


_API = Stage.API
_CRED = Stage.CREDENTIALS
_ANY = NEEDS_CREDENTIALS

CHECKS: tuple[CheckSpec, ...] = (
    # --- the credential stage: the provider botocore's chain picks, then its own calls ---------
    CheckSpec("credentials.source", "credential source: {source}", "", Layer.CREDENTIALS, _CRED,
              "always (decided offline, nothing is sent)"),
    CheckSpec("imds.token", "IMDSv2 token (PUT /latest/api/token)", "credentials.source", Layer.API, _CRED,
              "the source is instance metadata", service="imds"),
    CheckSpec("imds.role", "IMDS role name (GET …/iam/security-credentials/)", "credentials.source", Layer.API,
              _CRED, "the source is instance metadata (after the token, or IMDSv1)", service="imds"),
    CheckSpec("imds.credentials", "IMDS credentials (GET …/iam/security-credentials/{role})", "imds.role",
              Layer.API, _CRED, "the source is instance metadata", service="imds"),
    CheckSpec("container.credentials", "{agent} (GET {url})", "credentials.source", Layer.API, _CRED,
              "the source is EKS Pod Identity or ECS", service="container"),
    CheckSpec("sts.assume-role-with-web-identity", "STS AssumeRoleWithWebIdentity (IRSA)", "credentials.source",
              Layer.API, _CRED, "the source is IRSA (unsigned call)", service="sts",
              operation="AssumeRoleWithWebIdentity", expect="Credentials"),
    # --- API calls, signed with those credentials ---------------------------------------------
    CheckSpec("sts.get-caller-identity", "STS GetCallerIdentity", _ANY, Layer.API, _API, "always",
              service="sts", operation="GetCallerIdentity", expect="Account"),
    CheckSpec("dynamodb.list-tables", "DynamoDB ListTables (Limit=1)", _ANY, Layer.API, _API,
              "no service and no resource named (the default footprint)", service="dynamodb",
              operation="ListTables", expect="TableNames"),
    CheckSpec("dynamodb.describe-table", "DynamoDB DescribeTable {subject}", _ANY, Layer.API, _API,
              "one per --table", service="dynamodb", operation="DescribeTable", option="--table",
              resource="table", forms=("name", "arn"), params=lambda r: {"TableName": r.text}, expect="Table"),
    CheckSpec("s3.head-bucket", "S3 HeadBucket {subject}", _ANY, Layer.API, _API, "one per --bucket",
              service="s3", operation="HeadBucket", option="--bucket", resource="bucket",
              forms=("name", "accesspoint"), params=_bucket_params),
    CheckSpec("sqs.get-queue-url", "SQS GetQueueUrl {subject}", _ANY, Layer.API, _API,
              "one per --queue given by name or ARN", service="sqs", operation="GetQueueUrl", option="--queue",
              resource="queue", forms=("name", "arn"),
              params=_queue_name_params, expect="QueueUrl"),
    CheckSpec("sqs.get-queue-attributes", "SQS GetQueueAttributes {subject}", _ANY, Layer.API, _API,
              "one per --queue given by URL", service="sqs", operation="GetQueueAttributes", option="--queue",
              resource="queue", forms=("url",),
              params=lambda r: {"QueueUrl": r.text, "AttributeNames": ["QueueArn"]}, expect="Attributes"),
    CheckSpec("sns.get-topic-attributes", "SNS GetTopicAttributes {subject}", _ANY, Layer.API, _API,
              "one per --topic", service="sns", operation="GetTopicAttributes", option="--topic", resource="topic",
              forms=("arn",), params=lambda r: {"TopicArn": r.text}, expect="Attributes"),
    CheckSpec("secretsmanager.describe-secret", "Secrets Manager DescribeSecret {subject}", _ANY, Layer.API, _API,
              "one per --secret (never a call that returns the value)", service="secretsmanager",
              operation="DescribeSecret", option="--secret", resource="secret", forms=("name", "arn"),
              params=lambda r: {"SecretId": r.text}, expect="ARN"),
    CheckSpec("kms.describe-key", "KMS DescribeKey {subject}", _ANY, Layer.API, _API, "one per --key",
              service="kms", operation="DescribeKey", option="--key", resource="key",
              forms=("id", "arn", "alias"), params=lambda r: {"KeyId": r.text}, expect="KeyMetadata"),
    CheckSpec("ssm.describe-parameters", "SSM DescribeParameters {subject}", _ANY, Layer.API, _API,
              "one per --parameter (filtered by name; never the value)", service="ssm",
              operation="DescribeParameters", option="--parameter", resource="parameter", forms=("name",),
              params=_parameter_params, expect="Parameters", found=_first_named("Parameters", "Name")),
    CheckSpec("kinesis.describe-stream-summary", "Kinesis DescribeStreamSummary {subject}", _ANY, Layer.API, _API,
              "one per --stream", service="kinesis", operation="DescribeStreamSummary", option="--stream",
              resource="stream", forms=("name", "arn"), params=_stream_params, expect="StreamDescriptionSummary"),
    CheckSpec("lambda.get-function-concurrency", "Lambda GetFunctionConcurrency {subject}", _ANY, Layer.API, _API,
              "one per --function (GetFunctionConfiguration would return the environment variables)",
              service="lambda", operation="GetFunctionConcurrency", option="--function", resource="function",
              forms=("name", "arn"), params=lambda r: {"FunctionName": r.text}),
    CheckSpec("logs.describe-log-groups", "CloudWatch Logs DescribeLogGroups {subject}", _ANY, Layer.API, _API,
              "one per --log-group", service="logs", operation="DescribeLogGroups", option="--log-group",
              resource="log-group", forms=("name", "arn"), params=_log_group_params, expect="logGroups",
              found=_first_named("logGroups", "logGroupName")),
    CheckSpec("{service}.{operation}", "{service_title} {operation}{page}", _ANY, Layer.API, _API,
              "one per --service: the cheapest read-only call that needs no resource (aws.operations)",
              option="--service"),
)

BY_ID: Mapping[str, CheckSpec] = MappingProxyType({c.id: c for c in CHECKS})
SERVICE_CHECK = BY_ID["{service}.{operation}"]

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("--table", "table", "NAME|ARN", "DynamoDB table: DescribeTable", "tables"),
    OptionSpec("--bucket", "bucket", "NAME|ACCESS-POINT-ARN",
               "S3 bucket: HeadBucket at the host the SDK addresses it by", "buckets"),
    OptionSpec("--queue", "queue", "NAME|URL|ARN", "SQS queue: GetQueueUrl (name, ARN) or GetQueueAttributes (URL)",
               "queues"),
    OptionSpec("--secret", "secret", "ID|ARN", "Secrets Manager secret: DescribeSecret (never its value)", "secrets"),
    OptionSpec("--topic", "topic", "ARN", "SNS topic: GetTopicAttributes", "topics"),
    OptionSpec("--key", "key", "ID|ARN|alias/NAME", "KMS key: DescribeKey", "keys"),
    OptionSpec("--parameter", "parameter", "NAME", "SSM parameter: DescribeParameters filtered by name (never its "
               "value)", "parameters"),
    OptionSpec("--stream", "stream", "NAME|ARN", "Kinesis stream: DescribeStreamSummary", "streams"),
    OptionSpec("--function", "function", "NAME|ARN", "Lambda function: GetFunctionConcurrency", "functions"),
    OptionSpec("--log-group", "log-group", "NAME|ARN", "CloudWatch Logs log group: DescribeLogGroups", "logGroups"),
)


def spec(check_id: str) -> CheckSpec:
    """The row of `check_id`; an id of a --service check (`s3.list-buckets`) is the generic row's."""
    found = BY_ID.get(check_id)
    if found is not None:
        return found
    if "." in check_id:
        return SERVICE_CHECK
    raise KeyError(f"{check_id} is not a check")


def title(check_id: str, **fields: object) -> str:
    return spec(check_id).title.format(**fields)


def for_resource(kind: str, form: str) -> CheckSpec:
    """The row that checks a resource of `kind` written in `form` (a queue URL → GetQueueAttributes)."""
    for row in CHECKS:
        if row.resource == kind and form in row.forms:
            return row
    raise KeyError(f"no check takes a {kind} given as {form}")


def stage_of(check_id: str) -> Stage:
    return spec(check_id).stage


def option(kind: str) -> OptionSpec:
    return next(o for o in OPTIONS if o.kind == kind)
