"""The fake AWS side of the lab, in one import: AWS APIs, IMDS, the Pod Identity agent, a CONNECT tunnel.

All of them listen on 127.0.0.1 on a free port, run in-process on their own threads, are
context managers, record what they received (never secrets) and stop without leaving a thread,
socket or file behind::

    with FakeAws(LabPKI(tmp)) as aws, FakeImds(token="hang") as imds:
        env = {"AWS_CA_BUNDLE": str(aws.pki.ca_bundle_path),
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}

FakeAws needs the `lab` extra (moto[server]); it imports moto only when it starts.
"""

from __future__ import annotations

from .aws_errors import InjectedAnswer
from .aws_front import AwsRequest
from .credentials import LabCredentials
from .fake_aws import MOTO_DEFAULT_ACCOUNT, FakeAws, aws_server_names
from .fake_imds import FakeImds, ImdsBehaviour, ImdsRequest
from .fake_pod_identity import AgentRequest, FakePodIdentityAgent, PodIdentityBehaviour
from .pki import LabPKI, LeafFiles
from .tunnel import ConnectTunnel, TunnelRequest

__all__ = [
    "MOTO_DEFAULT_ACCOUNT",
    "AgentRequest",
    "AwsRequest",
    "ConnectTunnel",
    "FakeAws",
    "FakeImds",
    "FakePodIdentityAgent",
    "ImdsBehaviour",
    "ImdsRequest",
    "InjectedAnswer",
    "LabCredentials",
    "LabPKI",
    "LeafFiles",
    "PodIdentityBehaviour",
    "TunnelRequest",
    "aws_server_names",
]
