"""No secret reaches any output: known values planted in every credential source and answer.

Each scenario plants secrets (environment keys, the IRSA JWT and the keys STS hands back, the
Pod Identity token and credentials, the IMDS token and credentials, an Envoy 503 body echoing a
token, and credential documents that botocore itself logs or puts in an exception) and runs
`check -v` in every output format. None of the values, nor their URL-encoded or JSON-escaped
spellings, may appear in stdout, stderr, or the log records emitted during the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from egress_doctor.lab.fakes import LabCredentials
from tests import canned
from tests.canned import CannedServer, Reply, Request
from tests.checkrun import (
    ENV_SECRET_KEY,
    ENV_SESSION_TOKEN,
    POD_IDENTITY_TOKEN,
    REGION,
    WEB_IDENTITY_JWT,
    World,
    aws_world,
    run_cli,
)

ENV_KEY_ID = "AKIAPLANTEDEXAMPLE12"  # World.static_keys()
STS = f"sts.{REGION}.amazonaws.com"
DDB = f"dynamodb.{REGION}.amazonaws.com"
FORMATS = ("table", "json", "yaml", "fix-only", "json+summary")
# How each output path is asked for on the command line (all with -v where it applies).
OUTPUT_ARGS = {
    "table": ("-o", "table", "-v"),
    "json": ("-o", "json", "-v"),
    "yaml": ("-o", "yaml", "-v"),
    "fix-only": ("--fix-only", "-v"),
    "json+summary": ("-o", "json", "-v", "--summary-to-stderr"),
}
PROFILE_SECRET_KEY = "ProfileSecretKeyPLANTED/wJalrXUtnFEMIK7MD"
PROFILE_SESSION_TOKEN = "ProfileSessionTokenPLANTED/IQoJb3JpZ2luX2Vj"

IMDS_CREDENTIALS = LabCredentials(
    access_key_id="ASIAPLANTEDIMDS00001",
    secret_access_key="ImdsSecretPLANTED/wJalrXUtnFEMI+K7MDENGbP",
    token="ImdsSessionTokenPLANTED/IQoJb3JpZ2luX2VjE+AAAA==",
)
AGENT_CREDENTIALS = LabCredentials(
    access_key_id="ASIAPLANTEDAGENT0001",
    secret_access_key="AgentSecretPLANTED/wJalrXUtnFEMI+K7MDENG",
    token="AgentSessionTokenPLANTED/IQoJb3JpZ2luX2VjE+BBBB==",
)
DOCUMENT_CREDENTIALS = LabCredentials(
    access_key_id="ASIAPLANTEDDOCUMENT1",
    secret_access_key="DocumentSecretPLANTED/wJalrXUtnFEMI+K7MD",
    token="DocumentSessionTokenPLANTED/IQoJb3JpZ2luX2+CCCC==",
)
IMDS_TOKEN = "ImdsApiTokenPLANTED-AQAEAKz9x3vC_q1Vw2pW8kLm0A=="
AGENT_ENV_TOKEN = "ContainerAuthTokenPLANTED-9a8b7c6d5e4f"
ECHOED_SIGNATURE = "5f1e0c9ba2d34e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"


def spellings(value: str) -> set[str]:
    """How a secret can show up in output: raw, URL-encoded, JSON-escaped (also with `\\/`)."""
    escaped = json.dumps(value)[1:-1]
    return {value, quote(value, safe=""), quote(value), escaped, escaped.replace("/", "\\/")}


def document(credentials: LabCredentials) -> dict[str, str]:
    return {
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.token,
        "Expiration": credentials.expiration(),
    }


def values_of(credentials: LabCredentials) -> list[str]:
    return [credentials.access_key_id, credentials.secret_access_key, credentials.token]


def imds_answering(credentials_reply: Reply) -> Callable[[Request], Reply]:
    """An IMDS stand-in: a planted token, role `node-role`, then `credentials_reply`."""

    def answer(request: Request) -> Reply:
        if request.method == "PUT":
            return Reply(200, body=IMDS_TOKEN.encode())
        if request.target.endswith("/security-credentials/"):
            return Reply(200, body=b"node-role")
        return credentials_reply

    return answer


def moto_issued_secrets() -> list[str]:
    """Keys moto handed out through AssumeRole*: read from its backend (in-process)."""
    from moto.sts.models import sts_backends

    found = []
    for _account, regions in sts_backends.items():
        for _region, backend in regions.items():
            for role in backend.assumed_roles:
                found += [role.access_key_id, role.secret_access_key, role.session_token]
    return found


# A scenario plants its secrets in `world` and yields a function returning them all (some are
# known only after the run, e.g. what moto issued).
Planted = Callable[[], list[str]]
Scenario = Callable[[World, ExitStack], Iterator[Planted]]


@contextmanager
def env_keys(world: World, _stack: ExitStack) -> Iterator[Planted]:
    world.static_keys()
    yield lambda: [ENV_KEY_ID, ENV_SECRET_KEY, ENV_SESSION_TOKEN]


@contextmanager
def shared_credentials_file(world: World, _stack: ExitStack) -> Iterator[Planted]:
    """Keys from ~/.aws/credentials: never in the environment, still secrets in every output."""
    (world.tmp / "no-aws-credentials").write_text(
        "[default]\naws_access_key_id = AKIAPROFILEPLANTED01\n"
        f"aws_secret_access_key = {PROFILE_SECRET_KEY}\naws_session_token = {PROFILE_SESSION_TOKEN}\n"
    )
    yield lambda: [PROFILE_SECRET_KEY, PROFILE_SESSION_TOKEN, "AKIAPROFILEPLANTED01"]


@contextmanager
def irsa(world: World, _stack: ExitStack) -> Iterator[Planted]:
    world.irsa()
    yield lambda: [WEB_IDENTITY_JWT, *moto_issued_secrets()]


@contextmanager
def pod_identity(world: World, _stack: ExitStack) -> Iterator[Planted]:
    world.pod_identity()
    world.agent.configure(credentials=AGENT_CREDENTIALS)
    yield lambda: [POD_IDENTITY_TOKEN, *values_of(AGENT_CREDENTIALS)]


@contextmanager
def imds(world: World, _stack: ExitStack) -> Iterator[Planted]:
    world.imds.configure(credentials=IMDS_CREDENTIALS)
    issued: list[str] = []
    issue = world.imds.issue_token

    def remember(ttl_seconds: int) -> str:
        issued.append(issue(ttl_seconds))
        return issued[-1]

    world.monkeypatch.setattr(world.imds, "issue_token", remember)
    yield lambda: [*issued, *values_of(IMDS_CREDENTIALS)]


@contextmanager
def envoy_503_echoing_the_request(world: World, stack: ExitStack) -> Iterator[Planted]:
    """A proxy error page that echoes request headers: the session token and the signature."""
    world.static_keys()
    body = (
        "upstream connect error or disconnect/reset before headers. request was: "
        f"x-amz-security-token: {ENV_SESSION_TOKEN}; authorization: AWS4-HMAC-SHA256 "
        f"Credential={ENV_KEY_ID}/20260101/{REGION}/sts/aws4_request, SignedHeaders=host, "
        f"Signature={ECHOED_SIGNATURE}"
    )
    reply = canned.text_reply(503, body, *canned.envoy_headers())
    server = stack.enter_context(CannedServer(reply, tls=world.aws.pki.ca, hostnames=[STS, DDB]))
    world.use(EGRESS_DOCTOR_CONNECT_TO=f":443:127.0.0.1:{server.port}")
    yield lambda: [ENV_KEY_ID, ENV_SECRET_KEY, ENV_SESSION_TOKEN, ECHOED_SIGNATURE]


@contextmanager
def imds_document_cut_short(world: World, stack: ExitStack) -> Iterator[Planted]:
    """A credentials document that is not JSON (cut off): shown as a body prefix, never parsed."""
    text = json.dumps(document(DOCUMENT_CREDENTIALS), indent=2)
    cut = text[: text.index('"Expiration"')]
    server = stack.enter_context(CannedServer(imds_answering(Reply(200, body=cut.encode()))))
    world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url())
    yield lambda: [IMDS_TOKEN, *values_of(DOCUMENT_CREDENTIALS)]


def _assume_role_profile(world: World, credential_source: str) -> None:
    (world.tmp / "no-aws-config").write_text(
        f"[default]\nrole_arn = arn:aws:iam::111122223333:role/app\ncredential_source = {credential_source}\n"
    )


@contextmanager
def botocore_logs_an_imds_document(world: World, stack: ExitStack) -> Iterator[Planted]:
    """Profile credentials botocore fetches itself: on a non-200 it logs IMDS's body."""
    reply = Reply(500, body=json.dumps(document(DOCUMENT_CREDENTIALS)).encode())
    server = stack.enter_context(CannedServer(imds_answering(reply)))
    world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url())
    _assume_role_profile(world, "Ec2InstanceMetadata")
    yield lambda: [IMDS_TOKEN, *values_of(DOCUMENT_CREDENTIALS)]


