"""The registry of checks is the one table, and nothing in it can write to AWS or read a secret.

Read-only is proven from botocore's own model of each operation: its verb (Get, List, Describe,
Head), its HTTP method on REST services, and no member of its answer marked `sensitive`. The
same proof refuses the calls that return a secret's value (so the test can fail).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

from egress_doctor.aws import operations
from egress_doctor.aws.resources import parse
from egress_doctor.probes import registry
from egress_doctor.probes.plan import Footprint, kebab, plan_calls

ROOT = Path(__file__).resolve().parents[1]
READ_VERBS = ("Get", "List", "Describe", "Head")
# One spelling of each form every resource row takes, to build its parameters.
SAMPLES = {
    ("table", "name"): "invoices",
    ("table", "arn"): "arn:aws:dynamodb:eu-west-1:111122223333:table/invoices",
    ("bucket", "name"): "invoice-archive",
    ("bucket", "accesspoint"): "arn:aws:s3:us-west-2:111122223333:accesspoint/reports",
    ("queue", "name"): "billing-events",
    ("queue", "arn"): "arn:aws:sqs:eu-west-1:111122223333:billing-events",
    ("queue", "url"): "https://sqs.eu-west-1.amazonaws.com/111122223333/billing-events",
    ("topic", "arn"): "arn:aws:sns:us-east-1:111122223333:billing",
    ("secret", "name"): "billing/db",
    ("secret", "arn"): "arn:aws:secretsmanager:us-east-1:111122223333:secret:billing/db-AbCdEf",
    ("key", "id"): "1234abcd-12ab-34cd-56ef-1234567890ab",
    ("key", "arn"): "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ("key", "alias"): "alias/billing",
    ("parameter", "name"): "/billing/db-url",
    ("stream", "name"): "events",
    ("stream", "arn"): "arn:aws:kinesis:us-east-1:111122223333:stream/events",
    ("function", "name"): "resize",
    ("function", "arn"): "arn:aws:lambda:us-east-1:111122223333:function:resize",
    ("log-group", "name"): "/app/billing",
    ("log-group", "arn"): "arn:aws:logs:us-east-1:111122223333:log-group:/app/billing",
}


@functools.cache
def loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


def operation_model(service: str, operation: str) -> Any:
    from botocore.model import ServiceModel

    return ServiceModel(loader().load_service_model(service, "service-2"), service).operation_model(operation)


def is_read_only(op: Any) -> bool:
    rest = op.metadata["protocol"] in ("rest-json", "rest-xml")
    method_ok = op.http.get("method") in (("GET", "HEAD") if rest else ("POST", "GET"))
    return op.name.startswith(READ_VERBS) and method_ok


CALLS = [row for row in registry.CHECKS if row.service and row.operation]
API_CALLS = [row for row in CALLS if row.stage is registry.Stage.API]


@pytest.mark.parametrize("row", API_CALLS, ids=[r.id for r in API_CALLS])
def test_every_registered_operation_is_read_only_and_returns_no_secret_value(row: registry.CheckSpec) -> None:
    assert row.service and row.operation
    op = operation_model(row.service, row.operation)
    assert is_read_only(op), f"{row.service}.{row.operation} may write"
    assert not operations.returns_sensitive(op.output_shape), f"{row.service}.{row.operation} returns a secret"


def test_the_one_call_that_returns_credentials_is_the_credential_step_irsa_makes_anyway() -> None:
    """AssumeRoleWithWebIdentity is what the SDK does with IRSA; its keys go to the redactor first."""
    assert [r.id for r in CALLS if r.stage is registry.Stage.CREDENTIALS] == ["sts.assume-role-with-web-identity"]
    assert registry.BY_ID["sts.assume-role-with-web-identity"].option is None


@pytest.mark.parametrize(
    ("service", "operation"),
    [("secretsmanager", "GetSecretValue"), ("ssm", "GetParameter"), ("ssm", "GetParametersByPath"),
     ("lambda", "GetFunctionConfiguration"), ("lambda", "ListFunctions")],
)
def test_the_proof_refuses_the_calls_that_return_a_value(service: str, operation: str) -> None:
    assert operations.returns_sensitive(operation_model(service, operation).output_shape)


def test_a_mutating_call_is_not_read_only_by_the_same_proof() -> None:
    assert not is_read_only(operation_model("s3", "PutObject"))
    assert not is_read_only(operation_model("secretsmanager", "PutSecretValue"))


def test_every_service_option_picks_a_read_only_call_that_returns_no_secret() -> None:
    """All of botocore's services: the --service chooser never lands on a write or a value."""
    chosen = 0
    for service in operations.available_services(loader()):
        try:
            call = operations.cheapest_read(loader(), service)
        except operations.UsageError:
            continue  # no List*/Describe* without a required parameter: the user is told to name a resource
        op = operation_model(service, call.operation)
        assert is_read_only(op) and not operations.returns_sensitive(op.output_shape), f"{service}.{call.operation}"
        assert set(call.params) <= set(op.input_shape.members if op.input_shape else {})
        chosen += 1
    assert chosen > 250


