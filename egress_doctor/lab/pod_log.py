"""The lab's istio-proxy log as a pod's container log would read: what `kubectl logs -c istio-proxy`
(the Kubernetes API's `pods/log`) returns for the pod the lab models.

The lab's Envoy writes Istio's access log to its stdout, beside its own messages, exactly like a
sidecar; only the addresses differ. Without iptables the app reaches the stand-in listeners on
loopback ports, so Envoy logs `%DOWNSTREAM_LOCAL_ADDRESS%` as `127.0.0.1:<lab port>` where a pod's
sidecar logs the original destination `<ip>:443`. This module puts the captured port back (443, 80)
and the link-local addresses in place of their stand-ins (`169.254.169.254:80` for
`127.169.254.254:<lab port>`); the destination IP of a TLS or HTTP stand-in stays loopback (the lab
never resolved the name). Nothing else is changed.
"""

from __future__ import annotations

import re
from pathlib import Path

from egress_doctor.lab.translate import LabPorts
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS


def pod_addresses(text: bytes, ports: LabPorts) -> bytes:
    """`text` with the lab's stand-in addresses replaced by the ones a pod's sidecar would log."""
    table = {f"{ports.address}:{ports.tls}": f"{ports.address}:443",
             f"{ports.address}:{ports.http}": f"{ports.address}:80"}
    table.update({f"{standin}:{ports.http}": f"{ip}:80" for ip, standin in LINK_LOCAL_STANDINS.items()})
    pattern = re.compile(rb"(?<![\d.])(" + b"|".join(re.escape(k.encode()) for k in table) + rb")(?!\d)")
    return pattern.sub(lambda m: table[m.group(1).decode()].encode(), text)


def pod_log(log_path: Path, ports: LabPorts) -> bytes:
    """The whole container log, addresses as a pod's (b"" before Envoy wrote anything)."""
    try:
        data = log_path.read_bytes()
    except FileNotFoundError:
        return b""
    return pod_addresses(data, ports)
