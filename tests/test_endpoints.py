"""The hosts the SDK will contact, computed by real botocore clients offline (no network call)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from egress_doctor.aws.endpoints import EndpointOptions, sdk_endpoints, table_accounts

ACCOUNT = "111122223333"


def hosts(**kw: Any) -> list[tuple[str, int, str]]:
    kw.setdefault("region", "us-east-1")
    return [(e.host, e.port, e.service) for e in sdk_endpoints(EndpointOptions(**kw))]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"credentials": "irsa", "account": ACCOUNT},
         [("sts.us-east-1.amazonaws.com", 443, "sts"), ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb"),
          (f"{ACCOUNT}.ddb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "irsa"},
         [("sts.us-east-1.amazonaws.com", 443, "sts"), ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb"),
          ("*.ddb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "pod-identity", "account": ACCOUNT},
         [("169.254.170.23", 80, "pod-identity"), ("sts.us-east-1.amazonaws.com", 443, "sts"),
          ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb"),
          (f"{ACCOUNT}.ddb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "imds", "account": ACCOUNT, "region": "eu-west-1"},
         [("169.254.169.254", 80, "imds"), ("sts.eu-west-1.amazonaws.com", 443, "sts"),
          ("dynamodb.eu-west-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "env"},
         [("sts.us-east-1.amazonaws.com", 443, "sts"), ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "env", "account": ACCOUNT, "services": ("dynamodb",)},
         [("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb"),
          (f"{ACCOUNT}.ddb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "irsa", "account": ACCOUNT, "account_endpoint_mode": "disabled"},
         [("sts.us-east-1.amazonaws.com", 443, "sts"), ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "env", "fips": True, "region": "us-west-2"},
         [("sts-fips.us-west-2.amazonaws.com", 443, "sts"),
          ("dynamodb-fips.us-west-2.amazonaws.com", 443, "dynamodb")]),
        ({"credentials": "env", "dualstack": True, "region": "us-west-2"},
         [("sts.us-west-2.api.aws", 443, "sts"), ("dynamodb.us-west-2.api.aws", 443, "dynamodb")]),
        ({"credentials": "env", "region": "cn-north-1"},
         [("sts.cn-north-1.amazonaws.com.cn", 443, "sts"), ("dynamodb.cn-north-1.amazonaws.com.cn", 443, "dynamodb")]),
        ({"credentials": "irsa", "account": ACCOUNT,
          "tables": ("orders", "arn:aws:dynamodb:us-east-1:444455556666:table/shared")},
         [("sts.us-east-1.amazonaws.com", 443, "sts"), ("dynamodb.us-east-1.amazonaws.com", 443, "dynamodb"),
          (f"{ACCOUNT}.ddb.us-east-1.amazonaws.com", 443, "dynamodb"),
          ("444455556666.ddb.us-east-1.amazonaws.com", 443, "dynamodb")]),
    ],
    ids=["irsa", "irsa-unknown-account", "pod-identity", "imds-no-account", "env", "env-with-account",
         "account-mode-disabled", "fips", "dualstack", "china", "table-arn-of-another-account"],
)
def test_botocore_names_the_hosts_for_each_credential_mode(options: dict[str, Any], expected: list[Any]) -> None:
    assert hosts(**options) == expected


def test_sts_for_irsa_is_both_assume_role_and_get_caller_identity_on_one_host() -> None:
    sts = sdk_endpoints(EndpointOptions("us-east-1", "irsa", ACCOUNT))[0]
    assert sts.purpose == "STS AssumeRoleWithWebIdentity (IRSA credentials); STS GetCallerIdentity"
    assert sts.url == "https://sts.us-east-1.amazonaws.com/"


def test_no_socket_is_opened_and_no_name_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert hosts(credentials="irsa", account=ACCOUNT)


def test_the_machines_aws_settings_do_not_leak_into_the_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_USE_FIPS_ENDPOINT", "true"), ("AWS_ENDPOINT_URL", "https://proxy.example.com"),
                        ("AWS_STS_REGIONAL_ENDPOINTS", "legacy"), ("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled"),
                        ("AWS_DEFAULT_REGION", "ap-south-1"), ("AWS_CONFIG_FILE", "/nonexistent")):
        monkeypatch.setenv(name, value)
    assert hosts(credentials="irsa", account=ACCOUNT)[0][0] == "sts.us-east-1.amazonaws.com"
    assert hosts(credentials="irsa", account=ACCOUNT)[2][0] == f"{ACCOUNT}.ddb.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"region": "us-east-1", "credentials": "magic"}, "credentials must be one of"),
     ({"region": "us-east-1", "account": "12"}, "12 digits"),
     ({"region": "us-east-1", "services": ("s3",)}, "unknown service"),
     ({"region": "us-east-1", "account_endpoint_mode": "sometimes"}, "account endpoint mode")],
)
def test_bad_options_are_refused_before_botocore_runs(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EndpointOptions(**options)


def test_table_arns_name_their_accounts_once_in_order() -> None:
    arns = ["arn:aws:dynamodb:us-east-1:444455556666:table/a", "plain",
            "arn:aws:dynamodb:us-east-1:444455556666:table/b", "arn:aws:dynamodb:eu-west-1:777788889999:table/c"]
    assert table_accounts(arns) == ["444455556666", "777788889999"]
