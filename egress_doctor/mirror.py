"""Probe as the app would (`check --mirror`): borrow the AWS environment of the app's process.

An ephemeral container (`kubectl debug --target=<app>`) gets neither the app's environment nor
its projected service-account token, so the SDK there would take another credential path than
the app (usually IMDS instead of IRSA or Pod Identity). `--target` shares the target's process
namespace, so the app's process is visible in /proc; mirroring reads its environment and makes
it the run's environment.

What is read from `/proc/<pid>/environ`: `AWS_*` variables only, plus HTTP(S)_PROXY and NO_PROXY
(both spellings), since those steer IMDS. File paths in `AWS_WEB_IDENTITY_TOKEN_FILE`,
`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, `AWS_CA_BUNDLE`, `AWS_CONFIG_FILE` and
`AWS_SHARED_CREDENTIALS_FILE` name files in the app's filesystem: when the file seen at that
path here is not the app's, the path is rewritten to `/proc/<pid>/root/<path>`. When the app does
not set the last two, they are pointed at the app's `$HOME/.aws/...`, so that this container's
own `~/.aws` files cannot leak into the run.

**os.environ.** botocore reads `os.environ` itself, so for the duration of the run the tool's own
process environment is changed: every AWS_* and proxy variable removed, the app's set; the exact
previous values are restored afterwards (`applied`). Nothing else in the process may rely on
os.environ meanwhile; `check` runs one probe run per process.

**Secrets.** Every secret value read (secret keys, session and authorization tokens, token file
contents, proxy passwords) is registered with the run's redactor as soon as it is read, before
anything is printed. Warnings name variables and paths, never values.

Which process (`--mirror`, the default inside a pod when another container's processes are
visible): the processes of other containers (another mount namespace) are grouped by container;
containers holding only shells, init wrappers, pause or the sidecar (pilot-agent, envoy) are not
apps. With exactly one app container, its lowest PID whose environment has AWS_* variables, else
its lowest PID that is an app; never egress-doctor itself nor its ancestors. With several, nothing
is guessed: they are named and `--mirror-pid` chooses (automatic mode warns and probes as this
container; `--mirror` is a usage error).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from egress_doctor.context import Environment
from egress_doctor.procfs import ProcessView, ProcFs, app_containers, choose_app_process
from egress_doctor.redact import Redactor
from egress_doctor.validate import UsageError

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
# Variables holding a path to a file in the app's filesystem.
FILE_VARS = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CA_BUNDLE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
SECRET_FILE_VARS = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
# Where botocore looks when AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE are not set.
HOME_FILES = (("AWS_CONFIG_FILE", ".aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"))
# Variables that select a credential source: without any, a container probes as whoever it is.
CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_PROFILE",
)
IN_A_POD = "KUBERNETES_SERVICE_HOST"  # the kubelet sets it in every container, ephemeral ones too


def is_mirrored_name(name: str) -> bool:
    """A variable that comes from the app, never from this container, while mirroring."""
    return name.startswith("AWS_") or name in PROXY_VARS


def add_mirror_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kubectl debug (see docs/kubectl-debug.md)")
    group.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="probe with the AWS environment of the app's process (read from /proc; its token files "
        "through /proc/PID/root). Default: on inside a pod when another container's processes are "
        "visible (kubectl debug --target=APP)",
    )
    group.add_argument("--mirror-pid", type=int, metavar="PID", help="mirror this process (implies --mirror)")


# -- what the run sees ----------------------------------------------------------------------------


@dataclass
class Mirror:
    """The app's AWS environment, ready for a run: paths rewritten, secrets registered."""

    pid: int
    command: str
    variables: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_mirror(proc: ProcFs, view: ProcessView, redactor: Redactor) -> Mirror:
    """Take the app's AWS_* and proxy variables from `view` (whose environ was read)."""
    environ = view.environ or {}
    variables = {k: v for k, v in environ.items() if is_mirrored_name(k)}
    register_secrets(redactor, variables)
    mirror = Mirror(pid=view.pid, command=view.command, variables=variables)
    home = environ.get("HOME")
    for name, relative in HOME_FILES:
        if name not in variables and home:
            variables[name] = os.path.join(home, relative)
    same_root = proc.same_root(view.pid)
    for name in FILE_VARS:
        if variables.get(name):
            variables[name] = _app_path(proc, view.pid, name, variables[name], same_root, mirror.warnings)
    for name in SECRET_FILE_VARS:
        if variables.get(name):
            _register_file(redactor, variables[name])
    mirror.warnings.insert(0, _mirrored_line(mirror, environ))
    return mirror


