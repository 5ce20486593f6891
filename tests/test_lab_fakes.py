"""The lab's fake AWS side, exercised through real clients: boto3/botocore, http.client, raw TLS.

Everything listens on 127.0.0.1; nothing here talks to 169.254.x or real AWS.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, MetadataRetrievalError
from botocore.utils import ContainerMetadataFetcher

from egress_doctor.lab.fakes import (
    MOTO_DEFAULT_ACCOUNT,
    ConnectTunnel,
    FakeAws,
    FakeImds,
    FakePodIdentityAgent,
    LabCredentials,
    LabPKI,
    aws_server_names,
)

ROLE_ARN = "arn:aws:iam::444455556666:role/app"
WEB_IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"
PLANTED = LabCredentials(
    access_key_id="ASIAPLANTEDKEY000001",
    secret_access_key="planted-secret-do-not-log-0000000000000",
    token="planted-session-token",
)
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=3)


# Fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with no AWS settings, no proxies and no config files: only what a test sets."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in {"http_proxy", "https_proxy", "no_proxy"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    return monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def shared_aws(pki: LabPKI) -> Iterator[FakeAws]:
    with FakeAws(pki) as aws:
        yield aws


@pytest.fixture
def aws(shared_aws: FakeAws) -> FakeAws:
    """The module's fake AWS, emptied: no tables, no injected answers, no recorded requests."""
    shared_aws.reset()
    return shared_aws


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    with FakeImds(credentials=PLANTED) as fake:
        yield fake


@pytest.fixture
def agent() -> Iterator[FakePodIdentityAgent]:
    with FakePodIdentityAgent(credentials=PLANTED) as fake:
        yield fake


def steered_client(aws: FakeAws, service: str, **overrides: Any) -> Any:
    """A boto3 client with static keys, steered at the fake by IP (the certificate has 127.0.0.1)."""
    settings: dict[str, Any] = {
        "endpoint_url": aws.endpoint_url,
        "verify": str(aws.pki.ca_bundle_path),
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "config": ONE_ATTEMPT,
        **overrides,
    }
    return boto3.session.Session().client(service, **settings)


def tls_handshake(address: tuple[str, int], context: ssl.SSLContext, server_name: str) -> None:
    """Complete a TLS handshake to `address` asking for `server_name`, verifying the certificate."""
    with (
        socket.create_connection(address, timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=server_name),
    ):
        pass


def imds_credentials(imds: FakeImds) -> Any:
    """What botocore's IMDS provider returns (credentials, None, or the exception it raises)."""
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
    provider = botocore.session.Session().get_component("credential_provider").get_provider("iam-role")
    try:
        return provider.load()
    except Exception as error:
        return error


def eventually(condition: Callable[[], Any], within: float = 2.0) -> Any:
    """The first truthy value of `condition()` within `within` seconds (the server side may lag)."""
    deadline = time.monotonic() + within
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 2
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


# LabPKI -----------------------------------------------------------------------------------------


