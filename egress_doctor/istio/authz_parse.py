"""Parse a `security.istio.io` AuthorizationPolicy into `istio.authz_objects` (shape only, as the
CRD schema would check it; istiod skips a rule with an unknown `when` key, `istio.authz` does too).
"""

from __future__ import annotations

from typing import Any

from egress_doctor.istio.authz_objects import DRY_RUN_ANNOTATION, Action, Attribute, AuthorizationPolicy, Rule
from egress_doctor.istio.objects import Meta
from egress_doctor.istio.spec import Spec

# field of a source / an operation → istiod's attribute key (pilot/pkg/security/authz/model/model.go)
SOURCE_FIELDS = {
    "principals": "source.principal", "requestPrincipals": "request.auth.principal",
    "namespaces": "source.namespace", "ipBlocks": "source.ip", "remoteIpBlocks": "remote.ip",
    "serviceAccounts": "source.serviceAccount", "trustDomains": "source.trustDomain",
}
OPERATION_FIELDS = {"hosts": ":authority", "ports": "destination.port", "methods": ":method", "paths": "path"}


def parse_policy(meta: Meta, spec: Spec, annotations: dict[str, Any]) -> AuthorizationPolicy:
    selector = spec.data.get("selector")
    rules = tuple(_rule(rule, f"/spec/rules/{i}") for i, rule in enumerate(spec.items("rules")))
    return AuthorizationPolicy(
        meta=meta,
        action=spec.enum("action", Action, Action.ALLOW),
        rules=rules,
        selector=None if selector is None else (spec.child("selector", selector).labels("matchLabels") or {}),
        target_refs=bool(spec.data.get("targetRef") or spec.data.get("targetRefs")),
        provider=spec.child("provider", spec.data.get("provider")).string("name"),
        dry_run=str(annotations.get(DRY_RUN_ANNOTATION, "")).lower() == "true",
    )


def _rule(rule: Spec, at: str) -> Rule:
    sources = tuple(_fields(item.child("source", item.data.get("source")), SOURCE_FIELDS, f"{at}/from/{i}/source")
                    for i, item in enumerate(rule.items("from")))
    operations = tuple(_fields(item.child("operation", item.data.get("operation")), OPERATION_FIELDS,
                               f"{at}/to/{i}/operation") for i, item in enumerate(rule.items("to")))
    conditions = tuple(
        Attribute(cond.string("key"), cond.strings("values"), cond.strings("notValues"),
                  f"{at}/when/{i}/values", f"{at}/when/{i}/notValues")
        for i, cond in enumerate(rule.items("when")))
    return Rule(sources, operations, conditions, has_from=bool(sources), has_to=bool(operations))


def _fields(spec: Spec, names: dict[str, str], at: str) -> tuple[Attribute, ...]:
    out = []
    for name, key in names.items():
        negated = "not" + name[0].upper() + name[1:]
        values, not_values = spec.strings(name), spec.strings(negated)
        if values or not_values:
            out.append(Attribute(key, values, not_values, f"{at}/{name}", f"{at}/{negated}"))
    return tuple(out)
