"""Destinations the SDK would have called next, had an earlier step not failed.

When the credential step is blocked by the sidecar's registry, STS and DynamoDB are never
called, and a fix built only from what was dialled would need a second run to find the next
blocked host. The probes record where each skipped call would have gone (botocore's endpoint
rules, nothing sent); under evidence that the registry blocks unknown hosts, those hosts are
added to the fix, marked as predicted.
"""

from __future__ import annotations

from egress_doctor.diagnose.catalogue import codes_with
from egress_doctor.diagnose.rules.base import Cause, Observation, RunContext
from egress_doctor.fixes.builders import EgressNeed


def predicted_destinations(ctx: RunContext, causes: list[Cause]) -> list[Cause]:
    """ED307 for each skipped call whose host no check reached, when the registry blocks hosts."""
    blocking = [c for c in causes if c.code in codes_with("registry_blocks") and c.need is not None]
    if not blocking or not ctx.sidecar_in_path:
        return []
    known = {(o.host, o.port) for o in ctx.observations if not o.skipped and o.host}
    known |= {(c.need.host, c.need.port) for c in causes if c.need is not None}
    blocked_by = blocking[0].checks[0].id if blocking[0].checks else "an earlier check"
    out: list[Cause] = []
    for o in ctx.observations:
        if not o.skipped or o.host is None or o.port is None or (o.host, o.port) in known:
            continue
        known.add((o.host, o.port))
        out.append(predicted(o, blocked_by))
    return out


def predicted(o: Observation, blocked_by: str) -> Cause:
    reason = f"not called yet ({blocked_by} failed first); botocore's endpoint rules name it"
    return Cause(
        "ED307",
        {"host": o.host, "port": o.port, "check": o.check.title or o.id, "blocked_by": blocked_by},
        checks=(o,),
        hosts=(str(o.host),),
        need=EgressNeed(host=str(o.host), port=int(o.port or 443), code="ED307", reason=reason, scheme=o.scheme),
    )
