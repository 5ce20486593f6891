"""The deadline is the process's end: `check --deadline 2` against peers that hold it.

Each test runs the CLI as its own process and measures its wall time from outside, as a Job or a
CI step would: at most --deadline + 0.5 s (the issue's bound), whatever the Kubernetes API or the
sidecar's admin port does. The peers are real sockets on 127.0.0.1; the rest of the world is the
lab's fake AWS (`aws_world`), so the probes themselves pass at once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import sockets
from tests.checkrun import aws_world
from tests.kube_api import write_kubeconfig
from tests.sockets import Acceptor, Pki

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 2.0
SLACK = 0.5  # the bound: the process ends within --deadline plus this
SERVER_INFO = json.dumps({"version": "abc/1.40.0/Clean/RELEASE/BoringSSL", "state": "LIVE",
                          "node": {"metadata": {"ISTIO_VERSION": "1.30.3"}}}).encode()


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


def run_timed(*args: str, deadline: float = DEADLINE) -> tuple[float, subprocess.CompletedProcess[str]]:
    """The CLI in a process of its own (the environment is the test's): (wall seconds, result)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "egress_doctor.cli", "check", "--deadline", str(deadline), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    print(f"--deadline {deadline:g}: the process took {elapsed:.2f} s")  # shown with pytest -s
    return elapsed, done


def summary_seconds(done: subprocess.CompletedProcess[str]) -> float:
    """The run's time as its table's last line says it ("… in 2.04 s (deadline 2 s)")."""
    last = done.stdout.rstrip().splitlines()[-1]
    return float(last.split(" in ")[1].split(" s")[0])


class AdminServer(Acceptor):
    """An Envoy admin stand-in: `/server_info` answers at once; every other path is answered by
    `other(conn, stop)` (after the request has been read)."""

    name = "admin"

    def __init__(self, other: Callable[[socket.socket, threading.Event], None]) -> None:
        super().__init__()
        self.other = other

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            request = b""
            while b"\r\n\r\n" not in request:
                more = conn.recv(65536)
                if not more:
                    return
                request += more
            if request.split(b" ", 2)[1].startswith(b"/server_info"):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(SERVER_INFO)).encode() + b"\r\n\r\n" + SERVER_INFO)
                continue
            self.other(conn, stop)
            return


def headers_one_byte_a_second(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}":
        if stop.wait(1.0):
            return
        conn.sendall(bytes([byte]))


def answer(body: bytes) -> Callable[[socket.socket, threading.Event], None]:
    def send(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\n\r\n")
        for start in range(0, len(body), 1 << 20):
            conn.sendall(body[start:start + (1 << 20)])

    return send


def test_a_kubernetes_api_that_accepts_and_never_answers_ends_with_the_deadline(world, pki: Pki):
    deadline = 4.0  # the read imports the kubernetes client first (1-2 s on a loaded machine): let it connect
    with sockets.TlsStallServer() as stall:
        kubeconfig = write_kubeconfig(world.tmp, {"lab": f"https://127.0.0.1:{stall.port}"}, pki.ca_file, "lab")
        elapsed, done = run_timed("--kubeconfig", str(kubeconfig), "--context", "lab", "--no-envoy-admin",
                                  "--no-color", deadline=deadline)
        assert stall.connections >= 1, "the cluster read never reached the API server"
    assert elapsed <= deadline + SLACK, f"the process took {elapsed:.2f} s with --deadline {deadline}"
    assert done.returncode == 0, done.stderr
    assert "ED911" in done.stdout  # the read's deadline expired, said once
    assert abs(summary_seconds(done) - elapsed) < 0.5, "the summary's time is not the run's"


def test_an_envoy_admin_that_sends_headers_one_byte_a_second_ends_with_the_deadline(world):
    with AdminServer(headers_one_byte_a_second) as admin:
        elapsed, done = run_timed("--envoy-admin", f"http://127.0.0.1:{admin.port}", "--no-cluster", "-o", "json")
    assert elapsed <= DEADLINE + SLACK, f"the process took {elapsed:.2f} s with --deadline {DEADLINE}"
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    sidecar = report["mesh"]["sidecar"]
    assert sidecar["present"] is True and sidecar["istio_version"] == "1.30.3"
    assert any(w.startswith("could not read the sidecar's listeners") for w in sidecar["warnings"])
    assert abs(report["duration_ms"] / 1000 - elapsed) < 0.5, "the report's time is not the run's"


def test_a_million_nested_brackets_from_the_admin_port_are_a_warning_and_the_report_stands(world):
    with AdminServer(answer(b"[" * 1_000_000)) as admin:
        elapsed, done = run_timed("--envoy-admin", f"http://127.0.0.1:{admin.port}", "--no-cluster", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    sidecar = json.loads(done.stdout)["mesh"]["sidecar"]
    assert sidecar["present"] is True
    assert any("nested more than 100 levels" in w for w in sidecar["warnings"]), sidecar["warnings"]
    assert elapsed <= DEADLINE + SLACK


def test_a_31_mb_config_dump_is_refused_unparsed_within_the_deadline(world):
    dump = b'{"configs": [' + b",".join([b'{"name": "' + b"x" * 1000 + b'"}'] * 31_000) + b"]}"
    with AdminServer(answer(dump)) as admin:
        elapsed, done = run_timed("--envoy-admin", f"http://127.0.0.1:{admin.port}", "--no-cluster", "-o", "json")
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(done.stdout)["mesh"]["sidecar"]
    assert any("larger than 4 MB" in w for w in sidecar["warnings"]), sidecar["warnings"]
    assert elapsed <= DEADLINE + SLACK
