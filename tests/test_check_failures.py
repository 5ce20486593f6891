"""The failure taxonomy through the real CLI: each misbehaving server, the layer and symptom it yields.

STS and DynamoDB are steered onto a server of tests/sockets.py or tests/canned.py with
`--connect-to` flags (they come before the EGRESS_DOCTOR_CONNECT_TO rule of `aws_world`, and the
first match wins), using static keys from the environment. The expectations are the ones of knowledge/aws-sdk.md §5.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import canned, sockets
from tests.canned import CannedServer, Reply, Request
from tests.checkrun import REGION, CliResult, World, aws_world, run_cli

STS = f"sts.{REGION}.amazonaws.com"
DDB = f"dynamodb.{REGION}.amazonaws.com"
API_CHECKS = ("sts.get-caller-identity", "dynamodb.list-tables")
# Below the 1 s after which Linux retransmits a dropped SYN (see BacklogFullServer).
CONNECT_TIMEOUT = "0.5"
READ_TIMEOUT = "1"

ServerFactory = Callable[[World], contextlib.AbstractContextManager[int]]


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


def run_against(port: int, *extra: str) -> CliResult:
    """`check -o json` with STS and DynamoDB steered to 127.0.0.1:port."""
    return run_cli(
        "check", "-o", "json",
        "--connect-to", f"{STS}:443:127.0.0.1:{port}",
        "--connect-to", f"{DDB}:443:127.0.0.1:{port}",
        "--connect-timeout", CONNECT_TIMEOUT, "--read-timeout", READ_TIMEOUT,
        *extra,
    )  # fmt: skip


@contextlib.contextmanager
def _listening(server: Any) -> Iterator[int]:
    with server:
        yield server.port


def _refused(_world: World) -> contextlib.AbstractContextManager[int]:
    return sockets.refused_port()


def _plain(server: Callable[[], Any]) -> ServerFactory:
    return lambda _world: _listening(server())


def _https(responder: Reply | Callable[[Request], Reply], names: tuple[str, ...] = (STS, DDB)) -> ServerFactory:
    """A CannedServer with a certificate from the lab CA (which AWS_CA_BUNDLE trusts)."""
    return lambda world: _listening(CannedServer(responder, tls=world.aws.pki.ca, hostnames=names))


def _untrusted(_world: World) -> contextlib.AbstractContextManager[int]:
    import trustme

    return _listening(CannedServer(canned.sts_get_caller_identity_ok(), tls=trustme.CA(), hostnames=[STS, DDB]))


def _by_service(sts: Reply, dynamodb: Reply) -> Callable[[Request], Reply]:
    return lambda request: sts if request.headers.get("host", "").startswith("sts.") else dynamodb


def _html(status: int) -> Reply:
    return Reply(status, (("content-type", "text/html"),), b"<html><body><h1>Welcome to nginx!</h1></body></html>")


def _first_bytes() -> Iterator[bytes]:
    yield b"<GetCallerIdentityResponse><GetCal"


def _outcome(result: CliResult, check_id: str) -> tuple[str, str | None, str | None, str | None]:
    check = result.check(check_id)
    return check["status"], check["layer"], check["symptom"], (check["error"] or {}).get("type")


# (case, server, STS outcome, DynamoDB outcome): outcome = (layer, symptom, error type).
TRANSPORT_CASES = [
    ("refused", _refused, ("tcp", "connect-refused", "ConnectionRefusedError"), None),
    ("accept-queue-full", _plain(sockets.BacklogFullServer), ("tcp", "connect-timeout", "TimeoutError"), None),
    ("fin-after-accept", _plain(lambda: sockets.CloseServer("accept", "fin")),
     ("tls", "tls-closed", "ssl.SSLEOFError"), None),
    ("rst-after-accept", _plain(lambda: sockets.CloseServer("accept", "rst")),
     ("tls", "tls-closed", "ConnectionResetError"), None),
    ("fin-after-client-hello", _plain(lambda: sockets.CloseServer("client_hello", "fin")),
     ("tls", "tls-closed", "ssl.SSLEOFError"), None),
    ("rst-after-client-hello", _plain(lambda: sockets.CloseServer("client_hello", "rst")),
     ("tls", "tls-closed", "ConnectionResetError"), None),
    ("tls-stall", _plain(sockets.TlsStallServer), ("tls", "tls-timeout", "TimeoutError"), None),
    ("untrusted-ca", _untrusted, ("tls", "tls-untrusted", "ssl.SSLCertVerificationError"), None),
    ("certificate-for-another-name", _https(canned.sts_get_caller_identity_ok(), ("wrong.example.com",)),
     ("tls", "tls-name-mismatch", "ssl.SSLCertVerificationError"), None),
    ("tls-to-plain-http", _plain(lambda: CannedServer(canned.sts_get_caller_identity_ok())),
     ("tls", "tls-wrong-version", "ssl.SSLError"), None),
    ("slow-response", _https(canned.slow(canned.sts_get_caller_identity_ok(), 5.0)),
     ("http", "http-timeout", "botocore.exceptions.ReadTimeoutError"), None),
    ("close-after-request", _https(canned.close_after_request()),
     ("http", "http-closed", "botocore.exceptions.ConnectionClosedError"), None),
    ("reset-after-request", _https(canned.reset_after_request()),
     ("http", "http-closed", "botocore.exceptions.ConnectionClosedError"), None),
    # The peer closes after 34 of 1000 announced bytes: no answer, not a malformed one.
    ("answer-cut-short-mid-body", _https(Reply(200, (("content-type", "text/xml"),), _first_bytes,
                                                content_length=1000, close=True)),
     ("http", "http-closed", "urllib3.exceptions.IncompleteRead"), None),
    ("envoy-502-block-all", _https(canned.envoy_block_all_502()),
     ("http", "http-status", "botocore.exceptions.ClientError"), None),
    # Text bodies: STS's XML parser gives up (no status in the exception), DynamoDB's does not.
    ("envoy-503-upstream-connect-error", _https(canned.envoy_upstream_connect_error_503()),
     ("http", "http-status", "botocore.parsers.ResponseParserError"),
     ("http", "http-status", "botocore.exceptions.ClientError")),
    ("envoy-503-no-healthy-upstream", _https(canned.envoy_no_healthy_upstream_503()),
     ("http", "http-status", "botocore.parsers.ResponseParserError"),
     ("http", "http-status", "botocore.exceptions.ClientError")),
    ("envoy-504-upstream-timeout", _https(canned.envoy_upstream_timeout_504()),
     ("http", "http-status", "botocore.parsers.ResponseParserError"),
     ("http", "http-status", "botocore.exceptions.ClientError")),
    ("envoy-403-rbac", _https(canned.envoy_rbac_403()),
     ("http", "http-status", "botocore.parsers.ResponseParserError"),
     ("http", "http-status", "botocore.exceptions.ClientError")),
    ("envoy-404-no-route", _https(canned.envoy_no_route_404()),
     ("http", "http-status", "botocore.parsers.ResponseParserError"),
     ("http", "http-status", "botocore.exceptions.ClientError")),
    ("503-html-page", _https(_html(503)), ("http", "http-status", "botocore.exceptions.ClientError"), None),
    # STS raises a raw KeyError; DynamoDB "succeeds" without TableNames.
    ("200-html-page", _https(_html(200)), ("http", "not-aws", "KeyError"), ("http", "not-aws", "NotAwsResponse")),
    ("garbage-instead-of-http", _https(canned.garbage()),
     ("http", "not-aws", "botocore.exceptions.ConnectionClosedError"), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("server", "sts", "dynamodb"),
    [pytest.param(server, sts, ddb, id=case) for case, server, sts, ddb in TRANSPORT_CASES],
)
def test_each_misbehaving_server_is_reported_at_its_layer_for_sts_and_dynamodb(world, server, sts, dynamodb):
    with server(world) as port:
        result = run_against(port)
    assert result.code == 1, result.stderr
    assert result.stderr == ""
    assert _outcome(result, "sts.get-caller-identity") == ("fail", *sts)
    assert _outcome(result, "dynamodb.list-tables") == ("fail", *(dynamodb or sts))
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert check["target"]["connect_to"] == f"127.0.0.1:{port}"
        assert check["reason"], f"{check_id} failed without a reason"
        assert "\n" not in check["reason"], f"{check_id}: the reason breaks the table: {check['reason']!r}"


def test_envoy_502_keeps_status_and_envoy_headers_as_evidence(world):
    with _https(canned.envoy_block_all_502())(world) as port:
        result = run_against(port)
    for check_id in API_CHECKS:
        http = result.check(check_id)["evidence"]["http"]
        assert http["status"] == 502
        assert http["headers"]["server"] == "envoy"
        assert "x-envoy-upstream-service-time" not in http["headers"]
        assert "from Envoy" in result.check(check_id)["reason"]


def test_envoy_503_upstream_connect_error_body_is_evidence_for_sts_and_dynamodb(world):
    with _https(canned.envoy_upstream_connect_error_503())(world) as port:
        result = run_against(port)
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert check["evidence"]["http"]["status"] == 503, check_id
        assert check["evidence"]["http"]["body_prefix"].startswith("upstream connect error or disconnect/reset")
        assert "upstream connect error" in check["reason"]


def test_tls_failures_keep_the_handshake_evidence_sni_and_trust(world):
    with _https(canned.sts_get_caller_identity_ok(), ("wrong.example.com",))(world) as port:
        result = run_against(port)
    tls = result.check("sts.get-caller-identity")["evidence"]["tls"]
    assert (tls["ok"], tls["sni"], tls["verify_code"]) == (False, STS, 62)
    assert tls["trust"] == f"AWS_CA_BUNDLE={world.aws.pki.ca_bundle_path}"


@pytest.mark.parametrize(
    ("status", "sts_code", "ddb_code"),
    [
        (403, "InvalidClientTokenId", "UnrecognizedClientException"),
        (400, "ExpiredToken", "ExpiredTokenException"),
        (403, "AccessDenied", "AccessDeniedException"),
        (403, "SignatureDoesNotMatch", "InvalidSignatureException"),
        (400, "Throttling", "ThrottlingException"),
    ],
)
def test_aws_error_answers_are_api_layer_with_the_error_code(world, status, sts_code, ddb_code):
    responder = _by_service(
        canned.aws_xml_error(status, sts_code, "planted message"),
        canned.aws_json_error(status, ddb_code, "planted message"),
    )
    with _https(responder)(world) as port:
        result = run_against(port)
    for check_id, code in (("sts.get-caller-identity", sts_code), ("dynamodb.list-tables", ddb_code)):
        check = result.check(check_id)
        assert (check["status"], check["layer"], check["symptom"]) == ("fail", "api", "aws-error"), check_id
        aws = check["evidence"]["aws"]
        assert (aws["error_code"], aws["http_status"], aws["request_id"]) == (code, status, canned.REQUEST_ID)
        assert code in check["reason"]


def test_a_non_aws_200_keeps_the_body_prefix_for_the_reader(world):
    with _https(_html(200))(world) as port:
        result = run_against(port)
    for check_id in API_CHECKS:
        assert "Welcome to nginx" in result.check(check_id)["evidence"]["http"]["body_prefix"]


# --- the credential stage: IMDS -----------------------------------------------------------------


@pytest.fixture
def imds_world(monkeypatch, tmp_path, request):
    with aws_world(monkeypatch, tmp_path, **getattr(request, "param", {})) as world:
        yield world


def _imds(world: World, endpoint: str) -> CliResult:
    world.use(AWS_EC2_METADATA_SERVICE_ENDPOINT=endpoint)
    return run_cli("check", "-o", "json")


def _skipped_api_checks_name(result: CliResult, failed: str) -> None:
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert check["status"] == "skip", check_id
        assert failed in check["reason"], check["reason"]


@pytest.mark.parametrize(
    ("imds_world", "token_outcome"),
    [
        pytest.param({"token": 403}, ("warn", "api", "aws-error"), id="token-403"),
        pytest.param({"token": 500}, ("warn", "http", "http-status"), id="token-500"),
    ],
    indirect=["imds_world"],
)
def test_imds_token_errors_other_than_400_fall_back_to_v1_like_botocore(imds_world, token_outcome):
    result = run_cli("check", "-o", "json")
    token = result.check("imds.token")
    assert (token["status"], token["layer"], token["symptom"]) == token_outcome
    assert result.check("imds.role")["reason"].endswith("(IMDSv1)")
    assert result.check("imds.credentials")["status"] == "pass"
    assert result.code == 0


@pytest.mark.parametrize("imds_world", [{"token": 400}], indirect=True)
def test_imds_token_400_is_final_as_in_botocore_and_skips_the_rest(imds_world):
    result = run_cli("check", "-o", "json")
    token = result.check("imds.token")
    assert (token["status"], token["layer"], token["evidence"]["http"]["status"]) == ("fail", "api", 400)
    assert any("does not fall back" in note for note in token["evidence"]["notes"])
    assert result.check("imds.role")["status"] == "skip"
    assert result.check("imds.credentials")["status"] == "skip"
    _skipped_api_checks_name(result, "imds.token failed")
    assert result.code == 1


@pytest.mark.parametrize("imds_world", [{"credentials_code": "AssumeRoleUnauthorizedAccess"}], indirect=True)
def test_imds_credentials_document_with_an_error_code_names_the_code(imds_world):
    result = run_cli("check", "-o", "json")
    creds = result.check("imds.credentials")
    assert (creds["status"], creds["layer"], creds["symptom"]) == ("fail", "api", "aws-error")
    assert "AssumeRoleUnauthorizedAccess" in creds["reason"]
    _skipped_api_checks_name(result, "imds.credentials failed")


def test_imds_behind_istio_block_all_502_is_an_envoy_reply_not_an_imds_answer(imds_world):
    with CannedServer(canned.envoy_block_all_502()) as envoy:
        result = _imds(imds_world, envoy.url())
    token = result.check("imds.token")
    assert (token["status"], token["layer"], token["symptom"]) == ("fail", "http", "http-status")
    assert token["evidence"]["http"]["status"] == 502
    assert token["evidence"]["http"]["headers"]["server"] == "envoy"
    assert "from Envoy" in token["reason"]
    role = result.check("imds.role")  # botocore retries without a token after a 502
    assert (role["status"], role["layer"], role["symptom"]) == ("fail", "http", "http-status")
    assert result.check("imds.credentials")["status"] == "skip"
    _skipped_api_checks_name(result, "imds.token failed")
    assert result.code == 1


def test_imds_refused_is_a_tcp_failure_of_the_token_and_the_v1_retry(imds_world):
    with sockets.refused_port() as port:
        result = _imds(imds_world, f"http://127.0.0.1:{port}/")
    for check_id in ("imds.token", "imds.role"):
        check = result.check(check_id)
        assert (check["status"], check["layer"], check["symptom"]) == ("fail", "tcp", "connect-refused")
    _skipped_api_checks_name(result, "imds.token failed")


# --- the credential stage: EKS Pod Identity agent ------------------------------------------------


def test_pod_identity_agent_refusing_the_token_is_its_403_answer(imds_world):
    imds_world.pod_identity()
    imds_world.agent.configure(response=403)
    result = run_cli("check", "-o", "json")
    agent = result.check("container.credentials")
    assert (agent["status"], agent["layer"], agent["symptom"]) == ("fail", "api", "aws-error")
    assert agent["evidence"]["http"]["status"] == 403
    assert "not authorized" in agent["evidence"]["http"]["body_prefix"]
    _skipped_api_checks_name(result, "container.credentials failed")
    assert result.code == 1


def test_pod_identity_token_file_with_another_token_is_refused_by_the_agent(imds_world):
    token_file = imds_world.pod_identity()
    token_file.write_text("a-token-the-agent-does-not-know")
    result = run_cli("check", "-o", "json")
    assert result.check("container.credentials")["evidence"]["http"]["status"] == 403
    (request,) = imds_world.agent.requests
    assert (request.authorization_present, request.authorized) == (True, False)


def test_pod_identity_agent_that_hangs_is_an_http_timeout_within_the_metadata_timeout(imds_world):
    imds_world.pod_identity()
    imds_world.agent.configure(response="hang")
    result = run_cli("check", "-o", "json")
    agent = result.check("container.credentials")
    assert (agent["status"], agent["layer"], agent["symptom"]) == ("fail", "http", "http-timeout")
    _skipped_api_checks_name(result, "container.credentials failed")


def test_pod_identity_agent_500_is_an_http_status_failure(imds_world):
    imds_world.pod_identity()
    imds_world.agent.configure(response=500)
    agent = run_cli("check", "-o", "json").check("container.credentials")
    assert (agent["status"], agent["layer"], agent["symptom"]) == ("fail", "http", "http-status")


# --- the deadline ------------------------------------------------------------------------------

DEADLINE = 2.0
# The bound: the whole run ends within --deadline plus this.
DEADLINE_SLACK = 0.5


def test_a_check_stuck_in_the_tls_handshake_at_the_deadline_is_reported_at_the_tls_layer(world):
    with sockets.TlsStallServer() as stall:
        result = run_against(stall.port, "--connect-timeout", "30", "--deadline", str(DEADLINE))
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert (check["status"], check["layer"], check["symptom"]) == ("fail", "tls", "deadline"), check


def test_a_check_stuck_reading_a_dripping_body_at_the_deadline_is_an_http_deadline(world):
    drip = canned.slow_drip(size=1 << 20, interval=0.05)
    with _https(drip)(world) as port:  # 2 s: on a loaded machine the answer must have started by then
        result = run_against(port, "--deadline", str(DEADLINE))
    for check_id in API_CHECKS:
        check = result.check(check_id)
        assert (check["status"], check["layer"], check["symptom"]) == ("fail", "http", "deadline"), check


@pytest.mark.parametrize("static_keys", [True, False], ids=["static-keys", "imds"])
def test_when_every_endpoint_drops_syns_the_run_ends_at_the_deadline(imds_world, static_keys):
    with sockets.BacklogFullServer() as aws, sockets.BacklogFullServer() as imds:
        if static_keys:
            imds_world.static_keys()
        imds_world.use(
            EGRESS_DOCTOR_CONNECT_TO=f":443:127.0.0.1:{aws.port}",
            AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{imds.port}/",
        )
        started = time.monotonic()
        result = run_cli("check", "-o", "json", "--deadline", str(DEADLINE))
        elapsed = time.monotonic() - started
    assert elapsed <= DEADLINE + DEADLINE_SLACK, f"run took {elapsed:.2f} s with --deadline {DEADLINE}"
    assert result.code == 1
    checks = result.json()["checks"]
    stuck = [c for c in checks if c["status"] == "fail"]
    assert stuck, "nothing failed although every endpoint drops SYNs"
    for check in stuck:
        assert check["layer"] == "tcp", check
        assert check["symptom"] in ("deadline", "connect-timeout"), check
        assert "(<" not in check["reason"], f"reason is an exception repr: {check['reason']}"
    for check in checks:
        assert check["status"] in ("pass", "fail", "skip"), check
        if check["status"] == "skip":
            assert check["reason"].startswith("skipped: "), check
    ids = [c["id"] for c in checks]
    assert set(API_CHECKS) <= set(ids), "a planned check is missing from the report"
