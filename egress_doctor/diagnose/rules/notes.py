"""Context for a blocked host whose name surprises people who follow older guides."""

from __future__ import annotations

from egress_doctor.aws.hosts import (
    GLOBAL,
    classify,
    ddb_wildcard,
    is_account_ddb_host,
    is_regional_sts,
    is_s3_bucket_host,
    regional_dynamodb,
    wildcard_of,
)
from egress_doctor.diagnose.rules.base import Cause


def modern_endpoint(blocked: Cause) -> list[Cause]:
    """ED601 for regional STS, ED602 for account-based DynamoDB, ED604 for an S3 bucket's own name,
    when such a host was blocked."""
    if blocked.need is None:
        return []
    host = blocked.need.host
    if is_regional_sts(host):
        return [Cause("ED601", {"host": host}, checks=blocked.checks, hosts=(host,), need=blocked.need)]
    if is_account_ddb_host(host):
        args = {"host": host, "regional": regional_dynamodb(host), "wildcard": ddb_wildcard(host)}
        return [Cause("ED602", args, checks=blocked.checks, hosts=(host,), need=blocked.need)]
    if is_s3_bucket_host(host):
        found = classify(host)
        assert found is not None
        where = "the global endpoint, as the SDK does in us-east-1" if found.region == GLOBAL else found.region
        args = {"host": host, "bucket": found.resource, "where": where, "wildcard": str(wildcard_of(host))}
        return [Cause("ED604", args, checks=blocked.checks, hosts=(host,), need=blocked.need)]
    return []
