"""`render_fixes`: what `egress-doctor check --fix-only | kubectl apply -f -` reads.

Golden files live in tests/golden/fixes/; regenerate them with `UPDATE_GOLDEN=1 pytest
tests/test_fixes_yaml.py` and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from egress_doctor.diagnose import DiagnoseOptions, diagnose
from egress_doctor.model import Fix
from egress_doctor.render.fix_yaml import render_fixes
from tests.test_diagnose_evidence import (
    AGENT,
    ARWWI,
    DDB,
    DESCRIBE,
    GCI,
    ROLE,
    TOKEN,
    facts,
    identity,
    passed,
    skipped,
)
from tests.test_diagnose_replies import (
    envoy,
)
from tests.test_diagnose_transport import (
    refused,
    tls_eof,
)

GOLDEN = Path(__file__).parent / "golden" / "fixes"

SCENARIOS = {
    # IRSA app under REGISTRY_ONLY: regional STS and the account DynamoDB host both blackholed.
    "registry-only-irsa": lambda: diagnose(
        identity("irsa"),
        [tls_eof(ARWWI), skipped(GCI), tls_eof(DESCRIBE, host=DDB)],
        facts(namespace="payments"),
    ),
    # Node role through IMDS, answered by block_all.
    "imds-serviceentry": lambda: diagnose(
        identity("imds"), [envoy(TOKEN, "block_all"), envoy(ROLE, "block_all")], facts(namespace="payments")
    ),
    # Same run, exclusion annotation instead of a ServiceEntry.
    "imds-annotation": lambda: diagnose(
        identity("imds"),
        [envoy(TOKEN, "block_all"), envoy(ROLE, "block_all")],
        facts(namespace="payments"),
        DiagnoseOptions(imds_fix="annotation"),
    ),
    # Pod Identity on an Istio 1.21 mesh, exported everywhere.
    "pod-identity-v1beta1": lambda: diagnose(
        identity("pod-identity"),
        [envoy(AGENT, "block_all")],
        facts(namespace="shop"),
        DiagnoseOptions(istio_api="v1beta1", export_to=["*"]),
    ),
    # Every account's DynamoDB host in the region.
    "dynamodb-wildcard": lambda: diagnose(
        identity("irsa"),
        [passed(ARWWI), passed(GCI), tls_eof(DESCRIBE, host=DDB)],
        facts(namespace="payments"),
        DiagnoseOptions(wildcard=True),
    ),
    # The app ran before its sidecar: a patch, no manifest.
    "sidecar-not-ready": lambda: diagnose(
        identity("irsa"), [refused(ARWWI), refused(DESCRIBE)], facts(namespace="batch")
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fix_yaml_matches_the_golden_file(name: str) -> None:
    text = render_fixes(SCENARIOS[name]().fixes)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_stream_parses_back_to_exactly_the_manifests(name: str) -> None:
    fixes = SCENARIOS[name]().fixes
    documents = [d for d in yaml.safe_load_all(render_fixes(fixes)) if d is not None]
    assert documents == [m for f in fixes for m in f.manifests]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_document_starts_with_its_egress_doctor_comment_block(name: str) -> None:
    for document in render_fixes(SCENARIOS[name]().fixes).split("---\n"):
        assert document.startswith("# egress-doctor: ED"), document[:80]


def test_top_level_keys_come_in_kubernetes_order() -> None:
    text = render_fixes(SCENARIOS["registry-only-irsa"]().fixes)
    for document in text.split("---\n"):
        keys = [line.split(":")[0] for line in document.splitlines() if line and line[0].isalpha()]
        assert keys == ["apiVersion", "kind", "metadata", "spec"]


def test_nothing_to_fix_renders_an_empty_string() -> None:
    assert render_fixes([]) == ""
    mesh_fine = diagnose(identity(), [passed(GCI)], facts())
    assert render_fixes(mesh_fine.fixes) == ""


def test_a_patch_only_fix_is_all_comments_so_kubectl_apply_sees_no_object() -> None:
    text = render_fixes(SCENARIOS["sidecar-not-ready"]().fixes)
    assert all(line.startswith("#") for line in text.splitlines())
    assert "holdApplicationUntilProxyStarts" in text
    assert [d for d in yaml.safe_load_all(text) if d is not None] == []


def test_namespace_wildcards_are_quoted_so_they_read_as_strings() -> None:
    text = render_fixes(SCENARIOS["pod-identity-v1beta1"]().fixes)
    assert '- "*"' in text
    assert '- "."' in render_fixes(SCENARIOS["imds-serviceentry"]().fixes)


def test_a_fix_without_manifest_or_patch_renders_nothing() -> None:
    assert render_fixes([Fix(id="x", description="nothing")]) == ""