def register_secrets(redactor: Redactor, variables: Mapping[str, str]) -> None:
    """Every secret value among the variables, and proxy passwords, before anything is printed."""
    for name in SECRET_VARS:
        redactor.add_secret(variables.get(name))
    for name in PROXY_VARS:
        with suppress(ValueError):
            redactor.add_secret(urlsplit(variables.get(name, "")).password)


def _register_file(redactor: Redactor, path: str) -> None:
    try:
        with open(path, "rb") as handle:  # bytes: a token that is not UTF-8 is still a secret
            redactor.add_secret(handle.read())
    except OSError:
        pass  # botocore will fail the same way; the check says so


def _app_path(proc: ProcFs, pid: int, name: str, path: str, same_root: bool, warnings: list[str]) -> str:
    """`path` as the app sees it, made readable from here: as is, or through /proc/<pid>/root.

    The app's file wins over a different file at the same path in this container. When the
    app's file cannot be reached, a file at the path here is used if there is one (and said).
    """
    if same_root:
        return path
    via = proc.path(pid, "root" if os.path.isabs(path) else "cwd", path.lstrip("/"))
    here = _exists(path)
    if _exists(via):
        return path if here and _same_file(path, via) else via
    if name not in dict(HOME_FILES):  # a missing ~/.aws file is normal; a named file is not
        fallback = f"using {path} as this container sees it" if here else "the run fails to read it, as the app would"
        warnings.append(f"--mirror: the app's {name} ({path}) is not readable through {via}: {fallback}")
    return path if here else via


def _exists(path: str) -> bool:
    try:
        return os.path.exists(path)
    except OSError:
        return False


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _mirrored_line(mirror: Mirror, environ: Mapping[str, str]) -> str:
    names = sorted(k for k in environ if is_mirrored_name(k))
    used = ", ".join(names) if names else "no AWS_* variables (its SDK falls back to config files and IMDS)"
    return (
        f"--mirror: probing as process {mirror.pid} ({mirror.command}), the app: this run used its "
        f"environment, not this container's: {used}"
    )