def test_lab_ca_certificate_for_a_wildcard_name_verifies_an_account_host_and_rejects_other_names(
    pki: LabPKI,
) -> None:
    server_context = pki.server_context(["*.ddb.us-east-1.amazonaws.com"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve_two() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with server_context.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        server = threading.Thread(target=serve_two)
        server.start()
        tls_handshake(
            listener.getsockname(), pki.client_context(), "444455556666.ddb.us-east-1.amazonaws.com"
        )
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            tls_handshake(listener.getsockname(), pki.client_context(), "dynamodb.us-east-1.amazonaws.com")
        server.join(timeout=3)
    assert pki.ca_bundle_path.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_lab_leaf_files_load_as_a_server_certificate_chain_and_key(pki: LabPKI) -> None:
    leaf = pki.write_leaf(["sts.us-east-1.amazonaws.com"], "envoy-sts")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert_chain_path, leaf.key_path)
    assert leaf.key_path.read_text().startswith("-----BEGIN")


def test_aws_server_names_follow_the_region_partition_dns_suffixes() -> None:
    assert "*.ddb.us-west-2.amazonaws.com" in aws_server_names("us-west-2")
    assert "sts.us-west-2.api.aws" in aws_server_names("us-west-2")
    china = aws_server_names("cn-north-1")
    assert "dynamodb.cn-north-1.amazonaws.com.cn" in china
    assert "dynamodb.cn-north-1.api.amazonwebservices.com.cn" in china


# FakeAws: TLS names, moto, injected answers, request log ---------------------------------------


@pytest.mark.parametrize(
    "server_name",
    [
        "sts.amazonaws.com",
        "sts.us-east-1.amazonaws.com",
        "sts-fips.us-east-1.amazonaws.com",
        "sts.us-east-1.api.aws",
        "dynamodb.us-east-1.amazonaws.com",
        "dynamodb-fips.us-east-1.api.aws",
        "111122223333.ddb.us-east-1.amazonaws.com",
        "127.0.0.1",
    ],
)
def test_fake_aws_certificate_is_trusted_by_the_lab_ca_for(aws: FakeAws, server_name: str) -> None:
    tls_handshake(aws.address, aws.pki.client_context(), server_name)
    assert aws.handshake_failures == []


def test_fake_aws_serves_tables_created_for_the_default_account_to_a_steered_boto3_client(
    aws: FakeAws,
) -> None:
    aws.create_tables(["orders", "payments"])
    dynamodb = steered_client(aws, "dynamodb")
    assert sorted(dynamodb.list_tables()["TableNames"]) == ["orders", "payments"]
    table_arn = dynamodb.describe_table(TableName="orders")["Table"]["TableArn"]
    assert f":{MOTO_DEFAULT_ACCOUNT}:table/orders" in table_arn


def test_injected_sts_access_denied_reaches_boto3_as_client_error_with_code_and_request_id(
    aws: FakeAws,
) -> None:
    aws.answer("sts", "GetCallerIdentity", status=403, code="AccessDenied", message="no sts for you")
    with pytest.raises(ClientError) as caught:
        steered_client(aws, "sts").get_caller_identity()
    response = caught.value.response
    assert response["Error"] == {"Type": "Sender", "Code": "AccessDenied", "Message": "no sts for you"}
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert (
        response["ResponseMetadata"]["RequestId"]
        == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    )


def test_injected_dynamodb_access_denied_is_aws_json_and_other_operations_still_reach_moto(
    aws: FakeAws,
) -> None:
    aws.create_tables(["orders"])
    aws.answer("dynamodb", "DescribeTable", message="not allowed to describe")
    dynamodb = steered_client(aws, "dynamodb")
    with pytest.raises(ClientError) as caught:
        dynamodb.describe_table(TableName="orders")
    response = caught.value.response
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == "not allowed to describe"
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.0"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert dynamodb.list_tables()["TableNames"] == ["orders"]
    aws.clear_answers()
    assert dynamodb.describe_table(TableName="orders")["Table"]["TableName"] == "orders"


def test_fake_aws_records_the_signing_key_prefix_but_never_the_key_or_secret(aws: FakeAws) -> None:
    steered_client(aws, "sts").get_caller_identity()
    (seen,) = aws.requests
    assert (seen.service, seen.operation, seen.signed, seen.access_key_prefix) == (
        "sts",
        "GetCallerIdentity",
        True,
        "AKIA",
    )
    assert (seen.host, seen.scope_region, seen.status, seen.injected) == (
        aws.endpoint_url[8:],
        "us-east-1",
        200,
        False,
    )
    assert "AKIAIOSFODNN7EXAMPLE" not in repr(aws.requests)


def test_reset_forgets_tables_injected_answers_and_recorded_requests(aws: FakeAws) -> None:
    aws.create_tables(["orders"])
    aws.answer("dynamodb", "ListTables")
    aws.reset()
    assert aws.requests == []
    assert steered_client(aws, "dynamodb").list_tables()["TableNames"] == []


def test_injecting_an_answer_for_a_service_botocore_does_not_know_is_refused(aws: FakeAws) -> None:
    with pytest.raises(ValueError, match="s4"):
        aws.answer("s4", "ListBuckets")


# IRSA end to end under the real AWS names, through the CONNECT tunnel --------------------------


@pytest.fixture
def irsa_env(aws_env: pytest.MonkeyPatch, aws: FakeAws, tmp_path: Path) -> Iterator[ConnectTunnel]:
    token_file = tmp_path / "web-identity-token"
    token_file.write_text(WEB_IDENTITY_TOKEN)
    with ConnectTunnel(aws.address) as tunnel:
        for name, value in {
            "AWS_CA_BUNDLE": str(aws.pki.ca_bundle_path),
            "HTTPS_PROXY": tunnel.proxy_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_ARN": ROLE_ARN,
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            aws_env.setenv(name, value)
        yield tunnel


def test_irsa_assume_role_arrives_unsigned_at_regional_sts_and_its_account_routes_dynamodb(
    aws: FakeAws, irsa_env: ConnectTunnel
) -> None:
    aws.create_tables(["orders"], account_id="444455556666")
    session = boto3.session.Session()
    table = session.client("dynamodb", config=ONE_ATTEMPT).describe_table(TableName="orders")["Table"]

    assert table["TableArn"] == "arn:aws:dynamodb:us-east-1:444455556666:table/orders"
    assert session.get_credentials().account_id == "444455556666"
    assume, describe = aws.requests
    assert (assume.host, assume.sni, assume.operation) == (
        "sts.us-east-1.amazonaws.com",
        "sts.us-east-1.amazonaws.com",
        "AssumeRoleWithWebIdentity",
    )
    assert (assume.signed, assume.access_key_prefix) == (False, None)
    assert (describe.host, describe.operation) == (
        "444455556666.ddb.us-east-1.amazonaws.com",
        "DescribeTable",
    )
    assert (describe.signed, describe.access_key_prefix, describe.security_token) == (True, "ASIA", True)
    assert [r.authority for r in irsa_env.requests] == [
        "sts.us-east-1.amazonaws.com:443",
        "444455556666.ddb.us-east-1.amazonaws.com:443",
    ]


def test_assumed_role_caller_identity_carries_the_role_arn_account(
    aws: FakeAws, irsa_env: ConnectTunnel
) -> None:
    arn = boto3.session.Session().client("sts", config=ONE_ATTEMPT).get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::444455556666:assumed-role/app/")


def test_injected_invalid_identity_token_surfaces_on_the_first_dynamodb_call_as_an_sts_error(
    aws: FakeAws, irsa_env: ConnectTunnel
) -> None:
    aws.answer(
        "sts",
        "AssumeRoleWithWebIdentity",
        status=400,
        code="InvalidIdentityToken",
        message="No OpenIDConnect provider found in your account",
    )
    dynamodb = boto3.session.Session().client("dynamodb", config=ONE_ATTEMPT)
    with pytest.raises(ClientError) as caught:
        dynamodb.list_tables()
    assert caught.value.operation_name == "AssumeRoleWithWebIdentity"
    assert caught.value.response["Error"]["Code"] == "InvalidIdentityToken"
    assert [(r.operation, r.injected) for r in aws.requests] == [("AssumeRoleWithWebIdentity", True)]


def test_connect_tunnel_refuses_a_target_outside_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ConnectTunnel(("10.0.0.5", 443))


# FakeImds through botocore's InstanceMetadataProvider ------------------------------------------


def test_imds_v2_hands_botocore_the_planted_credentials_over_a_token_session(aws_env, imds: FakeImds) -> None:
    credentials = imds_credentials(imds)
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        PLANTED.access_key_id,
        PLANTED.secret_access_key,
        PLANTED.token,
    )
    assert credentials.account_id is None  # IMDS credentials never carry an account id
    put, role_list, role_credentials = imds.requests
    assert (put.method, put.path, put.ttl_header, put.status) == ("PUT", "/latest/api/token", True, 200)
    assert role_list.path == "/latest/meta-data/iam/security-credentials/" and role_list.token_header
    assert role_credentials.path.endswith("/eks-node-role") and role_credentials.token_header


@pytest.mark.parametrize("token_status", [403, 404, 405])
def test_imds_token_refused_with_status_makes_botocore_fall_back_to_v1(aws_env, imds, token_status) -> None:
    imds.configure(token=token_status)
    assert imds_credentials(imds).access_key == PLANTED.access_key_id
    assert [(r.method, r.token_header, r.status) for r in imds.requests] == [
        ("PUT", False, token_status),
        ("GET", False, 200),
        ("GET", False, 200),
    ]


def test_imds_token_400_gives_botocore_no_credentials_and_no_v1_fallback(aws_env, imds: FakeImds) -> None:
    imds.configure(token=400)
    assert imds_credentials(imds) is None
    assert [r.method for r in imds.requests] == ["PUT"]


def test_imds_token_put_that_hangs_costs_botocore_its_timeout_then_v1_works_when_allowed(
    aws_env, imds
) -> None:
    imds.configure(token="hang")
    started = time.monotonic()
    assert imds_credentials(imds).access_key == PLANTED.access_key_id
    assert 0.9 < time.monotonic() - started < 3
    assert [(r.method, r.token_header, r.status) for r in imds.requests] == [
        ("PUT", False, None),
        ("GET", False, 200),
        ("GET", False, 200),
    ]


def test_imds_token_put_that_hangs_with_v2_required_leaves_botocore_without_credentials(
    aws_env, imds
) -> None:
    imds.configure(token="hang", v1="required")
    assert imds_credentials(imds) is None
    assert [(r.method, r.status) for r in imds.requests] == [("PUT", None), ("GET", 401)]


def test_imds_v1_disabled_in_the_sdk_and_token_refused_raises_metadata_retrieval_error(aws_env, imds) -> None:
    imds.configure(token=403)
    aws_env.setenv("AWS_EC2_METADATA_V1_DISABLED", "true")
    assert isinstance(imds_credentials(imds), MetadataRetrievalError)


def test_imds_v2_required_still_serves_clients_that_use_a_token(aws_env, imds: FakeImds) -> None:
    imds.configure(v1="required")
    assert imds_credentials(imds).access_key == PLANTED.access_key_id


@pytest.mark.parametrize(
    ("change", "last_status"),
    [({"role": None}, 404), ({"credentials_code": "AssumeRoleUnauthorizedAccess"}, 200)],
    ids=["no-instance-profile", "credentials-code-not-success"],
)
def test_imds_without_usable_role_credentials_gives_botocore_none(aws_env, imds, change, last_status) -> None:
    imds.configure(**change)
    assert imds_credentials(imds) is None
    assert imds.requests[-1].status == last_status


def test_imds_answers_like_ec2_to_raw_requests(imds: FakeImds) -> None:
    assert http_request(imds.port, "PUT", "/latest/api/token").status == 400  # no TTL header
    assert (
        http_request(
            imds.port, "GET", "/latest/meta-data/placement/region", {"x-aws-ec2-metadata-token": "forged"}
        ).status
        == 401
    )
    connection = http.client.HTTPConnection("127.0.0.1", imds.port, timeout=2)
    connection.request("GET", "/latest/dynamic/instance-identity/document")
    document = connection.getresponse()
    assert document.getheader("Server") == "EC2ws"
    assert b'"accountId": "111122223333"' in document.read()
    connection.request("GET", "/latest/meta-data/placement/region")
    assert connection.getresponse().read() == b"us-east-1"  # same keep-alive connection
    connection.close()
    assert "forged" not in repr(imds.requests)


# FakePodIdentityAgent through botocore's container provider ------------------------------------


def test_pod_identity_credentials_reach_botocore_with_the_account_id(aws_env, agent, tmp_path) -> None:
    aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent.full_uri)
    aws_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(agent.write_token_file(tmp_path / "token")))
    credentials = botocore.session.Session().get_credentials()
    assert (credentials.method, credentials.access_key, credentials.secret_key) == (
        "container-role",
        PLANTED.access_key_id,
        PLANTED.secret_access_key,
    )
    assert credentials.account_id == "222233334444"
    (seen,) = agent.requests
    assert (seen.path, seen.authorization_present, seen.authorized, seen.status) == (
        "/v1/credentials",
        True,
        True,
        200,
    )


