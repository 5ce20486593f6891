"""The Istio sidecar's lifecycle around one run: wait until it is ready, then ask it to quit.

Two problems of a one-off Job behind a classic (non-native) sidecar:

- the startup race: a probe sent before Envoy has its listeners is refused, which looks like a
  broken path (`--wait-for-sidecar` polls the readiness endpoint first, and when the sidecar never
  gets ready the run still happens, with a warning in the report);
- the Job that never completes because the sidecar never exits (`--quit-sidecar` POSTs to
  pilot-agent's `/quitquitquit` when the run is over, whatever its outcome).

Every request here goes through `net.http.request`: bounded, no retries, no proxies. Nothing here
raises for an I/O failure; the outcome is a line on stderr and, for the wait, a report warning.
Importing this module stays cheap (the CLI reads its defaults for `--help`): the HTTP client is
imported when a request is made.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from egress_doctor import validate
from egress_doctor.model import Symptom
from egress_doctor.validate import UsageError

if TYPE_CHECKING:
    from egress_doctor.net.http import HttpResult

# Envoy's static status listener; its /healthz/ready is proxied to pilot-agent.
DEFAULT_STATUS_URL = "http://127.0.0.1:15021"
# pilot-agent's own port: /quitquitquit answers only POST, and only from localhost.
DEFAULT_AGENT_URL = "http://127.0.0.1:15020"
READY_PATH = "/healthz/ready"
QUIT_PATH = "/quitquitquit"

# Seconds between readiness polls (`pilot-agent wait` uses 0.5 s; shorter wastes nothing on loopback).
POLL_INTERVAL = 0.25
# Bounds of one readiness poll; never past the --wait-for-sidecar deadline either.
POLL_CONNECT_TIMEOUT = 0.5
POLL_READ_TIMEOUT = 1.0
# No poll is started with less time than this left: it could not get an answer anyway.
MIN_POLL = 0.05
# Bounds of the quit request: the Job's exit waits at most QUIT_DEADLINE for it.
QUIT_CONNECT_TIMEOUT = 1.0
QUIT_READ_TIMEOUT = 2.0
QUIT_DEADLINE = 3.0
# Largest --wait-for-sidecar, as for the other durations (validate.positive_seconds).
MAX_WAIT = 3600.0
# Bytes of an answer kept: both endpoints answer with a status and at most a word.
MAX_BODY = 1024


Note = Callable[[str], None]


def parse_duration(flag: str, text: str) -> float:
    """Seconds in `text` ("30", "90s", "1m30s", "500ms"), at most an hour."""
    return validate.duration(flag, text, maximum=MAX_WAIT)


def base_url(flag: str, text: str) -> str:
    """`text` as the base of the sidecar's endpoints: http(s)://host[:port], without a trailing slash."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {text!r}: expected a URL such as {DEFAULT_AGENT_URL}")
    if parts.query or parts.fragment:
        raise UsageError(f"{flag} {text!r}: a base URL takes no query or fragment")
    return text.rstrip("/")


@dataclass(frozen=True)
class ReadyWait:
    """How waiting for the sidecar went."""

    url: str
    ready: bool
    seconds: float  # from the first poll to the answer (or to giving up)
    polls: int
    last: str  # the last answer when not ready: "HTTP 503", "connect-refused", ...

    def warning(self) -> str | None:
        """The report warning when the sidecar never got ready; None when it did."""
        if self.ready:
            return None
        text = (
            f"sidecar not ready after {self.seconds:.1f} s ({_polls(self.polls)} of {self.url}, last: {self.last}): "
            "probed anyway, so a failure below may be the sidecar's startup, not the path"
        )
        if self.last == Symptom.CONNECT_REFUSED.value:
            text += "; nothing listens there: is a sidecar injected into this pod?"
        return text

    def line(self) -> str:
        """One line for stderr."""
        if self.ready:
            return f"egress-doctor: sidecar ready after {self.seconds:.1f} s ({_polls(self.polls)} of {self.url})\n"
        return f"egress-doctor: {self.warning()}\n"


