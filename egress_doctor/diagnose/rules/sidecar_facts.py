"""What this pod's sidecar has for one host, in the words a finding uses (pure helpers of
`diagnose.rules.mesh_explain`)."""

from __future__ import annotations

from egress_doctor.sources.view import SidecarView


def sidecar_evidence(sc: SidecarView | None, host: str, port: int, scheme: str) -> str:
    """One sentence of what the sidecar has for host:port, or "" when it was not read."""
    if sc is None:
        return ""
    cov = sc.coverage(host, port)
    cluster = cov.effective_cluster
    if cluster is None and not cov.covered:
        similar = sc.similar_entries(host, port)
        has = f"; it has entries for {', '.join(similar[:4])}" if similar else ""
        return f" The sidecar ({sc.admin_url}) has no entry for {host}:{port}{has}."
    parts = []
    if cluster is not None:
        parts.append(f"cluster {cluster.name} ({cluster.type or 'type unknown'}, {len(cluster.endpoints)} endpoints)")
    if scheme == "https":
        parts.append(f"SNI chain on {cov.sni_chain.listener}" if cov.sni_chain else f"no SNI chain on port {port}")
    if cov.virtual_host is not None:
        parts.append(f'HTTP virtual host {cov.virtual_host.name} in route "{cov.virtual_host.route}"')
    return f" The sidecar has {', '.join(parts)}."


def carries(sc: SidecarView, host: str, port: int, scheme: str) -> bool:
    cov = sc.coverage(host, port)
    if scheme == "https":
        return cov.sni_chain is not None
    return cov.virtual_host is not None


def dns_without_endpoints(sc: SidecarView | None, host: str, port: int) -> str | None:
    if sc is None:
        return None
    cluster = sc.coverage(host, port).effective_cluster
    if cluster is not None and cluster.resolves_by_dns and not cluster.endpoints:
        return cluster.name
    return None
