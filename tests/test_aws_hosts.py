"""AWS endpoint names taken apart with botocore's own data (partitions, endpoint prefixes)."""

from __future__ import annotations

import json

import pytest

from egress_doctor.aws.hosts import LABEL_SERVICES, classify, near_miss, service_region


@pytest.mark.parametrize(
    ("host", "service", "region", "partition", "traits"),
    [
        ("sts.us-east-1.amazonaws.com", "sts", "us-east-1", "aws", {}),
        ("sts.amazonaws.com", "sts", "global", "aws", {}),
        ("sts-fips.us-east-2.amazonaws.com", "sts", "us-east-2", "aws", {"fips": True}),
        ("sts.us-west-2.api.aws", "sts", "us-west-2", "aws", {"dualstack": True}),
        ("sts.cn-north-1.amazonaws.com.cn", "sts", "cn-north-1", "aws-cn", {}),
        ("sts.us-gov-west-1.amazonaws.com", "sts", "us-gov-west-1", "aws-us-gov", {}),
        ("vpce-0abc-xyz.sts.us-west-2.vpce.amazonaws.com", "sts", "us-west-2", "aws",
         {"vpce": True, "resource": "vpce-0abc-xyz"}),
        ("111122223333.ddb.us-east-1.amazonaws.com", "dynamodb", "us-east-1", "aws", {"account": "111122223333"}),
        ("*.ddb.us-east-1.amazonaws.com", "dynamodb", "us-east-1", "aws", {"resource": "*"}),
        ("dynamodb-fips.us-west-2.amazonaws.com", "dynamodb", "us-west-2", "aws", {"fips": True}),
        ("invoices.s3.amazonaws.com", "s3", "global", "aws", {"resource": "invoices"}),
        ("invoices.s3.eu-west-1.amazonaws.com", "s3", "eu-west-1", "aws", {"resource": "invoices"}),
        ("s3.dualstack.eu-west-1.amazonaws.com", "s3", "eu-west-1", "aws", {"dualstack": True}),
        ("ap-111122223333.s3-accesspoint.us-east-1.amazonaws.com", "s3", "us-east-1", "aws",
         {"resource": "ap-111122223333"}),
        ("111122223333.control-kinesis.us-east-1.amazonaws.com", "kinesis", "us-east-1", "aws",
         {"account": "111122223333"}),
        ("invoices.s3-accelerate.amazonaws.com", "s3", "global", "aws", {"resource": "invoices"}),
    ],
)
def test_a_host_is_read_as_botocore_spells_it(host, service, region, partition, traits) -> None:
    found = classify(host)
    assert found is not None and found.known
    assert (found.service, found.region, found.partition) == (service, region, partition)
    for name, value in traits.items():
        assert getattr(found, name) == value, name


@pytest.mark.parametrize("host", ["example.com", "169.254.169.254", "amazonaws.com.example.net", ""])
def test_names_outside_aws_and_addresses_are_not_aws_endpoints(host: str) -> None:
    assert classify(host) is None and service_region(host) is None


def test_a_label_botocore_does_not_know_is_kept_but_marked_unknown() -> None:
    found = classify("sts.us-east1.amazonaws.com")  # the region typo makes "us-east1" the service
    assert found is not None and not found.known


@pytest.mark.parametrize(("label", "service"), sorted(LABEL_SERVICES.items()))
def test_every_label_that_is_not_an_endpoint_prefix_is_in_that_services_endpoint_rules(label, service) -> None:
    import botocore.loaders

    rules = json.dumps(botocore.loaders.create_loader().load_service_model(service, "endpoint-rule-set-1"))
    operation_type, _, rest = label.partition("-")  # Kinesis: {OperationType}-kinesis, control for reads
    assert f".{label}." in rules or (operation_type == "control" and f".{{OperationType}}-{rest}." in rules)


def test_account_endpoints_of_two_accounts_are_another_form_of_the_same_endpoint() -> None:
    assert near_miss("111122223333.ddb.us-east-1.amazonaws.com",
                     "444455556666.ddb.us-east-1.amazonaws.com") == "another form of the same endpoint"
