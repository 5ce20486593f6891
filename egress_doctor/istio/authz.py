"""What the AuthorizationPolicies on a proxy let through, as istiod builds Envoy's RBAC filters and
Envoy evaluates them. Pure.

    verdict = decide(policy_filters(policies_for(objects, proxy, mesh), tcp=True),
                     Request(sni="sts.us-east-1.amazonaws.com", port=8443))

Selection (pilot/pkg/model/authorization.go, policyattachment.go `ShouldAttachPolicy`): policies
in the root namespace and in the proxy's namespace whose `selector.matchLabels` match its labels
(no selector: every workload there); a policy with `targetRef(s)` is not attached to a proxy
selected by labels. A dry-run policy (annotation `istio.io/dry-run: "true"`) only shadows.

Generation (pilot/pkg/security/authz/builder/builder.go, model/model.go, model/generator.go):
one Envoy policy per rule; its permissions are the `to` operations (each an AND of its
attributes and the permission-side `when` conditions: destination.port, connection.sni,
destination.ip), its principals the `from` sources (with the other `when` conditions). A rule
with an unknown `when` key is skipped. On a TCP filter chain (TLS passthrough) an HTTP-only
attribute (hosts, methods, paths, request headers, request principals and claims) is an error:
an ALLOW rule that has one is dropped whole (allows less), a DENY or AUDIT rule drops only that
attribute (denies more). A policy without rules never matches. A source's principals,
namespaces, service accounts and trust domains match the peer's mTLS identity only.

Decision (Envoy's filters in istiod's order, CUSTOM, DENY, ALLOW): a DENY policy that matches
refuses; when ALLOW policies apply, one must match. Evaluation is three-valued: what the model
cannot know (source IP, headers, an external authorizer, an mTLS peer's service account) is None,
and a verdict that depends on it is None rather than a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from egress_doctor.istio.authz_objects import Action, Attribute, AuthorizationPolicy, Rule

PERMISSION_KEYS = ("destination.ip", "destination.port", "connection.sni")
PRINCIPAL_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.trustDomain", "source.serviceAccount",
                  "source.principal", "request.auth.principal", "request.auth.audiences", "request.auth.presenter")
PREFIX_KEYS = ("experimental.envoy.filters.", "request.headers", "request.auth.claims")
HTTP_ONLY = (":authority", ":method", "path", "request.auth.principal", "request.auth.audiences",
             "request.auth.presenter", "request.headers", "request.auth.claims")
IDENTITY_KEYS = ("source.principal", "source.namespace", "source.serviceAccount", "source.trustDomain")


@dataclass(frozen=True)
class Node:
    """A matcher of Envoy's RBAC: `and` / `or` / `not` of children, `any`, or a leaf on one key
    (`connection.sni`, `:authority`, `destination.port`, `source.principal` …) with a value in
    Istio's pattern syntax (exact, `prefix*`, `*suffix`, `*`) or, for identities, a regex."""

    op: str  # "and" | "or" | "not" | "any" | "never" | "leaf"
    children: tuple[Node, ...] = ()
    key: str = ""
    value: str = ""
    regex: str = ""  # identities: the regex Envoy matches against the peer's URI SAN

    @staticmethod
    def all_of(children: Sequence[Node]) -> Node:
        return Node("and", tuple(children) or (Node("any"),))


@dataclass(frozen=True)
class EnvoyPolicy:
    name: str  # ns[<ns>]-policy[<name>]-rule[<i>]
    permissions: tuple[Node, ...]
    principals: tuple[Node, ...]
    origin: str  # "AuthorizationPolicy ns/name"


@dataclass(frozen=True)
class RbacFilter:
    action: Action
    policies: tuple[EnvoyPolicy, ...]
    origins: tuple[str, ...] = ()  # the AuthorizationPolicies it was built from


@dataclass(frozen=True)
class Request:
    """One connection (TCP/TLS) or request (HTTP) arriving at the proxy."""

    sni: str = ""  # the TLS SNI (TCP chains)
    port: int = 0  # the proxy's own port it arrived on (Envoy's destination_port)
    authority: str = ""  # HTTP Host
    identity: str | None = ""  # the mTLS peer ("cluster.local/ns/x/sa/y"); "": none; None: mTLS, not known


@dataclass(frozen=True)
class Verdict:
    allowed: bool | None  # None: it depends on what the model cannot know
    policy: str = ""  # the policy that decided a refusal
    reason: str = ""

    @property
    def denied(self) -> bool:
        return self.allowed is False


def policies_for(objects: Iterable[object], namespace: str, labels: Mapping[str, str],
                 root_namespace: str) -> list[AuthorizationPolicy]:
    out = []
    for policy in objects:
        if not isinstance(policy, AuthorizationPolicy) or policy.target_refs:
            continue
        if policy.meta.namespace not in (root_namespace, namespace):
            continue
        if policy.selector and not all(labels.get(k) == v for k, v in policy.selector.items()):
            continue
        out.append(policy)
    return out


