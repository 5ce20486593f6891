"""Which hosts a pod's SDK calls, from the AWS variables of its spec (botocore's prediction, offline)."""

from __future__ import annotations

import pytest

from egress_doctor.aws.endpoints import sdk_endpoints
from egress_doctor.aws.pod_env import endpoint_options
from egress_doctor.diagnose.naming import Prediction, match_address, names_to_resolve, predict

ROLE = "arn:aws:iam::111122223333:role/app"
TOKEN = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


@pytest.mark.parametrize(
    ("env", "credentials", "account"),
    [
        ({"AWS_REGION": "us-east-1", "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN},
         "irsa", "111122223333"),
        ({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"},
         "pod-identity", None),
        ({"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "set", "AWS_ACCOUNT_ID": "444455556666"},
         "env", "444455556666"),
        ({"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "set", "AWS_ROLE_ARN": ROLE,
          "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN}, "env", None),  # botocore's chain: static keys first
        ({"AWS_REGION": "us-east-1"}, "imds", None),
    ],
    ids=["irsa", "pod-identity", "static-keys", "keys-before-web-identity", "instance-profile"],
)
def test_the_credential_source_and_account_follow_botocores_chain(env, credentials, account) -> None:
    options = endpoint_options(env)
    assert options is not None
    assert (options.credentials, options.account) == (credentials, account)


def test_without_a_region_there_is_no_prediction() -> None:
    assert endpoint_options({"AWS_ROLE_ARN": ROLE}) is None
    assert "AWS_REGION" in predict({}).reason


def test_fips_and_dual_stack_settings_change_the_predicted_hosts() -> None:
    options = endpoint_options({"AWS_REGION": "us-east-1", "AWS_USE_FIPS_ENDPOINT": "true"})
    assert options is not None and options.fips
    assert "sts-fips.us-east-1.amazonaws.com" in {e.host for e in sdk_endpoints(options)}


def test_the_pods_other_sdk_settings_reach_botocore_legacy_sts_and_an_endpoint_url() -> None:
    # The pod's spec says legacy STS and a VPC endpoint for DynamoDB: botocore, not a hand rule, decides.
    options = endpoint_options({"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "set",
                                "AWS_STS_REGIONAL_ENDPOINTS": "legacy",
                                "AWS_ENDPOINT_URL_DYNAMODB": "https://vpce-1.dynamodb.us-east-1.vpce.amazonaws.com"})
    assert options is not None
    hosts = {e.host for e in sdk_endpoints(options)}
    assert {"sts.amazonaws.com", "vpce-1.dynamodb.us-east-1.vpce.amazonaws.com"} <= hosts
    assert "sts.us-east-1.amazonaws.com" not in hosts


def test_only_names_are_resolved_never_addresses_or_wildcards() -> None:
    prediction = predict({"AWS_REGION": "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/"})
    names = names_to_resolve([prediction])
    assert "169.254.170.23" not in names and not any("*" in n for n in names)
    assert "sts.us-east-1.amazonaws.com" in names


def test_a_predicted_metadata_address_matches_itself_without_any_lookup() -> None:
    prediction = predict({"AWS_REGION": "us-east-1"})  # instance profile: IMDS
    match = match_address("169.254.169.254", 80, prediction, {})
    assert match.endpoint is not None and match.endpoint.service == "imds"


def test_no_prediction_is_said_as_such() -> None:
    assert match_address("1.2.3.4", 443, Prediction(reason="why"), {}).tried == "no prediction: why"
