"""Egress through a gateway: where the model's path sidecar → egress gateway → host breaks, and the
edit that mends it (istio.io "Egress Gateways", TLS passthrough). Pure.

    VirtualService hosts [H], gateways [mesh, istio-egressgateway]
      tls match gateways [mesh] sniHosts [H] → istio-egressgateway.istio-system.svc.cluster.local subset S
      tls match gateways [istio-egressgateway] sniHosts [H] → H

- The sidecar routes to a subset cluster it does not have (no DestinationRule it sees defines
  S): ED622, the subset added to the rule the pod sees for the gateway's host, or a new rule in
  the pod's namespace (istiod looks there first).
- The gateway has no chain for the SNI: the Gateway the route names is missing, or lists no
  server for the host on the port: ED621, the Gateway created or its server's hosts extended.
- An AuthorizationPolicy on the gateway refuses the SNI (istio.authz): ED663, the host added to
  the list of hosts that an ALLOW rule (`when: connection.sni values`) or a DENY rule (`notValues`)
  already keeps — the edit that lets it through, checked by deciding again; none otherwise.
- The gateway has a chain but no cluster for the host: the entry is not exported to the gateway's
  namespace (ED660, the namespace added to its exportTo), or there is no entry (ED660, a new one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from egress_doctor.fixes import edits
from egress_doctor.fixes.builders import unique_name
from egress_doctor.fixes.edits import Edit
from egress_doctor.istio.authz import allowing_edits, needs_identity, policies_for
from egress_doctor.istio.destination_rules import index_rules, rule_for
from egress_doctor.istio.hosts import subset_of
from egress_doctor.istio.objects import (
    MESH_GATEWAY,
    DestinationRule,
    Gateway,
    Server,
    ServiceEntry,
    VirtualService,
    of_kind,
)
from egress_doctor.istio.reach import Reach, Stop, World, reach
from egress_doctor.istio.registry import build_services, service_export_reach, service_visible

EGRESS_SELECTOR = {"istio": "egressgateway"}


@dataclass(frozen=True)
class GatewayProblem:
    code: str  # ED621 (Gateway), ED622 (DestinationRule subset), ED660 (entry hidden), ED663 (RBAC)
    args: dict[str, object]
    edit: Edit | None
    new_entry: bool = False


def _route_to_gateway(world: World, host: str) -> VirtualService | None:
    for vs in world.scope.virtual_services:
        if any(subset_of(host, h) for h in vs.hosts) and any(g != MESH_GATEWAY for g in vs.gateways):
            return vs
    return None


def _gateway_ref(name: str, namespace: str) -> tuple[str, str]:
    ns, slash, short = name.partition("/")
    return (ns, short) if slash else (namespace, name)


def gateway_problems(world: World, path: Reach, host: str, port: int, istio_api: str,
                     read: dict[str, Any] | None = None) -> list[GatewayProblem]:
    vs = _route_to_gateway(world, host)
    if path.stop is Stop.NO_CLUSTER:
        return _missing_subset(world, path, host, vs, istio_api)
    if vs is None:
        return []
    if path.stop is Stop.GATEWAY_NO_ROUTE:
        return _gateway_without_server(world, vs, host, port, istio_api, read or {})
    if path.stop is Stop.GATEWAY_NO_CLUSTER:
        return _hidden_from_gateway(world, path, vs, host, port)
    if path.stop is Stop.GATEWAY_DENIED:
        return _denied_at_gateway(world, path, host, port)
    return []


def _missing_subset(world: World, path: Reach, host: str, vs: VirtualService | None,
                    istio_api: str) -> list[GatewayProblem]:
    name = path.sidecar.cluster
    parts = name.split("|")
    if len(parts) != 4 or not parts[2]:
        return []
    subset, service_host = parts[2], parts[3]
    service = world.scope.service(service_host)
    route = vs.meta.ref if vs else "a VirtualService"
    args: dict[str, object] = {"host": host, "route": route, "destination": service_host, "subset": subset}
    rule = rule_for(index_rules(of_kind(world.scope.objects, DestinationRule), world.mesh),
                    world.proxy.namespace, world.proxy.labels, service) if service else None
    if rule is not None:
        problem = f"{rule.rule.meta.ref} (the rule this pod uses for it) has no subset {subset}"
        return [GatewayProblem("ED622", {**args, "problem": problem}, edits.add_subset(rule.rule, subset))]
    spec = {"host": service_host, "subsets": [{"name": subset}]}
    taken = frozenset((o.meta.kind, o.meta.namespace, o.meta.name) for o in world.objects)
    name = unique_name("DestinationRule", world.proxy.namespace, service_host.split(".")[0], taken)
    edit = edits.new_object("DestinationRule", name, world.proxy.namespace, spec, istio_api,
                            f"new DestinationRule with subset {subset}")
    return [GatewayProblem("ED622", {**args, "problem": "no DestinationRule this pod sees defines it"}, edit)]


def _gateway_without_server(world: World, vs: VirtualService, host: str, port: int, istio_api: str,
                            read: dict[str, Any]) -> list[GatewayProblem]:
    out = []
    gateways = {(g.meta.namespace, g.meta.name): g for g in of_kind(world.objects, Gateway)}
    for name in (g for g in vs.gateways if g != MESH_GATEWAY):
        ns, short = _gateway_ref(name, vs.meta.namespace)
        base: dict[str, object] = {"host": host, "route": vs.meta.ref, "gateway": f"{ns}/{short}"}
        found = gateways.get((ns, short))
        if found is None:
            spec = {"selector": dict(EGRESS_SELECTOR), "servers": [{
                "port": {"number": port, "name": f"tls-{port}", "protocol": "TLS"}, "hosts": [host],
                "tls": {"mode": "PASSTHROUGH"}}]}
            edit = edits.new_object("Gateway", short, ns, spec, istio_api, f"new Gateway for {host} (TLS passthrough)")
            out.append(GatewayProblem("ED621", {**base, "problem": "no such Gateway exists"}, edit))
            continue
        server = next((i for i, s in enumerate(found.servers) if s.port.number == port), None)
        if server is not None and server_lists(found.servers[server], host):
            continue
        if server is not None:
            edit = add_to_server(found, server, host, port)
        else:
            value = {"port": {"number": port, "name": f"tls-{port}", "protocol": "TLS"}, "hosts": [host],
                     "tls": {"mode": "PASSTHROUGH"}}
            op = {"op": "add", "path": "/spec/servers/-", "value": value}
            edit = Edit(found.meta.ref, f"add a TLS PASSTHROUGH server on port {port} for {host}", (op,), found)
        problem = f"{found.meta.ref} does not list {host} in a server on port {port}"
        out.append(GatewayProblem("ED621", {**base, "problem": problem}, edit))
    return out


def server_lists(server: Server, host: str) -> bool:
    """Does a Gateway server's `hosts` (`ns/host` or `host`) cover `host`?"""
    return any(subset_of(host, h.partition("/")[2] or h) for h in server.hosts)


