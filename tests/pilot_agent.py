"""A fake Istio pilot-agent status server on 127.0.0.1: readiness and `/quitquitquit`.

It answers the way pilot-agent's status server does (pilot/cmd/pilot-agent/status/server.go):

- `/healthz/ready`, any method: 503 with an empty body while not ready, then 200 with an empty
  body. Here "not ready" is the first `not_ready_polls` polls (`None`: never ready).
- `/quitquitquit`: 403 "Only requests from localhost are allowed" from anywhere but loopback,
  405 "Method Not Allowed" for anything but POST, else 200 "OK" (and the agent would exit).
- anything else: 404.

In a pod, readiness is read through Envoy's 15021 and quit goes to pilot-agent's 15020; the fake
serves both paths on one port, so a test passes the same base URL to both flags.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass

from egress_doctor.lab.serving import LoopbackFake, LoopbackTCPServer, QuietHTTPHandler, RequestLog

READY_PATH = "/healthz/ready"
QUIT_PATH = "/quitquitquit"


@dataclass(frozen=True)
class AgentCall:
    """One request the fake received."""

    method: str
    path: str
    status: int
    observed: int | None = None  # what the agent's `observe()` returned as the call came in


class FakePilotAgent(LoopbackFake):
    """`with FakePilotAgent(not_ready_polls=2) as agent:` then `--sidecar-status agent.url`.

    `observe`, when given, is called as each request arrives and its result kept in
    `AgentCall.observed`: a test passes `lambda: len(aws.requests)` to see what had already been
    sent to AWS when the agent was polled or asked to quit.
    """

    thread_name = "test-fake-pilot-agent"

    def __init__(self, not_ready_polls: int | None = 0, observe: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.not_ready_polls = not_ready_polls  # None: never ready
        self.observe = observe
        self._lock = threading.Lock()
        self._polls = 0
        self._calls: RequestLog[AgentCall] = RequestLog()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> list[AgentCall]:
        return self._calls.snapshot()

    @property
    def ready_polls(self) -> list[AgentCall]:
        return [c for c in self.calls if c.path == READY_PATH]

    @property
    def quits(self) -> list[AgentCall]:
        """Accepted quit requests (POST answered 200)."""
        return [c for c in self.calls if c.path == QUIT_PATH and c.status == 200]

    def next_ready_status(self) -> int:
        with self._lock:
            self._polls += 1
            ready = self.not_ready_polls is not None and self._polls > self.not_ready_polls
        return 200 if ready else 503

    def record(self, call: AgentCall) -> None:
        self._calls.append(call)

    def _make_server(self) -> LoopbackTCPServer:
        return LoopbackTCPServer(_StatusHandler, owner=self)


class _StatusHandler(QuietHTTPHandler):
    @property
    def fake(self) -> FakePilotAgent:
        return self.server.owner  # type: ignore[no-any-return]

    def _route(self) -> None:
        self.read_body()
        path = self.path.split("?", 1)[0]
        if path == READY_PATH:
            self._answer(self.fake.next_ready_status(), b"")
        elif path == QUIT_PATH:
            self._quit()
        else:
            self._answer(404, b"404 page not found\n")

    def _quit(self) -> None:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._answer(403, b"Only requests from localhost are allowed\n")
        elif self.command != "POST":
            self._answer(405, b"Method Not Allowed\n")
        else:
            self._answer(200, b"OK")

    def _answer(self, status: int, body: bytes) -> None:
        observed = self.fake.observe() if self.fake.observe else None
        self.fake.record(AgentCall(self.command, self.path, status, observed))
        self.send_body(status, body, "text/plain; charset=utf-8")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route
