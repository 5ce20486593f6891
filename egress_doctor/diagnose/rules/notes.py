"""Context for a blocked host whose name surprises people who follow older guides."""

from __future__ import annotations

import re

from egress_doctor.diagnose.rules.base import Cause
from egress_doctor.fixes.builders import ddb_wildcard, is_account_ddb_host

_REGIONAL_STS = re.compile(r"^sts(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_ACCOUNT_DDB = re.compile(r"^\d{12}\.ddb\.(?P<region>[a-z0-9-]+)\.(?P<suffix>.+)$")


def modern_endpoint(blocked: Cause) -> list[Cause]:
    """ED601 for regional STS, ED602 for account-based DynamoDB, when such a host was blocked."""
    if blocked.need is None:
        return []
    host = blocked.need.host
    if _REGIONAL_STS.match(host):
        return [Cause("ED601", {"host": host}, checks=blocked.checks, hosts=(host,), need=blocked.need)]
    match = _ACCOUNT_DDB.match(host)
    if match and is_account_ddb_host(host):
        args = {
            "host": host,
            "regional": f"dynamodb.{match['region']}.{match['suffix']}",
            "wildcard": ddb_wildcard(host),
        }
        return [Cause("ED602", args, checks=blocked.checks, hosts=(host,), need=blocked.need)]
    return []
