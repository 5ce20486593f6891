"""`egress-doctor demo`: the whole story on a laptop — a broken mesh, the diagnosis, the fix, green.

A pod with IRSA credentials behind a real Envoy configured like an Istio sidecar under
REGISTRY_ONLY, with the ServiceEntries a 2018 blog post gave for AWS. egress-doctor runs inside
it (a subprocess with the pod's environment, exactly what a user runs), the fix it prints is
applied to the lab as `kubectl apply` would apply it, and the check runs again.
No cluster, no root, no packet off loopback; everything it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from egress_doctor.context import Environment
from egress_doctor.model import ExitStatus

SCENARIO = "blog-2018"
NAMESPACE = "payments"
ACCOUNT = "111122223333"
TABLE = "orders"
CHECK_DEADLINE_SECONDS = 20.0


def add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="the main job on an embedded lab: real Envoy, fake AWS, no cluster, no root",
        description="Diagnose a pod behind a lab Istio sidecar, apply the printed fix, check again.",
    )
    demo.add_argument("--no-color", action="store_true", help="no ANSI colours")
    demo.set_defaults(handler=run_demo)


def scenario_path(name: str = SCENARIO) -> str:
    from importlib import resources

    return str(resources.files("egress_doctor.lab") / "scenarios" / name / "istio.yaml")


def run_demo(args: argparse.Namespace, env: Environment) -> int:
    from egress_doctor.istio.objects import Mode
    from egress_doctor.lab.runner import Lab, LabConfig
    from egress_doctor.redact import Redactor

    color = not args.no_color and env.stdout_is_tty() and "NO_COLOR" not in env.environ
    out = _Printer(env, Redactor(), color=color)
    started = time.monotonic()
    config = LabConfig(
        files=(scenario_path(),),
        mode=Mode.REGISTRY_ONLY,
        namespace=NAMESPACE,
        account_id=ACCOUNT,
        credentials="irsa",
        tables=(TABLE,),
    )
    out.step(1, "A pod behind an Istio sidecar, with the ServiceEntries of a 2018 blog post")
    out.say(
        f"Mesh: REGISTRY_ONLY. Pod: namespace {NAMESPACE}, IRSA role arn:aws:iam::{ACCOUNT}:role/…, "
        f"DynamoDB table {TABLE!r}.\nThe blog's entries: sts.amazonaws.com:443, "
        "dynamodb.us-east-1.amazonaws.com:443, and the metadata IP as a host."
    )
    with Lab(config) as lab:
        out.know_secrets(lab.env)
        for ref, messages in (lab.scope.refused.items() if lab.scope else []):
            detail = "; ".join(m.message for m in messages)
            out.say(f"kubectl apply: {ref} refused by the Istio webhook: {detail}", dim=True)
        out.say(f"Lab up in {lab.bringup_seconds:.2f} s: Envoy admin at {lab.admin_url}.", dim=True)
        # The lab is the whole world: never a real cluster, never a real app's environment.
        check = [
            *(sys.executable, "-m", "egress_doctor.cli", "check", "--table", TABLE, "--no-color"),
            *("--no-cluster", "--no-mirror"),
        ]

        out.step(2, f"Inside the pod: egress-doctor check --table {TABLE}")
        before = _run(check, lab.command_env())
        out.block(before.stdout)
        fix = _run([*check, "--fix-only"], lab.command_env()).stdout
        objects = _manifests(fix)
        if not objects:
            out.say("egress-doctor printed no fix: nothing to apply.")
            return ExitStatus.INTERNAL

        out.step(3, "Apply the fix (in a cluster: egress-doctor check --fix-only | kubectl apply -f -)")
        lab.apply(objects)
        names = ", ".join(f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects)
        out.say(f"applied: {names}", dim=True)

        out.step(4, f"Again: egress-doctor check --table {TABLE}")
        after = _run(check, lab.command_env())
        out.block(after.stdout)
    elapsed = time.monotonic() - started
    verdict = "every call passes" if after.returncode == 0 else "some calls still fail"
    out.say(f"Before the fix: exit {before.returncode}. After: exit {after.returncode} ({verdict}). "
            f"Demo took {elapsed:.1f} s; the lab is down.")
    return ExitStatus.OK if before.returncode == 1 and after.returncode == 0 else ExitStatus.CHECK_FAILED


def _run(argv: Sequence[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The check as a user runs it; a check that outlives its bound is a failed step (exit 1)."""
    try:
        return subprocess.run(
            list(argv), env=environ, capture_output=True, text=True, timeout=CHECK_DEADLINE_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        message = f"egress-doctor check did not finish within {CHECK_DEADLINE_SECONDS:.0f} s\n"
        return subprocess.CompletedProcess(list(argv), int(ExitStatus.CHECK_FAILED), "", message)


def _manifests(text: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


class _Printer:
    """Everything the demo shows goes through the redactor, the lab's own fake secrets included."""

    def __init__(self, env: Environment, redactor: Any, *, color: bool) -> None:
        self._env = env
        self._redactor = redactor
        self._color = color

    def know_secrets(self, environ: dict[str, str]) -> None:
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if environ.get(name):
                self._redactor.add_secret(environ[name])

    def _write(self, text: str) -> None:
        self._env.stdout.write(self._redactor.redact(text))

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def step(self, number: int, title: str) -> None:
        self._write("\n" + self._paint(f"── Step {number}/4: {title}", "1;36") + "\n\n")

    def say(self, text: str, *, dim: bool = False) -> None:
        self._write((self._paint(text, "2") if dim else text) + "\n")

    def block(self, text: str) -> None:
        self._write("".join(f"  {line}\n" for line in text.rstrip("\n").splitlines()))
