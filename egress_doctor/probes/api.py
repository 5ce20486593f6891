"""Stage 2: the AWS API calls the app makes — STS GetCallerIdentity, then every planned call.

Each call goes through a client of the run's bounded, observed botocore session (one client per
service and region, built once), so the URL is the one botocore's endpoint rules pick (regional
STS, `<account>.ddb.<region>…`, `<bucket>.s3.amazonaws.com`, FIPS, dual-stack,
`AWS_ENDPOINT_URL_*`), never one we guessed. Which call, with which parameters and what a
well-formed answer holds comes from the registry (`probes.registry`) through the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from egress_doctor.model import AwsEvidence, ErrorInfo, Layer, Status, Symptom
from egress_doctor.probes import registry
from egress_doctor.probes.outcome import api_failure, body_text, has_request_id
from egress_doctor.probes.plan import PlannedCall
from egress_doctor.probes.progress import CheckProgress
from egress_doctor.probes.registry import NOT_LISTED
from egress_doctor.probes.run import Run


def call_api(
    run: Run,
    progress: CheckProgress,
    service: str,
    operation: str,
    call: Callable[[Any], dict[str, Any]],
    *,
    credentials: Any,
    unsigned: bool = False,
    region: str | None = None,
) -> dict[str, Any] | None:
    """Run one botocore call under the check's scopes; finish the check on failure; the response or None."""

    clients: list[Any] = []
    where = region or run.region

    def invoke() -> dict[str, Any]:
        clients.append(run.client(service, where, credentials, unsigned=unsigned))
        return call(clients[0])

    try:
        response = run.scoped(progress, invoke)
    except Exception as exc:  # every failure is evidence: classified, never re-raised
        _register_resolved(run, clients)
        _bucket_region(run, progress, service, operation, where)
        layer, symptom, info, reason = api_failure(exc, progress.evidence, progress.raw_body_prefix, service, operation)
        progress.finish(Status.FAIL, layer=layer, symptom=symptom, error=info, reason=reason)
        return None
    _register_resolved(run, clients)
    _bucket_region(run, progress, service, operation, where)
    expected = registry.spec(progress.id).expect
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


def _bucket_region(run: Run, progress: CheckProgress, service: str, operation: str, region: str | None) -> None:
    """S3 named another region for the bucket (`x-amz-bucket-region`): the bucket lives there, and
    the SDK (redirected, or on its next call) needs that region's host too."""
    named = progress.bucket_region
    if service != "s3" or not named or named == region:
        return
    hosts = list(dict.fromkeys(urlsplit(u).hostname or "" for u in progress.evidence.requests))
    there = next((h for h in hosts[1:] if h), None) or _predicted_host(run, progress, named)
    aws = progress.evidence.aws or AwsEvidence(service=service, operation=operation)
    aws.bucket_region, aws.region_host = named, there
    progress.evidence.aws = aws
    followed = "botocore followed the redirect" if len(hosts) > 1 else "botocore did not follow it"
    progress.evidence.notes.append(f"S3 says the bucket is in {named} (x-amz-bucket-region), not {region}: "
                                   f"{followed}; that region's host is {there or 'unknown'}")


def _predicted_host(run: Run, progress: CheckProgress, region: str) -> str | None:
    from egress_doctor.probes.predict import predicted_url

    url = predicted_url(run, "s3", "HeadBucket", {"Bucket": progress.subject or ""}, region)
    return urlsplit(url).hostname if url else None


def run_call(run: Run, credentials: Any, call: PlannedCall) -> None:
    """One planned API call, start to verdict."""
    from botocore import xform_name

    progress = run.start(call.id, call.title, subject=call.subject)
    method = xform_name(call.operation)
    response = call_api(
        run, progress, call.service, call.operation, lambda c: getattr(c, method)(**call.params),
        credentials=credentials, region=call.region,
    )
    if response is None:
        return
    if call.spec.found is not None and call.resource is not None and not call.spec.found(response, call.resource):
        _not_listed(progress, call)
        return
    progress.finish(Status.PASS, reason=_pass_reason(run, progress, call, response))


def _not_listed(progress: CheckProgress, call: PlannedCall) -> None:
    """A filtered list call answered without the resource: AWS has none by that name here."""
    http = progress.evidence.http
    progress.evidence.aws = AwsEvidence(
        service=call.service, operation=call.operation, error_code=NOT_LISTED,
        error_message=f"the answer lists no {call.resource.kind if call.resource else 'resource'} "
                      f"named {call.resource.name if call.resource else '?'}",
        request_id=http.headers.get("x-amzn-requestid") if http else None, http_status=http.status if http else None,
    )
    progress.finish(Status.FAIL, layer=Layer.API, symptom=Symptom.AWS_ERROR,
                    error=ErrorInfo(type="NotFound", message=progress.evidence.aws.error_message or ""),
                    reason=f"AWS answered: {progress.evidence.aws.error_message}")


def _pass_reason(run: Run, progress: CheckProgress, call: PlannedCall, response: dict[str, Any]) -> str:
    if call.id == "sts.get-caller-identity":
        account, arn = response.get("Account"), response.get("Arn")
        progress.evidence.notes.append(f"caller {arn}")
        if account and not run.identity.account_id:
            run.identity.account_id = str(account)
        return f"account {account}"
    if call.id == "dynamodb.describe-table":
        status = (response.get("Table") or {}).get("TableStatus", "?")
        return f"table {call.resource.name if call.resource else call.subject} is {status}"
    if call.resource is not None:
        return f"{call.resource.kind.replace('-', ' ')} {call.resource.name} answered"
    return "answered"
