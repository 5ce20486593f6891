"""Which CA bundle botocore trusts, so our own TLS checks use exactly the same trust."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trust:
    ca_file: str
    # "AWS_CA_BUNDLE", "ca_bundle (config file)" or "certifi": botocore never uses the OS store.
    source: str

    @property
    def label(self) -> str:
        return f"{self.source}={self.ca_file}"


def botocore_trust(session: Any, environ: dict[str, str] | None = None) -> Trust:
    """The CA bundle botocore would verify AWS certificates with.

    `AWS_CA_BUNDLE` (or `ca_bundle` in the config file) replaces certifi entirely; without it
    botocore uses certifi's bundle, not the operating system's store.
    """
    from botocore.httpsession import get_cert_path

    configured = session.get_config_variable("ca_bundle")
    if configured:
        env = environ or {}
        source = "AWS_CA_BUNDLE" if env.get("AWS_CA_BUNDLE") == configured else "ca_bundle (config file)"
        return Trust(ca_file=str(configured), source=source)
    return Trust(ca_file=get_cert_path(True), source="certifi")
