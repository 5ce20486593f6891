"""One run of the probes: shared state, per-check scopes, and the deadline.

Every check runs with its own scopes — the current check (for botocore's events), a dial
scope (connect-to, DNS/TCP evidence, sockets to abort) and a transcript buffer — so checks can
run in parallel threads without mixing their evidence.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from egress_doctor.aws.session import ProbeSession
from egress_doctor.aws.transcript import TranscriptCapture
from egress_doctor.model import Identity, Status
from egress_doctor.net.connect_to import ConnectToMap
from egress_doctor.net.dial import DialRecorder, dial_scope
from egress_doctor.probes.progress import Board, CheckProgress, current_check
from egress_doctor.redact import Redactor

T = TypeVar("T")


class Run:
    """State shared by the checks of one run."""

    def __init__(
        self,
        *,
        session: ProbeSession,
        identity: Identity,
        environ: Mapping[str, str],
        redactor: Redactor,
        capture: TranscriptCapture,
        connect_to: ConnectToMap,
        deadline: float,
        per_check_seconds: float,
    ) -> None:
        self.session = session
        self.identity = identity
        self.environ = environ
        self.redactor = redactor
        self.capture = capture
        self.connect_to = connect_to
        self.deadline = deadline
        self.per_check_seconds = per_check_seconds
        self.board = Board()
        # Exceptions that escaped a check's thread (bugs): re-raised by the caller once the run
        # is over, so they reach the CLI's redacted "internal error" path instead of
        # threading.excepthook (raw traceback on stderr) and never pass for a deadline.
        self.crashes: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._recorders: list[DialRecorder] = []
        self._lock = threading.Lock()

    @property
    def region(self) -> str | None:
        return self.identity.region

    def start(self, check_id: str, title: str, subject: str | None = None) -> CheckProgress:
        budget = min(self.deadline, time.monotonic() + self.per_check_seconds)
        return self.board.add(CheckProgress(id=check_id, title=title, subject=subject, deadline=budget))

    def client(self, service: str, region: str | None, credentials: Any, *, unsigned: bool = False) -> Any:
        """The client for `service` in `region`: built once per run (or per process: ProbeSession)."""
        return self.session.client(service, region, credentials, unsigned=unsigned)

    def register_credentials(self, credentials: Any) -> None:
        """Every secret part of botocore credentials becomes a known value for the run's redactor."""
        if credentials is None:
            return
        getter = getattr(credentials, "get_frozen_credentials", None)
        frozen = getter() if getter else credentials
        for value in (getattr(frozen, "secret_key", None), getattr(frozen, "token", None)):
            if value:
                self.redactor.add_secret(str(value))

    def skip_rest(self, failed: str, check_ids: tuple[str, ...]) -> None:
        """Record checks that cannot run because `failed` failed: one root cause, not five symptoms."""
        from egress_doctor.probes.registry import spec

        for check_id in check_ids:
            title = spec(check_id).title.format_map(_Unknown())
            self.start(check_id, title).finish(Status.SKIP, reason=f"skipped: {failed} failed")

    def scoped(self, progress: CheckProgress, fn: Callable[[], T]) -> T:
        """Call `fn` with this check's scopes active."""
        recorder = DialRecorder()
        with self._lock:
            self._recorders.append(recorder)
        token = current_check.set(progress)
        try:
            with (
                dial_scope(connect_to=self.connect_to, recorder=recorder, deadline=progress.deadline),
                self.capture.check(progress.key),
            ):
                return fn()
        finally:
            current_check.reset(token)
            _fill_from_recorder(progress, recorder)

    def thread(self, fn: Callable[[], Any], name: str) -> threading.Thread:
        """`run_in_thread(fn)`, with whatever `fn` raises kept in `crashes`."""

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                with self._lock:
                    self.crashes.append(exc)

        thread = run_in_thread(guarded, name)
        with self._lock:
            self._threads.append(thread)
        return thread

    def unfinished(self) -> list[threading.Thread]:
        """Threads of this run (`thread()`) still running."""
        with self._lock:
            return [thread for thread in self._threads if thread.is_alive()]

    def join_all(self, seconds: float) -> None:
        """Wait at most `seconds` in all for every thread of the run to end."""
        end = time.monotonic() + seconds
        for thread in self.unfinished():
            thread.join(max(0.0, end - time.monotonic()))

    def abort_all(self) -> None:
        """Close every socket any check opened: a blocked read returns at once."""
        with self._lock:
            recorders = list(self._recorders)
        for recorder in recorders:
            recorder.abort()


class _Unknown(dict[str, str]):
    """A skipped check's title names what it would have filled in: `…/security-credentials/<role>`."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def _fill_from_recorder(progress: CheckProgress, recorder: DialRecorder) -> None:
    evidence = progress.evidence
    records = recorder.records
    if not records:
        return
    last = records[-1]
    if evidence.dns is None and last.dns is not None:
        evidence.dns = last.dns
    if evidence.tcp is None and last.tcp:
        evidence.tcp = last.tcp[-1]
    target = progress.target
    # A rule that keeps the address (the lab's loopback passthrough rules) is no detour worth showing.
    if target is None or target.connect_to is not None:
        return
    if last.connect_to not in (None, f"{target.host}:{target.port}"):
        progress.target = dataclasses.replace(target, connect_to=last.connect_to)


def run_in_thread(fn: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread, so a check stuck past the deadline never keeps the process alive."""
    import contextvars

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(fn,), name=name, daemon=True)
    thread.start()
    return thread
