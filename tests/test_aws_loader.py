"""The model loader every probe session uses knows exactly the services botocore knows, and finds a
service's models without listing all four hundred of them first (aws/loader.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader, create_loader

from egress_doctor.aws.loader import ModelLoader, create_model_loader


def test_the_loader_knows_every_service_botocore_lists_and_no_other() -> None:
    listed = create_loader().list_available_services("service-2")
    known = create_model_loader().list_available_services("service-2")
    assert sorted(known) == listed
    assert all(name in known for name in listed)
    for stranger in ("dynamo", "s3x", "", ".", "..", "../s3", "s3/2006-03-01", "S3"):
        assert stranger not in known, stranger


def test_loading_a_known_service_model_lists_no_other_service(monkeypatch: pytest.MonkeyPatch) -> None:
    listings: list[str] = []
    real = Loader.list_available_services

    def counted(self: Loader, type_name: str) -> list[str]:
        listings.append(type_name)
        return real(self, type_name)

    monkeypatch.setattr(Loader, "list_available_services", counted)
    loader = create_model_loader()
    model = loader.load_service_model("sqs", "service-2")
    rules = loader.load_service_model("sqs", "endpoint-rule-set-1")
    assert model["metadata"]["serviceId"] == "SQS"
    assert rules["version"]
    assert listings == []


def test_an_unknown_service_is_refused_with_the_names_botocore_knows() -> None:
    with pytest.raises(UnknownServiceError) as raised:
        create_model_loader().load_service_model("dynamo", "service-2")
    assert "dynamodb" in str(raised.value)


def test_aws_data_path_is_searched_as_botocore_searches_it(tmp_path: Path) -> None:
    loader = create_model_loader(f"{tmp_path}/models")
    assert isinstance(loader, ModelLoader)
    assert loader.search_paths[0] == f"{tmp_path}/models"
    assert loader.search_paths[1:] == create_loader().search_paths


@pytest.mark.parametrize(("kind", "name"), [
    ("data", "endpoints"), ("data", "partitions"), ("data", "sdk-default-configuration"),
    ("service-2", "s3"), ("endpoint-rule-set-1", "s3"), ("service-2", "dynamodb"), ("service-2", "sqs"),
    ("endpoint-rule-set-1", "sts"),
])
def test_models_parsed_into_plain_dicts_are_botocores_models_key_for_key_in_the_same_order(
        kind: str, name: str) -> None:
    ours, theirs = ModelLoader(), Loader()
    if kind == "data":
        mine, botocores = ours.load_data(name), theirs.load_data(name)
    else:
        mine, botocores = ours.load_service_model(name, kind), theirs.load_service_model(name, kind)
    assert mine == botocores
    assert json.dumps(mine) == json.dumps(botocores)  # same order too, all the way down