@contextmanager
def botocore_puts_a_container_document_in_its_error(world: World, stack: ExitStack) -> Iterator[Planted]:
    """botocore's container fetcher copies a non-200 body into MetadataRetrievalError's message."""
    world.monkeypatch.setattr("botocore.utils.ContainerMetadataFetcher.SLEEP_TIME", 0)
    reply = Reply(500, (("content-type", "application/json"),), json.dumps(document(DOCUMENT_CREDENTIALS)).encode())
    server = stack.enter_context(CannedServer(reply))
    world.use(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=server.url("/v1/credentials"),
        AWS_CONTAINER_AUTHORIZATION_TOKEN=AGENT_ENV_TOKEN,
    )
    _assume_role_profile(world, "EcsContainer")
    yield lambda: [AGENT_ENV_TOKEN, *values_of(DOCUMENT_CREDENTIALS)]


SECRET_VALUE = "SecretsManagerValuePLANTED-9c1f7e2a4b6d8f0a"
PARAMETER_VALUE = "SsmParameterValuePLANTED-3e5a7c9b1d2f4a6c"


@contextmanager
def secret_and_parameter_values(world: World, _stack: ExitStack) -> Iterator[Planted]:
    """The app's secret and parameter hold values: checking them must never fetch one."""
    import botocore.session

    world.static_keys()
    session = botocore.session.Session()

    def client(service: str) -> Any:
        return session.create_client(service, region_name=REGION, endpoint_url=world.aws.endpoint_url,
                                     verify=str(world.aws.pki.ca_bundle_path),
                                     aws_access_key_id=ENV_KEY_ID, aws_secret_access_key=ENV_SECRET_KEY)

    logging.disable(logging.CRITICAL)  # the test's own setup sends the values: not egress-doctor's logs
    try:
        client("secretsmanager").create_secret(Name="billing/db", SecretString=SECRET_VALUE)
        client("ssm").put_parameter(Name="/billing/db-url", Value=PARAMETER_VALUE, Type="SecureString")
    finally:
        logging.disable(logging.NOTSET)
    world.aws.clear_requests()
    footprint = world.tmp / "footprint.yaml"
    footprint.write_text("secrets: [billing/db]\nparameters: [/billing/db-url]\n")
    world.use(EGRESS_DOCTOR_CONFIG=str(footprint))
    yield lambda: [ENV_KEY_ID, ENV_SECRET_KEY, ENV_SESSION_TOKEN, SECRET_VALUE, PARAMETER_VALUE]


