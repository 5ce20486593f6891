"""The Kubernetes API, as the cluster reader uses it: a client configuration, and one bounded GET.

The `kubernetes` client is used as shipped (imported lazily: `--help` never pays for it), with
its own Configuration object (never the process-wide default) and no urllib3 retries: the read's
deadline, not a retry policy, decides how long anything may take. Every request asks for the raw
answer (`_preload_content=False`) and decodes the JSON itself, so pods, ConfigMaps and custom
objects come back exactly as the API server sent them.

Outcomes are records, never exceptions: a `ReadError` says which verb on which resource failed,
with the HTTP status and the API server's own `Status.message`.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MIN_REQUEST = 0.05  # seconds; with less than this left, the deadline has expired
# The largest answer read (a list of every ServiceEntry of a big cluster runs to MBs); a bigger one
# is a failed request, not parsed. Parsed JSON takes ~10 times its size: within the manifests' 256 MiB.
MAX_ANSWER = 16 << 20
# What is read of an error answer (a metav1.Status is a few hundred bytes): the client reads it itself.
MAX_ERROR_BODY = 64 << 10


class Problem(enum.StrEnum):
    FORBIDDEN = "forbidden"  # 403: RBAC does not grant the verb
    NOT_SERVED = "not-served"  # 404 on a list: the CRD (or this version of it) is not installed
    NOT_FOUND = "not-found"  # 404 on a get: the object does not exist
    UNREACHABLE = "unreachable"  # no HTTP answer: refused, TLS failed, reset (ends the read)
    TIMEOUT = "timeout"  # no answer within the per-request timeout
    DEADLINE = "deadline"  # the read's deadline expired (ends the read)
    CONFIG = "config"  # no usable client configuration (token file missing, bad kubeconfig)
    FAILED = "failed"  # any other status (401, 5xx) or a body that is not a Kubernetes object
    UNPARSEABLE = "unparseable"  # an object our model refuses; left out


@dataclass(frozen=True)
class ReadError:
    """One thing that could not be read. `namespace` None: all namespaces / a cluster-scoped object."""

    verb: str  # get | list (| connect, read: the whole read)
    resource: str  # "serviceentries.networking.istio.io", "configmaps", "pods", "namespaces"
    namespace: str | None
    status: int | None  # the HTTP status; None when there was no HTTP answer
    message: str  # the API server's Status message, or what went wrong
    problem: Problem = Problem.FAILED
    name: str | None = None  # the object, for a get

    @property
    def scope(self) -> str:
        """Where: `in namespace payments`, `in all namespaces` (a list), empty (a cluster-scoped get)."""
        if self.namespace is not None:
            return f"in namespace {self.namespace}"
        return "in all namespaces" if self.verb == "list" else ""

    @property
    def target(self) -> str:
        return f"{self.resource}/{self.name}" if self.name else self.resource

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status else self.problem.value
        where = " ".join(part for part in (self.verb, self.target, self.scope) if part)
        return f"{where}: {status}: {self.message}"


# ---- configuration -------------------------------------------------------------------------------


class ClusterConfigError(Exception):
    """No usable client configuration (a kubeconfig that does not load, no service-account token)."""


@dataclass(frozen=True)
class Connection:
    configuration: Any  # kubernetes.client.Configuration
    source: str  # for people: "in-cluster service account", "kubeconfig <path> context <name>"
    namespace: str | None = None  # the kubeconfig context's namespace
    in_cluster: bool = False

    @property
    def server(self) -> str:
        return str(self.configuration.host)


def _new_configuration() -> Any:
    from kubernetes.client import Configuration

    return Configuration()


def kubeconfig_connection(path: str, context: str | None) -> Connection:
    """From a kubeconfig file (colon-separated list allowed); `context` None: its current-context."""
    from kubernetes.config import ConfigException, list_kube_config_contexts, load_kube_config

    for one in path.split(os.pathsep):
        _check_kubeconfig(os.path.expanduser(one))
    configuration = _new_configuration()
    try:
        load_kube_config(config_file=path, context=context, client_configuration=configuration,
                         persist_config=False)
        contexts, current = list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise ClusterConfigError(f"kubeconfig {path}: {exc}") from None
    configuration.retries = 0
    name = context or (current or {}).get("name", "")
    chosen = next((c for c in contexts if c.get("name") == name), {})
    namespace = (chosen.get("context") or {}).get("namespace")
    return Connection(configuration, f"kubeconfig {path} context {name}", namespace)


def _check_kubeconfig(path: str) -> None:
    """Refuse (ClusterConfigError, naming the file) what the kubernetes client would choke on or
    read without bound: no regular file, over 16 MiB, not UTF-8, YAML that is invalid, too deep or
    an alias bomb, or a shape that is no kubeconfig (`clusters: 5`)."""
    import yaml

    from egress_doctor.istio.yaml_load import YamlLimitError, load_one
    from egress_doctor.sources.files import FilesError, read_text

    try:
        document = load_one(read_text(Path(path)))
    except FilesError as exc:
        raise ClusterConfigError(f"kubeconfig {exc}") from None
    except YamlLimitError as exc:
        raise ClusterConfigError(f"kubeconfig {path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ClusterConfigError(f"kubeconfig {path}: not valid YAML: {problem}") from None
    if document is None:
        return
    if not isinstance(document, dict):
        raise ClusterConfigError(f"kubeconfig {path}: not a kubeconfig (a mapping with clusters, users, contexts)")
    for key in ("clusters", "users", "contexts"):
        value = document.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise ClusterConfigError(f"kubeconfig {path}: `{key}` must be a list of mappings, "
                                     f"not {type(value).__name__}")


def in_cluster_connection(token_file: str, ca_file: str, environ: Mapping[str, str]) -> Connection:
    """From KUBERNETES_SERVICE_HOST/PORT and the service-account token and CA files."""
    from kubernetes.config import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = _new_configuration()
    loader = InClusterConfigLoader(token_filename=token_file, cert_filename=ca_file, environ=environ)
    try:
        loader.load_and_set(configuration)
    except (ConfigException, OSError) as exc:
        raise ClusterConfigError(f"in-cluster service account: {exc}") from None
    configuration.retries = 0
    return Connection(configuration, "in-cluster service account", in_cluster=True)


def bound_answers(api_client: Any) -> None:
    """Bound what the kubernetes client reads itself: an error status becomes an ApiException whose
    body it reads whole (`response.data`); here at most MAX_ERROR_BODY bytes (success bodies are read
    by `Session.fetch`, up to MAX_ANSWER). The client's urllib3 pools get connections whose responses cut `.data`
    (urllib3 2 builds an HTTPResponse in `HTTPConnection.getresponse`; its class is narrowed there)."""
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class BoundedResponse(urllib3.HTTPResponse):
        @property
        def data(self) -> bytes:
            if self._body is None and self._fp is not None:
                self._body = self.read(MAX_ERROR_BODY, decode_content=False)  # the rest is never read
            return self._body or b""

    def bounded(response: Any) -> Any:
        if type(response) is urllib3.HTTPResponse:
            response.__class__ = BoundedResponse
        return response

    class BoundedHttpConnection(HTTPConnection):
        def getresponse(self) -> Any:  # type: ignore[override]
            return bounded(super().getresponse())

    class BoundedHttpsConnection(HTTPSConnection):
        def getresponse(self) -> Any:  # type: ignore[override]
            return bounded(super().getresponse())

    class BoundedHttp(HTTPConnectionPool):
        ConnectionCls = BoundedHttpConnection

    class BoundedHttps(HTTPSConnectionPool):
        ConnectionCls = BoundedHttpsConnection

    manager = api_client.rest_client.pool_manager
    manager.pool_classes_by_scheme = {"http": BoundedHttp, "https": BoundedHttps}


# ---- one request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    verb: str  # get | list
    resource: str
    namespace: str | None
    name: str | None = None

    def error(self, problem: Problem, message: str, status: int | None = None) -> ReadError:
        return ReadError(self.verb, self.resource, self.namespace, status, message, problem, self.name)


Send = Callable[[float], Any]  # timeout in seconds → the raw urllib3 response of a client call


class Session:
    """Sends requests until the API server proves unreachable or the deadline expires (`halted`).

    Each request gets `request_timeout`, cut to what is left before `deadline_at` (monotonic).
    """

    def __init__(self, deadline_at: float, request_timeout: float) -> None:
        self.deadline_at = deadline_at
        self.request_timeout = request_timeout
        self.halted: ReadError | None = None

    def fetch(self, request: Request, send: Send) -> dict[str, Any] | ReadError:
        if self.halted is not None:
            return self.halted
        remaining = self.deadline_at - time.monotonic()
        if remaining < _MIN_REQUEST:
            return self._halt(request.error(Problem.DEADLINE, "the read's deadline expired"))
        timeout = min(self.request_timeout, remaining)
        from egress_doctor.net.http import read_bounded

        try:
            response = send(timeout)
            try:
                body, truncated = read_bounded(response, MAX_ANSWER, time.monotonic() + timeout)
            finally:
                response.release_conn()
        except Exception as exc:  # the client's and urllib3's exceptions, classified below
            return self._failure(request, exc, cut_by_deadline=timeout < self.request_timeout)
        if truncated:
            return request.error(Problem.FAILED, f"the answer is larger than {MAX_ANSWER >> 20} MiB; not read", 200)
        return decode(request, body)

    def _halt(self, error: ReadError) -> ReadError:
        self.halted = error
        return error

    def _failure(self, request: Request, exc: Exception, cut_by_deadline: bool) -> ReadError:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError

        from egress_doctor.net.dial import DeadlineExceeded, current_scope

        scope = current_scope()
        if isinstance(exc, DeadlineExceeded) or (scope is not None and scope.recorder.aborted):
            # The read's watchdog shut the socket (an API server that accepts and never answers).
            return self._halt(request.error(Problem.DEADLINE, "the read's deadline expired"))
        if isinstance(exc, ApiException) and exc.status:
            return status_error(request, int(exc.status), exc.body, str(exc.reason or ""))
        cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
        if isinstance(cause, ReadTimeoutError | TimeoutError):
            if cut_by_deadline:
                return self._halt(request.error(Problem.DEADLINE, "the read's deadline expired"))
            return request.error(Problem.TIMEOUT, f"no answer within {self.request_timeout:g} s")
        if isinstance(exc, ApiException | HTTPError | OSError):  # ApiException status 0: TLS failed
            return self._halt(request.error(Problem.UNREACHABLE, describe(cause)))
        raise exc  # a bug (a bad argument to the client), not cluster trouble


def describe(exc: BaseException) -> str:
    """One line: the root of the exception chain (ConnectionRefusedError, SSLCertVerificationError)
    rather than urllib3's wrappers around it."""
    root = exc
    while (nested := root.__cause__ or root.__context__) is not None and nested is not root:
        root = nested
    text = str(getattr(root, "reason", "") or root).strip().replace("\n", ": ")
    return f"{type(root).__name__}: {text}"[:300]


