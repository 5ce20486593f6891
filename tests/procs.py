"""Child processes that stand in for the app, as /proc shows them."""

from __future__ import annotations

import time
from pathlib import Path

EXEC_WAIT = 30.0  # seconds; a child normally execs within milliseconds


def wait_for_exec(pid: int, marker: bytes = b"sleep") -> None:
    """Until a child has exec'd, /proc shows the parent's environment and command line: wait."""
    deadline = time.monotonic() + EXEC_WAIT
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if marker in cmdline and b"pytest" not in cmdline:
            return
        time.sleep(0.01)
    raise AssertionError(f"child {pid} did not exec within {EXEC_WAIT} s")