def test_pod_identity_without_account_id_gives_botocore_credentials_without_one(
    aws_env, agent, tmp_path
) -> None:
    agent.configure(account_id=None)
    aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent.full_uri)
    aws_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(agent.write_token_file(tmp_path / "token")))
    assert botocore.session.Session().get_credentials().account_id is None


@pytest.mark.parametrize(
    ("response", "authorization", "expected"),
    [
        ("ok", "wrong-token", "Received non 200 response 403"),
        (403, None, "Received non 200 response 403"),
        (500, None, "Received non 200 response 500"),
        ("not-json", None, "Unable to parse JSON"),
    ],
    ids=["wrong-token", "forbidden", "internal-error", "html-200"],
)
def test_pod_identity_failure_is_reported_by_botocore_fetcher_as(
    agent, response, authorization, expected
) -> None:
    agent.configure(response=response)
    fetcher = _OneAttemptFetcher(sleep=lambda _: None)
    token = authorization or agent.behaviour.token
    with pytest.raises(MetadataRetrievalError, match=expected):
        fetcher.retrieve_full_uri(agent.full_uri, headers={"Authorization": token})


class _OneAttemptFetcher(ContainerMetadataFetcher):
    """botocore's container fetcher with 1 attempt of 1 s instead of 3 of 2 s (3-9 s per failure)."""

    TIMEOUT_SECONDS = 1
    RETRY_ATTEMPTS = 1


