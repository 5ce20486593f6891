"""Bounded DNS lookups: a few names, each in its own daemon thread, none waited for past a deadline.

`getaddrinfo` has no timeout of its own; a lookup that hangs is abandoned (its daemon thread ends
with the process) and reported as timed out. The resolver itself comes from the context
(`Environment.resolver`), so tests answer from a table and never send a query.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable

Resolve = Callable[[str], list[str]]
MAX_NAMES = 32  # lookups per run


def system_resolve(name: str) -> list[str]:
    """The addresses the system resolver gives for `name` (TCP, any family), in its order."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_all(names: Iterable[str], resolve: Resolve, deadline: float) -> dict[str, list[str] | str]:
    """name → its addresses, or why there are none ("timed out", the resolver's error)."""
    wanted = list(dict.fromkeys(names))[:MAX_NAMES]
    results: dict[str, list[str] | str] = {}
    lock = threading.Lock()

    def lookup(name: str) -> None:
        try:
            found: list[str] | str = resolve(name)
        except (OSError, UnicodeError) as exc:
            found = f"{type(exc).__name__}: {exc}"
        with lock:
            results[name] = found

    threads = [threading.Thread(target=lookup, args=(n,), daemon=True, name="egress-doctor-dns") for n in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return {n: results.get(n, "timed out") for n in wanted}
