"""Which credential source the chain picks, decided offline exactly as botocore decides it."""

from __future__ import annotations

import os

import botocore.session
import pytest

from egress_doctor.aws.identity import container_host_allowed, plan_credentials


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


def plan(region: str | None = None):
    return plan_credentials(botocore.session.Session(), os.environ, region)


def test_static_keys_in_the_environment_win_and_carry_the_account_id(env):
    env.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    env.setenv("AWS_SECRET_ACCESS_KEY", "s" * 40)
    env.setenv("AWS_ACCOUNT_ID", "111122223333")
    env.setenv("AWS_ROLE_ARN", "arn:aws:iam::444455556666:role/app")
    env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")
    result = plan()
    assert result.identity.source == "env"
    assert result.identity.account_id == "111122223333"
    assert result.error is None


def test_irsa_is_picked_before_pod_identity_and_reads_the_role_account(env, tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    env.setenv("AWS_ROLE_ARN", "arn:aws:iam::444455556666:role/app")
    env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
    result = plan()
    assert result.identity.source == "irsa"
    assert result.identity.account_id == "444455556666"
    assert result.web_identity_token_file == str(token)


def test_irsa_token_file_without_role_arn_is_a_configuration_error(env, tmp_path):
    token = tmp_path / "token"
    token.write_text("x")
    env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    result = plan()
    assert result.identity.source == "irsa"
    assert result.error_type == "InvalidConfigError"


def test_missing_irsa_token_file_is_reported_before_any_call(env):
    env.setenv("AWS_ROLE_ARN", "arn:aws:iam::444455556666:role/app")
    env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")
    assert plan().error_type == "FileNotFoundError"


def test_pod_identity_full_uri_with_token_file_is_pod_identity(env, tmp_path):
    token = tmp_path / "pod-token"
    token.write_text("t")
    env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
    env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    result = plan()
    assert result.identity.source == "pod-identity"
    assert result.container_url == "http://169.254.170.23/v1/credentials"


def test_relative_uri_wins_over_full_uri_and_means_ecs(env):
    env.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")
    env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/creds")
    result = plan()
    assert result.identity.source == "ecs"
    assert result.container_url == "http://169.254.170.2/v2/credentials/abc"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/creds", True),
        ("http://127.169.170.23:80/v1/credentials", True),
        ("http://[::1]/creds", True),
        ("https://agent.example.internal/creds", True),
        ("http://169.254.170.23/v1/credentials", True),
        ("http://LOCALHOST/creds", True),
        ("http://10.0.0.5/creds", False),
        ("http://eks-pod-identity-agent/creds", False),
        ("http://169.254.170.24/creds", False),
    ],
)
def test_container_full_uri_hosts_are_allowed_exactly_as_botocore_allows_them(url, allowed):
    assert container_host_allowed(url) is allowed


def test_full_uri_on_a_private_address_is_refused_like_botocore_does(env):
    env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.0.0.5/creds")
    result = plan()
    assert result.error_type == "ValueError"
    assert "10.0.0.5" in (result.error or "")


def test_imds_is_the_last_resort_unless_disabled(env):
    assert plan().identity.source == "imds"
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert plan().identity.source == "none"


def test_imds_ipv6_mode_uses_the_ipv6_endpoint(env):
    env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")
    assert plan().imds_endpoint == "http://[fd00:ec2::254]/"


def test_aws_region_without_aws_default_region_is_flagged_because_botocore_ignores_it(env):
    env.delenv("AWS_DEFAULT_REGION")
    env.setenv("AWS_REGION", "eu-west-1")
    identity = plan().identity
    assert identity.region is None
    assert any("AWS_REGION" in w for w in identity.warnings)


def test_region_flag_overrides_the_environment(env):
    identity = plan("eu-central-1").identity
    assert (identity.region, identity.region_source) == ("eu-central-1", "--region")
