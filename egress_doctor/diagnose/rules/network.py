"""DNS, TCP and TLS: the root cause of a destination that broke below HTTP.

Behind a sidecar, connect() always lands on Envoy and succeeds, so refusals and SYN timeouts
mean the traffic did not go through Envoy; a close during the TLS handshake is the sidecar's
BlackHoleCluster for a TLS host it does not know (REGISTRY_ONLY).
"""

from __future__ import annotations

from egress_doctor.diagnose.rules.base import Cause, HostGroup, RunContext, cause, host_port, need
from egress_doctor.model import Symptom


def _mesh_can_fix(group: HostGroup, ctx: RunContext) -> bool:
    """The sidecar handled this destination, so an Istio object can change the outcome."""
    return ctx.sidecar_in_path and ctx.proxy_for(group.scheme, group.host) is None


def dns(group: HostGroup, ctx: RunContext) -> Cause | None:
    symptom = group.root.symptom
    if symptom is Symptom.DNS_NXDOMAIN:
        return cause("ED101", group, {"host": group.host})
    if symptom is Symptom.DNS_UNREACHABLE:
        return cause("ED102", group, {"host": group.host})
    if symptom is Symptom.DNS_OTHER:
        return cause("ED103", group, {"host": group.host, "detail": group.root.detail()})
    return None


def connect_refused(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.CONNECT_REFUSED:
        return None
    if ctx.sidecar_in_path:
        detail = (
            "A sidecar would have accepted it, so this traffic bypassed Envoy (an excluded IP range or "
            "port) and nothing listens at the destination; no Istio resource is missing."
        )
    else:
        detail = "Nothing listens at the destination (the probe bypassed the sidecar)."
    return cause("ED203", group, {**host_port(group), "detail": detail})


def connect_timeout(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.CONNECT_TIMEOUT:
        return None
    return cause("ED204", group, host_port(group))


def connect_other(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.CONNECT_OTHER:
        return None
    return cause("ED207", group, {**host_port(group), "detail": group.root.detail()})


def plain_http_closed(group: HostGroup, ctx: RunContext) -> Cause | None:
    """Accepted, then closed without a reply on plain HTTP: the catch-all chain to BlackHoleCluster."""
    if group.scheme != "http" or group.root.symptom not in (Symptom.CONNECT_RESET, Symptom.HTTP_CLOSED):
        return None
    if _mesh_can_fix(group, ctx):
        reason = "connection closed without a reply"
        return cause("ED205", group, host_port(group), need=need(group, "ED205", reason))
    return cause("ED206", group, host_port(group))


def tls_closed(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_CLOSED:
        return None
    if _mesh_can_fix(group, ctx):
        reason = "TLS closed during handshake"
        return cause("ED301", group, host_port(group), need=need(group, "ED301", reason))
    return cause("ED306", group, {**host_port(group), "detail": "the peer closed the connection"})


def tls_timeout(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_TIMEOUT:
        return None
    return cause("ED302", group, host_port(group))


def tls_untrusted(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_UNTRUSTED:
        return None
    tls = group.root.check.evidence.tls
    issuer = (tls.peer_issuer if tls else None) or "unknown"
    return cause("ED303", group, {**host_port(group), "issuer": issuer})


def tls_name_mismatch(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_NAME_MISMATCH:
        return None
    tls = group.root.check.evidence.tls
    names = ", ".join(tls.peer_san) if tls and tls.peer_san else (tls.peer_subject if tls else None)
    return cause("ED304", group, {**host_port(group), "names": names or "another name"})


def tls_wrong_version(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_WRONG_VERSION:
        return None
    if ctx.sidecar_in_path:
        return cause("ED305", group, host_port(group))
    detail = "the reply is not TLS (WRONG_VERSION_NUMBER)"
    return cause("ED306", group, {**host_port(group), "detail": detail})


def tls_other(group: HostGroup, ctx: RunContext) -> Cause | None:
    if group.root.symptom is not Symptom.TLS_OTHER:
        return None
    return cause("ED306", group, {**host_port(group), "detail": group.root.detail()})
