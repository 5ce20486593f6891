"""The sidecars' own records, read through the Kubernetes API: each selected pod's `istio-proxy`
container log (`pods/log`), tallied line by line as it streams. Read-only, bounded, forgiving.

    read = read_pod_logs(LogOptions(namespace="payments", since=3600), connection)
    read.pods       # [PodLog(pod=PodInfo, tally=LogTally, bytes=…, truncated=…, error=…)]
    read.errors     # ReadError records (403 on pods/log, the deadline, an unreachable API server)

What is asked for (only GET; `k8s/rbac-blocked.yaml` grants it):
1. the pods: `get pods/<name>` (`--pod`), else `list pods` in the namespace or (`-A`) in all
   namespaces, with the label selector, in pages of PAGE pods, at most `max_pods`;
2. for each pod with an `istio-proxy` container (a native sidecar is an init container of that name):
   `get pods/<name>/log?container=istio-proxy&sinceSeconds=…&limitBytes=…`, `parallel` pods at once.

Bounds: every request gets `request_timeout`, cut to the run's `deadline` (a `time.monotonic()`
value); a log is read in chunks and tallied as it comes (`diagnose.refusals.LogTally`: counts, not
lines, are kept), stopping at `max_bytes` whatever the API server sends (`limitBytes` asks it to stop
there too); a line longer than `proxy_log.MAX_LINE` is skipped. `limitBytes` keeps the *start* of the
`--since` window: a truncated log is reported with the time of the last record read. When the
deadline expires, the pods not read are named. Nothing raises for cluster trouble.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.diagnose.refusals import LogTally
from egress_doctor.sources.kube_client import Connection, Problem, ReadError, Request, describe, status_error
from egress_doctor.sources.kube_facts import ISTIO_PROXY
from egress_doctor.sources.proxy_log import MAX_LINE

PAGE = 200  # pods per list request
MAX_PODS = 500
MAX_BYTES = 8 << 20  # per pod log
MAX_LIST_BYTES = 32 << 20  # per list page
PARALLEL = 8  # pod logs read at once
REQUEST_TIMEOUT = 5.0  # seconds: connect and each read of one request
READ_CHUNK = 64 << 10
# Environment variables of a pod's spec that decide which AWS hosts its SDK calls (literal values
# only; values from Secrets or ConfigMaps are never read). The keys' values are not secrets; a
# credential variable is only noted as present.
PREDICTION_ENV = (
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE", "AWS_ACCOUNT_ID", "AWS_STS_REGIONAL_ENDPOINTS",
)
PRESENCE_ENV = ("AWS_ACCESS_KEY_ID",)


@dataclass(frozen=True)
class LogOptions:
    namespace: str | None = None  # None with all_namespaces
    all_namespaces: bool = False
    selector: str | None = None  # a label selector, as kubectl -l takes it
    pod: str | None = None  # one pod by name (in namespace)
    since: float = 3600.0  # seconds of log (sinceSeconds)
    max_pods: int = MAX_PODS
    max_bytes: int = MAX_BYTES
    parallel: int = PARALLEL
    request_timeout: float = REQUEST_TIMEOUT


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    sidecar: bool  # an istio-proxy container (or native sidecar init container)
    phase: str = ""
    istio_version: str | None = None  # from the istio-proxy image tag (proxyv2:1.30.3)
    env: Mapping[str, str] = field(default_factory=dict)  # PREDICTION_ENV literals, PRESENCE_ENV as "set"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class PodLog:
    pod: PodInfo
    tally: LogTally = field(default_factory=LogTally)
    bytes: int = 0
    truncated: bool = False  # stopped at max_bytes: the rest of the window was not read
    error: ReadError | None = None
    read: bool = False  # the log request was answered (possibly empty)


@dataclass
class LogsRead:
    pods: list[PodLog] = field(default_factory=list)  # pods with a sidecar, read or not
    without_sidecar: list[PodInfo] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)  # listing, the deadline, the API server
    not_read: list[str] = field(default_factory=list)  # pods the deadline left unread
    listed: int = 0  # pods the selection returned (before max_pods)
    server: str | None = None
    duration_ms: float = 0.0


class _Halt(Exception):
    """The read must stop: the API server is unreachable or the deadline passed."""

    def __init__(self, error: ReadError) -> None:
        super().__init__(str(error))
        self.error = error


def read_pod_logs(options: LogOptions, connection: Connection, deadline: float) -> LogsRead:
    """Select the pods and tally their sidecars' logs; never raises for cluster trouble."""
    from kubernetes.client import ApiClient, CoreV1Api

    from egress_doctor.net.watchdog import abort_at
    from egress_doctor.sources.kube_client import bound_answers

    started = time.monotonic()
    connection.configuration.connection_pool_maxsize = max(1, options.parallel)
    result = LogsRead(server=connection.server)
    with ApiClient(connection.configuration) as client, abort_at(deadline):  # sockets shut at the deadline
        bound_answers(client)
        reader = _Reader(CoreV1Api(client), options, deadline)
        try:
            pods = reader.select(result)
        except _Halt as halt:
            result.errors.append(halt.error)
            pods = []
        result.without_sidecar = [p for p in pods if not p.sidecar]
        reader.read_logs([p for p in pods if p.sidecar], result)
    result.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return result


