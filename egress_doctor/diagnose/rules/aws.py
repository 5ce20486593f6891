"""AWS answered (the network path works) or the SDK could not build a call: never an Istio fix.

One finding per check: two tables can fail for two different reasons on the same host.
"""

from __future__ import annotations

from egress_doctor.aws.hosts import GLOBAL, classify
from egress_doctor.diagnose.rules.base import Cause, Observation, RunContext
from egress_doctor.model import Symptom
from egress_doctor.probes.registry import NOT_LISTED, spec

ARWWI = "AssumeRoleWithWebIdentity"
TOKEN_REJECTED = {"InvalidIdentityToken", "IDPRejectedClaim", "ExpiredTokenException"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidToken",
}
BAD_SIGNATURE = {
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "RequestExpired",
    "RequestTimeTooSkewed",
}
# "No such resource here", as each service says it (S3's HEAD answers carry only the status).
NOT_FOUND = {
    "ResourceNotFoundException",
    "NoSuchBucket",
    "404",
    "NotFound",
    "NotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "ParameterNotFound",
    NOT_LISTED,
}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}


def _one(code: str, o: Observation, args: dict[str, object]) -> Cause:
    return Cause(code, args, checks=(o,), hosts=(o.host,) if o.host else ())


def _code_and_message(o: Observation) -> tuple[str, str, str]:
    aws = o.aws
    code = (aws.error_code if aws else None) or "unknown error"
    message = (aws.error_message if aws else None) or o.detail()
    operation = (aws.operation if aws else None) or o.id
    return code, message, operation


def aws_answer(o: Observation, ctx: RunContext) -> Cause | None:
    """ED530-ED545 from the AWS error code; the operation decides IRSA's two special cases."""
    if o.symptom is not Symptom.AWS_ERROR or o.is_metadata:
        return None
    code, message, operation = _code_and_message(o)
    irsa = operation == ARWWI or o.id == "sts.assume-role-with-web-identity"
    if irsa and code in TOKEN_REJECTED:
        return _one("ED530", o, {"code": code, "detail": message})
    if irsa and code == "AccessDenied":
        return _one("ED531", o, {"role": ctx.identity.role_arn or "the role", "detail": message})
    if code in DENIED or (code == "403" and o.http is not None and o.http.method == "HEAD"):
        return _one("ED540", o, {"operation": operation, "detail": message})
    if code in BAD_CREDENTIALS:
        return _one("ED541", o, {"operation": operation, "code": code, "detail": message})
    if code in BAD_SIGNATURE:
        return _one("ED542", o, {"operation": operation, "code": code, "detail": message})
    if code == "ResourceNotFoundException" and o.id.startswith("dynamodb."):
        return _one("ED543", o, {"table": o.check.subject or "(unnamed)", "region": _region(o, ctx)})
    if code in NOT_FOUND and o.check.subject:
        row = spec(o.id)
        args = {"service": row.service or (o.aws.service if o.aws else "AWS"),
                "kind": (row.resource or "resource").replace("-", " "),
                "resource": o.check.subject, "region": _region(o, ctx), "code": code}
        return _one("ED546", o, args)
    if code in THROTTLED:
        return _one("ED544", o, {"operation": operation, "code": code})
    return _one("ED545", o, {"operation": operation, "code": code, "detail": message})


def _region(o: Observation, ctx: RunContext) -> str:
    """The region of the host the call went to (an ARN's region wins over the run's), else the run's."""
    found = classify(o.host or "")
    if found is not None and found.region != GLOBAL:
        return found.region
    return ctx.identity.region or "this region"


def credential_stage(o: Observation, ctx: RunContext) -> Cause | None:
    """ED501-ED506: the credential stage failed before any request left."""
    if o.symptom is not Symptom.CREDENTIALS:
        return None
    types = o.error_types()
    details = ctx.identity.details
    source = ctx.identity.source
    if "NoCredentialsError" in types or (o.id == "credentials.source" and source == "none"):
        why = details.get("imds") or "no keys, profile, web identity, container URI or instance metadata"
        return _one("ED501", o, {"detail": why})
    if "InvalidConfigError" in types and source == "irsa":
        return _one("ED503", o, {})
    if "ValueError" in types and source in ("pod-identity", "ecs"):
        return _one("ED504", o, {"detail": o.check.error.message if o.check.error else o.detail()})
    if "FileNotFoundError" in types and source == "irsa":
        return _one("ED502", o, {"path": details.get("token_file", "(not set)")})
    if "FileNotFoundError" in types and source in ("pod-identity", "ecs"):
        return _one("ED505", o, {"path": details.get("token_file", "(not set)")})
    return _one("ED506", o, {"detail": o.detail()})
