"""The smaller ways out of issue 10: a role name no IAM role can have, a metadata endpoint named
as what it is, a kubeconfig that is no kubeconfig, a table in another region, the package metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from egress_doctor.model import ExitStatus
from egress_doctor.render.printable import MAX_CELL
from tests.checkrun import aws_world, run_cli
from tests.test_analyze_hostile_files import alias_bomb
from tests.test_check_bad_input import assert_nothing_probed, assert_usage_error

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        yield world


def test_a_65536_character_role_name_is_no_role_and_no_table_line_grows_with_it(world):
    world.imds.configure(role="r" * 65536)
    result = run_cli("check", "--no-envoy-admin", "--no-color")
    assert result.code == ExitStatus.CHECK_FAILED, result.stderr
    role_line = next(line for line in result.stdout.splitlines() if line.startswith("IMDS role name"))
    assert "FAIL" in role_line and "no IAM role name (65536 characters" in role_line
    assert max(len(line) for line in result.stdout.splitlines()) < 6 * MAX_CELL
    assert not any("security-credentials/rrrr" in r.path for r in world.imds.requests), "the role was used"


def test_a_skipped_imds_credentials_check_has_a_title_not_its_id(world):
    world.imds.configure(role=None)  # no instance profile: the role list is 404
    result = run_cli("check", "-o", "json", "--no-envoy-admin")
    credentials = result.check("imds.credentials")
    assert credentials["status"] == "skip"
    assert credentials["title"].startswith("IMDS credentials (GET")


def test_a_loopback_metadata_endpoint_is_said_to_be_taken_for_a_stand_in(world):
    result = run_cli("check", "-o", "json", "--no-envoy-admin")
    warnings = result.json()["identity"]["warnings"]
    assert any(w.startswith(f"AWS_EC2_METADATA_SERVICE_ENDPOINT is {world.imds.url}, a loopback address")
               and "169.254.169.254:80" in w for w in warnings), warnings


def test_a_table_arn_of_another_region_is_noted_with_the_region_the_sdk_calls(world):
    world.static_keys()
    arn = "arn:aws:dynamodb:eu-west-1:444455556666:table/orders"
    result = run_cli("check", "-o", "json", "--no-envoy-admin", "--table", arn)
    warnings = result.json()["identity"]["warnings"]
    assert any(f"--table {arn} is in eu-west-1" in w and "region us-east-1" in w for w in warnings), warnings
    same_region = run_cli("check", "-o", "json", "--no-envoy-admin", "--table", arn.replace("eu-west-1", "us-east-1"))
    assert not any("--table" in w for w in same_region.json()["identity"]["warnings"])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("apiVersion: v1\nkind: Config\nclusters: 5\n", "`clusters` must be a list of mappings, not int",
                     id="clusters-an-int"),
        pytest.param("clusters: [[\n", "not valid YAML", id="invalid-yaml"),
        pytest.param("- a\n- b\n", "not a kubeconfig", id="a-list"),
        pytest.param(alias_bomb(), "refused: aliases expand", id="alias-bomb"),
    ],
)
def test_a_kubeconfig_that_is_no_kubeconfig_is_a_usage_error_naming_it(world, content, fragment):
    world.static_keys()
    kubeconfig = world.tmp / "kubeconfig"
    kubeconfig.write_text(content)
    assert_usage_error(run_cli("check", "--kubeconfig", str(kubeconfig), "--context", "lab"),
                       f"kubeconfig {kubeconfig}: {fragment}")
    assert_nothing_probed(world)


def test_a_kubeconfig_that_is_a_device_is_refused_unread(world):
    world.static_keys()
    assert_usage_error(run_cli("check", "--kubeconfig", "/dev/zero"), "kubeconfig /dev/zero: a character device")


def test_the_license_is_an_spdx_string_for_a_setuptools_that_reads_it_without_warning():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]  # SPDX strings from 77 on
