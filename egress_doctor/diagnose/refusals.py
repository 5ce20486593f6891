"""What one sidecar's access log says it refused, and where it sent unknown traffic. Pure.

    tally = LogTally()
    for line in lines:
        tally.add(line)
    tally.seen    # {(refusal, host, port): Seen(count, first, last, addresses)}

How a record counts (the fields of Istio's access log, see sources.proxy_log):

* `502 block_all`: route `block_all`, the last virtual host of every HTTP route under REGISTRY_ONLY
  (a direct 502 with flag `-`, details `direct_response`);
* `BlackHoleCluster`: upstream cluster BlackHoleCluster: a TCP or TLS connection (flag UH) the
  catch-all handed to the cluster without endpoints;
* `NR`: flag NR or NC: no route (an HTTP route whose matches exclude the request, 404) or a route
  to a cluster that does not exist;
* `reset`: flag DPE: what the app sent is not valid for the protocol the sidecar expects on that
  port (TLS, or HTTP/1.0, on a chain for HTTP), so the sidecar closed the connection;
* `RBAC denied`: an AuthorizationPolicy on that proxy refused it (%CONNECTION_TERMINATION_DETAILS%
  or %RESPONSE_CODE_DETAILS% `rbac_access_denied_matched_policy[…]`): what an egress gateway logs
  for a host its policies do not let out;
* `upstream connect failed`: flag UF on a cluster of the mesh: the proxy's own connection to the
  destination was refused or timed out (an egress gateway whose egress is blocked; a sidecar whose
  direct connections only the gateway may make);
* `PassthroughCluster` (only counted, never a refusal): under ALLOW_ANY, traffic to destinations
  the mesh does not know.

The destination is named by what the sidecar saw: the TLS server name (SNI; logged on ports where
the mesh has any TLS entry, so tls_inspector runs), else the HTTP authority, else only the address
the app dialled (%DOWNSTREAM_LOCAL_ADDRESS%, the original destination). Every structure is bounded:
a hostile log costs counts, not memory.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field

from egress_doctor.sources.proxy_log import MAX_LINE, AccessEntry, LineKind, parse_line, preview

MAX_DESTINATIONS = 5000  # distinct (refusal, host, port) kept per log; more are counted as overflow
MAX_ADDRESSES = 8  # destination IPs kept per destination
MAX_NAMES = 5000  # address → names learned from the log
MAX_SAMPLES = 3  # previews of unparsed lines
IN_MESH_SUFFIXES = (".svc", ".local")  # services of the mesh (`*.svc.cluster.local`), not egress
RBAC_DENIED = "rbac_access_denied"  # Envoy's RBAC filters: rbac_access_denied_matched_policy[<policy>|none]


class Refusal(enum.StrEnum):
    BLOCK_ALL = "502 block_all"
    BLACKHOLE = "BlackHoleCluster"
    NO_ROUTE = "NR"
    RESET = "reset"
    RBAC = "RBAC denied"
    UPSTREAM = "upstream connect failed"
    PASSTHROUGH = "PassthroughCluster"

    @property
    def refused(self) -> bool:
        return self is not Refusal.PASSTHROUGH


def refusal_of(entry: AccessEntry) -> Refusal | None:
    """How the sidecar treated this record's destination, when it is anything to report."""
    if entry.route == "block_all":
        return Refusal.BLOCK_ALL
    if entry.termination.startswith(RBAC_DENIED) or entry.details.startswith(RBAC_DENIED):
        return Refusal.RBAC
    if entry.cluster == "BlackHoleCluster":
        return Refusal.BLACKHOLE
    if entry.flags:
        flags = entry.flags.split(",")
        if "NR" in flags or "NC" in flags:
            return Refusal.NO_ROUTE
        if "DPE" in flags:
            return Refusal.RESET
        if "UF" in flags and not _in_mesh(entry.cluster):
            return Refusal.UPSTREAM
    if entry.cluster == "PassthroughCluster" or entry.route == "allow_any":
        return Refusal.PASSTHROUGH
    return None


def _cluster_port(cluster: str) -> int | None:
    """The service port of `outbound|443||host`: what the app called, where the local address is
    the proxy's own listener (a gateway's targetPort, 8443)."""
    parts = cluster.split("|")
    return int(parts[1]) if len(parts) == 4 and parts[0] == "outbound" and parts[1].isdigit() else None


def _in_mesh(cluster: str) -> bool:
    """`outbound|8080||reviews.default.svc.cluster.local`: a service of the mesh (its own
    outages are not egress)."""
    return cluster.rpartition("|")[2].endswith(IN_MESH_SUFFIXES)


