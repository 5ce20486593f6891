"""A deadline that holds whatever the peer does: every socket of a block is shut down when it passes.

Timeouts bound each wait on a socket, and a peer that sends a byte just before each one ends (an
admin port sending its headers one byte a second, an API server that drips) resets them forever.
`abort_at` is the other half: a daemon timer that calls the block's `DialRecorder.abort()` at the
deadline, so a read blocked anywhere (headers, TLS handshake, body) returns at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from egress_doctor.net.dial import DialRecorder, DialScope, current_scope, dial_scope


@contextlib.contextmanager
def abort_at(deadline: float | None) -> Iterator[DialScope | None]:
    """Shut down every socket dialled in this context once `deadline` (a `time.monotonic()` value)
    passes, whatever it is blocked in: a peer that sends its headers one byte a second, a TLS
    handshake that never ends, an API server that accepts and never answers. Timeouts cannot do
    this: each byte resets them.

    A nested scope that keeps the enclosing one's --connect-to map and deadline and reports its
    records and sockets to it; a daemon timer thread calls `abort()` (cancelled on exit). Yields
    the scope (None, and nothing changes, when `deadline` is None).
    """
    if deadline is None:
        yield current_scope()
        return
    outer = current_scope()
    if outer is not None and outer.deadline is not None:
        deadline = min(deadline, outer.deadline)
    recorder = DialRecorder(parent=outer.recorder if outer is not None else None)
    with dial_scope(outer.connect_to if outer is not None else None, recorder, deadline) as scope:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), recorder.abort)
        timer.daemon = True
        timer.start()
        try:
            yield scope
        finally:
            timer.cancel()
