"""Stage 1: obtain credentials the way the SDK's chain would, one visible step at a time.

IMDS and the container agent are called with our own HTTP code (botocore hides a timed-out
token PUT and turns 502s into "no credentials"); IRSA's AssumeRoleWithWebIdentity is called
explicitly with an unsigned client from the same session, so its host is botocore's own.
"""

from __future__ import annotations

import json
import re
from typing import Any

from egress_doctor.aws.identity import CredentialPlan
from egress_doctor.aws.session import target_of
from egress_doctor.model import AwsEvidence, ErrorInfo, Layer, Status, Symptom
from egress_doctor.net.http import HttpResult, request
from egress_doctor.probes import registry
from egress_doctor.probes.api import call_api
from egress_doctor.probes.outcome import body_text, http_reason, is_envoy_local_reply, transport_reason
from egress_doctor.probes.progress import CheckProgress
from egress_doctor.probes.run import Run

TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
CREDENTIAL_KEYS = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")


def source_check(run: Run, plan: CredentialPlan) -> bool:
    """`credentials.source`: which provider of the chain wins. False when nothing can follow."""
    identity = plan.identity
    progress = run.start("credentials.source", registry.title("credentials.source", source=identity.source))
    progress.evidence.notes.append("chain: " + " → ".join(identity.chain))
    progress.evidence.notes.extend(plan.notes)
    if plan.error:
        progress.finish(
            Status.FAIL,
            layer=Layer.CREDENTIALS,
            symptom=Symptom.CREDENTIALS,
            error=ErrorInfo(type=plan.error_type or "ConfigurationError", message=plan.error),
            reason=plan.error,
        )
        return False
    if identity.source == "none":
        message = "no credential source in the chain has anything (botocore raises NoCredentialsError)"
        progress.finish(
            Status.FAIL,
            layer=Layer.CREDENTIALS,
            symptom=Symptom.CREDENTIALS,
            error=ErrorInfo(type="NoCredentialsError", message="Unable to locate credentials"),
            reason=message,
        )
        return False
    progress.finish(Status.PASS, reason=_describe_source(plan))
    return True


def _describe_source(plan: CredentialPlan) -> str:
    identity = plan.identity
    if identity.source == "env":
        return "static keys from the environment" + (
            f", account {identity.account_id} (AWS_ACCOUNT_ID)" if identity.account_id else ""
        )
    if identity.source == "irsa":
        return f"IRSA web identity, role {identity.role_arn}"
    if identity.source in ("pod-identity", "ecs"):
        return f"container credentials from {plan.container_url}"
    if identity.source == "imds":
        return f"instance metadata at {plan.imds_endpoint}"
    return f"profile ({identity.details.get('provider', '?')})"


def obtain(run: Run, plan: CredentialPlan) -> Any:
    """Run the credential checks for the chosen source; the botocore Credentials or None."""
    source = plan.identity.source
    if source in ("env", "profile") and plan.static is not None:
        run.register_credentials(plan.static)  # the config files' keys are secrets too
        return plan.static
    if source == "imds":
        return _imds(run, plan)
    if source in ("pod-identity", "ecs"):
        return _container(run, plan)
    if source == "irsa":
        return _irsa(run, plan)
    return None


# --- IMDS -------------------------------------------------------------------------------------


def _metadata_timeout(run: Run) -> float:
    value = run.session.session.get_config_variable("metadata_service_timeout")
    return float(value or 1)


def _http_step(
    run: Run, progress: CheckProgress, method: str, url: str, headers: dict[str, str], *, secret_body: bool = False
) -> HttpResult:
    """One metadata request. `secret_body`: the answer is a token or credentials, never recorded."""
    timeout = _metadata_timeout(run)
    progress.target = target_of(url, run.connect_to)
    result = run.scoped(
        progress,
        lambda: request(
            method,
            url,
            headers=headers,
            connect_timeout=progress.remaining(timeout),
            read_timeout=progress.remaining(timeout),
            max_body=64 * 1024,
            deadline=progress.deadline,
            record_body=not secret_body,
        ),
    )
    progress.evidence.http = result.evidence
    return result


def _fail_http(progress: CheckProgress, result: HttpResult, service: str, operation: str) -> None:
    """Finish a metadata step that got no usable answer."""
    http = result.evidence
    if result.error is not None:
        progress.finish(
            Status.FAIL,
            layer=result.layer,
            symptom=result.symptom,
            error=result.error,
            reason=transport_reason(result.symptom, result.error),
        )
        return
    http.body_prefix = body_text(result.body)
    if is_envoy_local_reply(http) or (http.status or 0) >= 500:
        progress.finish(
            Status.FAIL,
            layer=Layer.HTTP,
            symptom=Symptom.HTTP_STATUS,
            error=ErrorInfo(type="HTTPError", message=f"HTTP {http.status}"),
            reason=http_reason(http, f"HTTP {http.status}"),
        )
        return
    progress.evidence.aws = AwsEvidence(
        service=service, operation=operation, error_code=str(http.status), http_status=http.status
    )
    progress.finish(
        Status.FAIL,
        layer=Layer.API,
        symptom=Symptom.AWS_ERROR,
        error=ErrorInfo(type="HTTPError", message=f"HTTP {http.status}"),
        reason=http_reason(http, f"HTTP {http.status}"),
    )


