"""`check --envoy-admin URL`: read this pod's sidecar after the probes, within the run's deadline.

The flags live here so that `cli.py` registers them with one call; the reader is
`sources.envoy_admin.read_sidecar`. The lab sets EGRESS_DOCTOR_ADMIN_URL, which becomes the default.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from egress_doctor.validate import UsageError

if TYPE_CHECKING:  # `--help` must stay cheap: the model (and yaml) load only when a run reads
    from egress_doctor.model import Report
    from egress_doctor.sources.view import MeshView

ENV_ADMIN_URL = "EGRESS_DOCTOR_ADMIN_URL"
MIN_READ_SECONDS = 0.2  # below this, the admin port is not even tried (the deadline has passed)


def add_envoy_admin_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the sidecar (Envoy admin; see docs/sidecar.md)")
    group.add_argument(
        "--envoy-admin",
        metavar="URL",
        help="after the probes, read this pod's sidecar from its Envoy admin port (mode, clusters, SNI "
        f"chains, Istio version) to explain failures; default http://127.0.0.1:15000 (or ${ENV_ADMIN_URL})",
    )
    group.add_argument("--no-envoy-admin", action="store_true", help="do not read the sidecar's admin port")


def admin_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The URL to read, or None when reading is switched off; UsageError on a malformed URL."""
    if getattr(args, "no_envoy_admin", False):
        return None
    from egress_doctor.sources.envoy_admin import DEFAULT_ADMIN_URL

    url = getattr(args, "envoy_admin", None) or environ.get(ENV_ADMIN_URL) or DEFAULT_ADMIN_URL
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", a port out of range
        raise UsageError(f"--envoy-admin: {url!r} is not an http://HOST:PORT URL ({exc})") from None
    if parts.scheme != "http" or not parts.hostname or port == -1:
        raise UsageError(f"--envoy-admin: {url!r} is not an http://HOST:PORT URL")
    return url


def read_mesh(url: str | None, report: Report, deadline: float, view: MeshView | None = None) -> MeshView | None:
    """`view` (e.g. the cluster reader's, else a new one) with this pod's sidecar read into it;
    `view` unchanged when reading is switched off. Never raises for I/O trouble."""
    if url is None:
        return view
    from egress_doctor.sources.envoy_admin import read_sidecar
    from egress_doctor.sources.view import MeshView

    namespace = report.facts.namespace if report.facts else None
    view = view if view is not None else MeshView(pod_namespace=namespace)
    if deadline - time.monotonic() < MIN_READ_SECONDS:
        view.read_errors.append(f"the run's deadline left no time to read the sidecar at {url} (--deadline)")
        return view
    view.sidecar = read_sidecar(url, deadline=deadline, hosts=probed_hosts(report))
    return view


def probed_hosts(report: Report) -> list[tuple[str, int]]:
    """(host, port) of every check with a target, metadata stand-ins mapped to their real address."""
    from egress_doctor.diagnose.rules.base import real_destination

    out: list[tuple[str, int]] = []
    for check in report.checks:
        if check.target is not None and report.facts is not None:
            host, port, _, _ = real_destination(check, report.identity, report.facts)
            out.append((host, port))
    return list(dict.fromkeys(out))
