"""Host names as istiod compares them (pkg/config/host/name.go), pure.

    subset_of("a.ddb.us-east-1.amazonaws.com", "*.ddb.us-east-1.amazonaws.com")  # True
    most_specific("api.example.com", ["*.com", "*.example.com"])                 # "*.example.com"
"""

from __future__ import annotations

from collections.abc import Iterable


def is_wildcard(name: str) -> bool:
    return name.startswith("*")


def subset_of(name: str, other: str) -> bool:
    """host.Name.SubsetOf: every name `name` matches is matched by `other`. A wildcard is a subset
    only of a wildcard whose suffix it ends with; `*` contains everything."""
    name, other = name.lower(), other.lower()
    if is_wildcard(name):
        return is_wildcard(other) and name[1:].endswith(other[1:])
    if is_wildcard(other):
        return name.endswith(other[1:])
    return name == other


def matches(name: str, other: str) -> bool:
    """host.Name.Matches: the two names share at least one host (either contains the other)."""
    return subset_of(name, other) or subset_of(other, name)


def most_specific(name: str, patterns: Iterable[str]) -> str | None:
    """MostSpecificHostMatch: `name` itself if listed, else the longest wildcard that contains it."""
    candidates = list(patterns)
    if name in candidates:
        return name
    wild = [p for p in candidates if is_wildcard(p) and subset_of(name, p)]
    return max(wild, key=len, default=None)


def fqdn(name: str, namespace: str, domain: str = "cluster.local") -> str:
    """ResolveShortnameToFQDN: a short name is a Kubernetes service in the object's namespace."""
    if not name or is_wildcard(name) or "." in name:
        return name
    return f"{name}.{namespace}.svc.{domain}"
