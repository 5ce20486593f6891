"""Pods and their container logs on the fake Kubernetes API (tests/kube_api.py), as kube-apiserver
serves them.

    routes = log_routes([pod("api-1", log=lambda: LOG_BYTES), pod("worker-1", sidecar=False)])
    with FakeApiServer(routes, tls=pki.ca) as api: ...

- `GET /api/v1/namespaces/<ns>/pods` and `/api/v1/pods` (all namespaces): a PodList, filtered by
  an equality `labelSelector` (`app=x,tier=y`), paged by `limit` with an opaque `continue` token;
- `GET …/pods/<name>`: the Pod;
- `GET …/pods/<name>/log`: the container's log as text/plain, streamed in chunks (the body ends with
  the connection, like a chunked log stream). `container` is required when the pod has several
  containers and must name one of them (400 with kube-apiserver's messages otherwise); `limitBytes`
  is honoured unless the route says not to (a server that ignores it: the reader must bound itself).
  `sinceSeconds` is accepted and not applied (the kubelet filters by its own timestamps).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.canned import Reply, Request
from tests.kube_api import NAMESPACE, Answer, Route, status_reply

LogSource = Callable[[], Iterable[bytes]]
CHUNK = 64 * 1024
PROXY_IMAGE = "docker.io/istio/proxyv2:1.30.3"


@dataclass
class FakePod:
    name: str
    namespace: str = NAMESPACE
    sidecar: bool = True
    native: bool = False  # istio-proxy as an init container with restartPolicy Always
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=lambda: {"app": "payments-api"})
    log: LogSource | None = None  # the istio-proxy container's log
    honour_limit: bool = True
    phase: str = "Running"
    image: str = PROXY_IMAGE

    def doc(self) -> dict[str, Any]:
        app = {"name": "app", "image": "registry.example/app:1.0",
               "env": [{"name": k, "value": v} for k, v in self.env.items()]}
        proxy = {"name": "istio-proxy", "image": self.image, "args": ["proxy", "sidecar"]}
        spec: dict[str, Any] = {"containers": [app]}
        if self.sidecar and self.native:
            spec["initContainers"] = [{**proxy, "restartPolicy": "Always"}]
        elif self.sidecar:
            spec["containers"].append(proxy)
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)},
                "spec": spec, "status": {"phase": self.phase}}

    @property
    def containers(self) -> list[str]:
        return ["app", "istio-proxy"] if self.sidecar else ["app"]


def text_log(text: str | bytes) -> LogSource:
    data = text.encode() if isinstance(text, str) else text
    return lambda: [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _query(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.target).query).items()}


def _matches(labels: Mapping[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def list_route(pods: Sequence[FakePod], namespace: str | None) -> Route:
    def reply(request: Request) -> Reply:
        query = _query(request)
        chosen = [p for p in pods if (namespace is None or p.namespace == namespace)
                  and _matches(p.labels, query.get("labelSelector"))]
        start = int(base64.b64decode(query["continue"]).decode()) if "continue" in query else 0
        limit = int(query.get("limit", "0")) or len(chosen)
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        metadata = {"resourceVersion": "7001", **({"continue": base64.b64encode(str(start + limit).encode()).decode()}
                                                  if more else {})}
        body = {"apiVersion": "v1", "kind": "PodList", "metadata": metadata, "items": [p.doc() for p in page]}
        return Answer(body).reply()

    return reply


def log_route(pod: FakePod) -> Route:
    def reply(request: Request) -> Reply:
        query = _query(request)
        container = query.get("container")
        if container is None and len(pod.containers) > 1:
            choices = " ".join(pod.containers)
            return status_reply(400, "BadRequest", f"a container name must be specified for pod {pod.name}, "
                                                   f"choose one of: [{choices}]")
        if container is not None and container not in pod.containers:
            return status_reply(400, "BadRequest", f"container {container} is not valid for pod {pod.name}")
        limit = int(query["limitBytes"]) if pod.honour_limit and "limitBytes" in query else None
        source = pod.log or (lambda: [])

        def body() -> Iterator[bytes]:
            sent = 0
            for chunk in source():
                if limit is not None and sent + len(chunk) > limit:
                    yield chunk[: limit - sent]
                    return
                sent += len(chunk)
                yield chunk

        return Reply(200, (("content-type", "text/plain"),), body)

    return reply


def log_routes(pods: Sequence[FakePod]) -> dict[str, Route]:
    """Every route `blocked` may ask for about these pods."""
    routes: dict[str, Route] = {"/api/v1/pods": list_route(pods, None)}
    for namespace in dict.fromkeys(p.namespace for p in pods):
        routes[f"/api/v1/namespaces/{namespace}/pods"] = list_route(pods, namespace)
    for p in pods:
        base = f"/api/v1/namespaces/{p.namespace}/pods/{p.name}"
        routes[base] = Answer(p.doc())
        routes[f"{base}/log"] = log_route(p)
    return routes
