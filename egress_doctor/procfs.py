"""The processes of other containers, as /proc shows them (for `check --mirror`).

With `kubectl debug --target=<app>` the debug container shares the app container's process
namespace: the app's processes are listed in /proc, in another mount namespace than ours.
Reading a process's environ, root or ns links needs ptrace-read access to it: the same user
(with no more capabilities than ours), or CAP_SYS_PTRACE.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

# Commands that are not the app: shells, init wrappers, the pod's pause container, and the
# sidecar (visible too when the pod sets shareProcessNamespace).
NOT_THE_APP = frozenset(
    {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "fish", "busybox", "pause", "tini", "dumb-init", "catatonit"}
    | {"pilot-agent", "envoy"}
)
# Stands for a mount namespace that exists but may not be read (another user's process).
UNREADABLE = "unreadable"


@dataclass
class ProcessView:
    """One process as /proc shows it; `environ` is None when it could not be read (`error` says why)."""

    pid: int
    command: str
    argv: list[str]
    environ: dict[str, str] | None = None
    error: str | None = None

    @property
    def has_aws(self) -> bool:
        return bool(self.environ) and any(name.startswith("AWS_") for name in self.environ or {})

    @property
    def is_app_like(self) -> bool:
        """Not a kernel thread, a shell, an init wrapper or pause."""
        if not self.argv:
            return False
        return os.path.basename(self.argv[0]) not in NOT_THE_APP and self.command not in NOT_THE_APP


class ProcFs:
    """Read access to /proc (`root` and `self_pid` are injectable for tests)."""

    def __init__(self, root: str = "/proc", self_pid: int | None = None) -> None:
        self.root = root
        self.self_pid = os.getpid() if self_pid is None else self_pid

    def path(self, pid: int | str, *parts: str) -> str:
        return os.path.join(self.root, str(pid), *parts)

    def pids(self) -> list[int]:
        try:
            return sorted(int(name) for name in os.listdir(self.root) if name.isdigit())
        except OSError:
            return []

    def environ(self, pid: int) -> dict[str, str]:
        """The process's environment at exec time. Raises OSError (PermissionError, FileNotFoundError)."""
        with open(self.path(pid, "environ"), "rb") as handle:
            raw = handle.read()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape") for k, v in pairs}

    def argv(self, pid: int) -> list[str]:
        try:
            with open(self.path(pid, "cmdline"), "rb") as handle:
                raw = handle.read()
        except OSError:
            return []
        return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]

    def command(self, pid: int) -> str:
        try:
            with open(self.path(pid, "comm"), encoding="utf-8", errors="replace") as handle:
                return handle.read().strip()
        except OSError:
            return "?"

    def parent(self, pid: int) -> int | None:
        try:
            with open(self.path(pid, "stat"), encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            return None
        fields = stat[stat.rfind(")") + 2 :].split()  # the command may contain spaces and ')'
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None

    def mount_namespace(self, pid: int | str) -> str | None:
        """The namespace id (`mnt:[4026531840]`); UNREADABLE for another user's process; None when gone."""
        try:
            return os.readlink(self.path(pid, "ns", "mnt"))
        except PermissionError:
            return UNREADABLE
        except OSError:
            return None

    def own_tree(self) -> set[int]:
        """egress-doctor's process and its ancestors (the debug container's shell...)."""
        tree, pid = set(), self.self_pid
        while pid and pid not in tree:
            tree.add(pid)
            pid = self.parent(pid) or 0
        return tree

    def view(self, pid: int) -> ProcessView:
        view = ProcessView(pid=pid, command=self.command(pid), argv=self.argv(pid))
        try:
            view.environ = self.environ(pid)
        except OSError as exc:
            view.error = describe_read_error(exc)
        return view

    def other_containers(self) -> list[int]:
        """Visible processes in another mount namespace than ours: other containers of the pod.

        A process whose namespace may not be read belongs to another user, so not to egress-doctor:
        it is listed, and choosing it later says what could not be read.
        """
        ours = self.mount_namespace(self.self_pid)
        if ours in (None, UNREADABLE):
            return []
        own = self.own_tree()
        found = []
        for pid in self.pids():
            theirs = self.mount_namespace(pid)
            if pid not in own and theirs is not None and theirs != ours:
                found.append(pid)
        return found

    def containers(self, pids: Iterable[int]) -> list[list[int]]:
        """`pids` grouped by container (mount namespace), in order of each group's lowest PID.

        Processes whose namespace may not be read form one group: nothing tells them apart.
        """
        groups: dict[str, list[int]] = {}
        for pid in sorted(set(pids)):
            namespace = self.mount_namespace(pid)
            if namespace is not None:
                groups.setdefault(namespace, []).append(pid)
        return list(groups.values())

    def same_root(self, pid: int) -> bool:
        """Whether the process sees the same filesystem root as we do (then no path needs rewriting)."""
        try:
            return os.path.samefile(self.path(pid, "root"), "/")
        except OSError:
            return False


def describe_read_error(exc: OSError) -> str:
    """Why a process's environment could not be read, and what to do about it."""
    if isinstance(exc, PermissionError):
        return (
            "permission denied: run the debug container as the app's uid and gid (kubectl debug "
            "--custom, see docs/kubectl-debug.md), or as root with CAP_SYS_PTRACE"
        )
    if isinstance(exc, FileNotFoundError | ProcessLookupError):
        return (
            "no such process here: the app's processes are visible only with a shared process "
            "namespace (kubectl debug --target=<app container>)"
        )
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def app_containers(proc: ProcFs, candidates: Iterable[int]) -> list[list[ProcessView]]:
    """The containers among `candidates` that hold an app: a process with AWS_* variables or one
    that is not a shell, an init wrapper, pause or the sidecar (pilot-agent, envoy). Each group
    keeps only those processes, lowest PID first; egress-doctor and its ancestors are left out."""
    own = proc.own_tree()
    found = []
    for group in proc.containers(pid for pid in candidates if pid not in own):
        views = [view for view in (proc.view(pid) for pid in group) if view.has_aws or view.is_app_like]
        if views:
            found.append(views)
    return found


def choose_app_process(proc: ProcFs, candidates: Iterable[int]) -> ProcessView | None:
    """The app among `candidates`: the lowest PID with AWS_* variables, else the lowest PID that
    is not a shell, an init wrapper or pause. egress-doctor and its ancestors are never chosen."""
    own = proc.own_tree()
    views = [proc.view(pid) for pid in sorted(set(candidates)) if pid not in own]
    with_aws = [v for v in views if v.has_aws]
    if with_aws:
        return with_aws[0]
    return next((v for v in views if v.is_app_like), None)
