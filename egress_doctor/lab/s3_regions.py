"""Where the lab's buckets live, and what S3 answers a request signed for another region.

moto answers for any bucket wherever the request was sent; real S3 does not. A request for a
bucket in eu-west-1 that is signed for us-east-1 gets, with `x-amz-bucket-region: eu-west-1`:

- from a regional endpoint (`invoices.s3.us-west-2.amazonaws.com`): 301 PermanentRedirect;
- from the global endpoint (`invoices.s3.amazonaws.com`): 400 AuthorizationHeaderMalformed;
- and no body at all for a HEAD (HeadBucket sees only the status and the header).

botocore's S3 region redirector turns either into a second request to the bucket's region, so
the lab shows the two hosts the app really needs.
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import unquote
from xml.sax.saxutils import escape

from egress_doctor.aws.hosts import GLOBAL, classify
from egress_doctor.lab.aws_errors import status_line

Answer = tuple[str, list[tuple[str, str]], bytes]


def bucket_of(host: str, path: str) -> str | None:
    """The bucket a request addresses: the first label of a virtual-hosted name, else the first
    path segment of a path-style request (None for access points and service-level calls)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    found = classify(name)
    if found is None or found.service != "s3" or ".s3-accesspoint" in found.host:
        return None
    if found.resource:
        return found.resource if "." not in found.resource else None
    first = unquote(path.lstrip("/").split("/", 1)[0])
    return first or None


class S3Regions:
    """Buckets the lab created, by region; thread-safe."""

    def __init__(self) -> None:
        self._regions: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, bucket: str, region: str) -> None:
        with self._lock:
            self._regions[bucket] = region

    def clear(self) -> None:
        with self._lock:
            self._regions.clear()

    def misdirected(self, host: str, path: str, method: str, signed_region: str | None) -> Answer | None:
        """S3's answer when the request is signed for a region the bucket is not in, else None."""
        bucket = bucket_of(host, path)
        if bucket is None or signed_region is None:
            return None
        with self._lock:
            region = self._regions.get(bucket)
        if region is None or region == signed_region:
            return None
        found = classify(host.rsplit(":", 1)[0])
        regional = found is not None and found.region != GLOBAL
        status, code = (301, "PermanentRedirect") if regional else (400, "AuthorizationHeaderMalformed")
        request_id = uuid.uuid4().hex[:16].upper()
        body = b"" if method == "HEAD" else (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>The bucket is in this region: {escape(region)}.</Message>"
            f"<Region>{escape(region)}</Region><BucketName>{escape(bucket)}</BucketName>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [("x-amz-bucket-region", region), ("x-amz-request-id", request_id),
                   ("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        return status_line(status), headers, body
