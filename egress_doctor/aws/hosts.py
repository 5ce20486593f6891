"""AWS endpoint names, read with botocore's own data: which service, region, partition and variant
a host is, and how two names for the same service differ (the near misses that keep a
ServiceEntry from matching the host the SDK uses). Pure, offline.

    classify("111122223333.ddb.us-east-1.amazonaws.com")
    # AwsHost(service="dynamodb", region="us-east-1", partition="aws", account="111122223333", ...)

The partitions (DNS suffixes, dual-stack suffixes, region patterns and known regions) come from
botocore's `partitions.json`, the service labels from the endpoint prefixes of `endpoints.json`.
A few labels of endpoint rule sets are not endpoint prefixes; `LABEL_SERVICES` names them and the
tests prove each against the service's rule set. botocore is imported on first use, never at
import time (`--help` stays light).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

GLOBAL = "global"
# Labels of endpoint rule-set URL templates that are not endpoint prefixes, and their service:
# DynamoDB's account-based endpoints `{AccountId}.ddb.{Region}…`, S3 access points
# `{Name}-{AccountId}.s3-accesspoint.{Region}…` and Kinesis's account endpoints for stream ARNs
# `{AccountId}.{OperationType}-kinesis.{Region}…` (control-plane calls such as DescribeStreamSummary),
# and S3 Transfer Acceleration `{Bucket}.s3-accelerate.amazonaws.com` (global).
LABEL_SERVICES = {"ddb": "dynamodb", "s3-accesspoint": "s3", "s3-accelerate": "s3", "control-kinesis": "kinesis"}
# Services whose rule sets put the caller's account in front of the service label.
_ACCOUNT_SERVICES = ("dynamodb", "kinesis")
_ACCOUNT = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class Partition:
    id: str
    dns_suffix: str  # amazonaws.com
    dualstack_suffix: str  # api.aws
    region_pattern: re.Pattern[str]
    regions: frozenset[str]
    services: frozenset[str]  # endpoint prefixes
    hostnames: frozenset[str] = frozenset()  # names endpoints.json spells out (sts.amazonaws.com …)

    def is_region(self, label: str) -> bool:
        return label in self.regions or bool(self.region_pattern.match(label))


@dataclass(frozen=True)
class AwsHost:
    """One AWS endpoint name, taken apart."""

    host: str
    service: str  # the endpoint prefix: sts, dynamodb, s3 …
    region: str  # us-east-1, or "global" when the name carries none
    partition: str  # aws, aws-cn, aws-us-gov …
    suffix: str  # the DNS suffix in use (amazonaws.com, api.aws …)
    fips: bool = False
    dualstack: bool = False
    account: str | None = None  # account-based endpoints (DynamoDB)
    resource: str = ""  # the labels before the service: a bucket, an access point, a VPC endpoint id
    vpce: bool = False  # a VPC interface endpoint name (…vpce.amazonaws.com)
    known: bool = True  # the service label is one botocore knows for this partition

    @property
    def wildcard(self) -> bool:
        return self.resource == "*" or self.host.startswith("*.")

    @property
    def is_account_dynamodb(self) -> bool:
        return self.service == "dynamodb" and (self.account is not None or self.resource == "*")


@functools.cache
def partitions() -> tuple[Partition, ...]:
    """botocore's partitions, longest DNS suffix first (so amazonaws.com.cn wins over .com)."""
    import botocore.loaders

    loader = botocore.loaders.create_loader()
    data: Any = loader.load_data("partitions")
    endpoints: Any = loader.load_data("endpoints")
    prefixes = {p["partition"]: frozenset(p.get("services", {})) for p in endpoints["partitions"]}
    names = {p["partition"]: frozenset(e["hostname"] for s in p.get("services", {}).values()
                                       for e in s.get("endpoints", {}).values() if "hostname" in e)
             for p in endpoints["partitions"]}
    found = []
    for p in data["partitions"]:
        outputs = p["outputs"]
        found.append(Partition(p["id"], outputs["dnsSuffix"], outputs["dualStackDnsSuffix"],
                               re.compile(p["regionRegex"]), frozenset(p.get("regions", {})),
                               prefixes.get(p["id"], frozenset()), names.get(p["id"], frozenset())))
    return tuple(sorted(found, key=lambda p: -max(len(p.dns_suffix), len(p.dualstack_suffix))))


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _split(host: str) -> tuple[Partition, str, list[str]] | None:
    """The partition, the DNS suffix and the labels before it. Partitions sharing a suffix
    (aws and aws-us-gov on amazonaws.com) are told apart by the region label."""
    for partition in partitions():
        for suffix in (partition.dns_suffix, partition.dualstack_suffix):
            if not host.endswith("." + suffix):
                continue
            labels = host[: -len(suffix) - 1].split(".")
            region = labels[-2] if len(labels) > 2 and labels[-1] == "vpce" else labels[-1]
            sharing = [p for p in partitions() if suffix in (p.dns_suffix, p.dualstack_suffix)]
            chosen = next((p for p in sharing if p.is_region(region)), partition)
            return chosen, suffix, labels
    return None


