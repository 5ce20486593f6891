"""Every manifest the fix builders can print is accepted by Istio.

Three oracles, because each misses what the others catch:
1. the CRD's openAPIV3Schema (jsonschema), made strict: a field the API server would silently
   prune (a typo) fails here;
2. the CRD's CEL rules (`x-kubernetes-validations`), translated below; a test fails when the CRD
   gains a rule this file does not know;
3. istiod's validating webhook (`egress_doctor.istio.validation`), which rejects what the schema
   accepts (an IP in hosts, a wildcard with resolution DNS).

Tests read /work/shared/istio-crds; the product never does.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from egress_doctor.fixes.builders import ISTIO_APIS, EgressNeed, FixOptions, build_fixes

CRDS = Path("/work/shared/istio-crds/crd-all.gen.yaml")

pytestmark = pytest.mark.skipif(not CRDS.exists(), reason=f"{CRDS} is not available")


@cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, version) → openAPIV3Schema."""
    schemas = {}
    for doc in yaml.safe_load_all(CRDS.read_text(encoding="utf-8")):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        kind = doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            schemas[(kind, version["name"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(schema: Any) -> Any:
    """No unknown fields where the API server would prune them (objects with properties)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    schema = _strict(copy.deepcopy(_crd_schemas()[(kind, version)]))
    # The CRD schema describes spec and status; the envelope is the API server's business.
    for key in ("apiVersion", "kind", "metadata"):
        schema["properties"].setdefault(key, {})
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_validator(manifest: dict[str, Any]) -> jsonschema.protocols.Validator:
    return _validator(manifest["kind"], manifest["apiVersion"].split("/")[1])


# --- CEL rules of the ServiceEntry CRD, in Python ------------------------------------------------

_PORT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _endpoints(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("endpoints", []))


CEL: dict[str, Callable[[dict[str, Any]], bool]] = {
    "only one of WorkloadSelector or Endpoints can be set": lambda s: (
        not ("workloadSelector" in s and "endpoints" in s)
    ),
    "CIDR addresses are allowed only for NONE/STATIC resolution types": lambda s: (
        not (
            any("/" in a for a in s.get("addresses", []))
            and s.get("resolution", "NONE") not in ("STATIC", "NONE")
        )
    ),
    "NONE mode cannot set endpoints": lambda s: s.get("resolution", "NONE") != "NONE" or "endpoints" not in s,
    "DNS_ROUND_ROBIN mode cannot have multiple endpoints": lambda s: (
        s.get("resolution") != "DNS_ROUND_ROBIN" or len(_endpoints(s)) <= 1
    ),
    "Address is required": lambda s: all("address" in e or "network" in e for e in _endpoints(s)),
    "UDS may not include ports": lambda s: all(
        not e.get("address", "").startswith("unix://") or "ports" not in e for e in _endpoints(s)
    ),
    "UDS must be an absolute path or abstract socket": lambda s: all(
        not e.get("address", "").startswith("unix://") or e["address"][7:8] in ("/", "@")
        for e in _endpoints(s)
    ),
    "UDS may not be a dir": lambda s: all(
        not e.get("address", "").startswith("unix://") or not e["address"].endswith("/")
        for e in _endpoints(s)
    ),
    "port name must be valid": lambda s: all(
        len(k) < 63 and _PORT_NAME.match(k) for e in _endpoints(s) for k in e.get("ports", {})
    ),
    "port must be between 1-65535": lambda s: (
        all(0 < p["number"] <= 65535 for p in s.get("ports", []))
        and all(0 < p.get("targetPort", 1) <= 65535 for p in s.get("ports", []))
        and all(0 < v <= 65535 for e in _endpoints(s) for v in e.get("ports", {}).values())
    ),
    "hostname cannot be wildcard": lambda s: all(h != "*" for h in s["hosts"]),
    "port number cannot be duplicated": lambda s: (
        len({p["number"] for p in s.get("ports", [])}) == len(s.get("ports", []))
    ),
    "wildcard is not supported in selector": lambda s: all(
        "*" not in v for v in s.get("workloadSelector", {}).get("labels", {}).values()
    ),
}


def _cel_messages(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            yield rule["message"]
        for value in schema.values():
            yield from _cel_messages(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _cel_messages(value)


# --- everything the builders can print -----------------------------------------------------------


def _need(host: str, port: int = 443, scheme: str = "https") -> EgressNeed:
    return EgressNeed(host, port, "ED301", "TLS closed during handshake", scheme)


NEED_SETS = {
    "regional sts": [_need("sts.us-east-1.amazonaws.com")],
    "global sts": [_need("sts.amazonaws.com")],
    "dynamodb account and regional": [
        _need("111122223333.ddb.us-east-1.amazonaws.com"),
        _need("dynamodb.us-east-1.amazonaws.com"),
    ],
    "dualstack account": [_need("111122223333.ddb.us-west-2.api.aws")],
    "china partition": [_need("sts.cn-north-1.amazonaws.com.cn")],
    "custom ports": [_need("api.example.com", 8443), _need("api.example.com", 8080, "http")],
    "imds": [_need("169.254.169.254", 80, "http")],
    "imds ipv6": [_need("fd00:ec2::254", 80, "http")],
    "pod identity": [_need("169.254.170.23", 80, "http")],
    "pod identity ipv6": [_need("fd00:ec2::23", 80, "http")],
    "ecs": [_need("169.254.170.2", 80, "http")],
}
OPTION_SETS = {
    "default": {},
    "wildcard": {"wildcard": True},
    "export all": {"export_to": ("*",)},
    "export named": {"namespace": "payments", "export_to": (".", "istio-egress")},
}


def _generated() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for api in ISTIO_APIS:
        for need_name, needs in NEED_SETS.items():
            for option_name, options in OPTION_SETS.items():
                plan = build_fixes(needs, FixOptions(istio_api=api, **options))  # type: ignore[arg-type]
                for fix in plan.fixes:
                    for manifest in fix.manifests:
                        out.append(
                            (f"{api}-{need_name}-{option_name}-{manifest['metadata']['name']}", manifest)
                        )
    return out


GENERATED = _generated()
IDS = [name for name, _ in GENERATED]


@pytest.mark.parametrize(("name", "manifest"), GENERATED, ids=IDS)
def test_generated_manifest_matches_the_crd_schema_of_its_kind_and_version(name: str, manifest: dict) -> None:
    schema_validator(manifest).validate(manifest)


@pytest.mark.parametrize(("name", "manifest"), GENERATED, ids=IDS)
def test_generated_manifest_satisfies_every_cel_rule_of_the_crd(name: str, manifest: dict) -> None:
    broken = [message for message, holds in CEL.items() if not holds(manifest["spec"])]
    assert broken == []


@pytest.mark.parametrize(("name", "manifest"), GENERATED, ids=IDS)
def test_generated_manifest_passes_istiods_webhook_rules(name: str, manifest: dict) -> None:
    validation = pytest.importorskip("egress_doctor.istio.validation")
    istio = pytest.importorskip("egress_doctor.istio.objects")
    parse = pytest.importorskip("egress_doctor.istio.parse")
    obj = parse.parse_object(manifest, manifest["metadata"]["namespace"], name)
    assert isinstance(obj, istio.ServiceEntry), obj
    assert [str(m) for m in validation.validate(obj)] == []


@pytest.mark.parametrize(("name", "manifest"), GENERATED, ids=IDS)
def test_generated_manifest_never_puts_an_ip_in_hosts(name: str, manifest: dict) -> None:
    for host in manifest["spec"]["hosts"]:
        with pytest.raises(ValueError):
            ipaddress.ip_address(host)


def test_the_cel_translation_knows_every_rule_of_every_serviceentry_version() -> None:
    for api in ISTIO_APIS:
        assert set(_cel_messages(_crd_schemas()[("ServiceEntry", api)])) == set(CEL), api


def test_the_strict_schema_rejects_a_misspelt_field() -> None:
    bad = copy.deepcopy(GENERATED[0][1])
    bad["spec"]["exportto"] = bad["spec"].pop("exportTo")
    with pytest.raises(jsonschema.ValidationError):
        schema_validator(bad).validate(bad)


def test_the_webhook_oracle_rejects_what_the_schema_lets_through() -> None:
    """Sanity of oracle 3: an IP host and a DNS wildcard pass the schema but not the webhook."""
    validation = pytest.importorskip("egress_doctor.istio.validation")
    parse = pytest.importorskip("egress_doctor.istio.parse")
    for spec in (
        {
            "hosts": ["169.254.169.254"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "169.254.169.254"}],
        },
        {
            "hosts": ["*.ddb.us-east-1.amazonaws.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    ):
        manifest = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": spec,
        }
        schema_validator(manifest).validate(manifest)
        obj = parse.parse_object(manifest, "default", "sanity")
        assert validation.errors(validation.validate(obj)), spec