# What IAM accepts as a role name, so what IMDS can answer (iam CreateRole: [\w+=,.@-]{1,64}).
_IAM_ROLE_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")


def _imds(run: Run, plan: CredentialPlan) -> Any:
    base = (plan.imds_endpoint or "").rstrip("/") + "/"
    token_progress = run.start("imds.token", registry.title("imds.token"))
    token_result = _http_step(
        run, token_progress, "PUT", base + "latest/api/token", {TOKEN_TTL_HEADER: "21600"}, secret_body=True
    )
    token: str | None = None
    if token_result.error is None and token_result.evidence.status == 200 and token_result.body:
        token = token_result.body.decode("ascii", "replace").strip()
        run.redactor.add_secret(token)
        token_result.evidence.body_prefix = None
        token_progress.finish(Status.PASS, reason="token issued")
    else:
        _fail_http(token_progress, token_result, "imds", "PutToken")
        status = token_result.evidence.status
        if status == 400:
            token_progress.evidence.notes.append("botocore does not fall back to IMDSv1 after a 400")
            run.skip_rest("imds.token", ("imds.role", "imds.credentials"))
            return None
        if plan.imds_v1_disabled:
            token_progress.evidence.notes.append("AWS_EC2_METADATA_V1_DISABLED: no IMDSv1 fallback")
            run.skip_rest("imds.token", ("imds.role", "imds.credentials"))
            return None
        token_progress.evidence.notes.append("botocore falls back to IMDSv1 (no token) after this")
    headers = {TOKEN_HEADER: token} if token else {}
    role_progress = run.start("imds.role", registry.title("imds.role"))
    role_result = _http_step(run, role_progress, "GET", base + "latest/meta-data/iam/security-credentials/", headers)
    if role_result.error is not None or role_result.evidence.status != 200 or not role_result.body.strip():
        _fail_http(role_progress, role_result, "imds", "GetRoleName")
        run.skip_rest("imds.role", ("imds.credentials",))
        return None
    role = role_result.body.decode("utf-8", "replace").strip().splitlines()[0]
    if not _IAM_ROLE_NAME.fullmatch(role):
        role_progress.finish(
            Status.FAIL, layer=Layer.HTTP, symptom=Symptom.NOT_AWS,
            error=ErrorInfo(type="NotARoleName", message=f"{len(role)} characters: {role[:64]!r}"),
            reason=f"the answer is no IAM role name ({len(role)} characters; IAM allows 1-64 of "
                   "letters, digits and _+=,.@-)")
        run.skip_rest("imds.role", ("imds.credentials",))
        return None
    role_progress.finish(Status.PASS, reason=f"role {role}" + ("" if token else " (IMDSv1)"))
    _settle_token(token_progress)
    creds_progress = run.start("imds.credentials", registry.title("imds.credentials", role=role))
    creds_result = _http_step(
        run,
        creds_progress,
        "GET",
        base + f"latest/meta-data/iam/security-credentials/{role}",
        headers,
        secret_body=True,
    )
    return _credentials_document(run, creds_progress, creds_result, "imds", "GetCredentials", account_key=None)


def _settle_token(token_progress: CheckProgress) -> None:
    """The SDK recovered through IMDSv1: the token step is a warning, not the failure."""
    result = token_progress.result
    if result is not None and result.status is Status.FAIL:
        result.status = Status.WARN


def _credentials_document(
    run: Run, progress: CheckProgress, result: HttpResult, service: str, operation: str, account_key: str | None
) -> Any:
    if result.error is not None or result.evidence.status != 200:
        _fail_http(progress, result, service, operation)
        return None
    document = _parse_document(result.body)
    if document is None or not all(k in document for k in CREDENTIAL_KEYS):
        missing = [k for k in CREDENTIAL_KEYS if document is None or k not in document]
        if document is not None:
            _plant_secrets(run, document)
        code = document.get("Code") if document else None
        progress.finish(
            Status.FAIL,
            layer=Layer.HTTP if document is None else Layer.API,
            symptom=Symptom.NOT_AWS if document is None else Symptom.AWS_ERROR,
            error=ErrorInfo(
                type="CredentialDocumentError",
                message=f"credentials document lacks {', '.join(missing)}" + (f" (Code {code})" if code else ""),
            ),
            reason="credentials document is not JSON" if document is None else f"incomplete document: {code}",
        )
        if document is None:
            result.evidence.body_prefix = body_text(result.body)
        else:
            result.evidence.body_prefix = None
        return None
    _plant_secrets(run, document)
    result.evidence.body_prefix = None
    from botocore.credentials import Credentials

    account = str(document.get(account_key)) if account_key and document.get(account_key) else None
    progress.evidence.notes.append(
        f"access key {str(document['AccessKeyId'])[:4]}…, expires {document.get('Expiration')}"
        + (f", account {account}" if account else "")
    )
    progress.finish(Status.PASS, reason="credentials received" + (f" (account {account})" if account else ""))
    return Credentials(
        document["AccessKeyId"], document["SecretAccessKey"], document.get("Token"), method=service, account_id=account
    )


