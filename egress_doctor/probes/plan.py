"""The API calls of one run, planned from the app's footprint and the registry before any probe.

    calls = plan_calls(Footprint(services=("sqs",), resources=(parse("bucket", "invoices"),)), loader)
    # [PlannedCall("sts.get-caller-identity" …), PlannedCall("s3.head-bucket", subject="invoices" …),
    #  PlannedCall("sqs.list-queues" …)]

The same plan drives the probes (one thread per call) and, for the calls a failed credential
step kept from running, the prediction of where they would have gone. STS GetCallerIdentity is
always first; DynamoDB ListTables stands for the footprint when none was given (what `check`
always did). Calls are unique by (id, subject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.aws.resources import Resource
from egress_doctor.probes.registry import BY_ID, SERVICE_CHECK, CheckSpec, for_resource


@dataclass(frozen=True)
class Footprint:
    """What the app calls in AWS: services by name, resources by name/ARN/URL."""

    region: str | None = None
    services: tuple[str, ...] = ()
    resources: tuple[Resource, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.services and not self.resources

    def merged(self, other: Footprint) -> Footprint:
        """`other` added to this one (its region wins when it has one)."""
        return Footprint(
            region=other.region or self.region,
            services=tuple(dict.fromkeys(self.services + other.services)),
            resources=tuple(dict.fromkeys(self.resources + other.resources)),
        )


@dataclass(frozen=True)
class PlannedCall:
    spec: CheckSpec
    id: str
    title: str
    service: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    subject: str | None = None  # the resource as given, for checks that repeat
    region: str | None = None  # the resource's own region (its ARN or URL), else the run's
    resource: Resource | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.id, self.subject)


def kebab(operation: str) -> str:
    """`GetCallerIdentity` → `get-caller-identity` (botocore's xform_name, dashed)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", operation).lower()


def _fixed(check_id: str) -> PlannedCall:
    row = BY_ID[check_id]
    assert row.service and row.operation
    params = {"Limit": 1} if check_id == "dynamodb.list-tables" else {}
    return PlannedCall(row, row.id, row.title, row.service, row.operation, params)


def call_region(resource: Resource) -> str | None:
    """The region the SDK calls for `resource`: the one its ARN or URL names (None: the run's).

    Except a DynamoDB table ARN: botocore passes it as the TableName and calls the client's region
    (DynamoDB's endpoint rules take only the ARN's account, and only when its region is the client's:
    botocore/data/dynamodb/2012-08-10/endpoint-rule-set-1.json); `check` warns when they differ.
    """
    return None if resource.kind == "table" else resource.region


def resource_call(resource: Resource) -> PlannedCall:
    row = for_resource(resource.kind, resource.form)
    assert row.service and row.operation and row.params
    return PlannedCall(row, row.id, row.title.format(subject=resource.name), row.service, row.operation,
                       row.params(resource), subject=resource.text, region=call_region(resource),
                       resource=resource)


def service_call(service: str, loader: Any) -> PlannedCall:
    """The --service call (UsageError for a service botocore does not know)."""
    from egress_doctor.aws.operations import cheapest_read

    chosen = cheapest_read(loader, service)
    check_id = f"{service}.{kebab(chosen.operation)}"
    if check_id in BY_ID:  # sts.get-caller-identity, dynamodb.list-tables: the registry's own row
        return _fixed(check_id)
    page = ", ".join(f"{k}={v}" for k, v in chosen.params.items())
    title = SERVICE_CHECK.title.format(service_title=chosen.title, operation=chosen.operation,
                                       page=f" ({page})" if page else "")
    return PlannedCall(SERVICE_CHECK, check_id, title, service, chosen.operation, chosen.params)


def plan_calls(footprint: Footprint, loader: Any) -> list[PlannedCall]:
    """The run's API calls in report order: STS, the named services, then each resource."""
    calls = [_fixed("sts.get-caller-identity")]
    if footprint.empty:
        calls.append(_fixed("dynamodb.list-tables"))
    calls += [service_call(s, loader) for s in footprint.services]
    calls += [resource_call(r) for r in footprint.resources]
    unique: dict[tuple[str, str | None], PlannedCall] = {}
    for call in calls:
        unique.setdefault(call.key, call)
    return list(unique.values())
