"""The Telemetry that turns the sidecars' access log on: Istio's built-in `envoy` provider, which
logs to /dev/stdout (the istio-proxy container's log) in the mesh's format (text unless
`meshConfig.accessLogEncoding: JSON`).

    access_logging_fix(["payments"], istio_api="v1").manifests   # one Telemetry per namespace

`telemetry.istio.io/v1` from Istio 1.22 (the networking `v1` release), `v1alpha1` before (the
Telemetry API exists since 1.11). Every manifest passes the CRD schema, its CEL rules and istiod's
ValidateTelemetry (tests/test_fixes_telemetry.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from egress_doctor.fixes.builders import MANAGED_BY
from egress_doctor.model import Fix

ENVOY_PROVIDER = "envoy"
NAME = "egress-doctor-access-log"
FIX_ID = "telemetry/access-logging"


def api_version(istio_api: str) -> str:
    return "telemetry.istio.io/v1" if istio_api == "v1" else "telemetry.istio.io/v1alpha1"


def telemetry(namespace: str, istio_api: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version(istio_api),
        "kind": "Telemetry",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"accessLogging": [{"providers": [{"name": ENVOY_PROVIDER}]}]},
    }


def access_logging_fix(namespaces: Sequence[str], istio_api: str = "v1", code: str = "ED655") -> Fix:
    lines = [
        f"egress-doctor: {code} — turns on the sidecars' access log in namespace {', '.join(namespaces)}",
        "(built-in provider envoy: /dev/stdout, Istio's default format; takes effect without a restart).",
        "One Telemetry without a selector per namespace: if the namespace has one, add this",
        "accessLogging entry to it instead. In the root namespace (istio-system) it covers the mesh.",
        "Alternative, mesh-wide: meshConfig.accessLogFile: /dev/stdout (the `mesh` key of ConfigMap",
        "istio-system/istio, or istioctl install --set meshConfig.accessLogFile=/dev/stdout);",
        "meshConfig.accessLogEncoding: JSON for JSON lines.",
    ]
    return Fix(id=FIX_ID, description="\n".join(lines), manifests=[telemetry(ns, istio_api) for ns in namespaces])
