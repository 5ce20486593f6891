"""The world as the tool sees it: environment, identity of the process, output streams.

botocore reads `os.environ` itself, so the environment here is the process's; tests set
variables with monkeypatch and run the CLI in-process.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from egress_doctor.model import RunFacts

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# Environment variables the diagnosis may read (never secrets).
FACT_ENV = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE",
    "AWS_EC2_METADATA_V1_DISABLED",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_IMDS_USE_IPV6",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


@dataclass
class Environment:
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    service_account_namespace_file: str = SERVICE_ACCOUNT_NAMESPACE
    # Where the processes of the pod's other containers are listed (`check --mirror`).
    proc_root: str = "/proc"
    # When the command started (time.monotonic()): a run's --deadline counts from here.
    started: float = field(default_factory=time.monotonic)
    # name → addresses (`blocked` names an address by resolving the hosts the SDK would call);
    # None: the system resolver (sources.resolver.system_resolve).
    resolver: Callable[[str], list[str]] | None = None

    def stdout_is_tty(self) -> bool:
        return hasattr(self.stdout, "isatty") and self.stdout.isatty()

    def pod_namespace(self, flag: str | None) -> str | None:
        """--namespace, else POD_NAMESPACE, else the service-account namespace file."""
        if flag:
            return flag
        if self.environ.get("POD_NAMESPACE"):
            return self.environ["POD_NAMESPACE"]
        try:
            with open(self.service_account_namespace_file, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except OSError:
            return None

    def facts(self, namespace: str | None, connect_to: list[str]) -> RunFacts:
        env = {k: self.environ[k] for k in FACT_ENV if k in self.environ}
        return RunFacts(uid=self.uid, gid=self.gid, namespace=namespace, env=env, connect_to=connect_to)
