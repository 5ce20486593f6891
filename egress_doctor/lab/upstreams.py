"""The loopback fakes that stand in for everything outside the pod, and which names they serve.

The lab's Envoy config (`lab.translate`, `lab.routes`, `lab.clusters`) sends every upstream to one
of these; nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from egress_doctor.aws.hosts import GLOBAL, classify, is_s3_bucket_host, partitions

# Link-local addresses never go on the wire: each has a loopback stand-in the lab binds instead.
LINK_LOCAL_STANDINS = {
    "169.254.169.254": "127.169.254.254",  # IMDS
    "169.254.170.23": "127.169.170.23",  # EKS Pod Identity agent
    "169.254.170.2": "127.169.170.2",  # ECS container credentials
}


def is_aws_host(host: str) -> bool:
    """A real AWS endpoint name a DNS lookup would find (`sts.us-east-1.amazonaws.com`, account
    DynamoDB hosts, global STS, S3 bucket and access point names): a service botocore knows, in a
    region its partition has; a typo such as `sts.us-east1.amazonaws.com` is not one."""
    found = classify(host)
    if found is None or not found.known or found.wildcard:
        return False
    if found.resource and not (found.account or is_s3_bucket_host(host)):
        return False
    partition = next(p for p in partitions() if p.id == found.partition)
    if found.region == GLOBAL:  # a global name exists only where endpoints.json spells it out
        service_host = found.host[len(found.resource) + 1:] if found.resource else found.host
        return service_host in partition.hostnames
    return found.region in partition.regions


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True)
class Upstreams:
    """The loopback fakes that stand in for everything outside the pod."""

    aws: Endpoint | None = None  # TLS, serves the real AWS host names
    imds: Endpoint | None = None
    pod_identity: Endpoint | None = None
    serves: Callable[[str], bool] = is_aws_host  # which names "resolve" to the fake AWS
    ca_bundle: str = ""  # what the fake AWS is signed by: stands in for the system roots
    imds_address: str = "169.254.169.254"  # where the app's AWS_EC2_METADATA_SERVICE_ENDPOINT points
    # in-mesh Services the lab runs (the egress gateway): "<host>:<service port>" → where its pods listen
    services: Mapping[str, Endpoint] = field(default_factory=dict)

    def for_ip(self, ip: str) -> Endpoint | None:
        if ip in ("169.254.169.254", self.imds_address):
            return self.imds
        if ip in ("169.254.170.23", "169.254.170.2"):
            return self.pod_identity
        return None