@functools.lru_cache(maxsize=4096)
def classify(host: str) -> AwsHost | None:
    """The AWS endpoint `host` names (None: not under an AWS partition's DNS suffix, or an IP).
    A wildcard (`*.ddb.us-east-1.amazonaws.com`) is classified like the names it covers."""
    host = host.lower().rstrip(".")
    if not host or is_ip(host):
        return None
    split = _split(host)
    if split is None:
        return None
    partition, suffix, labels = split
    dualstack = suffix == partition.dualstack_suffix and suffix != partition.dns_suffix
    vpce = len(labels) > 1 and labels[-1] == "vpce"
    if vpce:
        labels = labels[:-1]
    region = GLOBAL
    if len(labels) > 1 and partition.is_region(labels[-1]):
        region = labels.pop()
    if len(labels) > 1 and labels[-1] == "dualstack":  # s3.dualstack.<region>.amazonaws.com
        dualstack = True
        labels.pop()
    label = labels.pop()
    fips = label.endswith("-fips")
    label = label.removesuffix("-fips")
    if labels and labels[-1] == "fips":  # fips.<service>… is not a form botocore uses; keep the label
        fips = True
    service = LABEL_SERVICES.get(label, label)
    resource = ".".join(labels)
    account = resource if service in _ACCOUNT_SERVICES and _ACCOUNT.match(resource) else None
    known = label in partition.services or label in LABEL_SERVICES
    return AwsHost(host, service, region, partition.id, suffix, fips, dualstack, account, resource, vpce, known)


def service_region(host: str) -> tuple[str, str] | None:
    """('sts', 'us-east-1') for sts.us-east-1.amazonaws.com; region 'global' when the host has none."""
    found = classify(host)
    return (found.service, found.region) if found else None


def is_account_ddb_host(host: str) -> bool:
    """`<12 digits>.ddb.<region>.<suffix>`: DynamoDB's account-based endpoint."""
    found = classify(host)
    return found is not None and found.service == "dynamodb" and found.account is not None


def ddb_wildcard(host: str) -> str:
    """`*.ddb.us-east-1.amazonaws.com` for `111122223333.ddb.us-east-1.amazonaws.com`."""
    if not is_account_ddb_host(host):
        raise ValueError(f"{host} is not an account-based DynamoDB endpoint")
    return str(wildcard_of(host))


def is_s3_bucket_host(host: str) -> bool:
    """A virtual-hosted S3 name: one label (the bucket or access point) before the S3 endpoint
    (`invoices.s3.amazonaws.com`, `invoices.s3.eu-west-1.amazonaws.com`, `ap-111122223333.s3-accesspoint…`)."""
    found = classify(host)
    return found is not None and found.service == "s3" and _one_label(found.resource) and not found.vpce


def wildcard_of(host: str) -> str | None:
    """The name that covers every resource of `host`'s endpoint, for hosts that carry a resource
    label (`*.ddb.us-east-1.amazonaws.com`, `*.s3.amazonaws.com`, `*.s3-accesspoint.<region>…`);
    None for every other host (they are already the service's one name)."""
    found = classify(host)
    if found is None or found.vpce or not _one_label(found.resource) or found.resource == "*":
        return None
    if found.service not in ("dynamodb", "s3") and not found.account:
        return None
    return "*" + found.host[len(found.resource):]


def _one_label(resource: str) -> bool:
    return bool(resource) and "." not in resource


def regional_dynamodb(host: str) -> str:
    """`dynamodb.us-east-1.amazonaws.com` for an account-based DynamoDB host."""
    found = classify(host)
    if found is None or not is_account_ddb_host(host):
        raise ValueError(f"{host} is not an account-based DynamoDB endpoint")
    return f"dynamodb.{found.region}.{found.suffix}"


def is_regional_sts(host: str) -> bool:
    found = classify(host)
    return found is not None and found.service == "sts" and found.region != GLOBAL and not found.resource


def near_miss(need: str, registered: str) -> str | None:
    """How a registered AWS host differs from the one the SDK uses, or None when unrelated."""
    a, b = classify(need), classify(registered)
    if a is None or b is None or a.service != b.service or a.host == b.host:
        return None
    diffs = []
    if a.region != b.region:
        kind = "the global endpoint" if b.region == GLOBAL else f"region {b.region}"
        diffs.append(f"{kind} instead of {'the global endpoint' if a.region == GLOBAL else a.region}")
    if a.is_account_dynamodb != b.is_account_dynamodb:
        diffs.append("the regional endpoint, not the account-based one" if a.is_account_dynamodb
                     else "an account-based endpoint, not the regional one")
    if a.fips != b.fips:
        diffs.append("FIPS endpoint needed" if a.fips else "a FIPS endpoint, the SDK uses the standard one")
    if a.dualstack != b.dualstack:
        diffs.append(f"dual-stack ({a.suffix}) endpoint needed" if a.dualstack else "a dual-stack endpoint")
    return "; ".join(diffs) or "another form of the same endpoint"
