"""The app's environment for `analyze`: its workload's container env from the files, then
`--env-file`, then `--env` (later wins); the credential source and account it implies; the
networking.istio.io version the files are written in. Secret values are registered with the
run's redactor as soon as they are read."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egress_doctor.mirror import register_secrets
from egress_doctor.redact import Redactor
from egress_doctor.sources.workloads import container_environment, parse_env_lines, ref

ENV_FILE_LIMIT = 1 << 20  # bytes: an env file is small


@dataclass
class AppEnvironment:
    environ: dict[str, str] | None = None  # None: no environment given (an isolated default SDK)
    notes: list[str] = field(default_factory=list)


def _workload(args: argparse.Namespace, workloads: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if args.workload:
        kind, _, name = args.workload.rpartition("/")
        found = [w for w in workloads if (w.get("metadata") or {}).get("name") == name
                 and (not kind or str(w.get("kind", "")).lower() == kind.lower())]
        if not found:
            raise ValueError(f"--workload {args.workload}: no such Pod, Deployment, … in the files")
        return found[0]
    return workloads[0] if len(workloads) == 1 else None


def _env_file(path: str) -> dict[str, str]:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--env-file {path}: not a regular file")
    with file.open("rb") as handle:
        data = handle.read(ENV_FILE_LIMIT + 1)
    if len(data) > ENV_FILE_LIMIT:
        raise ValueError(f"--env-file {path}: larger than {ENV_FILE_LIMIT} bytes")
    return parse_env_lines(data.decode("utf-8", "replace").splitlines(), f"--env-file {path}")


def app_environment(args: argparse.Namespace, read: Any, redactor: Redactor) -> AppEnvironment:
    out = AppEnvironment()
    environ: dict[str, str] = {}
    given = False
    workload = _workload(args, list(read.workloads))
    if workload is not None:
        env, notes = container_environment(workload, args.container)
        environ.update(env)
        out.notes += notes
        out.notes.append(f"analyze: the app's environment from {ref(workload)}")
        given = True
    elif read.workloads:
        names = ", ".join(ref(w) for w in read.workloads[:5])
        out.notes.append(f"analyze: {len(read.workloads)} workloads in the files ({names}); --workload takes the "
                         "app's environment from one")
    for path in args.env_file:
        environ.update(_env_file(path))
        given = True
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env: {item!r} is not NAME=VALUE")
        environ[name] = value
        given = True
    register_secrets(redactor, environ)
    if given:
        out.environ = environ
        names = sorted(n for n in environ if n.startswith("AWS_"))
        out.notes.append("analyze: botocore read the app's " + (", ".join(names) if names else "(no AWS_*) variables"))
    return out


def credentials_of(args: argparse.Namespace, environ: Mapping[str, str] | None) -> tuple[str, str | None]:
    """(credential source, account): the flags, else what the app's environment implies (botocore's
    chain, as for `blocked`'s predictions); IRSA, EKS's usual, when it names no credentials (a
    manifest in git does not hold what the IRSA webhook injects at admission)."""
    from egress_doctor.aws.pod_env import account_of, credential_source

    env = environ or {}
    credentials = args.credentials or credential_source(env) or "irsa"
    account = args.account or account_of(env, credentials) or account_of(env, "irsa")
    return credentials, account


def istio_api_of(read: Any) -> str:
    """The networking.istio.io version most of the files use; v1 when they hold none."""
    versions = Counter(o.meta.api_version.rpartition("/")[2] for o in read.objects
                       if o.meta.api_version.startswith("networking.istio.io/"))
    return versions.most_common(1)[0][0] if versions else "v1"