def test_pod_identity_agent_records_whether_authorization_was_sent_never_its_value(agent) -> None:
    assert http_request(agent.port, "GET", "/v1/credentials").status == 403
    assert http_request(agent.port, "GET", "/v1/credentials", {"Authorization": "guess"}).status == 403
    assert [(r.authorization_present, r.authorized) for r in agent.requests] == [
        (False, False),
        (True, False),
    ]
    assert "guess" not in repr(agent.requests)


# Quietness and loopback discipline --------------------------------------------------------------


def test_fake_aws_writes_no_request_log_to_stdout_or_stderr(
    aws: FakeAws, capfd: pytest.CaptureFixture[str]
) -> None:
    steered_client(aws, "sts").get_caller_identity()
    with pytest.raises(ClientError):
        steered_client(aws, "dynamodb").describe_table(TableName="missing")
    with pytest.raises(ssl.SSLError):  # a client that distrusts the lab CA: a failed handshake
        tls_handshake(aws.address, ssl.create_default_context(), "sts.us-east-1.amazonaws.com")
    assert eventually(lambda: aws.handshake_failures), "the server side of the handshake failed too"
    assert capfd.readouterr() == ("", "")


def test_fakes_bind_without_a_reverse_dns_lookup_of_their_address(
    pki: LabPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_dns(*_: object) -> None:
        raise AssertionError("a lab server asked DNS about its own address")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    monkeypatch.setattr(socket, "gethostbyaddr", no_dns)
    with FakeAws(pki) as aws, FakeImds(), FakePodIdentityAgent(), ConnectTunnel(aws.address):
        pass


# Hangs and shutdown -----------------------------------------------------------------------------


def _hang_then_stop(fake: Any, method: str, path: str, headers: dict[str, str]) -> float:
    """Send a request the fake will never answer, then time how long stop() takes."""
    with pytest.raises(TimeoutError):
        http_request(fake.port, method, path, headers, timeout=0.3)
    started = time.monotonic()
    fake.stop()
    return time.monotonic() - started


def test_imds_that_never_answers_the_token_put_still_stops_promptly() -> None:
    with FakeImds(token="hang") as imds:
        held = socket.create_connection(imds.address)  # an idle keep-alive client as well
        elapsed = _hang_then_stop(
            imds, "PUT", "/latest/api/token", {"x-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        held.close()
    assert elapsed < 1
    assert imds.requests[0].status is None


def test_pod_identity_agent_that_never_answers_still_stops_promptly() -> None:
    with FakePodIdentityAgent(response="hang") as agent:
        elapsed = _hang_then_stop(agent, "GET", "/v1/credentials", {"Authorization": agent.behaviour.token})
    assert elapsed < 1


def test_fake_aws_keeps_serving_and_stops_while_a_client_never_sends_its_client_hello(pki: LabPKI) -> None:
    with FakeAws(pki) as aws:
        silent = socket.create_connection(aws.address)
        tls_handshake(aws.address, pki.client_context(), "sts.us-east-1.amazonaws.com")
        started = time.monotonic()
        aws.stop()
        elapsed = time.monotonic() - started
        silent.close()
    assert elapsed < 1


@pytest.mark.parametrize("kind", ["aws", "imds", "pod-identity", "tunnel"])
def test_stopped_fake_leaves_no_thread_behind_and_refuses_connections(pki: LabPKI, kind: str) -> None:
    before = set(threading.enumerate())
    fakes = {
        "aws": lambda: FakeAws(pki),
        "imds": FakeImds,
        "pod-identity": FakePodIdentityAgent,
        "tunnel": lambda: ConnectTunnel(("127.0.0.1", 9)),
    }
    with fakes[kind]() as fake:
        address = fake.address
        keep_alive = socket.create_connection(address)
        time.sleep(0.05)  # let the connection's handler thread start
        assert set(threading.enumerate()) - before
    keep_alive.close()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1)