SCENARIOS: list[Scenario] = [
    env_keys,
    shared_credentials_file,
    irsa,
    pod_identity,
    imds,
    envoy_503_echoing_the_request,
    imds_document_cut_short,
    botocore_logs_an_imds_document,
    botocore_puts_a_container_document_in_its_error,
    secret_and_parameter_values,
]


@dataclass
class Run:
    output: str
    logs: str
    planted: list[str]
    code: int


def run_scenario(scenario: Scenario, output_format: str, monkeypatch, tmp_path, caplog) -> Run:
    caplog.set_level(logging.DEBUG)
    with aws_world(monkeypatch, tmp_path) as world, ExitStack() as stack, scenario(world, stack) as planted:
        result = run_cli("check", *OUTPUT_ARGS[output_format])
        secrets = [value for value in planted() if value]
    logs = "\n".join(
        record.getMessage() + (record.exc_text or "") for record in caplog.get_records("call")
    )
    return Run(result.stdout + result.stderr, logs, secrets, result.code)


def leaked(text: str, planted: list[str]) -> list[str]:
    return sorted({form for value in planted for form in spellings(value) if form in text})


@pytest.mark.parametrize("output_format", FORMATS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.replace("_", "-"))
def test_no_planted_secret_appears_in_verbose_output_or_logs(scenario, output_format, monkeypatch, tmp_path, caplog):
    run = run_scenario(scenario, output_format, monkeypatch, tmp_path, caplog)
    assert run.code in (0, 1), run.output[-2000:]
    assert len(run.planted) >= 3, f"the scenario planted too little: {run.planted}"
    assert leaked(run.output, run.planted) == []
    assert leaked(run.logs, run.planted) == []
    if output_format != "fix-only":
        # The verbose output did carry secret-bearing material: it was there, and it was masked.
        assert "<redacted>" in run.output


def test_irsa_scenario_really_received_keys_from_sts(monkeypatch, tmp_path, caplog):
    run = run_scenario(irsa, "json", monkeypatch, tmp_path, caplog)
    assert run.code == 0
    assert len(run.planted) == 4, "moto issued no credentials: the IRSA path was not exercised"


def test_checking_a_secret_and_a_parameter_never_asks_for_their_values(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world, ExitStack() as stack, \
            secret_and_parameter_values(world, stack):
        result = run_cli("check", "-o", "json", "-v")
        operations = {r.operation for r in world.aws.requests}
    assert result.code == 0, result.stdout[-2000:]
    assert {"DescribeSecret", "DescribeParameters"} <= operations
    assert not operations & {"GetSecretValue", "BatchGetSecretValue", "GetParameter", "GetParameters",
                             "GetParametersByPath"}
