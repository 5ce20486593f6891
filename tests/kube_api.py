"""A fake Kubernetes API server on 127.0.0.1 (real HTTP, TLS with trustme) serving recorded JSON.

    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, api, pki.ca_file)
        read = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), namespace=NAMESPACE, ...))

Routes map a request path to an `Answer` (a recorded JSON document, a status, a delay). Like
kube-apiserver, a path nobody routes answers 404 `the server could not find the requested
resource`, a request without the expected bearer token 401, and anything but GET 405 (the reader
must never write). The recorded documents under tests/recorded/kube/ were written by hand in the
shape the API server returns (lists with kind, apiVersion, items and metadata.resourceVersion;
errors as metav1.Status). Namespaced and v1beta1 lists are derived from the cluster-wide v1 ones
exactly as the API server derives them: filtered by namespace, apiVersion rewritten (Istio's CRDs
convert with strategy None).
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme
import yaml

from tests.canned import CannedServer, Reply, Request

RECORDED = Path(__file__).resolve().parent / "recorded" / "kube"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.fake-service-account-token.c2ln"  # what the fake API server accepts
NAMESPACE = "payments"
ROOT = "istio-system"
POD = "payments-api-7c9d5b8f6-x2kqz"
ISTIO = "/apis/networking.istio.io"
PLURALS = ("serviceentries", "sidecars", "virtualservices", "destinationrules", "gateways")
JSON = (("content-type", "application/json"),)


def recorded(name: str) -> dict[str, Any]:
    """A recorded API document (tests/recorded/kube/<name>.json), a fresh copy every time."""
    document: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))
    return document


def in_namespace(listing: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The namespaced list the API server returns for the same objects."""
    result = copy.deepcopy(dict(listing))
    result["items"] = [i for i in result["items"] if i["metadata"]["namespace"] == namespace]
    return result