def split_address(address: str) -> tuple[str, int | None]:
    """("52.94.0.10", 443) from "52.94.0.10:443", ("fd00::1", 443) from "[fd00::1]:443"."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return address, None
    return host, int(port) if port.isdigit() else None


@functools.lru_cache(maxsize=65536)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The parsed address (cached: a log names the same few addresses again and again)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_address(host: str) -> bool:
    return _address(host) is not None


def _authority_host(authority: str) -> tuple[str, int | None]:
    authority = authority.rpartition("@")[2].strip().lower().rstrip(".")
    host, port = split_address(authority)
    return host.rstrip("."), port


@dataclass(frozen=True)
class Destination:
    host: str  # SNI or authority, lower case; the address when that is all there is
    port: int
    protocol: str  # tls (SNI seen), http (a request), tcp (an address only)
    source: str  # what named it: sni | authority | address (nothing but the address the app dialled)

    @property
    def named(self) -> bool:
        return self.source != "address"


def destination_of(entry: AccessEntry, local: tuple[str, int | None] | None = None) -> Destination | None:
    """`local`: entry.local already split (split_address), to spare a line the work twice."""
    ip, port = local or (split_address(entry.local) if entry.local else ("", None))
    port = _cluster_port(entry.cluster) or port
    if entry.sni:
        return Destination(entry.sni.lower().rstrip("."), port or 443, "tls", "sni")
    if entry.authority:
        host, authority_port = _authority_host(entry.authority)
        if host:
            return Destination(host, port or authority_port or 80, "http", "authority")
    if ip and port:
        return Destination(ip.lower(), port, "http" if entry.method else "tcp", "address")
    return None


@dataclass
class Seen:
    """One destination in one log: how often, when, at which addresses."""

    count: int = 0
    first: str = ""
    last: str = ""
    addresses: set[str] = field(default_factory=set)

    def add(self, start: str, address: str) -> None:
        self.count += 1
        if start and (not self.first or start < self.first):
            self.first = start
        if start and start > self.last:
            self.last = start
        if address and len(self.addresses) < MAX_ADDRESSES:
            self.addresses.add(address)

    def merge(self, other: Seen) -> None:
        self.count += other.count
        self.first = min(x for x in (self.first, other.first) if x) if (self.first or other.first) else ""
        self.last = max(self.last, other.last)
        for address in sorted(other.addresses):
            if len(self.addresses) < MAX_ADDRESSES:
                self.addresses.add(address)


Key = tuple[Refusal, Destination]


@dataclass
class LogTally:
    """Everything kept from one container log, line by line, in bounded memory."""

    lines: int = 0
    access: int = 0  # access-log records parsed
    proxy: int = 0  # Envoy's and pilot-agent's own messages
    unparsed: int = 0
    too_long: int = 0  # lines over MAX_LINE bytes, skipped
    samples: list[str] = field(default_factory=list)  # masked previews of unparsed lines
    seen: dict[Key, Seen] = field(default_factory=dict)
    overflow: int = 0  # records of destinations beyond MAX_DESTINATIONS
    names: dict[str, set[str]] = field(default_factory=dict)  # address → names it carried in this log
    last_record: str = ""  # the latest %START_TIME% read (where a truncated log stops)

    def add(self, line: str) -> None:
        self.lines += 1
        if len(line) > MAX_LINE:
            self.too_long += 1
            return
        parsed = parse_line(line)
        if isinstance(parsed, AccessEntry):
            self.access += 1
            self._record(parsed)
        elif parsed is LineKind.PROXY:
            self.proxy += 1
        elif parsed is LineKind.UNPARSED:
            self.unparsed += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(preview(line))
        # LineKind.EMPTY: counted as a line, nothing else

    def _record(self, entry: AccessEntry) -> None:
        if entry.start > self.last_record:
            self.last_record = entry.start
        local = split_address(entry.local) if entry.local else ("", None)
        destination = destination_of(entry, local)
        if destination is None:
            return
        ip = local[0]
        if destination.source != "address":
            self._learn(ip, destination.host)
            if entry.cluster.startswith("outbound|") and entry.upstream_host:
                self._learn(split_address(entry.upstream_host)[0], destination.host)
        refusal = refusal_of(entry)
        if refusal is None:
            return
        key = (refusal, destination)
        seen = self.seen.get(key)
        if seen is None:
            if len(self.seen) >= MAX_DESTINATIONS:
                self.overflow += 1
                return
            seen = self.seen[key] = Seen()
        seen.add(entry.start, ip if is_address(ip) else "")

    def _learn(self, address: str, name: str) -> None:
        names = self.names.get(address)
        if names is not None and name in names:
            return
        parsed = _address(address)
        if parsed is None or parsed.is_loopback or is_address(name):
            return
        if names is None:
            if len(self.names) >= MAX_NAMES:
                return
            names = self.names[address] = set()
        if len(names) < 4:
            names.add(name)

    @property
    def refusals(self) -> int:
        return sum(s.count for (refusal, _), s in self.seen.items() if refusal.refused)
