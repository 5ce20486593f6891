"""The `mesh` section of the `egress-doctor/v1` document (docs/json-schema.md): what the sidecar's
admin port and the Istio objects said. Built field by field; large lists are summarised (a mesh
can hold thousands of clusters) and only the hosts the run used are detailed."""

from __future__ import annotations

from typing import Any

from egress_doctor.sources.view import HostCoverage, MeshView, SidecarView


def mesh_to_v1(view: MeshView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "source": view.source,
        "pod_namespace": view.pod_namespace,
        "ambient": view.ambient,
        "objects": None if view.objects is None else len(view.objects),
        "read_errors": list(view.read_errors),
        "sidecar": sidecar_to_v1(view.sidecar),
    }


def sidecar_to_v1(sidecar: SidecarView | None) -> dict[str, Any] | None:
    if sidecar is None:
        return None
    return {
        "admin_url": sidecar.admin_url,
        "present": sidecar.present,
        "ready": sidecar.ready,
        "istio_version": sidecar.istio_version,
        "envoy_version": sidecar.envoy_version,
        "outbound_mode": sidecar.outbound_mode.value if sidecar.outbound_mode else None,
        "mode_evidence": list(sidecar.mode_evidence),
        "clusters": len(sidecar.clusters),
        "listeners": list(sidecar.listeners),
        "hosts": [coverage_to_v1(c) for c in sidecar.hosts],
        "warnings": list(sidecar.warnings),
        "notes": list(sidecar.notes),
    }


def coverage_to_v1(cov: HostCoverage) -> dict[str, Any]:
    cluster = cov.effective_cluster
    return {
        "host": cov.host,
        "port": cov.port,
        "covered": cov.covered,
        "cluster": None if cluster is None else {
            "name": cluster.name, "type": cluster.type, "endpoints": list(cluster.endpoints),
            "healthy": cluster.healthy, "services": list(cluster.services),
        },
        "sni_chain": None if cov.sni_chain is None else {
            "listener": cov.sni_chain.listener, "server_names": list(cov.sni_chain.server_names),
        },
        "virtual_host": None if cov.virtual_host is None else {
            "route": cov.virtual_host.route, "name": cov.virtual_host.name,
        },
    }
