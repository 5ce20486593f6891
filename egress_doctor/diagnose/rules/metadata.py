"""Instance metadata (IMDS) and the container credentials agents (EKS Pod Identity, ECS).

These read several checks on the same destination together: a token PUT that times out while
the IMDSv1 GET answers is the EC2 hop limit, not the mesh.
"""

from __future__ import annotations

from egress_doctor.diagnose.rules.base import (
    AGENT_ADDRESSES,
    IMDS_ADDRESSES,
    Cause,
    HostGroup,
    Observation,
    RunContext,
    body,
    is_envoy_local_reply,
)
from egress_doctor.fixes.builders import METADATA_ENDPOINTS
from egress_doctor.model import Status, Symptom

_FALLBACK_STATUSES = (403, 404, 405)  # botocore drops the token and uses IMDSv1 after these
_UNREACHABLE = (Symptom.CONNECT_REFUSED, Symptom.CONNECT_TIMEOUT, Symptom.CONNECT_OTHER, Symptom.HTTP_TIMEOUT)


def _one(code: str, o: Observation, args: dict[str, object]) -> Cause:
    return Cause(code, args, checks=(o,), hosts=(str(o.host),))


def _answered(o: Observation | None, status: int) -> bool:
    """The metadata service itself (not Envoy) answered with this status."""
    return o is not None and o.failed and o.status_code == status and not is_envoy_local_reply(o.http)


def _v1_unavailable(ctx: RunContext, role: Observation | None) -> str | None:
    if _answered(role, 401):
        return "IMDSv1 requests get 401: the instance requires IMDSv2"
    v1_disabled = ctx.facts.env.get("AWS_EC2_METADATA_V1_DISABLED", "").lower() == "true"
    if (role is None or role.skipped) and v1_disabled:
        return "AWS_EC2_METADATA_V1_DISABLED=true"
    return None


def imds_hop_limit(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED510/ED511: the token PUT stalls (its reply dies one hop out) while GETs answer."""
    token, role = group.by_id("imds.token"), group.by_id("imds.role")
    if group.host not in IMDS_ADDRESSES or token is None or token.symptom is not Symptom.HTTP_TIMEOUT:
        return None
    if role is not None and role.check.status is Status.PASS and group.failures == (token,):
        return _one("ED510", token, {"host": group.host})
    unavailable = _v1_unavailable(ctx, role)
    if unavailable is None:
        return None
    checks = tuple(o for o in (token, role) if o is not None and o.failed)
    return Cause("ED511", {"host": group.host, "detail": unavailable}, checks=checks, hosts=(group.host,))


def imds_token_refused(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED515: the token PUT got 403/404/405 from IMDS and everything after it worked over IMDSv1."""
    token = group.by_id("imds.token")
    if group.host not in IMDS_ADDRESSES or token is None or group.failures != (token,):
        return None
    status = token.status_code
    if status not in _FALLBACK_STATUSES or not _answered(token, status):
        return None
    return _one("ED515", token, {"host": group.host, "status": status})


def imds_v2_required(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED512: a metadata GET got 401: IMDSv2 is required and the request had no valid token."""
    if group.host not in IMDS_ADDRESSES:
        return None
    rejected = next((o for o in group.failures if o.id != "imds.token" and _answered(o, 401)), None)
    if rejected is None:
        return None
    return Cause("ED512", {"host": group.host}, checks=group.failures, hosts=(group.host,))


def imds_no_role(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED513: the role list is 404 (from IMDS, not Envoy) or empty: no instance profile."""
    role = group.by_id("imds.role")
    if group.host not in IMDS_ADDRESSES or role is None or not role.failed:
        return None
    empty_list = role.status_code == 200 and not body(role.http).strip()
    if not (_answered(role, 404) or empty_list):
        return None
    return _one("ED513", role, {"host": group.host})


def imds_error(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED514: IMDS answered with an error status or an error document (Code: ...)."""
    if group.host not in IMDS_ADDRESSES:
        return None
    answered = [o for o in group.failures if o.symptom is Symptom.AWS_ERROR]
    if not answered:
        return None
    worst = next((o for o in answered if o.id != "imds.token"), answered[0])
    args = {"host": group.host, "detail": worst.detail()}
    return Cause("ED514", args, checks=group.failures, hosts=(group.host,))


def _agent_args(group: HostGroup) -> dict[str, object]:
    return {"agent": METADATA_ENDPOINTS[group.host].label, "host": group.host, "port": group.port}


def agent_unreachable(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED520: the node-local agent did not accept or did not answer."""
    if group.host not in AGENT_ADDRESSES or group.root.symptom not in _UNREACHABLE:
        return None
    args = {**_agent_args(group), "detail": group.root.detail()}
    return Cause("ED520", args, checks=group.failures, hosts=(group.host,))


def agent_refused(group: HostGroup, ctx: RunContext) -> Cause | None:
    """ED521: the agent itself (not Envoy) answered with an error status."""
    root = group.root
    if group.host not in AGENT_ADDRESSES or root.status_code is None or is_envoy_local_reply(root.http):
        return None
    if root.symptom not in (Symptom.AWS_ERROR, Symptom.HTTP_STATUS):
        return None
    text = body(root.http).strip().splitlines()
    detail = text[0][:120] if text else "empty body"
    args = {**_agent_args(group), "status": root.status_code, "detail": detail}
    return Cause("ED521", args, checks=group.failures, hosts=(group.host,))
