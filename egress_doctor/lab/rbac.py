"""The gateway's RBAC filters (istio.authz) as Envoy configuration: a network RBAC filter before
each TLS / TCP chain's tcp_proxy, an HTTP RBAC filter before each HTTP chain's router, as istiod
places them (pilot/pkg/networking/core/gateway.go with pilot/pkg/security/authz/builder). The
real Envoy then decides; the model's own evaluation (istio.authz.decide) is checked against it.

CUSTOM filters (an external authorizer) are not run in the lab.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from egress_doctor.istio.authz import IDENTITY_KEYS, Node, RbacFilter
from egress_doctor.istio.authz_objects import Action

Json = dict[str, Any]
NETWORK_RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
HTTP_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def with_rbac(listeners: Sequence[Json], tcp: Sequence[RbacFilter], http: Sequence[RbacFilter],
              ports: Mapping[int, int]) -> None:
    """Insert the filters into every chain of the (rendered) gateway listeners, in place. `ports`:
    the pod port each listener stands for → the loopback port it binds, so that a
    `destination.port` condition compares what Envoy sees."""
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            filters = chain["filters"]
            if filters and filters[0]["name"] == "envoy.filters.network.http_connection_manager":
                hcm = filters[0]["typed_config"]
                hcm["http_filters"][:0] = [_filter(f, "envoy.filters.http.rbac", HTTP_RBAC, ports)
                                           for f in _enforced(http)]
            else:
                chain["filters"][:0] = [_filter(f, "envoy.filters.network.rbac", NETWORK_RBAC, ports)
                                        for f in _enforced(tcp)]


def _enforced(filters: Sequence[RbacFilter]) -> list[RbacFilter]:
    return [f for f in filters if f.action in (Action.DENY, Action.ALLOW)]


def _filter(rbac: RbacFilter, name: str, type_url: str, ports: Mapping[int, int]) -> Json:
    policies = {p.name: {"permissions": [_permission(n, ports) for n in p.permissions],
                         "principals": [_principal(n) for n in p.principals]} for p in rbac.policies}
    config: Json = {"@type": type_url, "rules": {"action": rbac.action.value, "policies": policies}}
    if type_url == NETWORK_RBAC:
        config["stat_prefix"] = "tcp."
    return {"name": name, "typed_config": config}


def string_matcher(pattern: str, ignore_case: bool = False) -> Json:
    """Istio's pattern as Envoy's StringMatcher: `*` present, `*suffix`, `prefix*`, exact."""
    if pattern == "*":
        out: Json = {"safe_regex": {"regex": ".+"}}
    elif pattern.startswith("*"):
        out = {"suffix": pattern[1:]}
    elif pattern.endswith("*"):
        out = {"prefix": pattern[:-1]}
    else:
        out = {"exact": pattern}
    if ignore_case and "safe_regex" not in out:
        out["ignore_case"] = True
    return out


def _cidr(value: str) -> Json:
    network = ipaddress.ip_network(value, strict=False)
    return {"address_prefix": str(network.network_address), "prefix_len": network.prefixlen}


def _permission(node: Node, ports: Mapping[int, int]) -> Json:
    if node.op == "any":
        return {"any": True}
    if node.op == "never":
        return {"not_rule": {"any": True}}
    if node.op == "and":
        return {"and_rules": {"rules": [_permission(c, ports) for c in node.children]}}
    if node.op == "or":
        return {"or_rules": {"rules": [_permission(c, ports) for c in node.children]}}
    if node.op == "not":
        return {"not_rule": _permission(node.children[0], ports)}
    if node.key == "connection.sni":
        return {"requested_server_name": string_matcher(node.value)}
    if node.key == "destination.port":
        if not node.value.isdigit():
            return {"not_rule": {"any": True}}
        return {"destination_port": ports.get(int(node.value), int(node.value))}
    if node.key == "destination.ip":
        return {"destination_ip": _cidr(node.value)}
    if node.key in (":authority", ":method"):
        return {"header": {"name": node.key, "string_match": string_matcher(node.value, node.key == ":authority")}}
    if node.key == "path":
        return {"url_path": {"path": string_matcher(node.value)}}
    return {"not_rule": {"any": True}}  # Envoy metadata the lab never sets


def _principal(node: Node) -> Json:
    if node.op == "any":
        return {"any": True}
    if node.op == "never":
        return {"not_id": {"any": True}}
    if node.op == "and":
        return {"and_ids": {"ids": [_principal(c) for c in node.children]}}
    if node.op == "or":
        return {"or_ids": {"ids": [_principal(c) for c in node.children]}}
    if node.op == "not":
        return {"not_id": _principal(node.children[0])}
    if node.key in IDENTITY_KEYS:
        return {"authenticated": {"principal_name": {"safe_regex": {"regex": node.regex}}}}
    if node.key == "source.ip":
        return {"direct_remote_ip": _cidr(node.value)}
    if node.key == "remote.ip":
        return {"remote_ip": _cidr(node.value)}
    if node.key.startswith("request.headers["):
        return {"header": {"name": node.key[len("request.headers["):-1], "string_match": string_matcher(node.value)}}
    return {"not_id": {"any": True}}  # a JWT the lab's app never sends
