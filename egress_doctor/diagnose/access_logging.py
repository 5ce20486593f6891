"""What the mesh config says about access logging, in words for finding ED655. Pure.

`meshConfig.accessLogFile` (empty by default: no access log) turns the sidecars' access log on
mesh-wide; `accessLogEncoding` (TEXT, JSON) sets its format. A Telemetry can still turn it on or off
per namespace or workload; Telemetry objects are not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress_doctor.sources.kube_client import ReadError


def mesh_logging(configmap: Mapping[str, Any] | ReadError | None) -> str:
    if configmap is None:
        return ""
    if isinstance(configmap, ReadError):
        return f"the mesh config could not be read ({configmap}), so whether logging is on is unknown"
    text = (configmap.get("data") or {}).get("mesh")
    try:
        import yaml

        from egress_doctor.istio.yaml_load import load_one  # bounded: the text came from the network

        mesh = load_one(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        mesh = None
    if not isinstance(mesh, dict):
        return "the mesh config has no readable `mesh` key, so whether logging is on is unknown"
    path = mesh.get("accessLogFile")
    if not path:
        return ("the mesh config sets no accessLogFile (Istio's default), so access logging is off unless a "
                "Telemetry turns it on, and none did for these pods")
    encoding = mesh.get("accessLogEncoding", "TEXT")
    if path not in ("/dev/stdout", "/dev/stderr"):
        return (f"the mesh config sends the access log to {path}, a file inside the istio-proxy container, not "
                "to its log, where the Kubernetes API (and so egress-doctor) cannot read it: use /dev/stdout")
    return (f"the mesh config sets accessLogFile {path} ({encoding}), so logging is on unless a Telemetry turns it "
            "off for these pods; if none does, nothing went through their sidecars in that window")
