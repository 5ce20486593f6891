"""Which DestinationRule configures a proxy's cluster for a service, and what TLS it originates.
Pure; follows istiod (pilot/pkg/model/push_context.go setDestinationRules / destinationRule,
destination_rule.go mergeDestinationRule, sidecar.go DestinationRule, networking/util/util.go
GetPortLevelTrafficPolicy / MergeSubsetTrafficPolicy).

Lookup for a proxy in namespace P and a service in namespace S:
1. P's own rules (any exportTo that includes P itself); for a proxy in the root namespace, the
   root namespace's rules that are private to it;
2. S's rules exported to P (an empty exportTo counts as exported unless the mesh default for
   DestinationRules is `.`; the default honours only `.` and `*`);
3. the root namespace's rules exported to P.
Within one namespace the most specific host wins (exact, else the longest wildcard); rules for
the same host in the same namespace with the same exportTo are merged: subsets appended, the
oldest rule's top-level traffic policy kept. A rule with a workloadSelector is never exported
and applies only to the proxies it selects (else the namespace's rule without one).

TLS on a cluster: the rule's `trafficPolicy.tls`, unless `portLevelSettings` has an entry for
the port — that entry replaces it (no inheritance: without its own `tls`, none). A subset's
policy (at the port level first) overrides the rule's when it sets TLS or has a port entry. A
sidecar ignores TLS settings with `credentialName` unless the rule has a workloadSelector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from egress_doctor.istio.hosts import fqdn, most_specific
from egress_doctor.istio.objects import ClientTls, DestinationRule, MeshConfig, Subset, TrafficPolicy
from egress_doctor.istio.registry import Service

ORIGINATING = ("SIMPLE", "MUTUAL", "ISTIO_MUTUAL")


@dataclass
class MergedRule:
    """ConsolidatedDestRule: one or more rules for one host in one namespace."""

    host: str
    rule: DestinationRule  # the oldest
    export_to: frozenset[str]
    selector: Mapping[str, str] | None
    policy: TrafficPolicy | None
    subsets: list[Subset] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "ns/name" of every merged rule

    @property
    def ref(self) -> str:
        return f"{self.rule.meta.namespace}/{self.rule.meta.name}"


@dataclass
class _Pool:
    by_host: dict[str, list[MergedRule]] = field(default_factory=dict)

    def merge(self, rule: DestinationRule, host: str, export_to: frozenset[str]) -> None:
        rules = self.by_host.setdefault(host, [])
        for merged in rules:
            if merged.export_to != export_to or merged.selector != rule.workload_selector:
                continue
            names = {s.name for s in merged.subsets}
            merged.subsets += [s for s in rule.subsets if s.name not in names]
            merged.policy = merged.policy or rule.policy
            merged.sources.append(f"{rule.meta.namespace}/{rule.meta.name}")
            return
        rules.append(MergedRule(host, rule, export_to, rule.workload_selector, rule.policy, list(rule.subsets),
                                [f"{rule.meta.namespace}/{rule.meta.name}"]))

    def lookup(self, hostname: str) -> list[MergedRule] | None:
        host = most_specific(hostname, self.by_host)
        return self.by_host[host] if host is not None else None


@dataclass
class RuleIndex:
    """istiod's destinationRuleIndex, built once from rules oldest first."""

    root_namespace: str
    local: dict[str, _Pool] = field(default_factory=dict)
    exported: dict[str, _Pool] = field(default_factory=dict)
    root_local: _Pool = field(default_factory=_Pool)


def index_rules(rules: Sequence[DestinationRule], mesh: MeshConfig) -> RuleIndex:
    index = RuleIndex(mesh.root_namespace)
    default_private = "." in mesh.default_destination_rule_export_to
    for rule in rules:
        ns = rule.meta.namespace
        host = fqdn(rule.host, ns)
        export_to = frozenset(rule.export_to) if rule.workload_selector is None else frozenset({"."})
        if not export_to or export_to & {"*", "."} or ns in export_to:
            index.local.setdefault(ns, _Pool()).merge(rule, host, export_to)
        private = (not export_to and default_private) or (len(export_to) == 1 and export_to & {".", ns})
        if not private:
            index.exported.setdefault(ns, _Pool()).merge(rule, host, export_to)
        elif ns == mesh.root_namespace:
            index.root_local.merge(rule, host, export_to)
    return index


def _exported_to(rules: list[MergedRule] | None, client: str) -> list[MergedRule]:
    return [r for r in rules or () if not r.export_to or "*" in r.export_to or client in r.export_to]


def rules_for(index: RuleIndex, proxy_namespace: str, service: Service) -> list[MergedRule]:
    """PushContext.destinationRule: the candidate rules for `service` seen from `proxy_namespace`."""
    if proxy_namespace != index.root_namespace:
        pool = index.local.get(proxy_namespace)
        found = pool.lookup(service.hostname) if pool else None
        if found:
            return found
    else:
        found = index.root_local.lookup(service.hostname)
        if found:
            return found
    for namespace in (service.namespace, index.root_namespace):
        pool = index.exported.get(namespace)
        out = _exported_to(pool.lookup(service.hostname) if pool else None, proxy_namespace)
        if out:
            return out
    return []


def rule_for(index: RuleIndex, proxy_namespace: str, labels: Mapping[str, str] | None,
             service: Service) -> MergedRule | None:
    """SidecarScope.DestinationRule: the rule selecting the proxy's labels, else the plain one."""
    plain = None
    for rule in rules_for(index, proxy_namespace, service):
        if rule.selector is None:
            plain = plain or rule
        elif labels is not None and all(labels.get(k) == v for k, v in rule.selector.items()):
            return rule
    return plain


def cluster_tls(rule: MergedRule | None, port: int, subset: str = "", sidecar: bool = True) -> ClientTls | None:
    """The TLS the cluster for (port, subset) originates, or None."""
    if rule is None:
        return None
    tls = rule.policy.tls_for(port) if rule.policy else None
    chosen = next((s for s in rule.subsets if s.name == subset), None) if subset else None
    if chosen is not None and chosen.policy is not None:
        own = chosen.policy
        if own.tls is not None or any(p.port == port for p in own.port_level):
            tls = own.tls_for(port)
    if tls is None or tls.mode not in ORIGINATING:
        return None
    if sidecar and tls.credential_name and rule.selector is None:
        return None  # a sidecar cannot read a Kubernetes secret; istiod builds no TLS context
    return tls
