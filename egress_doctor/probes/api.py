"""Stage 2: the AWS API calls the app makes — STS GetCallerIdentity and DynamoDB.

Each call goes through a client of the run's bounded, observed botocore session, so the URL
is the one botocore's endpoint rules pick (regional STS, `<account>.ddb.<region>…`, FIPS,
dual-stack, `AWS_ENDPOINT_URL_*`), never one we guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from egress_doctor.model import ErrorInfo, Layer, Status, Symptom
from egress_doctor.probes.outcome import api_failure, body_text, has_request_id
from egress_doctor.probes.progress import CheckProgress
from egress_doctor.probes.run import Run

# What a well-formed answer must contain; a 200 without it did not come from AWS.
_EXPECTED_KEYS = {
    "GetCallerIdentity": "Account",
    "ListTables": "TableNames",
    "DescribeTable": "Table",
    "AssumeRoleWithWebIdentity": "Credentials",
}


def call_api(
    run: Run,
    progress: CheckProgress,
    service: str,
    operation: str,
    call: Callable[[Any], dict[str, Any]],
    *,
    credentials: Any,
    unsigned: bool = False,
) -> dict[str, Any] | None:
    """Run one botocore call under the check's scopes; finish the check; the response or None."""

    clients: list[Any] = []

    def invoke() -> dict[str, Any]:
        clients.append(run.session.client(service, run.region, credentials, unsigned=unsigned))
        return call(clients[0])

    try:
        response = run.scoped(progress, invoke)
    except Exception as exc:  # every failure is evidence: classified, never re-raised
        _register_resolved(run, clients)
        layer, symptom, info, reason = api_failure(exc, progress.evidence, progress.raw_body_prefix, service, operation)
        progress.finish(Status.FAIL, layer=layer, symptom=symptom, error=info, reason=reason)
        return None
    _register_resolved(run, clients)
    expected = _EXPECTED_KEYS.get(operation)
    http = progress.evidence.http
    if (expected and expected not in response) or not has_request_id(http, response):
        if http is not None:
            http.body_prefix = body_text(progress.raw_body_prefix)
        progress.finish(
            Status.FAIL,
            layer=Layer.HTTP,
            symptom=Symptom.NOT_AWS,
            error=ErrorInfo(type="NotAwsResponse", message=f"the {operation} answer has no {expected} / request id"),
            reason="reply is not an AWS answer",
        )
        return None
    return response


def _register_resolved(run: Run, clients: list[Any]) -> None:
    """Credentials botocore resolved itself (profiles: assume-role, SSO, credential_process) are
    secrets as well: register them once the call has them (transcripts are redacted again on read)."""
    for client in clients:
        signer = getattr(client, "_request_signer", None)
        run.register_credentials(getattr(signer, "_credentials", None))


def get_caller_identity(run: Run, credentials: Any) -> None:
    progress = run.start("sts.get-caller-identity", "STS GetCallerIdentity")
    response = call_api(
        run, progress, "sts", "GetCallerIdentity", lambda c: c.get_caller_identity(), credentials=credentials
    )
    if response is None:
        return
    account, arn = response.get("Account"), response.get("Arn")
    progress.evidence.notes.append(f"caller {arn}")
    if account and not run.identity.account_id:
        run.identity.account_id = str(account)
    progress.finish(Status.PASS, reason=f"account {account}")


def describe_table(run: Run, credentials: Any, table: str) -> None:
    name = table.rsplit("/", 1)[-1] if table.startswith("arn:") else table
    progress = run.start("dynamodb.describe-table", f"DynamoDB DescribeTable {name}", subject=table)
    response = call_api(
        run,
        progress,
        "dynamodb",
        "DescribeTable",
        lambda c: c.describe_table(TableName=table),
        credentials=credentials,
    )
    if response is None:
        return
    status = (response.get("Table") or {}).get("TableStatus", "?")
    progress.finish(Status.PASS, reason=f"table {name} is {status}")


def list_tables(run: Run, credentials: Any) -> None:
    progress = run.start("dynamodb.list-tables", "DynamoDB ListTables (Limit=1)")
    response = call_api(
        run, progress, "dynamodb", "ListTables", lambda c: c.list_tables(Limit=1), credentials=credentials
    )
    if response is None:
        return
    progress.finish(Status.PASS, reason="answered")