def _parse_document(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _plant_secrets(run: Run, document: dict[str, Any]) -> None:
    for key in ("SecretAccessKey", "Token", "SessionToken", "AccessKeyId"):
        value = document.get(key)
        if isinstance(value, str):
            run.redactor.add_secret(value)


# --- container credentials (EKS Pod Identity, ECS) ----------------------------------------------


def _container(run: Run, plan: CredentialPlan) -> Any:
    agent = "EKS Pod Identity agent" if plan.identity.source == "pod-identity" else "ECS container credentials"
    title = registry.title("container.credentials", agent=agent, url=plan.container_url)
    progress = run.start("container.credentials", title)
    headers = {"Accept": "application/json"}
    token = _container_token(run, plan, progress)
    if token is False:
        return None
    if token:
        headers["Authorization"] = str(token)
    result = _http_step(run, progress, "GET", plan.container_url or "", headers, secret_body=True)
    return _credentials_document(run, progress, result, "container", "GetCredentials", account_key="AccountId")


def _container_token(run: Run, plan: CredentialPlan, progress: CheckProgress) -> str | bool | None:
    """The Authorization value exactly as botocore sends it (the file is not stripped), or
    False when botocore would fail before sending anything (the check is then finished)."""
    if plan.container_token_file:
        read = _read_token(progress, plan.container_token_file, "")
        if read is None:
            return False
        token, where = read, plan.container_token_file
    elif plan.container_token_env:
        token = run.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
        where = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
    else:
        return None
    run.redactor.add_secret(token)
    if "\r" in token or "\n" in token:
        # botocore's ContainerProvider._validate_auth_token: the app's SDK fails here.
        progress.finish(
            Status.FAIL,
            layer=Layer.CREDENTIALS,
            symptom=Symptom.CREDENTIALS,
            error=ErrorInfo(type="ValueError", message="Auth token value is not a legal header value"),
            reason=f"the token in {where} contains a line break (a trailing newline counts): "
            "botocore refuses it (Auth token value is not a legal header value)",
        )
        return False
    return token


def _read_token(progress: CheckProgress, path: str, what: str) -> str | None:
    """The file's text as botocore reads it, or None with the check failed at the credentials layer."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        detail = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or str(exc))
        progress.finish(
            Status.FAIL,
            layer=Layer.CREDENTIALS,
            symptom=Symptom.CREDENTIALS,
            error=ErrorInfo(type=type(exc).__name__, message=str(exc)),
            reason=f"cannot read {what}{path}: {detail}",
        )
        return None


# --- IRSA ---------------------------------------------------------------------------------------


def _irsa(run: Run, plan: CredentialPlan) -> Any:
    progress = run.start("sts.assume-role-with-web-identity", registry.title("sts.assume-role-with-web-identity"))
    token_file = plan.web_identity_token_file or ""
    read = _read_token(progress, token_file, "web identity token ")
    if read is None:
        return None
    token = read.strip()
    run.redactor.add_secret(token)
    if not token:
        # botocore validates WebIdentityToken (min length 4) and raises before sending anything.
        progress.finish(
            Status.FAIL,
            layer=Layer.CREDENTIALS,
            symptom=Symptom.CREDENTIALS,
            error=ErrorInfo(type="ParamValidationError", message="Invalid length for parameter WebIdentityToken"),
            reason=f"web identity token file {token_file} is empty",
        )
        return None
    role_arn = plan.identity.role_arn or ""

    def call(client: Any) -> dict[str, Any]:
        return client.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="egress-doctor", WebIdentityToken=token
        )

    response = call_api(run, progress, "sts", "AssumeRoleWithWebIdentity", call, credentials=None, unsigned=True)
    if response is None:
        return None
    creds = response.get("Credentials") or {}
    arn = (response.get("AssumedRoleUser") or {}).get("Arn", "")
    for key in ("SecretAccessKey", "SessionToken", "AccessKeyId"):
        if creds.get(key):
            run.redactor.add_secret(str(creds[key]))
    if not creds.get("AccessKeyId"):
        progress.result = None
        progress.finish(
            Status.FAIL,
            layer=Layer.HTTP,
            symptom=Symptom.NOT_AWS,
            error=ErrorInfo(type="KeyError", message="no Credentials in the AssumeRoleWithWebIdentity answer"),
            reason="reply is not an AWS answer",
        )
        return None
    account = arn.split(":")[4] if arn.count(":") >= 5 else None
    if account:
        plan.identity.account_id = account
        progress.evidence.notes.append(f"account {account} from AssumedRoleUser {arn}")
    progress.finish(Status.PASS, reason="role assumed" + (f", account {account}" if account else ""))
    from botocore.credentials import Credentials

    return Credentials(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds.get("SessionToken"),
        method="assume-role-with-web-identity",
        account_id=account,
    )