def _polls(count: int) -> str:
    return "1 poll" if count == 1 else f"{count} polls"


def _answer(result: HttpResult) -> str:
    if result.ok:
        return f"HTTP {result.evidence.status}"
    return result.symptom.value if result.symptom else "no answer"


def _is_ready(result: HttpResult) -> bool:
    status = result.evidence.status
    return result.ok and status is not None and 200 <= status < 300


def wait_until_ready(status_base: str, within: float) -> ReadyWait:
    """Poll `<status_base>/healthz/ready` until it answers 2xx or `within` seconds have passed."""
    from egress_doctor.net.http import request

    url = status_base + READY_PATH
    started = time.monotonic()
    deadline = started + within
    polls, last = 0, "no poll"
    while deadline - time.monotonic() >= MIN_POLL:
        polls += 1
        result = request(
            "GET",
            url,
            connect_timeout=POLL_CONNECT_TIMEOUT,
            read_timeout=POLL_READ_TIMEOUT,
            deadline=deadline,
            max_body=MAX_BODY,
        )
        if _is_ready(result):
            return ReadyWait(url, True, time.monotonic() - started, polls, "")
        last = _answer(result)
        time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))
    return ReadyWait(url, False, time.monotonic() - started, polls, last)


def quit_sidecar(agent_base: str) -> str:
    """POST `<agent_base>/quitquitquit` once; the outcome as one line for stderr (never raises for I/O)."""
    from egress_doctor.net.http import request

    url = agent_base + QUIT_PATH
    result = request(
        "POST",
        url,
        body=b"",
        connect_timeout=QUIT_CONNECT_TIMEOUT,
        read_timeout=QUIT_READ_TIMEOUT,
        deadline=time.monotonic() + QUIT_DEADLINE,
        max_body=MAX_BODY,
    )
    return f"egress-doctor: asked the sidecar to quit: POST {url} -> {_answer(result)}{_quit_hint(result)}\n"


def _quit_hint(result: HttpResult) -> str:
    status = result.evidence.status if result.ok else None
    if status is not None and 200 <= status < 300:
        return ""
    if status == 403:
        return " (pilot-agent accepts /quitquitquit only from localhost)"
    if result.symptom is Symptom.CONNECT_REFUSED:
        return " (nothing listens there: no sidecar, or it has already exited)"
    return " (the sidecar may keep the pod running)"


@dataclass
class SidecarLifecycle:
    """What `check` does around its probes, from `--wait-for-sidecar`, `--sidecar-status`, `--quit-sidecar`."""

    note: Note
    wait_for: float | None = None  # seconds; None: do not wait (default)
    status_base: str = DEFAULT_STATUS_URL
    agent_base: str | None = None  # where to POST /quitquitquit; None: do not (default)

    def wait(self) -> list[str]:
        """Wait for the sidecar when asked to; the report warnings this leaves (none when it got ready)."""
        if self.wait_for is None:
            return []
        outcome = wait_until_ready(self.status_base, self.wait_for)
        self.note(outcome.line())
        warning = outcome.warning()
        return [warning] if warning else []

    def quit(self) -> None:
        if self.agent_base is not None:
            self.note(quit_sidecar(self.agent_base))


@contextlib.contextmanager
def around_run(wait_for: str | None, status: str, quit_at: str | None, note: Note) -> Iterator[SidecarLifecycle]:
    """The lifecycle for one run; the sidecar is asked to quit when the block ends, however it ends.

    The quit target is parsed first, so that a bad `--wait-for-sidecar` or `--sidecar-status`
    (a usage error, exit 2) still lets the Job's pod finish.
    """
    lifecycle = SidecarLifecycle(note=note)
    if quit_at is not None:
        lifecycle.agent_base = base_url("--quit-sidecar", quit_at)
    try:
        lifecycle.status_base = base_url("--sidecar-status", status)
        if wait_for is not None:
            lifecycle.wait_for = parse_duration("--wait-for-sidecar", wait_for)
        yield lifecycle
    finally:
        lifecycle.quit()
