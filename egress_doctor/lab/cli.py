"""`egress-doctor lab up|run|config`: the lab from the command line.

The lead's cli.py calls `add_lab_parser(subparsers)`; each subcommand sets `handler(args, env)`.
Building the parser imports nothing of the lab itself (every `check` builds it): the runner, the
Istio model and the fakes are imported by the handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egress_doctor.probes.registry import OPTIONS
from egress_doctor.redact import Redactor, redact_patterns

if TYPE_CHECKING:
    from egress_doctor.lab.runner import Lab, LabConfig

# The choices of --mode and --credentials: istio.objects.Mode and lab.runner.CREDENTIAL_MODES
# (tests/test_lab_runner_cli.py keeps them equal; spelled out so that the parser stays light).
MODES = ("REGISTRY_ONLY", "ALLOW_ANY")
CREDENTIAL_MODES = ("env", "irsa", "imds", "pod-identity")

LAB_EPILOG = """examples:
  egress-doctor lab up -f egress_doctor/lab/scenarios/blog-2018 --mode REGISTRY_ONLY
  egress-doctor lab run -f mesh.yaml --credentials irsa --table orders -- egress-doctor check --table orders

What the command gets: exactly the AWS environment of the chosen credential mode, AWS_CA_BUNDLE (the
lab CA), AWS_EC2_METADATA_SERVICE_ENDPOINT (IMDS through the sidecar stand-in) and
EGRESS_DOCTOR_CONNECT_TO, which egress-doctor applies like --connect-to. Other programs resolve AWS
names themselves: only egress-doctor (or a client that honours the rules) is steered into the lab.
"""


def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    lab = subparsers.add_parser(
        "lab", help="a real Envoy configured like an Istio sidecar, in front of a fake AWS",
        description="Run a real Envoy configured the way istiod configures a sidecar for the given "
        "Istio objects, in front of a fake AWS (moto over TLS), IMDS and EKS Pod Identity agent, "
        "all on 127.0.0.0/8.", epilog=LAB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    up = commands.add_parser("up", help="print the environment and connect-to rules, stay up until Ctrl-C")
    _options(up)
    up.set_defaults(handler=handle_up)
    run = commands.add_parser("run", help="bring the lab up, run COMMAND in it, exit with its code")
    _options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    run.set_defaults(handler=handle_run)
    config = commands.add_parser("config", help="print the Envoy config the lab would run (JSON)")
    _options(config)
    config.set_defaults(handler=handle_config)
    return lab


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", default=[], metavar="PATH",
                        help="Istio YAML (file or directory; repeatable)")
    parser.add_argument("--mode", choices=MODES, default="REGISTRY_ONLY",
                        help="meshConfig.outboundTrafficPolicy (default REGISTRY_ONLY; Istio's own default "
                        "is ALLOW_ANY)")
    parser.add_argument("--namespace", default="default",
                        help="the pod's namespace; objects without metadata.namespace land there")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account-id", help="the AWS account (AWS_ACCOUNT_ID in env mode, role ARN, agents)")
    parser.add_argument("--credentials", choices=CREDENTIAL_MODES, default="env",
                        help="which AWS environment the pod has (default env: static keys)")
    parser.add_argument("--table", action="append", default=[], metavar="NAME",
                        help="a DynamoDB table that exists (repeatable)")
    parser.add_argument("--sidecar-not-ready", action="store_true",
                        help="no Envoy at all: every captured port refuses connections")
    for option in OPTIONS:
        if option.kind != "table":  # --table above: tables are created by name in the lab's region
            parser.add_argument(option.flag, action="append", default=[], metavar=option.metavar,
                                dest=option.flag.lstrip("-").replace("-", "_"),
                                help=f"{option.help.split(':')[0]} that exists (repeatable; in the ARN's region, "
                                "else --region)")
    parser.add_argument("--egress-gateway", action="store_true",
                        help="run a second Envoy as istio-egressgateway (namespace istio-system, labels "
                        "istio: egressgateway), configured from the Gateways and VirtualServices bound to it")
    parser.add_argument("--enforce", action="store_true",
                        help="only the egress gateway may leave: the sidecar's own connections to AWS are refused")
    parser.add_argument("--gateway-refused", action="store_true",
                        help="the egress gateway's own connections to AWS are refused (its egress is blocked)")


def config_from_args(args: argparse.Namespace) -> LabConfig:
    from egress_doctor.aws.resources import parse
    from egress_doctor.istio.objects import Mode
    from egress_doctor.lab.runner import LabConfig

    resources = tuple(parse(o.kind, value) for o in OPTIONS if o.kind != "table"
                      for value in getattr(args, o.flag.lstrip("-").replace("-", "_"), None) or ())
    return LabConfig(
        files=tuple(args.filename), mode=Mode(args.mode), namespace=args.namespace, region=args.region,
        account_id=args.account_id, credentials=args.credentials, tables=tuple(args.table),
        resources=resources, sidecar_ready=not args.sidecar_not_ready, egress_gateway=args.egress_gateway,
        enforce=args.enforce, gateway_refused=args.gateway_refused,
    )


def _usage_error(message: str) -> Exception:
    from egress_doctor.validate import UsageError

    return UsageError(message)


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM becomes SystemExit(143) so every `finally` runs and the lab tears down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _close(lab: Lab) -> None:
    """Tear down with SIGINT/SIGTERM held off: a second Ctrl-C must not abandon Envoy halfway."""
    if threading.current_thread() is not threading.main_thread():
        lab.close()
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        lab.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(args: argparse.Namespace, env: Any) -> Lab:
    from egress_doctor.istio.objects import IstioParseError
    from egress_doctor.lab.runner import Lab

    try:
        lab = Lab(config_from_args(args)).start()
    except (IstioParseError, OSError) as exc:
        raise _usage_error(str(exc)) from exc
    _report_refused(lab, env)
    return lab


def _report_refused(lab: Lab, env: Any) -> None:
    """What `kubectl apply` would have printed for the objects the webhook refuses."""
    if lab.scope is None:
        return
    for ref, messages in lab.scope.refused.items():
        detail = "; ".join(m.message for m in messages)
        env.stderr.write(redact_patterns(f'Error from server: {ref}: admission webhook "validation.istio.io" '
                                         f"denied the request: configuration is invalid: {detail} (not applied)\n"))


# Never printed, even for the lab's fake keys: they go to a 0600 file the printed lines source.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def describe(lab: Lab) -> str:
    """Shell lines: the environment to export and the equivalent --connect-to flags."""
    cfg = lab.config
    state = f"Envoy admin {lab.admin_url}" if lab.admin_url else "no sidecar (--sidecar-not-ready)"
    if lab.gateway is not None:
        state += f"; egress gateway admin {lab.gateway.admin_url}" + (", enforced" if cfg.enforce else "")
    lines = [f"# egress-doctor lab: Istio {cfg.istio_version} sidecar, {cfg.mode}, "
             f"namespace {cfg.namespace}; "
             f"{state}; up in {lab.bringup_seconds:.2f}s"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(lab.env.items()) if k not in SECRET_ENV]
    secrets = _write_secrets(lab)
    if secrets is not None:
        lines.append(f". {shlex.quote(str(secrets))}  # {', '.join(SECRET_ENV)} (mode 0600, not printed)")
    lines.append("# the same rules as flags: " + " ".join(f"--connect-to {r}" for r in lab.connect_to))
    if lab.resources:
        lines += [f"# note: {n}" for n in lab.resources.notes]
    return "\n".join(lines) + "\n"


def _write_secrets(lab: Lab) -> Path | None:
    values = {k: lab.env[k] for k in SECRET_ENV if lab.env.get(k)}
    if not values or lab.directory is None:
        return None
    path = Path(lab.directory) / "credentials.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
    return path


def _redactor_for(lab: Lab) -> Redactor:
    """What the lab's commands print goes through the redactor, which knows the lab's fake keys."""
    return Redactor(lab.env.get(k) for k in SECRET_ENV)


def handle_up(args: argparse.Namespace, env: Any) -> int:
    with _terminate_as_exit():
        lab = _start(args, env)
        try:
            # Ctrl-C is the way to stop `up`: it may arrive as soon as the exports are printed.
            with contextlib.suppress(KeyboardInterrupt):
                env.stdout.write(_redactor_for(lab).redact(describe(lab)))
                env.stdout.write("# up: Ctrl-C (or SIGTERM) stops it and removes everything\n")
                env.stdout.flush()
                threading.Event().wait()
        finally:
            _close(lab)
    return 0


def handle_run(args: argparse.Namespace, env: Any) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _usage_error("lab run needs a command after --")
    with _terminate_as_exit():
        lab = _start(args, env)
        try:
            return lab.run(argv, base_env=dict(env.environ))
        except (FileNotFoundError, PermissionError) as exc:  # as a shell would: 127 / 126
            env.stderr.write(redact_patterns(f"egress-doctor lab run: {argv[0]}: {exc.strerror}\n"))
            return 127 if isinstance(exc, FileNotFoundError) else 126
        finally:
            _close(lab)


def handle_config(args: argparse.Namespace, env: Any) -> int:
    from egress_doctor.lab.envoy import static_bootstrap

    args.sidecar_not_ready = False
    with _terminate_as_exit():
        lab = _start(args, env)
        try:
            assert lab.resources is not None
            bootstrap = json.dumps(static_bootstrap(lab.resources), indent=2, sort_keys=True)
            env.stdout.write(redact_patterns(bootstrap + "\n"))
        finally:
            _close(lab)
    return 0
