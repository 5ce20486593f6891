"""`security.istio.io` AuthorizationPolicy, as the model keeps it: who it applies to and its rules
with every attribute as written (values OR-ed, notValues negated). Plain data; what it lets
through is `istio.authz`'s job.

Attributes are named by istiod's keys (pilot/pkg/security/authz/model/model.go): a source's
`principals` is `source.principal`, `namespaces` is `source.namespace`, an operation's `hosts` is
`:authority`, `ports` is `destination.port`; `when` conditions keep their own key
(`connection.sni`, `destination.port`, `source.namespace`, …).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from egress_doctor.istio.objects import Meta

SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1", "v1beta1")
AUTHORIZATION_POLICY = "AuthorizationPolicy"
DRY_RUN_ANNOTATION = "istio.io/dry-run"


class Action(enum.StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


@dataclass(frozen=True)
class Attribute:
    """One attribute of a source, an operation or a `when` condition, with where it is written
    (a JSON pointer below the rule: `/from/0/source/principals`, `/when/1/values`)."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()
    path: str = ""  # the values' list; its notValues sit beside it
    not_path: str = ""


@dataclass(frozen=True)
class Rule:
    sources: tuple[tuple[Attribute, ...], ...] = ()  # from[]: each an AND of attributes
    operations: tuple[tuple[Attribute, ...], ...] = ()  # to[]
    conditions: tuple[Attribute, ...] = ()  # when[]
    has_from: bool = False  # `from` written (an empty list behaves as absent)
    has_to: bool = False


@dataclass(frozen=True)
class AuthorizationPolicy:
    meta: Meta
    action: Action = Action.ALLOW
    rules: tuple[Rule, ...] = ()
    selector: Mapping[str, str] | None = None  # spec.selector.matchLabels; None: the whole namespace
    target_refs: bool = False  # spec.targetRef(s): Gateway API gateways and waypoints, not this proxy
    provider: str = ""  # CUSTOM: the extension provider
    dry_run: bool = False  # annotation istio.io/dry-run: shadow rules only, nothing enforced
