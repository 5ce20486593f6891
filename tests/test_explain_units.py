"""The pieces under the mesh explanations: near-miss names, JSON patches, edits and their merging."""

from __future__ import annotations

import pytest

from egress_doctor.aws.hosts import is_ip, near_miss
from egress_doctor.fixes import edits
from egress_doctor.fixes.manifest import apply_patch, patch_command, to_manifest
from egress_doctor.istio.objects import ServiceEntry, Sidecar
from egress_doctor.istio.parse import parse_object
from egress_doctor.istio.validation import validate
from egress_doctor.sources.files import read_yaml
from egress_doctor.sources.view import host_matches

SE_TEXT = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: aws-sts, namespace: platform, labels: {team: a}}
spec:
  hosts: [sts.amazonaws.com]
  addresses: [240.0.0.1]
  ports: [{number: 443, name: tls, protocol: TLS}]
  location: MESH_EXTERNAL
  resolution: DNS
  exportTo: ["."]
  endpoints: [{address: sts.amazonaws.com, ports: {tls: 443}}]
"""


def entry(text: str = SE_TEXT) -> ServiceEntry:
    obj = read_yaml(text, "default").objects[0]
    assert isinstance(obj, ServiceEntry)
    return obj


@pytest.mark.parametrize(
    ("need", "registered", "difference"),
    [
        ("sts.us-east-1.amazonaws.com", "sts.amazonaws.com", "the global endpoint instead of us-east-1"),
        ("sts.amazonaws.com", "sts.us-east-1.amazonaws.com", "region us-east-1 instead of the global endpoint"),
        ("111122223333.ddb.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com",
         "the regional endpoint, not the account-based one"),
        ("111122223333.ddb.us-east-1.amazonaws.com", "*.ddb.us-west-2.amazonaws.com",
         "region us-west-2 instead of us-east-1"),
        ("sts-fips.us-east-1.amazonaws.com", "sts.us-east-1.amazonaws.com", "FIPS endpoint needed"),
        ("dynamodb.us-east-1.api.aws", "dynamodb.us-east-1.amazonaws.com", "dual-stack (api.aws) endpoint needed"),
        ("sts.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com", None),
        ("sts.us-east-1.amazonaws.com", "sts.us-east-1.amazonaws.com", None),
        ("api.example.com", "sts.amazonaws.com", None),
    ],
)
def test_near_miss_names_how_the_registered_host_differs(need: str, registered: str, difference: str | None) -> None:
    assert near_miss(need, registered) == difference


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [("a.ddb.us-east-1.amazonaws.com", "*.ddb.us-east-1.amazonaws.com", True),
     ("ddb.us-east-1.amazonaws.com", "*.ddb.us-east-1.amazonaws.com", False),
     ("STS.amazonaws.com.", "sts.amazonaws.com", True), ("anything", "*", True)],
)
def test_envoy_domain_matching_is_suffix_wildcard_and_case_blind(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


def test_a_json_patch_adds_appends_replaces_and_removes() -> None:
    doc = {"spec": {"hosts": ["a"], "ports": [{"protocol": "HTTP"}], "endpoints": [{}]}}
    out = apply_patch(doc, [{"op": "add", "path": "/spec/hosts/-", "value": "b"},
                            {"op": "replace", "path": "/spec/ports/0/protocol", "value": "TLS"},
                            {"op": "remove", "path": "/spec/endpoints"},
                            {"op": "add", "path": "/spec/exportTo", "value": ["."]}])
    assert out == {"spec": {"hosts": ["a", "b"], "ports": [{"protocol": "TLS"}], "exportTo": ["."]}}
    assert doc["spec"]["hosts"] == ["a"]  # the input is not touched
    with pytest.raises(KeyError):
        apply_patch(doc, [{"op": "replace", "path": "/spec/missing", "value": 1}])


def test_the_patch_command_is_a_json_patch_for_kubectl() -> None:
    command = patch_command("ServiceEntry", "platform", "aws-sts", [{"op": "remove", "path": "/spec/endpoints"}])
    assert command == ("kubectl -n platform patch serviceentry aws-sts --type=json "
                       """-p '[{"op":"remove","path":"/spec/endpoints"}]'""")


def test_the_modelled_manifest_parses_back_to_the_same_object() -> None:
    se = entry()
    again = parse_object(to_manifest(se), "default", se.meta.source)
    assert again == se


def test_edits_of_one_object_merge_into_one_fix_that_keeps_fields_the_model_drops() -> None:
    se = entry()
    read = {se.meta.ref: {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
                          "metadata": {"name": "aws-sts", "namespace": "platform", "uid": "drop-me",
                                       "annotations": {"keep": "me"}},
                          "spec": {**to_manifest(se)["spec"], "subjectAltNames": ["kept"]}}}
    both = [edits.add_service_entry_host(se, "sts.us-east-1.amazonaws.com", 443, "TLS"),
            edits.export_to_namespace(se, "payments"),
            edits.export_to_namespace(se, "payments")]
    fixes = edits.edit_fixes(both, read, {"edit/serviceentry/platform/aws-sts": "egress-doctor: ED610"})
    assert len(fixes) == 1
    manifest = fixes[0].manifests[0]
    assert manifest["metadata"] == {"name": "aws-sts", "namespace": "platform", "annotations": {"keep": "me"}}
    assert manifest["spec"]["subjectAltNames"] == ["kept"]
    assert manifest["spec"]["exportTo"] == [".", "payments"]
    assert manifest["spec"]["hosts"] == ["sts.amazonaws.com", "sts.us-east-1.amazonaws.com"]
    assert "touching nothing else" in fixes[0].description


@pytest.mark.parametrize(
    ("export_to", "after"),
    [("", [".", "payments"]), ('exportTo: ["~"]', ["payments"]), ('exportTo: ["other"]', ["other", "payments"])],
)
def test_export_to_edits_depend_on_what_is_there(export_to: str, after: list[str]) -> None:
    text = SE_TEXT.replace('  exportTo: ["."]', f"  {export_to}" if export_to else "")
    se = entry(text)
    fix = edits.edit_fixes([edits.export_to_namespace(se, "payments")], {}, {})[0]
    assert fix.manifests[0]["spec"]["exportTo"] == after


def test_a_refused_ip_entry_is_repaired_into_one_the_webhook_admits() -> None:
    se = entry(SE_TEXT.replace("[sts.amazonaws.com]", "[169.254.169.254]").replace(
        "  endpoints: [{address: sts.amazonaws.com, ports: {tls: 443}}]\n", "").replace("addresses: [240.0.0.1]",
                                                                                       "addresses: []"))
    assert [m.level for m in validate(se)] and not edits.admissible(
        edits.Edit(se.meta.ref, "nothing", (), se), {})
    repair = edits.repair_refused_entry(se, is_ip)
    assert repair is not None and edits.admissible(repair, {})
    manifest = edits.edit_fixes([repair], {}, {})[0].manifests[0]
    assert manifest["spec"]["hosts"] == ["imds.aws.internal"]
    assert manifest["spec"]["addresses"] == ["169.254.169.254"]
    assert manifest["spec"]["endpoints"] == [{"address": "169.254.169.254"}]


def test_a_sidecar_edit_goes_to_the_listener_that_owns_the_port_else_the_catch_all_else_a_new_one() -> None:
    sidecar_text = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: payments}
spec:
  egress:
  - port: {number: 8080, protocol: HTTP, name: web}
    hosts: ["./*"]
  %s
"""
    with_catch_all = read_yaml(sidecar_text % '- hosts: ["istio-system/*"]', "payments").objects[0]
    only_port = read_yaml(sidecar_text % "", "payments").objects[0]
    assert isinstance(with_catch_all, Sidecar) and isinstance(only_port, Sidecar)
    assert edits.import_into_sidecar(with_catch_all, "platform/a.example.com", 443).ops[0]["path"] == \
        "/spec/egress/1/hosts/-"
    new = edits.import_into_sidecar(only_port, "platform/a.example.com", 443)
    assert new.ops[0] == {"op": "add", "path": "/spec/egress/0", "value": {
        "port": {"number": 443, "protocol": "TLS", "name": "tls-443"}, "hosts": ["platform/a.example.com"]}}
    assert edits.admissible(new, {})
