"""Every manifest the mesh explanations print (edited objects and the Gateway / DestinationRule they
create) is accepted by Istio: the CRD schema made strict, the ServiceEntry CEL rules, and istiod's
webhook rules (`istio.validation`). The oracles are tests/test_fixes_schema.py's."""

from __future__ import annotations

from typing import Any

import pytest

from egress_doctor.istio.objects import Ignored
from egress_doctor.istio.parse import parse_object
from egress_doctor.istio.validation import validate
from tests import test_analyze_cases, test_explain_egress_policy, test_explain_table
from tests.test_fixes_schema import CEL, CRDS, schema_validator

pytestmark = pytest.mark.skipif(not CRDS.exists(), reason=f"{CRDS} is not available")


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for case in [*test_explain_table.CASES, *test_explain_egress_policy.CASES]:
        for fix in case.run().fixes:
            out += [(f"{case.golden or case.id}: {fix.id}", m) for m in fix.manifests]
    for analyze_case in test_analyze_cases.CASES:
        for fix in analyze_case.run().fixes:
            out += [(f"analyze {analyze_case.id}: {fix.id}", m) for m in fix.manifests]
    return out


MANIFESTS = _manifests()
IDS = [name for name, _ in MANIFESTS]
SERVICE_ENTRIES = [(name, m) for name, m in MANIFESTS if m["kind"] == "ServiceEntry"]


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_explained_fix_matches_the_crd_schema_of_its_kind_and_version(name: str, manifest: dict) -> None:
    schema_validator(manifest).validate(manifest)


@pytest.mark.parametrize(("name", "manifest"), SERVICE_ENTRIES, ids=[n for n, _ in SERVICE_ENTRIES])
def test_explained_serviceentry_satisfies_the_crds_cel_rules(name: str, manifest: dict) -> None:
    assert [message for message, holds in CEL.items() if not holds(manifest["spec"])] == []


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_explained_fix_passes_istiods_webhook_rules(name: str, manifest: dict) -> None:
    obj = parse_object(manifest, manifest["metadata"]["namespace"], name)
    if isinstance(obj, Ignored):
        assert manifest["kind"] == "Gateway"  # outside the webhook model; the schema test covers it
        return
    assert [str(m) for m in validate(obj) if m.level == "error"] == []


def test_the_grid_prints_edits_of_every_kind_it_knows() -> None:
    kinds = {m["kind"] for _, m in MANIFESTS}
    assert kinds == {"ServiceEntry", "Sidecar", "DestinationRule", "Gateway", "VirtualService", "AuthorizationPolicy"}
