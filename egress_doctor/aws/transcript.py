"""Per-check capture of the boto3/botocore/urllib3 DEBUG transcript, redacted before it is stored.

While a `TranscriptCapture` is active it owns the `botocore`, `boto3` and `urllib3` loggers: they
log at DEBUG into one handler and nowhere else (their own handlers and propagation to the root
logger are suspended, so no raw record can reach stderr). Each record is formatted whole, redacted
with the run's `Redactor`, clipped, and appended to the buffer of the check that is current in
the emitting thread's context (`with capture.check(id):`, inside the worker's
`contextvars.copy_context().run`). Records from a context with no current check go to a
run-level buffer. Everything is restored on exit.

One capture may be active per process at a time: logger configuration is process-wide.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from egress_doctor.redact import Redactor

CAPTURED_LOGGERS = ("botocore", "boto3", "urllib3")
RECORD_FORMAT = "%(name)s %(levelname)s %(message)s"
MAX_RECORDS_PER_CHECK = 400
MAX_CHARS_PER_RECORD = 4_000


@dataclass
class _Buffer:
    records: list[str] = field(default_factory=list)
    dropped: int = 0  # records not kept because the buffer was full


@dataclass
class _LoggerState:
    logger: logging.Logger
    level: int
    propagate: bool
    disabled: bool
    handlers: list[logging.Handler]

    @classmethod
    def save(cls, logger: logging.Logger) -> _LoggerState:
        return cls(logger, logger.level, logger.propagate, logger.disabled, list(logger.handlers))

    def restore(self) -> None:
        self.logger.handlers[:] = self.handlers
        self.logger.setLevel(self.level)
        self.logger.propagate = self.propagate
        self.logger.disabled = self.disabled


class _CaptureHandler(logging.Handler):
    """Hands every record to its capture. Never prints: `handleError` would echo the raw record."""

    def __init__(self, capture: TranscriptCapture) -> None:
        super().__init__(logging.DEBUG)
        self._capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        self._capture._store(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Deliberately silent: the default prints the unredacted message to stderr."""


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a note saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [record truncated: {len(text)} chars, first {limit} kept]"


class TranscriptCapture:
    """Capture the boto3/urllib3 DEBUG transcript per check, redacted with the run's `Redactor`."""

    def __init__(
        self,
        redactor: Redactor,
        *,
        level: int = logging.DEBUG,
        loggers: Sequence[str] = CAPTURED_LOGGERS,
        max_records: int = MAX_RECORDS_PER_CHECK,
        max_chars: int = MAX_CHARS_PER_RECORD,
    ) -> None:
        self._redactor = redactor
        # DEBUG keeps the transcript; above it the loggers are still owned (nothing reaches stderr)
        # but botocore's debug calls return at once: a run that shows no transcript skips its cost.
        self._level = level
        self._logger_names = tuple(loggers)
        self._max_records = max_records
        self._max_chars = max_chars
        self._formatter = logging.Formatter(RECORD_FORMAT)
        self._handler = _CaptureHandler(self)
        # Per instance, so that two captures (sequential runs in one test process) never share.
        self._current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"egress_doctor_check_{id(self):x}", default=None
        )
        self._lock = threading.Lock()
        self._run_buffer = _Buffer()
        self._buffers: dict[str, _Buffer] = {}
        self._saved: list[_LoggerState] = []
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def __enter__(self) -> Self:
        if self._active:
            raise RuntimeError("this TranscriptCapture is already active")
        for name in self._logger_names:
            if any(isinstance(h, _CaptureHandler) for h in logging.getLogger(name).handlers):
                raise RuntimeError(f"another TranscriptCapture already owns the {name!r} logger")
        self._saved = _take_over(self._logger_names, self._handler, self._level)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for state in reversed(self._saved):
            state.restore()
        self._saved = []
        self._active = False

    @contextmanager
    def check(self, check_id: str) -> Iterator[None]:
        """Route records emitted in this context to `check_id`'s buffer (nesting: inner wins).

        A repeated id (one check per DynamoDB table) appends to the same buffer; pass a
        distinct id per subject to keep them apart.
        """
        token = self._current.set(check_id)
        try:
            yield
        finally:
            self._current.reset(token)

    def records(self, check_id: str) -> list[str]:
        """The redacted records of one check, oldest first; a last line notes any dropped."""
        with self._lock:
            buffer = self._buffers.get(check_id, _Buffer())
            stored, dropped = list(buffer.records), buffer.dropped
        return self._read(stored, dropped)

    def run_records(self) -> list[str]:
        """Records emitted outside any check (credential refresh in a stray thread, ...)."""
        with self._lock:
            stored, dropped = list(self._run_buffer.records), self._run_buffer.dropped
        return self._read(stored, dropped)

    def check_ids(self) -> list[str]:
        """Ids of the checks that have records, in the order they first logged."""
        with self._lock:
            return list(self._buffers)

    def _read(self, stored: list[str], dropped: int) -> list[str]:
        # Re-redacting is idempotent and also applies secrets registered after a record was stored.
        out = [self._redactor.redact(text) for text in stored]
        if dropped:
            out.append(
                f"… [transcript truncated: {dropped} more records not kept "
                f"(limit {self._max_records} per check)]"
            )
        return out

    def _store(self, record: logging.LogRecord) -> None:
        check_id = self._current.get()
        text = clip(self._redacted(record), self._max_chars)
        with self._lock:
            buffer = self._run_buffer if check_id is None else self._buffers.setdefault(check_id, _Buffer())
            if len(buffer.records) >= self._max_records:
                buffer.dropped += 1
            else:
                buffer.records.append(text)

    def _redacted(self, record: logging.LogRecord) -> str:
        try:
            return self._redactor.redact(self._format(record))
        except Exception as exc:  # keep the gap visible; never keep (or print) the raw text
            return (
                f"{record.name} {record.levelname} [record dropped: redaction failed: {type(exc).__name__}]"
            )

    def _format(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record)
        except Exception as exc:  # a record whose message cannot be built; never echo its args
            return f"{record.name} {record.levelname} [record could not be formatted: {type(exc).__name__}]"


def _take_over(names: Sequence[str], handler: logging.Handler, level: int) -> list[_LoggerState]:
    """Point the named loggers (and their existing children) at `handler` only, at `level`."""
    saved: list[_LoggerState] = []
    for name in names:
        root = logging.getLogger(name)
        saved.append(_LoggerState.save(root))
        root.handlers[:] = [handler]
        root.setLevel(level)
        root.propagate = False  # the root logger's handlers would print raw records
        root.disabled = False  # dictConfig(disable_existing_loggers=True) may have disabled it
        saved.extend(_neutralise_children(name))
    return saved


def _neutralise_children(name: str) -> list[_LoggerState]:
    """Make existing `name.*` loggers defer to `name`: no own handlers, level, or cut propagation."""
    saved: list[_LoggerState] = []
    prefix = name + "."
    for child_name, child in dict(logging.Logger.manager.loggerDict).items():
        if not child_name.startswith(prefix) or not isinstance(child, logging.Logger):
            continue
        if child.handlers or child.level != logging.NOTSET or not child.propagate or child.disabled:
            saved.append(_LoggerState.save(child))
            child.handlers[:] = []
            child.setLevel(logging.NOTSET)
            child.propagate = True
            child.disabled = False
    return saved