def policy_filters(policies: Sequence[AuthorizationPolicy], tcp: bool) -> tuple[RbacFilter, ...]:
    """The RBAC filters of one filter chain, in Envoy's order (CUSTOM, DENY, ALLOW); AUDIT and
    dry-run policies change nothing and are left out."""
    out = []
    for action in (Action.CUSTOM, Action.DENY, Action.ALLOW):
        chosen = [p for p in policies if p.action is action and not p.dry_run]
        if not chosen:
            continue
        generated = [g for p in chosen for g in _generate(p, tcp, action)]
        out.append(RbacFilter(action, tuple(generated), tuple(p.meta.ref for p in chosen)))
    return tuple(out)


def _generate(policy: AuthorizationPolicy, tcp: bool, action: Action) -> list[EnvoyPolicy]:
    ns, name = policy.meta.namespace, policy.meta.name
    if not policy.rules:
        return [EnvoyPolicy(f"ns[{ns}]-policy[{name}]-rule[0]", (Node("never"),), (Node("never"),), policy.meta.ref)]
    out = []
    for index, rule in enumerate(policy.rules):
        built = _rule(rule, tcp, action, ns)
        if built is not None:
            out.append(EnvoyPolicy(f"ns[{ns}]-policy[{name}]-rule[{index}]", *built, policy.meta.ref))
    return out


def _known(key: str) -> bool:
    return key in PERMISSION_KEYS or key in PRINCIPAL_KEYS or key.startswith(PREFIX_KEYS)


Built = tuple[tuple[Node, ...], tuple[Node, ...]]  # (permissions, principals)


def _rule(rule: Rule, tcp: bool, action: Action, policy_namespace: str) -> Built | None:
    if any(not _known(c.key) for c in rule.conditions):
        return None  # model.New: unknown attribute, rule skipped
    base_permission = [c for c in rule.conditions if c.key in PERMISSION_KEYS or c.key.startswith(PREFIX_KEYS[0])]
    base_principal = [c for c in rule.conditions if c not in base_permission]
    permissions, principals = [], []
    for attributes in rule.operations or ((),):
        nodes = _nodes([*attributes, *base_permission], tcp, action, policy_namespace)
        if nodes is None:
            return None
        permissions.append(Node.all_of(nodes))
    for attributes in rule.sources or ((),):
        nodes = _nodes([*attributes, *base_principal], tcp, action, policy_namespace)
        if nodes is None:
            return None
        principals.append(Node.all_of(nodes))
    return tuple(permissions), tuple(principals)


def _nodes(attributes: Sequence[Attribute], tcp: bool, action: Action, namespace: str) -> list[Node] | None:
    out = []
    for attribute in attributes:
        if tcp and attribute.key.startswith(HTTP_ONLY):
            if action is Action.ALLOW:
                return None  # checkError: the ALLOW rule is dropped
            continue  # DENY / AUDIT: the attribute is ignored, the rule matches more
        if attribute.values:
            out.append(Node("or", tuple(_leaf(attribute.key, v, namespace) for v in attribute.values)))
        if attribute.not_values:
            out.append(Node("not", (Node("or", tuple(_leaf(attribute.key, v, namespace)
                                                     for v in attribute.not_values)),)))
    return out


def _leaf(key: str, value: str, namespace: str) -> Node:
    return Node("leaf", key=key, value=value, regex=_identity_regex(key, value, namespace))


def _identity_regex(key: str, value: str, namespace: str) -> str:
    """The regex on the peer's URI SAN (generator.go): principals, namespaces, service accounts,
    trust domains."""
    if key == "source.principal":
        return ".+" if value == "*" else _pattern_regex("spiffe://", value)
    if key == "source.namespace":
        return f".*/ns/{'.*'.join(re.escape(p) for p in value.split('*'))}/.*"
    if key == "source.serviceAccount":
        ns, _, sa = value.rpartition("/")
        return f"spiffe://.+/ns/{re.escape(ns or namespace)}/(.+/|)sa/{re.escape(sa)}(/.+)?"
    if key == "source.trustDomain":
        if value == "*":
            return "spiffe://.*"
        head, star, tail = value.partition("*")
        return f"spiffe://{re.escape(head)}{'[^/]*' + re.escape(tail) if star else ''}/.*"
    return ""


def _pattern_regex(prefix: str, value: str) -> str:
    if value.startswith("*"):
        return ".*" + re.escape(value[1:])
    if value.endswith("*"):
        return re.escape(prefix + value[:-1]) + ".*"
    return re.escape(prefix + value)


