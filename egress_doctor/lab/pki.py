"""The lab's certificate authority: one throwaway CA whose bundle stands in for AWS's public roots.

Point `AWS_CA_BUNDLE` at `LabPKI.ca_bundle_path` and every botocore client (nested ones included)
trusts the lab's servers under their real AWS names, and nothing else: botocore uses the given
file *instead of* certifi.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

# Our servers speak HTTP/1.1 only; advertising it keeps an upstream Envoy from trying h2.
_ALPN = ["http/1.1"]


@dataclass(frozen=True)
class LeafFiles:
    """A server certificate and its key written as PEM files, for servers that take paths (Envoy)."""

    cert_chain_path: Path  # the leaf (trustme signs it with the root directly: no intermediates)
    key_path: Path


class LabPKI:
    """A throwaway certificate authority for the lab, with its CA bundle written into `directory`.

    The caller owns `directory` (a pytest `tmp_path`, or a `TemporaryDirectory` in the demo);
    LabPKI only writes files into it and never deletes it.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name="egress-doctor lab")
        self.ca_bundle_path = self.directory / "lab-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle_path))

    def server_context(self, hostnames: Sequence[str]) -> ssl.SSLContext:
        """A server-side TLS context presenting a fresh leaf certificate for `hostnames`.

        Names may be DNS names, leftmost wildcards (`*.ddb.us-east-1.amazonaws.com`) or IP
        literals (`127.0.0.1`, which becomes an IP SAN).
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.set_alpn_protocols(_ALPN)
        self._issue(hostnames).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side TLS context that trusts the lab CA only (hostname checking on)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle_path))

    def write_leaf(self, hostnames: Sequence[str], stem: str) -> LeafFiles:
        """Issue a leaf certificate for `hostnames` and write it as `<stem>.crt` / `<stem>.key`."""
        leaf = self._issue(hostnames)
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_path))
        return LeafFiles(cert_chain_path=cert_path, key_path=key_path)

    def _issue(self, hostnames: Sequence[str]) -> trustme.LeafCert:
        """A leaf certificate signed by the lab CA, for at least one name."""
        if not hostnames:
            raise ValueError("a lab certificate needs at least one hostname")
        return self.ca.issue_cert(*hostnames)