class _Reader:
    def __init__(self, core: Any, options: LogOptions, deadline: float) -> None:
        self.core = core
        self.options = options
        self.deadline = deadline
        self.halted: ReadError | None = None
        self._lock = threading.Lock()

    # -- requests --

    def _timeout(self, request: Request) -> tuple[float, float]:
        left = self.deadline - time.monotonic()
        if self.halted is not None:
            raise _Halt(self.halted)
        if left < 0.05:
            raise _Halt(request.error(Problem.DEADLINE, "the run's deadline expired"))
        bound = min(self.options.request_timeout, left)
        return (bound, bound)

    def _open(self, request: Request, send: Callable[[tuple[float, float]], Any]) -> Any | ReadError:
        """The raw response of one request, or why there is none (a ReadError for this request;
        _Halt when nothing more can be read)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError

        timeout = self._timeout(request)
        try:
            return send(timeout)
        except ApiException as exc:
            if exc.status:
                return status_error(request, int(exc.status), exc.body, str(exc.reason or ""))
            raise self._stop(request.error(Problem.UNREACHABLE, describe(exc))) from None
        except (HTTPError, OSError) as exc:
            if self.deadline - time.monotonic() <= 0.05:  # the watchdog shut the socket, or time ran out
                raise self._stop(request.error(Problem.DEADLINE, "the run's deadline expired")) from None
            cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
            if isinstance(cause, ReadTimeoutError | TimeoutError):
                if self.deadline - time.monotonic() <= 0.05:
                    raise self._stop(request.error(Problem.DEADLINE, "the run's deadline expired")) from None
                return request.error(Problem.TIMEOUT, f"no answer within {timeout[1]:g} s")
            raise self._stop(request.error(Problem.UNREACHABLE, describe(cause))) from None

    def _stop(self, error: ReadError) -> _Halt:
        with self._lock:
            if self.halted is None:
                self.halted = error
        return _Halt(self.halted or error)

    def _json(self, request: Request, send: Callable[[tuple[float, float]], Any]) -> dict[str, Any] | ReadError:
        response = self._open(request, send)
        if isinstance(response, ReadError):
            return response
        try:
            data = bytearray()
            for chunk in self._chunks(response, request):
                data += chunk
                if len(data) > MAX_LIST_BYTES:
                    return request.error(Problem.FAILED, f"answer larger than {MAX_LIST_BYTES >> 20} MB", 200)
        except _BodyError as exc:
            return request.error(Problem.FAILED, f"the answer broke off: {exc}", 200)
        finally:
            response.release_conn()
        from egress_doctor.sources.kube_client import decode  # bounded in depth, as the cluster read's

        return decode(request, bytes(data))

    def _chunks(self, response: Any, request: Request) -> Iterator[bytes]:
        """The body in chunks, no wait past the deadline (raises _Halt when it passes)."""
        sock = getattr(getattr(response, "connection", None), "sock", None)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self._stop(request.error(Problem.DEADLINE, "the run's deadline expired while reading"))
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.settimeout(min(self.options.request_timeout, left))
            try:
                chunk = response.read1(READ_CHUNK, decode_content=False)
            except Exception as exc:  # urllib3/ssl/socket errors mid-body
                if self.deadline - time.monotonic() <= 0:
                    expired = request.error(Problem.DEADLINE, "the run's deadline expired while reading")
                    raise self._stop(expired) from None
                raise _BodyError(describe(exc)) from None
            if not chunk:
                return
            yield chunk

    # -- the pods --

    def select(self, result: LogsRead) -> list[PodInfo]:
        o = self.options
        if o.pod:
            namespace = o.namespace or "default"
            request = Request("get", "pods", namespace, o.pod)
            got = self._json(request, lambda t: self.core.read_namespaced_pod(
                o.pod, namespace, _request_timeout=t, _preload_content=False))
            if isinstance(got, ReadError):
                result.errors.append(got)
                return []
            result.listed = 1
            return [pod_info(got)]
        pods: list[PodInfo] = []
        token: str | None = None
        while True:
            request = Request("list", "pods", None if o.all_namespaces else o.namespace)
            got = self._json(request, self._lister(token))
            if isinstance(got, ReadError):
                result.errors.append(got)
                return pods
            items = [i for i in got.get("items") or () if isinstance(i, dict)]
            result.listed += len(items)
            pods += [pod_info(i) for i in items]
            token = (got.get("metadata") or {}).get("continue") or None
            if token is None or len(pods) >= o.max_pods:
                return pods[: o.max_pods]

    def _lister(self, token: str | None) -> Callable[[tuple[float, float]], Any]:
        o = self.options
        kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
        if o.selector:
            kwargs["label_selector"] = o.selector
        if token:
            kwargs["_continue"] = token
        if o.all_namespaces:
            return lambda t: self.core.list_pod_for_all_namespaces(_request_timeout=t, **kwargs)
        return lambda t: self.core.list_namespaced_pod(o.namespace or "default", _request_timeout=t, **kwargs)

    # -- the logs --

    def read_logs(self, pods: list[PodInfo], result: LogsRead) -> None:
        logs = [PodLog(pod) for pod in pods]
        result.pods = logs
        if not logs:
            return
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                thread_name_prefix="egress-doctor-logs") as pool:
            for future in [pool.submit(contextvars.copy_context().run, self._read_one, log) for log in logs]:
                future.result()
        if self.halted is not None:
            result.errors.append(self.halted)
            result.not_read = [log.pod.ref for log in logs if not log.read and log.error is None]

    def _read_one(self, log: PodLog) -> None:
        pod, o = log.pod, self.options
        request = Request("get", "pods/log", pod.namespace, pod.name)
        try:
            response = self._open(request, lambda t: self.core.read_namespaced_pod_log(
                pod.name, pod.namespace, container=ISTIO_PROXY, since_seconds=max(1, int(o.since)),
                limit_bytes=o.max_bytes, _request_timeout=t, _preload_content=False))
            if isinstance(response, ReadError):
                log.error = response
                return
            try:
                log.truncated = _tally(self._chunks(response, request), log, o.max_bytes)
                log.read = True
            except _BodyError as exc:
                log.error = request.error(Problem.FAILED, f"the log broke off: {exc}")
            finally:
                response.release_conn()
        except _Halt:
            return  # recorded once as self.halted


class _BodyError(Exception):
    """A body broke off before its end (reset, TLS error)."""


def _tally(chunks: Iterator[bytes], log: PodLog, max_bytes: int) -> bool:
    """Feed complete lines to the log's tally; True when max_bytes cut the log short.

    A line longer than MAX_LINE is skipped up to its newline; the partial last line of a
    truncated log is dropped (it is not a record).
    """
    pending = bytearray()
    skipping = False
    tally = log.tally
    for chunk in chunks:
        room = max_bytes - log.bytes
        cut = len(chunk) > room
        chunk = chunk[:room] if cut else chunk
        log.bytes += len(chunk)
        start = 0
        while (newline := chunk.find(b"\n", start)) != -1:
            if skipping:
                skipping = False
            elif pending:
                pending += chunk[start:newline]
                tally.add(pending.decode("utf-8", "replace"))
                pending.clear()
            else:
                tally.add(chunk[start:newline].decode("utf-8", "replace"))
            start = newline + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > MAX_LINE:
                tally.lines += 1
                tally.too_long += 1
                pending.clear()
                skipping = True
        if cut:
            return True
    if pending and not skipping:
        tally.add(pending.decode("utf-8", "replace"))
    return False


# ---- pods, as the API returns them (pure) ---------------------------------------------------------


def pod_info(doc: Mapping[str, Any]) -> PodInfo:
    metadata = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    containers = [c for c in spec.get("containers") or () if isinstance(c, dict)]
    inits = [c for c in spec.get("initContainers") or () if isinstance(c, dict)]
    proxies = [c for c in containers if c.get("name") == ISTIO_PROXY]
    proxies += [c for c in inits if c.get("name") == ISTIO_PROXY and c.get("restartPolicy") == "Always"]
    env: dict[str, str] = {}
    for container in (c for c in containers if c.get("name") != ISTIO_PROXY):
        for var in container.get("env") or ():
            if not isinstance(var, dict):
                continue
            name = str(var.get("name", ""))
            if name in PREDICTION_ENV and isinstance(var.get("value"), str):
                env.setdefault(name, var["value"])
            elif name in PRESENCE_ENV:
                env.setdefault(name, "set")
    return PodInfo(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        sidecar=bool(proxies),
        phase=str((doc.get("status") or {}).get("phase", "")),
        istio_version=_image_version(str(proxies[0].get("image", ""))) if proxies else None,
        env=env,
    )


def _image_version(image: str) -> str | None:
    """`1.30.3` from `docker.io/istio/proxyv2:1.30.3` (or `:1.30.3-distroless`); None for a digest."""
    tag = image.rpartition("/")[2].partition(":")[2]
    tag = tag.split("@")[0]
    version = tag.split("-")[0]
    parts = version.split(".")
    return version if len(parts) >= 2 and all(p.isdigit() for p in parts) else None


def read_configmap(connection: Connection, namespace: str, name: str, deadline: float,
                   request_timeout: float = REQUEST_TIMEOUT) -> dict[str, Any] | ReadError:
    """One ConfigMap (the mesh config `istio`), bounded like every other request of the read."""
    from kubernetes.client import ApiClient, CoreV1Api

    from egress_doctor.sources.kube_client import bound_answers

    request = Request("get", "configmaps", namespace, name)
    with ApiClient(connection.configuration) as client:
        bound_answers(client)
        core = CoreV1Api(client)
        reader = _Reader(core, LogOptions(request_timeout=request_timeout), deadline)
        try:
            return reader._json(request, lambda t: core.read_namespaced_config_map(
                name, namespace, _request_timeout=t, _preload_content=False))
        except _Halt as halt:
            return halt.error