def pattern_matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """Istio's string match (pkg/config/security matcher): `*` any non-empty value, `*suffix`,
    `prefix*`, else exact."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if pattern == "*":
        return bool(value)
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def evaluate(node: Node, request: Request) -> bool | None:
    if node.op == "any":
        return True
    if node.op == "never":
        return False
    if node.op == "not":
        inner = evaluate(node.children[0], request)
        return None if inner is None else not inner
    if node.op in ("and", "or"):
        results = [evaluate(child, request) for child in node.children]
        decisive = node.op == "or"  # True decides an or, False an and
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    return _leaf_matches(node, request)


def _leaf_matches(node: Node, request: Request) -> bool | None:
    if node.key == "connection.sni":
        return pattern_matches(node.value, request.sni)
    if node.key == ":authority":
        return pattern_matches(node.value, request.authority, ignore_case=True)
    if node.key == "destination.port":
        return node.value.isdigit() and int(node.value) == request.port
    if node.key in IDENTITY_KEYS:
        if request.identity is None:
            return None
        return bool(request.identity) and re.fullmatch(node.regex, "spiffe://" + request.identity) is not None
    return None  # source/remote IP, destination IP, headers, methods, paths, JWT claims: not known here


def _matches(policy: EnvoyPolicy, request: Request) -> bool | None:
    return evaluate(Node("and", (Node("or", policy.permissions), Node("or", policy.principals))), request)


def decide(filters: Sequence[RbacFilter], request: Request) -> Verdict:
    unknown = ""
    for rbac in filters:
        results = [(p, _matches(p, request)) for p in rbac.policies]
        matched = next((p for p, r in results if r is True), None)
        maybe = next((p for p, r in results if r is None), None)
        if rbac.action is Action.CUSTOM:
            if matched or maybe:
                unknown = unknown or f"{(matched or maybe).origin} asks an external authorizer"  # type: ignore[union-attr]
        elif rbac.action is Action.DENY:
            if matched is not None:
                return Verdict(False, matched.origin, f"the DENY rule {matched.name} matches")
            if maybe is not None:
                unknown = unknown or f"{maybe.origin} denies depending on what the model cannot see"
        elif matched is None:
            if maybe is not None:
                return Verdict(None, maybe.origin, "an ALLOW rule may match, depending on what the model cannot see")
            origins = rbac.origins or tuple(sorted({p.origin for p in rbac.policies}))
            return Verdict(False, origins[0] if origins else "",
                           f"no ALLOW rule of {', '.join(origins)} matches")
    return Verdict(None, "", unknown) if unknown else Verdict(True)


def allowing_edits(policies: Sequence[AuthorizationPolicy], request: Request, tcp: bool,
                   ) -> list[tuple[AuthorizationPolicy, str]]:
    """(policy, JSON pointer of the list to append the host to) for each one-value edit that
    mends what refuses the request now: the SNI (TCP) or Host (HTTP) added to an ALLOW rule's
    `values`, or to a DENY rule's `notValues` — lists that already name other hosts. Each is
    checked by re-deciding with the edit applied: it lets the request through, or what refuses it
    is another policy (mended on the plan's next round)."""
    key = "connection.sni" if tcp else ":authority"
    host = request.sni if tcp else request.authority
    before = decide(policy_filters(policies, tcp), request)
    out = []
    for index, policy in enumerate(policies):
        for r, rule in enumerate(policy.rules):
            for attribute in [*rule.conditions, *(a for group in rule.operations for a in group)]:
                if attribute.key != key:
                    continue
                if policy.action is Action.ALLOW and attribute.values:
                    changed = replace(attribute, values=(*attribute.values, host))
                    path = attribute.path
                elif policy.action is Action.DENY and attribute.not_values:
                    changed = replace(attribute, not_values=(*attribute.not_values, host))
                    path = attribute.not_path
                else:
                    continue
                edited = replace(policy, rules=tuple(
                    _swapped(x, attribute, changed) if i == r else x for i, x in enumerate(policy.rules)))
                trial = [*policies[:index], edited, *policies[index + 1:]]
                after = decide(policy_filters(trial, tcp), request)
                if after.allowed is True or (after.denied and (after.policy, after.reason) != (before.policy,
                                                                                           before.reason)):
                    out.append((policy, path))
    return out


def _swapped(rule: Rule, old: Attribute, new: Attribute) -> Rule:
    return replace(rule, conditions=tuple(new if a is old else a for a in rule.conditions),
                   operations=tuple(tuple(new if a is old else a for a in group) for group in rule.operations))


def needs_identity(policies: Sequence[AuthorizationPolicy]) -> bool:
    """Does an ALLOW rule ask for the peer's identity (principals, namespaces, …)?"""
    return any(a.key in IDENTITY_KEYS for p in policies if p.action is Action.ALLOW for r in p.rules
               for a in (*r.conditions, *(x for group in r.sources for x in group)))
