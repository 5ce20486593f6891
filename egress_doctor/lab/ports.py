"""The lab's loopback ports, and the curl-style rules that steer to them what a pod's iptables would
capture. Everything is on 127.0.0.0/8; the link-local endpoints have loopback stand-ins.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from egress_doctor.lab.translate import LabPorts
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS

LOOPBACK = "127.0.0.1"


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_port(also: Sequence[str] = (), attempts: int = 50) -> int:
    """A port free on 127.0.0.1 and on every address in `also` (the link-local stand-ins)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if all(_bindable(a, port) for a in (LOOPBACK, *also)):
            return port
    raise OSError("no free loopback port for the lab")


def allocate_ports() -> LabPorts:
    ports: list[int] = []
    while len(ports) < 4:
        port = free_port(tuple(LINK_LOCAL_STANDINS.values()) if not ports else ())
        if port not in ports:
            ports.append(port)
    return LabPorts(http=ports[0], tls=ports[1], catch_all=ports[2], admin=ports[3])


def connect_to_rules(ports: LabPorts) -> list[str]:
    """curl-style rules steering what iptables would capture to the stand-in listeners (first match
    wins): loopback as it is, the link-local endpoints to their stand-ins, :80 and :443 to the
    stand-ins of 0.0.0.0_80 and 0.0.0.0_443 (or virtualOutbound, which then holds those ports),
    everything else to virtualOutbound."""
    # Loopback is not captured (istio-iptables: -d 127.0.0.1/32 RETURN): the admin port and the
    # stand-ins are dialled as they are; the empty target keeps host and port.
    rules = [f"{host}:::" for host in (ports.address, *LINK_LOCAL_STANDINS.values())]
    rules += [f"{ip}:80:{standin}:{ports.http}" for ip, standin in LINK_LOCAL_STANDINS.items()]
    rules += [f":80:{ports.address}:{ports.http}", f":443:{ports.address}:{ports.tls}",
              f"::{ports.address}:{ports.catch_all}"]
    return rules
