"""Host names, labels and addresses as istiod's webhook checks them
(`pkg/config/validation/agent/validation.go`: ValidateWildcardDomain, ValidateDNS1123Labels,
ValidateFQDN, ValidatePartialWildCard, ValidateIPSubnet), with istiod's own messages. Pure."""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_LABEL}$")
_WILDCARD_LABEL = re.compile(rf"^(\*|(\*|\*-)?{_LABEL})$")
_MAX_LABEL = 63


def is_dns1123_label(value: str) -> bool:
    return len(value) <= _MAX_LABEL and bool(_DNS1123_LABEL.match(value))


def _is_wildcard_label(value: str) -> bool:
    return len(value) <= _MAX_LABEL and bool(_WILDCARD_LABEL.match(value))


def _dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {quote(name)} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def dns1123_labels_error(domain: str) -> str | None:
    parts = domain.split(".")
    top = parts[-1]
    if re.fullmatch(r"[+-]?\d+", top):
        return f"domain name {quote(domain)} invalid (top level domain {quote(top)} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # "istio.io." is allowed
        if not is_dns1123_label(label):
            return f"domain name {quote(domain)} invalid (label {quote(label)} invalid)"
    return None


def fqdn_error(name: str) -> str | None:
    return _dns1123_preconditions(name) or dns1123_labels_error(name)


def wildcard_domain_error(domain: str) -> str | None:
    """A valid FQDN, or one with a wildcard in the first label only."""
    if problem := _dns1123_preconditions(domain):
        return problem
    first, dot, rest = domain.partition(".")
    if not _is_wildcard_label(first):
        return f"domain name {quote(domain)} invalid (label {quote(first)} invalid)"
    return dns1123_labels_error(rest) if dot else None


def partial_wildcard_error(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {quote(host)} not allowed"
    return None


def ip_subnet_error(value: str) -> str | None:
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value} is not a valid CIDR block"
        return None
    return None if is_ip(value) else f"{value} is not a valid IP"


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def quote(value: str) -> str:
    """Go's %q for the plain strings that appear here."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


