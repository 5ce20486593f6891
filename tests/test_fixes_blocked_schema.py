"""Every manifest `blocked` can print is accepted by Istio: the Telemetry that turns access logging on
and the ServiceEntries for refused hosts, against the CRD schemas (strict), the CRDs' CEL rules and
istiod's webhook rules (egress_doctor.istio.validation for ServiceEntries; ValidateTelemetry's
rules, translated below, for Telemetry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from egress_doctor.fixes.builders import ISTIO_APIS
from egress_doctor.fixes.telemetry import access_logging_fix
from egress_doctor.istio import validation
from egress_doctor.istio.objects import ServiceEntry
from egress_doctor.istio.parse import parse_object
from tests.test_blocked_cases import CASES
from tests.test_fixes_schema import CEL, CRDS, _cel_messages, _crd_schemas, schema_validator

pytestmark = pytest.mark.skipif(not CRDS.exists(), reason=f"{CRDS} is not available")

# The Telemetry CRD's CEL rules (x-kubernetes-validations), in Python.
TELEMETRY_CEL: dict[str, Callable[[dict[str, Any]], bool]] = {
    "only one of targetRefs or selector can be set": lambda s: (
        sum(k in s for k in ("selector", "targetRef", "targetRefs")) <= 1),
    "value must be set when operation is UPSERT": lambda s: all(
        t.get("operation") != "UPSERT" or t.get("value") for m in s.get("metrics", [])
        for o in m.get("overrides", []) for t in o.get("tagOverrides", {}).values()),
    "value must not be set when operation is REMOVE": lambda s: all(
        t.get("operation") != "REMOVE" or "value" not in t for m in s.get("metrics", [])
        for o in m.get("overrides", []) for t in o.get("tagOverrides", {}).values()),
    "must be a valid duration greater than 1ms": lambda s: all(
        "reportingInterval" not in m for m in s.get("metrics", [])),
    "wildcard not allowed in label key match": lambda s: all(
        "*" not in k for k in s.get("selector", {}).get("matchLabels", {})),
    "key must not be empty": lambda s: all(k for k in s.get("selector", {}).get("matchLabels", {})),
    "wildcard not allowed in label value match": lambda s: all(
        "*" not in v for v in s.get("selector", {}).get("matchLabels", {}).values()),
    "cross namespace referencing is not currently supported": lambda s: all(
        not r.get("namespace") for r in [s.get("targetRef", {}), *s.get("targetRefs", [])]),
}


def telemetry_webhook(spec: dict[str, Any]) -> list[str]:
    """istiod's ValidateTelemetry for what the fix can contain (pkg/config/validation/validation.go):
    providers.name may not be empty; one of selector, targetRef, targetRefs."""
    errors = []
    for logging in spec.get("accessLogging", []):
        if any(not p.get("name") for p in logging.get("providers", [])):
            errors.append("providers.name may not be empty")
    if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
        errors.append("only one of selector, targetRef or targetRefs can be set")
    return errors


TELEMETRY = [(api, m) for api in ISTIO_APIS for m in access_logging_fix(["payments", "orders"], api).manifests]


@pytest.mark.parametrize(("api", "manifest"), TELEMETRY,
                         ids=[f"{a}-{m['metadata']['namespace']}" for a, m in TELEMETRY])
def test_the_access_logging_telemetry_is_valid_for_its_version(api: str, manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == ("telemetry.istio.io/v1" if api == "v1" else "telemetry.istio.io/v1alpha1")
    schema_validator(manifest).validate(manifest)
    assert [m for m, holds in TELEMETRY_CEL.items() if not holds(manifest["spec"])] == []
    assert telemetry_webhook(manifest["spec"]) == []


def test_the_telemetry_cel_translation_knows_every_rule_of_every_served_version() -> None:
    for version in ("v1", "v1alpha1"):
        assert set(_cel_messages(_crd_schemas()[("Telemetry", version)])) == set(TELEMETRY_CEL), version


def test_the_telemetry_oracles_reject_what_istio_rejects() -> None:
    bad = {"accessLogging": [{"providers": [{"name": ""}]}], "selector": {"matchLabels": {"a": "b"}},
           "targetRefs": [{"kind": "Service", "name": "x"}]}
    assert telemetry_webhook(bad)
    assert not TELEMETRY_CEL["only one of targetRefs or selector can be set"](bad)


SERVICE_ENTRIES = [(case.id, m) for case in CASES for fix in case.run().fixes for m in fix.manifests
                   if m["kind"] == "ServiceEntry"]


@pytest.mark.parametrize(("case", "manifest"), SERVICE_ENTRIES,
                         ids=[f"{c}-{m['metadata']['name']}" for c, m in SERVICE_ENTRIES])
def test_every_service_entry_blocked_prints_passes_the_schema_cel_and_webhook(case: str, manifest: dict) -> None:
    schema_validator(manifest).validate(manifest)
    assert [m for m, holds in CEL.items() if not holds(manifest["spec"])] == []
    obj = parse_object(manifest, manifest["metadata"]["namespace"], case)
    assert isinstance(obj, ServiceEntry)
    assert [str(p) for p in validation.validate(obj)] == []
