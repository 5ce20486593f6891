"""What the sidecar reader asks Envoy's admin for: as little as answers the run's question.

A sidecar of a 10,000-service mesh dumps megabytes of listeners, routes and clusters; the run needs
the ports its probes used and the clusters that may carry its hosts. Envoy filters on its side:
`name_regex` (a full RE2 match) for config dumps, `mask` (a field mask, which Envoy refuses through
repeated fields, so listeners cannot be masked) and `/clusters?filter=`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

VIRTUAL_OUTBOUND = "virtualOutbound"
_CLUSTER_MASK = "cluster.name,cluster.type,cluster.metadata"
_ROUTE_MASK = "route_config.name,route_config.virtual_hosts"


def _alternatives(items: Iterable[str]) -> str:
    return "|".join(re.escape(item) for item in items)


def _cluster_names(hosts: Sequence[tuple[str, int]]) -> str:
    """RE2 for the clusters that may carry `hosts`: `outbound|<port>|<subset>|<host>`, and the
    wildcard clusters of every suffix (`*.ddb.us-east-1.amazonaws.com`, `*.amazonaws.com`, `*`)."""
    by_port: dict[int, set[str]] = {}
    for host, port in hosts:
        labels = host.lower().rstrip(".").split(".")
        names = by_port.setdefault(port, set())
        names.update([host, "*", *("*." + ".".join(labels[i:]) for i in range(1, len(labels)))])
    return "|".join(rf"outbound\|{port}\|[^|]*\|({_alternatives(sorted(names))})"
                    for port, names in sorted(by_port.items()))


def read_requests(admin_url: str, hosts: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
    """(what, URL) of the four reads. With `hosts`, only the listeners, routes and clusters of the
    ports the run used (`name_regex`, a full match), only the fields read (`mask`), and the
    endpoints of only the clusters that may carry one of them (`/clusters?filter=`): what a
    10,000-service mesh answers stays far below LARGE_BODY, and so does the memory a parse takes.
    Without `hosts`, everything (each answer still bounded by LARGE_BODY)."""
    listeners: dict[str, str] = {"resource": "dynamic_listeners"}
    routes = {"resource": "dynamic_route_configs", "mask": _ROUTE_MASK}
    clusters = {"resource": "dynamic_active_clusters", "mask": _CLUSTER_MASK}
    endpoints = {"format": "json"}
    if hosts:
        numbers = _alternatives(str(p) for p in sorted({port for _, port in hosts}))
        listeners["name_regex"] = f"{VIRTUAL_OUTBOUND}|[^_]*_({numbers})"
        routes["name_regex"] = f"80|{numbers}"
        clusters["name_regex"] = rf"outbound\|({numbers})\|.*"
        endpoints["filter"] = _cluster_names(hosts)
    steps = (("listeners", "/config_dump", listeners), ("routes", "/config_dump", routes),
             ("cluster config", "/config_dump", clusters), ("cluster endpoints", "/clusters", endpoints))
    return [(name, f"{admin_url}{path}?{urlencode(params)}") for name, path, params in steps]