def as_version(document: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The same list served under another networking.istio.io version."""
    result = copy.deepcopy(dict(document))
    result["apiVersion"] = f"networking.istio.io/{version}"
    for item in result.get("items", []):
        item["apiVersion"] = f"networking.istio.io/{version}"
    return result


@dataclass(frozen=True)
class Answer:
    body: Mapping[str, Any] | bytes
    status: int = 200
    delay: float = 0.0  # seconds before the status line (a slow API server)

    def reply(self) -> Reply:
        body = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return Reply(self.status, JSON, body, delay=self.delay)


def status_answer(name: str) -> Answer:
    """A recorded metav1.Status, with its code as the HTTP status."""
    document = recorded(name)
    return Answer(document, int(document["code"]))


NOT_SERVED = "status-404-not-served"


def istio_routes(version: str = "v1", namespaces: Iterable[str] = (NAMESPACE, ROOT)) -> dict[str, Answer]:
    """Every Istio list the reader may ask for: cluster-wide, and namespaced for `namespaces`."""
    routes: dict[str, Answer] = {}
    for plural in PLURALS:
        listing = as_version(recorded(plural), version)
        routes[f"{ISTIO}/{version}/{plural}"] = Answer(listing)
        for namespace in namespaces:
            routes[f"{ISTIO}/{version}/namespaces/{namespace}/{plural}"] = Answer(in_namespace(listing, namespace))
    return routes


def cluster_routes(version: str = "v1") -> dict[str, Answer]:
    """A healthy cluster: the pod, its namespace, the mesh ConfigMap and the Istio lists."""
    return {
        f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}": Answer(recorded("pod-payments-api")),
        f"/api/v1/namespaces/{NAMESPACE}": Answer(recorded("namespace-payments")),
        f"/api/v1/namespaces/{ROOT}/configmaps/istio": Answer(recorded("configmap-istio")),
        **istio_routes(version),
    }


def routes_for_objects(manifests: Iterable[Mapping[str, Any]], mesh: Mapping[str, Any], namespace: str = NAMESPACE,
                       pod: str = POD, labels: Mapping[str, str] | None = None) -> dict[str, Answer]:
    """A cluster holding exactly `manifests` (Istio objects, any namespace), the mesh ConfigMap
    with `mesh` as its meshConfig, and the pod (`labels`, no capture annotations) in `namespace`."""
    routes: dict[str, Answer] = {}
    items = [dict(m) for m in manifests]
    root = str(mesh.get("rootNamespace") or ROOT)
    for plural, kind in zip(PLURALS, ("ServiceEntry", "Sidecar", "VirtualService", "DestinationRule", "Gateway"),
                            strict=True):
        listing = {"apiVersion": "networking.istio.io/v1", "kind": f"{kind}List",
                   "metadata": {"resourceVersion": "1"}, "items": [i for i in items if i.get("kind") == kind]}
        routes[istio_path(plural)] = Answer(listing)
        for ns in dict.fromkeys([namespace, root]):
            routes[istio_path(plural, ns)] = Answer(in_namespace(listing, ns))
    policies = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicyList",
                "metadata": {"resourceVersion": "1"},
                "items": [i for i in items if i.get("kind") == "AuthorizationPolicy"]}
    routes["/apis/security.istio.io/v1/authorizationpolicies"] = Answer(policies)
    document = recorded("pod-payments-api")
    document["metadata"].update(name=pod, namespace=namespace, labels=dict(labels or {"app": "app"}))
    document["metadata"]["annotations"] = {}
    routes[pod_path(pod, namespace)] = Answer(document)
    routes[f"/api/v1/namespaces/{namespace}"] = Answer({"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": namespace, "labels": {}}})
    configmap = recorded("configmap-istio")
    configmap["data"]["mesh"] = yaml.safe_dump(dict(mesh))
    routes[f"/api/v1/namespaces/{ROOT}/configmaps/istio"] = Answer(configmap)
    return routes


def pod_path(name: str = POD, namespace: str = NAMESPACE) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def istio_path(plural: str, namespace: str | None = None, version: str = "v1") -> str:
    where = f"namespaces/{namespace}/" if namespace else ""
    return f"{ISTIO}/{version}/{where}{plural}"


class _NoDelayServer(CannedServer):
    """TCP_NODELAY on every connection, as Go (kube-apiserver) sets it: without it, the status line
    and the body go out in two segments and each answer waits ~40 ms for a delayed ACK."""

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._handle(conn, stop)


# A route answers with a recorded Answer, or computes the reply from the request (query parameters:
# pods/log's container and limitBytes, a list's limit and continue; see tests/kube_logs.py).
Route = Answer | Callable[[Request], Reply]


class FakeApiServer:
    """Answers GETs from `routes`; `requests` keeps every request the client sent, in order."""

    def __init__(self, routes: Mapping[str, Route], tls: trustme.CA | None = None, token: str = TOKEN) -> None:
        self.routes = dict(routes)
        self.token = token
        self._server = _NoDelayServer(self._respond, tls=tls, hostnames=("127.0.0.1", "localhost"))

    @property
    def url(self) -> str:
        return f"{self._server.scheme}://127.0.0.1:{self._server.port}"

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def requests(self) -> list[Request]:
        return self._server.requests

    @property
    def paths(self) -> list[str]:
        return [r.target.split("?", 1)[0] for r in self.requests]

    def __enter__(self) -> Self:
        self._server.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.__exit__(kind, exc, tb)

    def _respond(self, request: Request) -> Reply:
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", f"the server does not allow this method: {request.method}")
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or credential != self.token:
            return status_answer("status-401").reply()
        answer = self.routes.get(request.target.split("?", 1)[0])
        if answer is None:
            return status_answer(NOT_SERVED).reply()
        return answer.reply() if isinstance(answer, Answer) else answer(request)


def status_reply(code: int, reason: str, message: str) -> Reply:
    """A metav1.Status answer, as kube-apiserver sends errors."""
    return _status(code, reason, message)


def _status(code: int, reason: str, message: str) -> Reply:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return Answer(body, code).reply()


def write_kubeconfig(directory: Path, contexts: Mapping[str, str], ca_file: str | None, current: str,
                     token: str = TOKEN, namespace: str | None = NAMESPACE) -> Path:
    """A kubeconfig with one cluster, user and context per name in `contexts` (name → server URL)."""
    cluster: dict[str, Any] = {"certificate-authority": ca_file} if ca_file else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {**cluster, "server": url}} for n, url in contexts.items()],
        "users": [{"name": n, "user": {"token": token}} for n in contexts],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": n, **({"namespace": namespace} if namespace else {})}}
            for n in contexts
        ],
        "current-context": current,
        "preferences": {},
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_service_account(directory: Path, ca_file: str, token: str = TOKEN) -> tuple[str, str]:
    """Token and CA files as the kubelet mounts them: (token path, ca path)."""
    account = directory / "serviceaccount"
    account.mkdir(parents=True, exist_ok=True)
    (account / "token").write_text(token, encoding="utf-8")
    (account / "ca.crt").write_text(Path(ca_file).read_text(encoding="utf-8"), encoding="utf-8")
    (account / "namespace").write_text(NAMESPACE, encoding="utf-8")
    return str(account / "token"), str(account / "ca.crt")