def add_to_server(gateway: Gateway, index: int, host: str, port: int) -> Edit:
    """The host appended to the hosts of the Gateway's server `index` (the one for `port`)."""
    op = {"op": "add", "path": f"/spec/servers/{index}/hosts/-", "value": host}
    return Edit(gateway.meta.ref, f"add {host} to the port {port} server's hosts", (op,), gateway)


def _hidden_from_gateway(world: World, path: Reach, vs: VirtualService, host: str, port: int) -> list[GatewayProblem]:
    hop = path.gateway
    assert hop is not None
    assert hop.target is not None
    gateway_scope = world.gateway_scope(hop.target)
    namespace = gateway_scope.namespace
    args: dict[str, object] = {"host": host, "port": port, "gateway": hop.proxy.removeprefix("gateway "),
                               "namespace": namespace}
    for se in of_kind(world.scope.objects, ServiceEntry):
        for svc in build_services([se]):
            if svc.origin is se and subset_of(host, svc.hostname) and not service_visible(svc, namespace, world.mesh):
                reach = list(service_export_reach(svc, world.mesh))
                edit = edits.export_to_namespace(se, namespace, reach)
                return [GatewayProblem("ED660", {**args, "entry": f"{se.meta.ref} is not exported there"}, edit)]
    return [GatewayProblem("ED660", {**args, "entry": "no ServiceEntry registers the host"}, None,
                          new_entry=True)]


def _denied_at_gateway(world: World, path: Reach, host: str, port: int) -> list[GatewayProblem]:
    hop, verdict, request = path.gateway, path.verdict, path.request
    assert hop is not None and hop.target is not None and verdict is not None and request is not None
    tcp = hop.call.protocol != "http"
    policies = policies_for(world.objects, hop.target.namespace, hop.target.labels or {}, world.mesh.root_namespace)
    shown = "refuses the connection (reset)" if tcp else 'answers 403 "RBAC: access denied"'
    reason = verdict.reason
    if request.identity == "" and needs_identity(policies):
        reason += (" (rules on source namespaces, principals or service accounts need the pod's mTLS identity, "
                   "which a TLS PASSTHROUGH gateway never sees)")
    args: dict[str, object] = {"host": host, "port": port, "gateway": hop.proxy.removeprefix("gateway "),
                               "policy": verdict.policy or "an AuthorizationPolicy", "reason": reason,
                               "shown": shown}
    for policy, where in allowing_edits(policies, request, tcp):
        op = {"op": "add", "path": f"{where}/-", "value": host}
        field = re.sub(r"/(\d+)", r"[\1]", where.removeprefix("/spec/")).replace("/", ".")
        edit = Edit(policy.meta.ref, f"add {host} to {field} ({policy.action.value} rule)", (op,), policy)
        return [GatewayProblem("ED663", args, edit)]
    return [GatewayProblem("ED663", args, None)]


def refused_beyond_gateway(world: World | None, host: str, port: int, scheme: str,
                           read_errors: Sequence[str] = ()) -> GatewayProblem | None:
    """ED664 for a call that failed although the model's whole path is open and goes through an
    egress gateway: what refuses it is beyond the mesh — the gateway's own connection to the host
    (its NetworkPolicy, firewall or NAT, or DNS at the gateway). No Istio object is missing, and a
    direct entry would be a wrong fix."""
    if world is None:
        return None
    path = reach(world, host, port, scheme)
    hop = path.gateway
    if not path.ok or hop is None:
        return None
    unread = next((e for e in read_errors if "authorizationpolicies" in e), "")
    caveat = (f" The gateway's AuthorizationPolicies could not be read ({unread}): one of them may refuse it "
              "instead (ED663); grant `list authorizationpolicies` (k8s/rbac.yaml) to tell.") if unread else ""
    args = {"host": host, "port": port, "gateway": hop.proxy.removeprefix("gateway "),
            "cluster": hop.result.cluster, "caveat": caveat}
    return GatewayProblem("ED664", args, None)