def decode(request: Request, body: bytes) -> dict[str, Any] | ReadError:
    from egress_doctor.net.json_body import JsonLimitError, loads

    try:
        document = loads(body)
    except JsonLimitError as exc:
        return request.error(Problem.FAILED, f"the answer is {exc}; not read", 200)
    except ValueError:
        return request.error(Problem.FAILED, "the answer is not JSON (is this a Kubernetes API server?)", 200)
    if not isinstance(document, dict):
        return request.error(Problem.FAILED, "the answer is not a Kubernetes object", 200)
    return document


def status_error(request: Request, status: int, body: str | None, reason: str) -> ReadError:
    message = status_message(body) or reason or f"HTTP {status}"
    if status == 403:
        return request.error(Problem.FORBIDDEN, message, status)
    if status == 404:
        problem = Problem.NOT_SERVED if request.verb == "list" else Problem.NOT_FOUND
        return request.error(problem, message, status)
    return request.error(Problem.FAILED, message, status)


def status_message(body: str | None) -> str:
    """The `message` of a metav1.Status body, else the start of the body."""
    if not body:
        return ""
    from egress_doctor.net.json_body import loads

    try:
        document = loads(body[:65536])
    except ValueError:
        return body.strip()[:200]
    return str(document.get("message", "")) if isinstance(document, dict) else ""
