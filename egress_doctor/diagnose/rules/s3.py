"""S3's own answers about where a bucket lives (`x-amz-bucket-region`)."""

from __future__ import annotations

from egress_doctor.diagnose.rules.base import Cause, RunContext


def bucket_elsewhere(ctx: RunContext) -> list[Cause]:
    """ED547: S3 said the bucket is in another region: the SDK is sent to that region's host too.

    Nothing is consumed: when that second host is blocked, its own rule says why and fixes it.
    """
    out = []
    for o in ctx.observations:
        aws = o.aws
        if aws is None or not aws.bucket_region or o.skipped:
            continue
        host = aws.region_host or f"the S3 endpoint of {aws.bucket_region}"
        args = {"bucket": o.check.subject or "the bucket", "region": aws.bucket_region,
                "client_region": ctx.identity.region or "the client's region", "first": o.host or "S3",
                "host": host}
        out.append(Cause("ED547", args, checks=(o,), hosts=(host,) if aws.region_host else ()))
    return out
