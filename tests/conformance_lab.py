"""Run a conformance case on the lab's real Envoy: the model's configuration rendered for Envoy
(lab.translate), every listener on a loopback port, each call made for real, and what Envoy did
read back from Envoy itself — the cluster whose counters moved (/stats), the virtual host that
answered (a response header the lab adds), the cluster's DestinationRule, TLS and subsets
(/config_dump, /clusters, as a sidecar's admin port shows them)."""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egress_doctor.istio.scope import ProxyKind, proxy_scope
from egress_doctor.istio.simulate import OWN_PORTS, UNKNOWN_ADDRESS, Call
from egress_doctor.istio.xds import WILDCARD
from egress_doctor.lab.envoy import EnvoyProcess, write_dynamic
from egress_doctor.lab.ports import free_port
from egress_doctor.lab.routes import VHOST_HEADER
from egress_doctor.lab.translate import EnvoyResources, LabPorts, translate, translate_gateway
from egress_doctor.lab.upstreams import Upstreams
from tests.conformance_cases import Case

TIMEOUT = 2.0
SETTLE = 0.3  # seconds to wait for a counter after the call ended
COUNTERS = ("upstream_cx_total", "upstream_cx_none_healthy", "upstream_rq_total")


@dataclass
class LabProxy:
    resources: EnvoyResources
    ports: LabPorts
    admin: str
    running: bool

    def target(self, call: Call) -> tuple[str, int] | None:
        """Where the connection lands: the listener bound to the address, else 0.0.0.0_<port>,
        else (a sidecar) virtualOutbound — the original destination's hand-off."""
        address = call.address or UNKNOWN_ADDRESS
        found = self.resources.addresses.get((address, call.port)) or self.resources.addresses.get(
            (WILDCARD, call.port))
        if found is not None:
            return found
        if self.resources.proxy is not None and self.resources.proxy.kind == "sidecar":
            return (self.ports.address, self.ports.catch_all)
        return None

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.admin}/stats?filter=^cluster%5C.", timeout=TIMEOUT) as answer:
            text = answer.read().decode()
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name.endswith(COUNTERS) and value.strip().isdigit():
                out[name] = int(value)
        return out

    def clusters(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin}/config_dump?resource=dynamic_active_clusters",
                                    timeout=TIMEOUT) as answer:
            dump = json.load(answer)
        return {c["cluster"]["name"]: c["cluster"] for c in dump.get("configs", [])}


def _ports() -> LabPorts:
    return LabPorts(http=free_port(), tls=free_port(), catch_all=free_port(), admin=free_port())


@contextmanager
def lab_proxy(case: Case) -> Iterator[LabProxy]:
    scope = proxy_scope(case.objects, case.proxy, case.mesh)
    ports = _ports()
    upstreams = Upstreams(serves=lambda host: False)
    if case.proxy.kind is ProxyKind.GATEWAY:
        from egress_doctor.istio.gateway_proxy import build_gateway

        keys = list(build_gateway(scope).listeners)
        resources = translate_gateway(scope, ports, upstreams, {k: free_port() for k in keys})
    else:
        from egress_doctor.istio.outbound import build_sidecar

        keys = [k for k in build_sidecar(scope).listeners if not (k[0] == WILDCARD and k[1] in (80, 443))]
        resources = translate(scope, ports, upstreams, assume_http_80=False,
                              listener_ports={k: free_port() for k in keys})
    with tempfile.TemporaryDirectory(prefix="egress-doctor-conformance-") as tmp:
        admin = f"http://{ports.address}:{ports.admin}"
        if not resources.listeners:
            yield LabProxy(resources, ports, admin, running=False)
            return
        bootstrap = write_dynamic(resources, Path(tmp) / "xds")
        with EnvoyProcess(bootstrap, admin, Path(tmp) / "envoy.log", concurrency=1):
            yield LabProxy(resources, ports, admin, running=True)


def _send(target: tuple[str, int], call: Call) -> str:
    """Make the call; the virtual host that answered an HTTP request, else ""."""
    with suppress(OSError), socket.create_connection(target, timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        if call.protocol == "tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.set_alpn_protocols(list(call.alpn))
            with suppress(OSError, ssl.SSLError), context.wrap_socket(sock, server_hostname=call.host):
                pass
        elif call.protocol == "http":
            sock.sendall(f"GET {call.path} HTTP/1.1\r\nHost: {call.host}\r\nConnection: close\r\n\r\n".encode())
            return _vhost(_read_response(sock))
        else:
            sock.sendall(b"\x16not-http\x00\r\n")
            _read(sock)
    return ""


def _read(sock: socket.socket, limit: int = 65536) -> bytes:
    data = b""
    with suppress(OSError):
        while len(data) < limit:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _read_response(sock: socket.socket, limit: int = 65536) -> bytes:
    """One HTTP response: headers and a Content-Length body (Envoy delays its close by a second)."""
    data = b""
    with suppress(OSError):
        while b"\r\n\r\n" not in data and len(data) < limit:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                       if k.strip().lower() == b"content-length" and v.strip().isdigit()), 0)
        while len(body) < min(length, limit):
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    return data


def _vhost(reply: bytes) -> str:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == VHOST_HEADER:
            return value.strip()
    return ""


def _moved(before: dict[str, int], after: dict[str, int]) -> str:
    moved = {name.removeprefix("cluster.").rsplit(".", 1)[0] for name, value in after.items()
             if value > before.get(name, 0)}
    return ",".join(sorted(moved)) or "none"


def run_call(proxy: LabProxy, call: Call, wanted: dict[str, Any]) -> dict[str, Any]:
    """What Envoy did with the call, for the fields the case asserts."""
    target = proxy.target(call) if proxy.running else None
    if call.port in OWN_PORTS and call.address == "":
        target = (proxy.ports.address, proxy.ports.catch_all) if proxy.running and proxy.resources.proxy \
            and proxy.resources.proxy.kind == "sidecar" else target
    before = proxy.stats() if proxy.running else {}
    vhost = _send(target, call) if target else ""
    cluster = "none"
    deadline = time.monotonic() + SETTLE
    while proxy.running and time.monotonic() < deadline:
        cluster = _moved(before, proxy.stats())
        if cluster != "none":
            break
        time.sleep(0.02)
    out: dict[str, Any] = {}
    config = proxy.clusters().get(cluster, {}) if proxy.running and cluster != "none" else {}
    for name in wanted:
        if name == "cluster":
            out[name] = cluster
        elif name == "vhost":
            out[name] = vhost or "none"
        elif name == "destination_rule":
            ref = config.get("metadata", {}).get("filter_metadata", {}).get("istio", {}).get("config", "")
            parts = ref.split("/")
            out[name] = f"{parts[-3]}/{parts[-1]}" if len(parts) >= 3 else "none"
        elif name == "tls_origination":
            out[name] = "SIMPLE" if "transport_socket" in config else "none"
        elif name == "subsets":
            parts = cluster.split("|")
            out[name] = sorted(n.split("|")[2] for n in proxy.clusters() if len(parts) == 4
                               and n.split("|")[1:4:2] == [parts[1], parts[3]] and n.split("|")[2])
    return out
