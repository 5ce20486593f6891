"""The AWS resources an app uses, as the user names them: validated, and taken apart.

    parse("queue", "https://sqs.eu-west-1.amazonaws.com/111122223333/billing-events")
    # Resource(kind="queue", form="url", name="billing-events", region="eu-west-1", account=…)

Each kind accepts the spellings its AWS API accepts (a name, an ARN, a queue URL, a KMS alias)
and refuses what the service would refuse, so that a typo is a one-line usage error (exit 2)
before anything is probed. A resource whose ARN or URL names a region is checked in that region:
that is the host the app must reach for it (but a table ARN is called in the client's region, as
botocore does: probes.plan.call_region). Pure: no botocore (ARN and URL hosts are read with
`aws.hosts`, which loads botocore's data on first use).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from egress_doctor.validate import UsageError

KINDS = ("table", "bucket", "queue", "secret", "topic", "key", "parameter", "stream", "function", "log-group")

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z0-9-]+):(?P<region>[^:]*):(?P<account>[^:]*):"
                  r"(?P<resource>.+)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_QUEUE = re.compile(r"^[a-zA-Z0-9_\-]{1,80}(\.fifo)?$")
_SECRET = re.compile(r"^[a-zA-Z0-9/_+=.@\-]{1,512}$")
_TOPIC = re.compile(r"^[a-zA-Z0-9_\-]{1,256}(\.fifo)?$")
_KEY_ID = re.compile(r"^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_ALIAS = re.compile(r"^alias/[a-zA-Z0-9/_\-]{1,250}$")
_PARAMETER = re.compile(r"^[a-zA-Z0-9_.\-/]{1,2048}$")
_STREAM = re.compile(r"^[a-zA-Z0-9_.\-]{1,128}$")
_FUNCTION = re.compile(r"^[a-zA-Z0-9\-_]{1,64}$")
_LOG_GROUP = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_ACCESS_POINT = re.compile(r"^[a-z0-9]([a-z0-9\-]{1,48}[a-z0-9])?$")


@dataclass(frozen=True)
class Resource:
    """One resource the app uses."""

    kind: str  # KINDS
    text: str  # as given (what the call is made with)
    form: str  # name | arn | url | id | alias | accesspoint
    name: str  # the short name shown in titles (a bucket, a queue's name, a secret's name…)
    region: str | None = None  # the region its ARN or URL names (where the call goes: probes.plan.call_region)
    account: str | None = None  # the account its ARN or URL names


def parse(kind: str, text: str) -> Resource:
    """The resource `text` names, or UsageError with one line that says what is expected."""
    value = text.strip()
    if kind not in _PARSERS:
        raise ValueError(f"unknown resource kind {kind!r}")
    if not value:
        raise UsageError(f"empty {kind} name")
    return _PARSERS[kind](value)


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str


def parse_arn(text: str, service: str, what: str, label: str) -> Arn:
    """An ARN of `service` with a region and a 12-digit account; `label` names it in messages."""
    match = _ARN.match(text)
    example = f"arn:aws:{service}:<region>:<12-digit account>:{what}"
    if match is None or match["service"] != service:
        raise UsageError(f"invalid {label} ARN {text!r}: expected {example}")
    arn = Arn(match["partition"], match["service"], match["region"], match["account"], match["resource"])
    if not _REGION.match(arn.region):
        raise UsageError(f"invalid {label} ARN {text!r}: {arn.region!r} is not a region (expected {example})")
    if not _ACCOUNT.match(arn.account):
        raise UsageError(f"invalid {label} ARN {text!r}: the account must be 12 digits (expected {example})")
    return arn


def _require(pattern: re.Pattern[str], value: str, message: str) -> None:
    if not pattern.match(value):
        raise UsageError(message)


def _table(value: str) -> Resource:
    from egress_doctor.validate import table

    table(value)  # the rules (and messages) `analyze --table` uses too
    if value.startswith("arn:"):
        arn = parse_arn(value, "dynamodb", "table/<name>", "table")
        return Resource("table", value, "arn", arn.resource.removeprefix("table/"), arn.region, arn.account)
    return Resource("table", value, "name", value)


def bucket_name_problem(name: str) -> str | None:
    """Why S3 refuses `name` as a general purpose bucket name (its naming rules), or None."""
    if not _BUCKET.match(name):
        return "3-63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no two adjacent periods, and no period next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "not formatted like an IP address"
    except ValueError:
        pass
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return "no prefix xn--, sthree- or amzn-s3-demo-"
    if name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "no suffix -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3"
    return None


def _bucket(value: str) -> Resource:
    if value.startswith("arn:"):
        if value.startswith(("arn:aws:s3:::", "arn:aws-cn:s3:::", "arn:aws-us-gov:s3:::")):
            name = value.split(":::", 1)[1]  # a bucket ARN names the bucket: HeadBucket takes the name
            problem = bucket_name_problem(name)
            if problem:
                raise UsageError(f"invalid bucket ARN {value!r}: the bucket name must be {problem}")
            return Resource("bucket", value, "name", name)
        arn = parse_arn(value, "s3", "accesspoint/<name>", "S3 access point")
        point = arn.resource.removeprefix("accesspoint/")
        if not arn.resource.startswith("accesspoint/") or not _ACCESS_POINT.match(point):
            raise UsageError(f"invalid S3 access point ARN {value!r}: expected "
                             "arn:aws:s3:<region>:<account>:accesspoint/<name> (3-50 lowercase letters, digits, '-')")
        return Resource("bucket", value, "accesspoint", point, arn.region, arn.account)
    problem = bucket_name_problem(value)
    if problem:
        raise UsageError(f"invalid bucket name {value!r}: S3 bucket names are {problem}")
    return Resource("bucket", value, "name", value)


def _queue(value: str) -> Resource:
    if value.startswith("arn:"):
        arn = parse_arn(value, "sqs", "<queue name>", "SQS queue")
        _require(_QUEUE, arn.resource, f"invalid SQS queue ARN {value!r}: the queue name must be 1-80 letters, "
                 "digits, '-' or '_' (and .fifo)")
        return Resource("queue", value, "arn", arn.resource, arn.region, arn.account)
    if "://" in value:
        return _queue_url(value)
    _require(_QUEUE, value, f"invalid SQS queue name {value!r}: 1-80 letters, digits, '-' or '_' (and .fifo), "
             "or a queue URL https://sqs.<region>.amazonaws.com/<account>/<name>")
    return Resource("queue", value, "name", value)


def _queue_url(value: str) -> Resource:
    from egress_doctor.aws.hosts import GLOBAL, classify

    expected = "expected https://sqs.<region>.amazonaws.com/<12-digit account>/<queue name>"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise UsageError(f"invalid SQS queue URL {value!r}: {expected}") from None
    path = parts.path.strip("/").split("/")
    found = classify(parts.hostname or "")
    region = found.region if found else None
    if found is not None and found.service == "queue" and found.resource:  # legacy <region>.queue.amazonaws.com
        region = found.resource
    if (parts.scheme != "https" or found is None or found.service not in ("sqs", "queue") or len(path) != 2
            or not _ACCOUNT.match(path[0]) or not _QUEUE.match(path[1]) or parts.query or parts.fragment):
        raise UsageError(f"invalid SQS queue URL {value!r}: {expected}")
    return Resource("queue", value, "url", path[1], None if region == GLOBAL else region, path[0])


def _name_or_arn(kind: str, value: str, service: str, prefix: str, pattern: re.Pattern[str], label: str,
                 name_message: str, drop_suffix: str = "") -> Resource:
    """A resource named by its name, or by an ARN whose resource part is `<prefix><name>`."""
    if value.startswith("arn:"):
        arn = parse_arn(value, service, f"{prefix}<name>", label)
        name = arn.resource.removeprefix(prefix).removesuffix(drop_suffix)
        if not arn.resource.startswith(prefix) or not pattern.match(name):
            raise UsageError(f"invalid {label} ARN {value!r}: expected "
                             f"arn:aws:{service}:<region>:<account>:{prefix}<name>")
        return Resource(kind, value, "arn", name, arn.region, arn.account)
    _require(pattern, value, name_message)
    return Resource(kind, value, "name", value)


def _secret(value: str) -> Resource:
    return _name_or_arn("secret", value, "secretsmanager", "secret:", _SECRET, "Secrets Manager",
                        f"invalid secret id {value!r}: 1-512 letters, digits and /_+=.@-, or a secret ARN")


def _topic(value: str) -> Resource:
    arn = parse_arn(value, "sns", "<topic name>", "SNS topic")
    _require(_TOPIC, arn.resource, f"invalid SNS topic ARN {value!r}: the topic name must be 1-256 letters, "
             "digits, '-' or '_' (and .fifo)")
    return Resource("topic", value, "arn", arn.resource, arn.region, arn.account)


def _key(value: str) -> Resource:
    if value.startswith("arn:"):
        arn = parse_arn(value, "kms", "key/<key id> or alias/<name>", "KMS")
        kind, _, rest = arn.resource.partition("/")
        if not ((kind == "key" and _KEY_ID.match(rest)) or (kind == "alias" and _ALIAS.match(arn.resource))):
            raise UsageError(f"invalid KMS ARN {value!r}: expected arn:aws:kms:<region>:<account>:key/<key id> or "
                             "…:alias/<name>")
        return Resource("key", value, "arn", arn.resource, arn.region, arn.account)
    if value.startswith("alias/"):
        _require(_ALIAS, value, f"invalid KMS alias {value!r}: alias/ then 1-250 letters, digits, '/', '_' or '-'")
        return Resource("key", value, "alias", value)
    _require(_KEY_ID, value.lower(), f"invalid KMS key {value!r}: a key id (a UUID or mrk-…), a key ARN, "
             "or alias/<name>")
    return Resource("key", value, "id", value)


def _parameter(value: str) -> Resource:
    _require(_PARAMETER, value, f"invalid SSM parameter name {value!r}: letters, digits and _.-/ "
             "(e.g. /billing/db-url)")
    if value.lower().startswith(("/aws", "aws", "/ssm", "ssm")) and not value.startswith("/aws/service/"):
        raise UsageError(f"invalid SSM parameter name {value!r}: names may not start with aws or ssm")
    return Resource("parameter", value, "name", value)


def _stream(value: str) -> Resource:
    return _name_or_arn("stream", value, "kinesis", "stream/", _STREAM, "Kinesis stream",
                        f"invalid Kinesis stream name {value!r}: 1-128 letters, digits, '_', '.' or '-'")


def _function(value: str) -> Resource:
    if value.startswith("arn:"):
        arn = parse_arn(value, "lambda", "function:<name>", "Lambda function")
        parts = arn.resource.split(":")
        if parts[0] != "function" or len(parts) not in (2, 3) or not _FUNCTION.match(parts[1]):
            raise UsageError(f"invalid Lambda function ARN {value!r}: expected "
                             "arn:aws:lambda:<region>:<account>:function:<name>[:<version or alias>]")
        return Resource("function", value, "arn", parts[1], arn.region, arn.account)
    _require(_FUNCTION, value, f"invalid Lambda function name {value!r}: 1-64 letters, digits, '-' or '_', "
             "or a function ARN")
    return Resource("function", value, "name", value)


def _log_group(value: str) -> Resource:
    return _name_or_arn("log-group", value, "logs", "log-group:", _LOG_GROUP, "log group",
                        f"invalid log group name {value!r}: 1-512 letters, digits and ._-/#", drop_suffix=":*")


_PARSERS = {
    "table": _table,
    "bucket": _bucket,
    "queue": _queue,
    "secret": _secret,
    "topic": _topic,
    "key": _key,
    "parameter": _parameter,
    "stream": _stream,
    "function": _function,
    "log-group": _log_group,
}