def environment_with(base: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    """`base` with every AWS_* and proxy variable replaced by `variables`."""
    kept = {k: v for k, v in base.items() if not is_mirrored_name(k)}
    return {**kept, **variables}


@contextmanager
def applied(variables: Mapping[str, str]) -> Iterator[None]:
    """For the duration, os.environ's AWS_* and proxy variables are exactly `variables` (botocore
    reads os.environ itself); everything else is left alone. The previous values come back after."""
    saved = {k: v for k, v in os.environ.items() if is_mirrored_name(k)}
    _set_mirrored_names(variables)
    try:
        yield
    finally:
        _set_mirrored_names(saved)


def _set_mirrored_names(target: Mapping[str, str]) -> None:
    for name in [n for n in os.environ if is_mirrored_name(n) and n not in target]:
        del os.environ[name]
    for name, value in target.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


# -- the decision -----------------------------------------------------------------------------------


@dataclass
class MirrorChoice:
    """Which process to mirror (None: the run keeps this container's environment) and what to say."""

    view: ProcessView | None = None
    warnings: list[str] = field(default_factory=list)


def choose(mode: bool | None, pid: int | None, proc: ProcFs, own_environ: Mapping[str, str]) -> MirrorChoice:
    """`mode` is --mirror (True), --no-mirror (False) or neither (None: automatic)."""
    if pid is not None:
        return _given(proc, pid)
    if mode is False or (mode is None and IN_A_POD not in own_environ):
        return MirrorChoice()
    others = proc.other_containers()
    if others:
        containers = app_containers(proc, others)
        if len(containers) > 1:
            return _ambiguous(mode, containers)
        candidates = [view.pid for view in containers[0]] if containers else []
    else:
        candidates = proc.pids() if mode else []
    view = choose_app_process(proc, candidates)
    if view is None:
        return MirrorChoice(warnings=_nothing_visible(mode, own_environ))
    if view.environ is None:
        return MirrorChoice(warnings=[_unreadable(view)])
    return MirrorChoice(view=view)


def _given(proc: ProcFs, pid: int) -> MirrorChoice:
    if pid in proc.own_tree():
        return MirrorChoice(warnings=[f"--mirror-pid {pid} is egress-doctor itself or its parent: not mirrored"])
    view = proc.view(pid)
    if view.environ is None and not os.path.isdir(proc.path(pid, "")):
        # Asked for by number, and not there: a typo or the wrong pod, not something to probe around.
        raise UsageError(f"--mirror-pid {pid}: no such process ({view.error})")
    if view.environ is None:
        return MirrorChoice(warnings=[_unreadable(view)])
    return MirrorChoice(view=view)


def _ambiguous(mode: bool | None, containers: list[list[ProcessView]]) -> MirrorChoice:
    """Several containers hold an app: guessing would probe as the wrong one. --mirror asked for
    it, so that is a usage error; automatic mirroring warns and keeps this container's environment."""
    named = "; ".join(", ".join(f"process {v.pid} ({v.command})" for v in group[:3]) for group in containers)
    text = f"{len(containers)} app containers are visible ({named}): choose one with --mirror-pid PID"
    if mode:
        raise UsageError(f"--mirror: {text}")
    return MirrorChoice(warnings=[f"--mirror: {text}; probing with this container's own environment"])


def _unreadable(view: ProcessView) -> str:
    command = f" ({view.command})" if view.command != "?" else ""
    return (
        f"--mirror: cannot read the environment of process {view.pid}{command}: {view.error}; "
        "probing with this container's own environment"
    )


def _nothing_visible(mode: bool | None, own_environ: Mapping[str, str]) -> list[str]:
    if mode is None and any(own_environ.get(name) for name in CREDENTIAL_VARS):
        return []  # this container has credentials of its own: probing as it is the likely intent
    return [
        "--mirror: no app process is visible (kubectl debug needs --target=<app container>); probing "
        "with this container's own environment, so the SDK may take another credential path than the app"
    ]


@contextmanager
def mirrored(
    mode: bool | None, pid: int | None, environ: Mapping[str, str], redactor: Redactor, proc: ProcFs | None = None
) -> Iterator[tuple[Mapping[str, str], list[str]]]:
    """The environment the run must see, and the warnings for the report.

    When a process is mirrored, os.environ is that environment until the block ends.
    """
    proc = proc or ProcFs()
    choice = choose(mode, pid, proc, environ)
    if choice.view is None:
        yield environ, choice.warnings
        return
    mirror = read_mirror(proc, choice.view, redactor)
    with applied(mirror.variables):
        yield environment_with(environ, mirror.variables), choice.warnings + mirror.warnings


@contextmanager
def as_the_app(
    args: argparse.Namespace, env: Environment, redactor: Redactor
) -> Iterator[tuple[Environment, list[str]]]:
    """`mirrored` for `check`'s flags: the Environment the run must see, and the report's warnings."""
    mode, pid = getattr(args, "mirror", None), getattr(args, "mirror_pid", None)
    if mode is False and pid is not None:
        raise UsageError("--no-mirror and --mirror-pid contradict each other")
    if pid is not None and pid <= 0:
        raise UsageError(f"--mirror-pid: {pid} is not a process id")
    with mirrored(mode, pid, env.environ, redactor, ProcFs(env.proc_root)) as (environ, warnings):
        yield (env if environ is env.environ else dataclasses.replace(env, environ=environ)), warnings
