"""Run `egress-doctor` in-process against local fakes, the way the tests and a user would.

`aws_world()` gives a clean AWS environment (no inherited AWS_*, no config files) plus the lab's
fake AWS over real TLS, a fake IMDS and a fake Pod Identity agent, and a connect-to rule that
steers every HTTPS connection to the fake AWS while SNI and Host keep the AWS names.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from egress_doctor.cli import main
from egress_doctor.context import Environment
from egress_doctor.lab.fakes import FakeAws, FakeImds, FakePodIdentityAgent, LabCredentials, LabPKI

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::444455556666:role/app"
# Fake secrets planted by the tests: none of them may ever appear in any output.
WEB_IDENTITY_JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImxhYiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2lnbmF0dXJlLWxhYg"
)
POD_IDENTITY_TOKEN = "pod-identity-token-PLANTED-7f3e9a1c"
ENV_SECRET_KEY = "EnvSecretKeyPLANTEDwJalrXUtnFEMI/K7MDENG"
ENV_SESSION_TOKEN = "EnvSessionTokenPLANTED/IQoJb3JpZ2luX2VjEJr"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def check(self, check_id: str, subject: str | None = None) -> dict[str, Any]:
        for check in self.json()["checks"]:
            if check["id"] == check_id and (subject is None or check["subject"] == subject):
                return check
        raise AssertionError(f"no check {check_id} in {[c['id'] for c in self.json()['checks']]}")


# A /proc that lists no process: what `check` sees of other containers unless a test says
# otherwise, so that no test depends on the processes of the machine it runs on.
EMPTY_PROC = tempfile.mkdtemp(prefix="egress-doctor-empty-proc-")


def run_cli(*args: str, env: Mapping[str, str] | None = None, proc_root: str = EMPTY_PROC) -> CliResult:
    """Run the CLI in-process; `env` is the process environment it must see (already applied);
    `proc_root` where it looks for the pod's other containers (`--mirror`)."""
    out, err = io.StringIO(), io.StringIO()
    environment = Environment(environ=os.environ if env is None else env, stdout=out, stderr=err,
                              proc_root=proc_root)
    code = main(list(args), environment)
    return CliResult(int(code), out.getvalue(), err.getvalue())


@dataclass
class World:
    tmp: Path
    aws: FakeAws
    imds: FakeImds
    agent: FakePodIdentityAgent
    monkeypatch: pytest.MonkeyPatch
    env: dict[str, str] = field(default_factory=dict)

    def use(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def drop(self, *names: str) -> None:
        for name in names:
            self.monkeypatch.delenv(name, raising=False)

    def static_keys(self, account_id: str | None = None) -> None:
        self.use(AWS_ACCESS_KEY_ID="AKIAPLANTEDEXAMPLE12", AWS_SECRET_ACCESS_KEY=ENV_SECRET_KEY)
        self.use(AWS_SESSION_TOKEN=ENV_SESSION_TOKEN)
        if account_id:
            self.use(AWS_ACCOUNT_ID=account_id)

    def irsa(self, role_arn: str = ROLE_ARN) -> Path:
        token = self.tmp / "web-identity-token"
        token.write_text(WEB_IDENTITY_JWT)
        self.use(AWS_ROLE_ARN=role_arn, AWS_WEB_IDENTITY_TOKEN_FILE=str(token))
        return token

    def pod_identity(self) -> Path:
        token = self.agent.write_token_file(self.tmp / "pod-identity-token")
        self.use(
            AWS_CONTAINER_CREDENTIALS_FULL_URI=self.agent.full_uri,
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token),
        )
        return token

    def imds_only(self) -> None:
        self.drop("AWS_EC2_METADATA_DISABLED")


def become_the_pod(monkeypatch: pytest.MonkeyPatch, environ: Mapping[str, str]) -> None:
    """This process's environment becomes exactly the pod's (botocore reads os.environ)."""
    for name in list(os.environ):
        if name not in environ:
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "EGRESS_DOCTOR_", "KUBERNETES_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)  # KUBERNETES_*: a CI pod's own cluster is never read by a test
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))


# Regions the fake AWS has names for: the app's, and two where its resources may live.
WORLD_REGIONS = (REGION, "eu-west-1", "us-west-2")


@contextmanager
def aws_world(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, extra_names: tuple[str, ...] = (), **imds_behaviour: Any
) -> Iterator[World]:
    clean_aws_env(monkeypatch, tmp)
    credentials = LabCredentials.generate()
    with (
        FakeAws(LabPKI(tmp), regions=WORLD_REGIONS, extra_names=extra_names) as aws,
        FakeImds(credentials=credentials, **imds_behaviour) as imds,
        FakePodIdentityAgent(token=POD_IDENTITY_TOKEN, account_id="222233334444") as agent,
    ):
        monkeypatch.setenv("AWS_CA_BUNDLE", str(aws.pki.ca_bundle_path))
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        monkeypatch.setenv("EGRESS_DOCTOR_CONNECT_TO", f":443:127.0.0.1:{aws.port}")
        yield World(tmp=tmp, aws=aws, imds=imds, agent=agent, monkeypatch=monkeypatch)
