"""DNS failures, for real, inside a private network namespace (see tests/netns.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import netns

_REASON = netns.unavailable_reason()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"needs a user+network namespace: {_REASON}"),
]

STS = "sts.us-east-1.amazonaws.com"

# Runs inside the namespace: one dial() in a scope, the ladder, and a botocore call, each
# reporting what the classifier made of it.
SNIPPET = f"""
import json, os, socket
for name in list(os.environ):
    if name.startswith("AWS_"):
        del os.environ[name]
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
import boto3, botocore.config, certifi
from egress_doctor.net import dial
from egress_doctor.net.classify import classify
from egress_doctor.net.ladder import probe_endpoint

def verdict(exc):
    found = classify(exc)
    return None if found is None else [str(found[0]), str(found[1])]

out = {{}}
with dial.dial_scope() as scope:
    try:
        dial.dial("{STS}", 443, 1.0).close()
        out["dial"] = None
    except OSError as exc:
        out["dial"] = verdict(exc)
    dns = scope.recorder.records[0].dns
    out["dns"] = {{"gai_errno": dns.gai_errno, "addresses": dns.addresses, "skipped": dns.skipped}}
    ladder = probe_endpoint("https://{STS}/", ca_file=certifi.where(), connect_timeout=1, read_timeout=1)
    out["ladder"] = [str(ladder.layer), str(ladder.symptom)]
    client = boto3.session.Session().client(
        "sts", region_name="us-east-1", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
        config=botocore.config.Config(connect_timeout=1, read_timeout=1,
                                      retries={{"mode": "standard", "total_max_attempts": 1}}),
    )
    try:
        client.get_caller_identity()
        out["botocore"] = None
    except Exception as exc:
        out["botocore"] = [type(exc).__name__] + (verdict(exc) or [])
print(json.dumps(out))
"""


def _run(resolver: netns.Resolver, tmp_path: Path) -> dict[str, Any]:
    return netns.run_python(SNIPPET, resolver, tmp_path)


def test_name_missing_from_a_files_only_resolver_is_dns_nxdomain_everywhere(tmp_path: Path) -> None:
    out = _run(netns.Resolver(nsswitch_hosts="files"), tmp_path)
    assert out["dns"]["gai_errno"] == -2
    assert out["dial"] == ["dns", "dns-nxdomain"]
    assert out["ladder"] == ["dns", "dns-nxdomain"]
    assert out["botocore"] == ["EndpointConnectionError", "dns", "dns-nxdomain"]


def test_unreachable_resolver_is_dns_unreachable_everywhere(tmp_path: Path) -> None:
    out = _run(netns.Resolver(nsswitch_hosts="dns"), tmp_path)
    assert out["dns"]["gai_errno"] == -3
    assert out["dial"] == ["dns", "dns-unreachable"]
    assert out["ladder"] == ["dns", "dns-unreachable"]
    assert out["botocore"] == ["EndpointConnectionError", "dns", "dns-unreachable"]


def test_real_name_mapped_to_loopback_in_hosts_resolves_and_then_fails_at_tcp(tmp_path: Path) -> None:
    hosts = f"127.0.0.1 localhost {STS}\n"
    out = _run(netns.Resolver(nsswitch_hosts="files", hosts=hosts), tmp_path)
    assert out["dns"] == {"gai_errno": None, "addresses": ["127.0.0.1"], "skipped": None}
    assert out["dial"] == ["tcp", "connect-refused"]
    assert out["ladder"] == ["tcp", "connect-refused"]
    assert out["botocore"] == ["EndpointConnectionError", "tcp", "connect-refused"]
