"""egress-doctor: why a pod behind an Istio sidecar cannot reach AWS, and the Istio fix."""

__version__ = "0.1.0"
