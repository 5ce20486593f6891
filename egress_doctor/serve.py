"""`egress-doctor serve`: the checks on a schedule, the last verdict over HTTP.

One scheduler thread runs the probes, one run at a time, every `interval` (±10 % jitter, start
to start; a run that outlasts the interval is followed at once by the next, never overlapped).
After each run it renders the `/readyz` body and the `/metrics` page once, through that run's
redactor, and publishes them as an immutable `Snapshot`. Every run gets a new `Redactor` of the
same policy: the probes register the credentials they receive, and IRSA hands out new ones on
every run, so one redactor for the life of the process would grow without bound. The HTTP handlers only
copy the current snapshot's bytes: a burst of requests costs no probe and no rendering.

    /readyz   200 when every check of the last completed run passed (warnings allowed);
              503 before the first run completes, after a failed run, or when the run raised
    /livez    200 while the scheduler thread is alive and its last run started recently
              (within 3 x interval, or deadline + 2 x interval when that is longer: a run may
              take its whole deadline), 503 otherwise
    /metrics  Prometheus text format (render.metrics)

Requests are bounded: each connection has a socket timeout, at most `max_handlers` are
handled at once (the rest wait in the listen backlog), handler threads are daemons.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from egress_doctor import validate
from egress_doctor.model import ExitStatus, Report
from egress_doctor.redact import Redactor
from egress_doctor.render.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from egress_doctor.render.metrics import RunMetrics
from egress_doctor.render.readyz import readiness_document, render_readiness
from egress_doctor.validate import UsageError

JITTER = 0.1  # ±10 % of the interval, so replicas started together do not probe in step
REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request or read the answer
MAX_HANDLERS = 64  # requests handled at once; more wait in the listen backlog
LISTEN_BACKLOG = 256
JSON_TYPE = "application/json"

# One run: gets the run's own redactor (the probes register every secret they see with it).
Probe = Callable[[Redactor], Report]


# -- options -------------------------------------------------------------------------------

def parse_duration(flag: str, spec: str) -> float:
    """`30s`, `1m`, `500ms`, `1m30s` or a bare number of seconds; must be positive."""
    return validate.duration(flag, spec)


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" = every interface
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_listen(spec: str) -> ListenAddress:
    """`host:port`, `:port` (every IPv4 interface, as a pod wants), `[v6]:port`; port 0 picks one."""
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        raise UsageError(f"--listen: {spec!r} is not host:port (example: :8080 or 127.0.0.1:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--listen: port {port_text!r} is not a number from 0 to 65535")
    return ListenAddress(host=host, port=int(port_text))


# -- the schedule ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the handlers serve until the next run completes. Immutable: swapped whole."""

    ready: bool
    readyz: bytes
    metrics: bytes
    runs: int  # completed runs so far


def is_ready(report: Report) -> bool:
    """Every check passed or warned: the same verdict as `check`'s exit code 0."""
    return bool(report.checks) and report.exit_status is ExitStatus.OK