@pytest.mark.parametrize(("kind", "form"), sorted(SAMPLES), ids=[f"{k}-{f}" for k, f in sorted(SAMPLES)])
def test_each_resource_rows_parameters_are_valid_for_botocore(kind: str, form: str) -> None:
    from botocore.validate import validate_parameters

    resource = parse(kind, SAMPLES[(kind, form)])
    assert resource.form == form
    row = registry.for_resource(kind, form)
    assert row.params and row.service and row.operation
    op = operation_model(row.service, row.operation)
    validate_parameters(row.params(resource), op.input_shape)  # raises ParamValidationError


def test_every_form_of_every_resource_row_has_a_sample() -> None:
    assert {(r.resource, f) for r in registry.CHECKS if r.resource for f in r.forms} == set(SAMPLES)


def test_check_ids_are_unique_and_name_the_operation() -> None:
    ids = [r.id for r in registry.CHECKS]
    assert len(ids) == len(set(ids))
    for row in CALLS:
        assert row.id == f"{row.service}.{kebab(str(row.operation))}"


def test_every_option_asks_for_a_row_and_every_resource_row_has_its_option() -> None:
    kinds = {o.kind for o in registry.OPTIONS}
    assert kinds == {r.resource for r in registry.CHECKS if r.resource}
    for row in registry.CHECKS:
        if row.resource:
            assert row.option == registry.option(row.resource).flag


def test_api_rows_need_credentials_and_credential_rows_need_an_earlier_row() -> None:
    seen: set[str] = set()
    for row in registry.CHECKS:
        if row.stage is registry.Stage.API:
            assert row.needs == registry.NEEDS_CREDENTIALS, row.id
        else:
            assert row.needs in seen | {""}, row.id
        seen.add(row.id)


def test_the_default_plan_is_sts_then_dynamodb_list_tables_and_a_service_dedupes_with_it() -> None:
    assert [c.id for c in plan_calls(Footprint(), loader())] == ["sts.get-caller-identity", "dynamodb.list-tables"]
    calls = plan_calls(Footprint(services=("sts", "dynamodb", "sqs")), loader())
    assert [(c.id, c.title) for c in calls] == [
        ("sts.get-caller-identity", "STS GetCallerIdentity"),
        ("dynamodb.list-tables", "DynamoDB ListTables (Limit=1)"),
        ("sqs.list-queues", "SQS ListQueues (MaxResults=1)"),
    ]


def test_a_resource_in_another_region_is_planned_in_that_region() -> None:
    (_, call) = plan_calls(Footprint(resources=(parse("queue", SAMPLES[("queue", "url")]),)), loader())
    assert (call.id, call.region, call.params) == (
        "sqs.get-queue-attributes", "eu-west-1",
        {"QueueUrl": SAMPLES[("queue", "url")], "AttributeNames": ["QueueArn"]})


def _doc_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 5:
            rows[cells[0].strip("`")] = cells
    return rows


def test_docs_checks_lists_every_row_with_its_operation_option_and_needs() -> None:
    rows = _doc_rows()
    assert list(rows) == [r.id for r in registry.CHECKS]
    for row in registry.CHECKS:
        cells = rows[row.id]
        assert cells[1] == (f"{row.service} {row.operation}" if row.operation else "—"), row.id
        assert cells[2] == (f"`{row.option}`" if row.option else "—"), row.id
        assert cells[3] == (f"`{row.needs}`" if row.needs else "—"), row.id
        assert cells[4] == row.layer.value, row.id
        assert re.sub(r"\s+", " ", cells[5]) == row.when, row.id
