"""`egress-doctor check` against the fakes: every credential path, the exact hosts botocore used."""

from __future__ import annotations

import pytest

from tests.checkrun import REGION, aws_world, run_cli


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        yield world


def test_static_env_keys_pass_and_dynamodb_uses_the_regional_host(world):
    world.static_keys()
    result = run_cli("check", "-o", "json")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["schema"] == "egress-doctor/v1"
    assert doc["identity"]["source"] == "env"
    assert [c["id"] for c in doc["checks"]] == [
        "credentials.source",
        "sts.get-caller-identity",
        "dynamodb.list-tables",
    ]
    assert all(c["status"] == "pass" and c["layer"] is None for c in doc["checks"])
    assert result.check("sts.get-caller-identity")["target"]["host"] == f"sts.{REGION}.amazonaws.com"
    assert result.check("dynamodb.list-tables")["target"]["host"] == f"dynamodb.{REGION}.amazonaws.com"


def test_aws_account_id_sends_dynamodb_to_the_account_based_host(world):
    world.static_keys(account_id="111122223333")
    world.aws.create_tables(["orders"], REGION)
    result = run_cli("check", "-o", "json", "--table", "orders")
    assert result.code == 0, result.stdout
    check = result.check("dynamodb.describe-table", "orders")
    assert check["target"]["host"] == f"111122223333.ddb.{REGION}.amazonaws.com"
    assert check["target"]["port"] == 443
    assert check["target"]["connect_to"] == f"127.0.0.1:{world.aws.port}"
    assert check["evidence"]["tls"]["sni"] == f"111122223333.ddb.{REGION}.amazonaws.com"


def test_a_table_arn_routes_dynamodb_to_the_arn_account_host(world):
    world.static_keys()
    arn = f"arn:aws:dynamodb:{REGION}:777788889999:table/orders"
    result = run_cli("check", "-o", "json", "--table", arn)
    check = result.check("dynamodb.describe-table", arn)
    assert check["target"]["host"] == f"777788889999.ddb.{REGION}.amazonaws.com"


def test_irsa_calls_unsigned_assume_role_on_regional_sts_then_the_account_host(world):
    world.irsa()
    result = run_cli("check", "-o", "json")
    assert result.code == 0, result.stdout
    doc = result.json()
    assert doc["identity"]["source"] == "irsa"
    assert doc["identity"]["account_id"] == "444455556666"
    assume = result.check("sts.assume-role-with-web-identity")
    assert assume["status"] == "pass"
    assert assume["target"]["host"] == f"sts.{REGION}.amazonaws.com"
    assert result.check("dynamodb.list-tables")["target"]["host"] == f"444455556666.ddb.{REGION}.amazonaws.com"
    seen = [r for r in world.aws.requests if r.operation == "AssumeRoleWithWebIdentity"]
    assert seen and not seen[0].signed


def test_pod_identity_credentials_with_account_id_use_the_account_based_host(world):
    world.pod_identity()
    result = run_cli("check", "-o", "json")
    assert result.code == 0, result.stdout
    agent = result.check("container.credentials")
    assert agent["status"] == "pass"
    assert agent["target"]["url"] == world.agent.full_uri
    assert result.check("dynamodb.list-tables")["target"]["host"] == f"222233334444.ddb.{REGION}.amazonaws.com"
    assert world.agent.requests[0].authorized


def test_imds_v2_token_role_and_credentials_each_get_a_line(world):
    result = run_cli("check", "-o", "json")
    assert result.code == 0, result.stdout
    ids = [c["id"] for c in result.json()["checks"]]
    assert ids[:4] == ["credentials.source", "imds.token", "imds.role", "imds.credentials"]
    # IMDS credentials never carry an account id: DynamoDB stays on the regional host.
    assert result.check("dynamodb.list-tables")["target"]["host"] == f"dynamodb.{REGION}.amazonaws.com"


def test_imds_token_put_that_hangs_falls_back_to_v1_and_warns(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path, token="hang") as _world:
        result = run_cli("check", "-o", "json")
    token = result.check("imds.token")
    assert token["status"] == "warn"
    assert (token["layer"], token["symptom"]) == ("http", "http-timeout")
    assert result.check("imds.credentials")["status"] == "pass"
    assert result.code == 0


def test_imds_v1_required_token_hang_fails_and_skips_nothing_silently(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path, token="hang", v1="required") as _world:
        result = run_cli("check", "-o", "json")
    assert result.code == 1
    assert result.check("imds.token")["status"] == "fail"
    role = result.check("imds.role")
    assert (role["status"], role["layer"]) == ("fail", "api")
    assert role["evidence"]["http"]["status"] == 401
    assert result.check("sts.get-caller-identity")["status"] == "skip"


def test_no_role_attached_to_the_instance_is_an_imds_answer_not_a_network_failure(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path, role=None) as _world:
        result = run_cli("check", "-o", "json")
    role = result.check("imds.role")
    assert (role["status"], role["layer"], role["evidence"]["http"]["status"]) == ("fail", "api", 404)


def test_aws_error_answer_means_the_path_works_and_is_reported_at_the_api_layer(world):
    world.static_keys()
    world.aws.answer("dynamodb", "ListTables", status=400, code="AccessDeniedException", message="not allowed")
    result = run_cli("check", "-o", "json")
    check = result.check("dynamodb.list-tables")
    assert (check["status"], check["layer"], check["symptom"]) == ("fail", "api", "aws-error")
    assert check["evidence"]["aws"]["error_code"] == "AccessDeniedException"
    assert result.code == 1


def test_missing_table_is_an_api_answer(world):
    world.static_keys()
    result = run_cli("check", "-o", "json", "--table", "nope")
    check = result.check("dynamodb.describe-table", "nope")
    assert check["evidence"]["aws"]["error_code"] == "ResourceNotFoundException"


def test_table_output_names_each_check_with_its_exact_host(world):
    world.irsa()
    result = run_cli("check", "--no-color")
    assert result.code == 0
    assert f"444455556666.ddb.{REGION}.amazonaws.com:443" in result.stdout
    assert "STS AssumeRoleWithWebIdentity" in result.stdout
    assert "credentials: irsa" in result.stdout


def test_yaml_output_has_the_same_content_as_json(world):
    import yaml

    world.static_keys()
    as_yaml = yaml.safe_load(run_cli("check", "-o", "yaml").stdout)
    as_json = run_cli("check", "-o", "json").json()
    assert [c["id"] for c in as_yaml["checks"]] == [c["id"] for c in as_json["checks"]]
    assert as_yaml["schema"] == as_json["schema"]
