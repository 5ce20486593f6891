"""`--connect-to` rules: dial another address than the one a URL names, curl style.

A rule `HOST1:PORT1:HOST2:PORT2` means: when a connection to HOST1:PORT1 is about to be made,
connect to HOST2:PORT2 instead. Only the dialled address changes; TLS SNI, certificate checks and
the HTTP `Host` header keep the original name, exactly as with curl's `--connect-to`.

- An empty HOST1 or PORT1 matches any host or port.
- An empty HOST2 or PORT2 keeps the original host or port.
- IPv6 literals are written in brackets: `[::1]:443:[::1]:8443`.
- Hosts match case-insensitively, and a trailing dot is ignored.
- With several rules, the first one that matches wins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Letters, digits, '-', '_' and '.': DNS names (including `_`-labels found in service names)
# and IPv4 literals. Anything else (spaces, '/', '@') is a typo, not a host.
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+")

# Characters that separate rules in EGRESS_DOCTOR_CONNECT_TO.
ENV_SEPARATOR = ","


def normalize_host(host: str) -> str:
    """The form hosts are compared in: brackets removed, lower case, no trailing dot.

    IPv6 literals are compressed (`0:0::1` and `::1` compare equal).
    """
    bare = host.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    bare = bare.rstrip(".").lower()
    if ":" in bare:
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            return bare
    return bare


def format_host(host: str) -> str:
    """A host as written in a rule or an `addr:port` pair: IPv6 literals get brackets."""
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class ConnectTo:
    """One `HOST1:PORT1:HOST2:PORT2` rule. Empty host / None port means "any" (match side)
    or "keep" (target side). Hosts are stored without brackets."""

    match_host: str = ""
    match_port: int | None = None
    target_host: str = ""
    target_port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.match_port is not None and self.match_port != port:
            return False
        return not self.match_host or normalize_host(self.match_host) == normalize_host(host)

    def apply(self, host: str, port: int) -> tuple[str, int]:
        """Where a connection to host:port goes under this rule (the rule is assumed to match)."""
        return (self.target_host or host, self.target_port if self.target_port is not None else port)

    def __str__(self) -> str:
        def port_text(port: int | None) -> str:
            return "" if port is None else str(port)

        match_host = format_host(self.match_host) if self.match_host else ""
        target_host = format_host(self.target_host) if self.target_host else ""
        return f"{match_host}:{port_text(self.match_port)}:{target_host}:{port_text(self.target_port)}"


# Four fields; a plain host cannot contain ':' (IPv6 literals must be bracketed).
_SPEC_RE = re.compile(r"(\[[^\]]*\]|[^:\[\]]*):([^:]*):(\[[^\]]*\]|[^:\[\]]*):([^:]*)")


def _parse_host(spec: str, text: str) -> str:
    if text.startswith("["):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise ValueError(f"bad --connect-to {spec!r}: {text} is not an IPv6 address") from None
    if text and not _HOST_RE.fullmatch(text):
        raise ValueError(f"bad --connect-to {spec!r}: {text!r} is not a host name or address")
    return text


def _parse_port(spec: str, text: str) -> int | None:
    if text == "":
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad --connect-to {spec!r}: port {text!r} is not a number in 1..65535")
    return int(text)


def parse_connect_to(spec: str) -> ConnectTo:
    """Parse one `HOST1:PORT1:HOST2:PORT2` rule; ValueError (one line, naming `spec`) if malformed."""
    found = _SPEC_RE.fullmatch(spec.strip())
    if found is None:
        raise ValueError(
            f"bad --connect-to {spec!r}: expected HOST1:PORT1:HOST2:PORT2 (IPv6 addresses in brackets)"
        )
    match_host, match_port, target_host, target_port = found.groups()
    return ConnectTo(
        match_host=_parse_host(spec, match_host),
        match_port=_parse_port(spec, match_port),
        target_host=_parse_host(spec, target_host),
        target_port=_parse_port(spec, target_port),
    )


def parse_connect_to_env(value: str | None) -> list[ConnectTo]:
    """Parse a comma-separated list of rules (EGRESS_DOCTOR_CONNECT_TO); empty items are ignored."""
    if not value:
        return []
    return [parse_connect_to(item) for item in value.split(ENV_SEPARATOR) if item.strip()]


class ConnectToMap:
    """An ordered list of rules; the first rule that matches decides."""

    def __init__(self, rules: Iterable[ConnectTo] = ()) -> None:
        self.rules: tuple[ConnectTo, ...] = tuple(rules)

    def rule_for(self, host: str, port: int) -> ConnectTo | None:
        return next((rule for rule in self.rules if rule.matches(host, port)), None)

    def resolve(self, host: str, port: int) -> tuple[str, int] | None:
        """Where to dial instead of host:port, or None when no rule applies."""
        rule = self.rule_for(host, port)
        return rule.apply(host, port) if rule else None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"ConnectToMap([{', '.join(repr(str(rule)) for rule in self.rules)}])"
