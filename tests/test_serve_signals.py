"""`python -m egress_doctor.cli serve` as a real process: it says where it listens, and SIGTERM or
SIGINT stop it cleanly with exit 0, also while a run is stuck on the network.

The process talks only to the fakes on 127.0.0.1 (the `aws_world` environment it inherits).
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.checkrun import REGION, aws_world
from tests.sockets import TlsStallServer

REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0  # seconds: a bound on a hang, never an expectation
LISTENING = re.compile(r"listening on http://(?P<host>[^\s:]+):(?P<port>\d+)")


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


class ServeProcess:
    def __init__(self, *flags: str) -> None:
        command = [sys.executable, "-m", "egress_doctor.cli", "serve", "--listen", "127.0.0.1:0", *flags]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = self._bound_port()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)

    def _bound_port(self) -> int:
        while True:
            line = self._lines.get(timeout=WAIT)
            self.stderr.append(line)
            if match := LISTENING.search(line):
                return int(match["port"])

    def status(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=WAIT)
        while not self._lines.empty():
            self.stderr.append(self._lines.get_nowait())
        return code


@contextmanager
def serving(*flags: str) -> Iterator[ServeProcess]:
    proc = ServeProcess(*flags)
    try:
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(timeout=WAIT)


def wait_until(condition, step: float = 0.05) -> bool:
    pause = threading.Event()
    for _ in range(int(WAIT / step)):
        if condition():
            return True
        pause.wait(step)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_its_bound_address_and_exits_0_on_a_stop_signal_after_a_run(world, sig):
    with serving("--interval", "1h") as proc:
        assert wait_until(lambda: proc.status("/readyz") == 200), "".join(proc.stderr)
        assert proc.stop(sig) == 0, "".join(proc.stderr)
        assert "egress-doctor serve: stopping" in "".join(proc.stderr)


def test_sigterm_during_a_run_stuck_in_tls_waits_for_its_deadline_then_exits_0(world):
    with TlsStallServer() as stall:
        flags = (
            "--connect-to", f"sts.{REGION}.amazonaws.com:443:127.0.0.1:{stall.port}",
            "--deadline", "2", "--read-timeout", "30", "--interval", "1h",
        )  # fmt: skip
        with serving(*flags) as proc:
            assert wait_until(lambda: stall.connections >= 1), "the run never reached the stalled server"
            assert proc.status("/readyz") == 503  # the first run is still in flight
            assert proc.stop(signal.SIGTERM) == 0, "".join(proc.stderr)


def test_serve_refuses_a_bad_interval_with_exit_2_before_listening(world):
    done = subprocess.run(
        [sys.executable, "-m", "egress_doctor.cli", "serve", "--listen", "127.0.0.1:0", "--interval", "soon"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--interval" in done.stderr and "listening" not in done.stderr