class Scheduler:
    """Runs `probe` on an interval in one daemon thread and publishes a `Snapshot` after each run."""

    def __init__(
        self,
        probe: Probe,
        *,
        interval: float,
        deadline: float,
        redactor: Redactor,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self._probe = probe
        self.interval = interval
        self.stale_after = max(3 * interval, deadline + 2 * interval)
        self._redactor = redactor  # the policy; each run gets a fresh instance of it
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._metrics = RunMetrics()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self.runs_started = 0
        self.last_started = time.monotonic()  # until the first run: when the scheduler was made
        self.snapshot = Snapshot(
            ready=False,
            readyz=render_readiness(readiness_document(None, ready=False), redactor),
            metrics=self._metrics.render(redactor),
            runs=0,
        )

    def start(self) -> None:
        self.last_started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="egress-doctor-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask for no further run; wait up to `timeout` for an in-flight one. True if it ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def live(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        return alive and time.monotonic() - self.last_started <= self.stale_after

    def wait_for_runs(self, count: int, timeout: float) -> bool:
        """Block until `count` runs have completed (or `timeout` passes); for tests and benchmarks."""
        with self._done:
            return self._done.wait_for(lambda: self.snapshot.runs >= count, timeout)

    def next_delay(self, started: float) -> float:
        """Seconds from now until the next run: one jittered interval after `started`."""
        spread = self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        return max(0.0, started + self.interval * spread - time.monotonic())

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = self.run_once()
            self._stop.wait(self.next_delay(started))

    def run_once(self) -> float:
        """One probe run, then a new snapshot. Returns the run's monotonic start time."""
        started = time.monotonic()
        self.last_started = started
        self.runs_started += 1
        started_at = _now_iso()
        redactor = self._redactor.fresh()
        report, error = None, None
        try:
            report = self._probe(redactor)
        except Exception as exc:  # a run that raises makes the pod unready, never kills the scheduler
            error = f"{type(exc).__name__}: {exc}"
        duration = time.monotonic() - started
        self._publish(report, error, started_at, duration, redactor)
        return started

    def _publish(
        self, report: Report | None, error: str | None, started_at: str, duration: float, redactor: Redactor
    ) -> None:
        ready = report is not None and is_ready(report)
        runs = self.snapshot.runs + 1
        run = {"number": runs, "started_at": started_at, "duration_ms": round(duration * 1000, 1)}
        document = readiness_document(report, ready=ready, error=error, run=run)
        self._metrics.observe(report, ready=ready, finished_at=time.time(), duration=duration)
        snapshot = Snapshot(
            ready=ready,
            readyz=render_readiness(document, redactor),
            metrics=self._metrics.render(redactor),
            runs=runs,
        )
        with self._done:
            self.snapshot = snapshot
            self._done.notify_all()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# -- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: ReadinessHTTPServer
    timeout = REQUEST_TIMEOUT  # applied to the connection's socket by StreamRequestHandler
    server_version = "egress-doctor"
    sys_version = ""

    def do_GET(self) -> None:
        status, content_type, body = self.server.answer(self.path.split("?", 1)[0])
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a probe every few seconds is not news (and a path is no place for output)."""


class ReadinessHTTPServer(ThreadingHTTPServer):
    """Serves one scheduler's snapshots; never runs a probe itself."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, listen: ListenAddress, scheduler: Scheduler, max_handlers: int = MAX_HANDLERS) -> None:
        self.address_family = listen.family
        self.scheduler = scheduler
        self._slots = threading.BoundedSemaphore(max_handlers)
        super().__init__((listen.host, listen.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def answer(self, path: str) -> tuple[int, str, bytes]:
        snapshot = self.scheduler.snapshot  # one read: the whole answer comes from one run
        if path == "/readyz":
            return (200 if snapshot.ready else 503), JSON_TYPE, snapshot.readyz
        if path == "/metrics":
            return 200, METRICS_CONTENT_TYPE, snapshot.metrics
        if path == "/livez":
            live = self.scheduler.live()
            return (200 if live else 503), JSON_TYPE, json.dumps({"live": live, "runs": snapshot.runs}).encode()
        return 404, JSON_TYPE, b'{"error": "not found: try /readyz, /livez or /metrics"}\n'

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # back-pressure: a handler frees its slot within REQUEST_TIMEOUT
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or stalls is not an error of ours: no traceback on stderr."""


class ReadinessService:
    """The scheduler and the HTTP server together: `start()`, then `close()` (or `with`)."""

    def __init__(self, scheduler: Scheduler, listen: ListenAddress, *, run_timeout: float) -> None:
        self.scheduler = scheduler
        self.run_timeout = run_timeout  # how long close() waits for an in-flight run
        self.http = ReadinessHTTPServer(listen, scheduler)
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.http.url

    def start(self, *, schedule: bool = True) -> ReadinessService:
        """Accept requests at once; start probing unless `schedule` is False (tests start it later)."""
        self._serving = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.1}, name="egress-doctor-http", daemon=True
        )
        self._serving.start()
        if schedule:
            self.scheduler.start()
        return self

    def close(self) -> bool:
        """Stop accepting, then let an in-flight run end (it aborts at its deadline). True if it did."""
        if self._serving is not None:
            self.http.shutdown()
        self.http.server_close()
        return self.scheduler.stop(self.run_timeout)

    def __enter__(self) -> ReadinessService:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
