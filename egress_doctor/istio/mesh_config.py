"""The mesh settings a sidecar's egress depends on, apart from the Istio objects (a light module:
the sidecar's admin view and an all-pass run need these and none of `istio.objects`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace default


class Mode(enum.StrEnum):
    """outboundTrafficPolicy.mode (mesh default ALLOW_ANY; Sidecar enum zero REGISTRY_ONLY)."""

    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"


@dataclass(frozen=True)
class MeshConfig:
    """The mesh settings the sidecar's egress depends on (istio/api mesh/v1alpha1/config.proto)."""

    outbound_traffic_policy: Mode = Mode.ALLOW_ANY  # pkg/config/mesh/mesh.go default
    root_namespace: str = ROOT_NAMESPACE
    default_service_export_to: tuple[str, ...] = ("*",)
    default_virtual_service_export_to: tuple[str, ...] = ("*",)
    default_destination_rule_export_to: tuple[str, ...] = ("*",)
