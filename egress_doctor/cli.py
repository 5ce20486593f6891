"""Command line: `egress-doctor check` (the default), `lab`, `demo`.

Importing this module must stay cheap: `--help` never imports boto3; each command imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from egress_doctor import __version__, validate
from egress_doctor.context import Environment
from egress_doctor.model import ExitStatus
from egress_doctor.render.printable import visible
from egress_doctor.validate import UsageError

EXIT_CODES_HELP = """exit codes:
  0    every check passed (warnings allowed)
  1    a check failed: the diagnosis is in the output
  2    usage or configuration error: nothing was probed
  3    internal error in egress-doctor (run with -v for a redacted traceback)
  130  interrupted (Ctrl-C)
  what produces each: docs/exit-codes.md
"""

CHECK_EPILOG = (
    EXIT_CODES_HELP
    + """
environment:
  EGRESS_DOCTOR_CONNECT_TO  comma-separated --connect-to rules, applied after the flags
  EGRESS_DOCTOR_CONFIG      the footprint file when --config is not given
  AWS_*                     read exactly as the AWS SDK reads them (AWS_DEFAULT_REGION, AWS_CA_BUNDLE, ...)

examples:
  egress-doctor check --table orders
  egress-doctor check --table invoices --bucket invoice-archive --queue billing-events --secret billing/db
  egress-doctor check --config footprint.yaml
  egress-doctor check -o json | jq '.checks[] | select(.status=="fail")'
  egress-doctor check --connect-to sts.us-east-1.amazonaws.com:443:10.0.0.12:443
"""
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 itself; keep it to one line
        raise UsageError(message)


PRODUCT_COMMANDS = ("check", "serve", "analyze", "blocked", "demo")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; for one of the product's commands (`command`), that command's subparser alone:
    running it never imports the lab (the lab is for tests, the demo and benchmarks) nor the other
    commands' modules. Anything else (no command, `--help`, a typo) gets every subcommand."""
    parser = _Parser(
        prog="egress-doctor",
        description="Why can't this pod behind an Istio sidecar reach AWS? Probes the credential source, STS "
        "and every AWS service the app calls the way the app's SDK does, says where each call broke, and "
        "prints the Istio fix.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"egress-doctor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # One of the product's commands gets its own subparser only (serve shares check's options):
    # building the others imports their modules, ~10 ms a run that `check` does not need.
    only = command if command in PRODUCT_COMMANDS else None
    if only in (None, "check", "serve"):
        _add_check(commands)
    if only in (None, "serve"):
        _add_serve(commands)
    if only in (None, "analyze"):
        from egress_doctor.commands.analyze import add_analyze_parser

        add_analyze_parser(commands)
    if only in (None, "blocked"):
        from egress_doctor.commands.blocked import add_blocked_parser

        add_blocked_parser(commands)
    if command not in PRODUCT_COMMANDS:
        _add_lab(commands)
    if only in (None, "demo"):
        from egress_doctor.commands.demo import add_demo_parser

        add_demo_parser(commands)
    return parser


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="probe credentials, STS and the app's AWS services from this pod (the default command)",
        description="Probe the calls the app's AWS SDK would make, from this pod's network.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--region", help="AWS region (default: what the SDK resolves; AWS_REGION alone is ignored)")
    check.add_argument("--deadline", default="8", metavar="SECONDS", help="deadline for the whole run (default 8)")
    check.add_argument(
        "--connect-timeout", default="2", metavar="SECONDS", help="TCP connect timeout per call (default 2)"
    )
    check.add_argument("--read-timeout", default="3", metavar="SECONDS", help="read timeout per call (default 3)")
    check.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST1:PORT1:HOST2:PORT2",
        help="like curl: dial HOST2:PORT2 instead of HOST1:PORT1, keeping SNI and Host "
        "(repeatable; empty HOST1/PORT1 match any)",
    )
    check.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    check.add_argument(
        "--fix-only",
        action="store_true",
        help="print only the fix as multi-document YAML (for `| kubectl apply -f -`); the exit code still reports",
    )
    check.add_argument(
        "-n", "--namespace", help="namespace for the fix (default: POD_NAMESPACE, else the service-account namespace)"
    )
    check.add_argument(
        "--istio-api",
        choices=("v1", "v1beta1", "v1alpha3"),
        help="networking.istio.io version of the fix: v1 for Istio >= 1.22, v1beta1 for 1.5-1.21 "
        "(default: from the sidecar's ISTIO_VERSION, else v1)",
    )
    check.add_argument(
        "--wildcard",
        action="store_true",
        help="allow *.ddb.<region>.amazonaws.com and *.s3[.<region>].amazonaws.com (resolution NONE) instead "
        "of one account's DynamoDB host and each bucket's S3 host",
    )
    check.add_argument("--egress-via", metavar="NAMESPACE/GATEWAY|direct", type=validate.egress_via, default="",
                       help="where AWS hosts go out: through NAMESPACE/GATEWAY, or direct (never through "
                       "a gateway); default: like the hosts the mesh routes already (docs/egress-gateway.md)")
    check.add_argument(
        "--imds-fix",
        choices=("serviceentry", "annotation"),
        default="serviceentry",
        help="metadata endpoints: a ServiceEntry (default) or the excludeOutboundIPRanges pod annotation",
    )
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the evidence and the (redacted) boto3 debug transcript of each check",
    )
    check.add_argument("--no-color", action="store_true", help="no ANSI colours (also when NO_COLOR is set)")
    from egress_doctor.commands.footprint import add_footprint_arguments

    add_footprint_arguments(check)
    from egress_doctor.commands.mesh_view import add_envoy_admin_flags

    add_envoy_admin_flags(check)
    from egress_doctor.commands.cluster import add_cluster_flags

    add_cluster_flags(check)
    _add_job_flags(check)
    from egress_doctor.mirror import add_mirror_arguments

    add_mirror_arguments(check)


def _add_job_flags(check: argparse.ArgumentParser) -> None:
    from egress_doctor import sidecar_lifecycle as sidecar

    job = check.add_argument_group("one-off Jobs (see docs/job.md)")
    job.add_argument(
        "--wait-for-sidecar",
        metavar="DURATION",
        help=f"before probing, poll the sidecar's {sidecar.READY_PATH} until ready, for at most DURATION "
        "(60s, 2m, 1m30s; a bare number is seconds); when it never gets ready, probe anyway and say so",
    )
    job.add_argument(
        "--sidecar-status",
        default=sidecar.DEFAULT_STATUS_URL,
        metavar="URL",
        help=f"where the sidecar's readiness is served (default {sidecar.DEFAULT_STATUS_URL})",
    )
    job.add_argument(
        "--quit-sidecar",
        nargs="?",
        const=sidecar.DEFAULT_AGENT_URL,
        metavar="URL",
        help=f"when done (also after a failure), POST {sidecar.QUIT_PATH} to pilot-agent at URL "
        f"(default {sidecar.DEFAULT_AGENT_URL}) so that the Job's pod can complete",
    )
    job.add_argument(
        "--summary-to-stderr",
        action="store_true",
        help="also write a one-line human summary to stderr (for -o json in a Job's log)",
    )


def _add_serve(commands: Any) -> None:
    from egress_doctor.commands.serve import SERVE_EPILOG, add_serve_arguments, share_check_options

    serve = commands.add_parser(
        "serve",
        help="run the checks on an interval; serve /readyz, /livez and /metrics (staging readiness)",
        description="Run the checks of `check` on an interval and serve their last verdict over HTTP.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    share_check_options(commands.choices["check"], serve)
    add_serve_arguments(serve)


def _add_lab(commands: Any) -> None:
    try:
        from egress_doctor.lab.cli import add_lab_parser
    except ImportError:  # the lab is optional at run time
        return
    add_lab_parser(commands)


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "check")
    verbose = "-v" in args_list or "--verbose" in args_list
    from egress_doctor.redact import Redactor

    redactor = Redactor()
    try:
        args = build_parser(args_list[0]).parse_args(args_list)
        if args.command == "check":
            from egress_doctor.commands.check import run_check_command

            return int(run_check_command(args, env, redactor))
        if args.command == "serve":
            from egress_doctor.commands.serve import run_serve_command

            return int(run_serve_command(args, env, redactor))
        handler = getattr(args, "handler", None)
        if handler is None:
            raise UsageError("no command given (try egress-doctor --help)")
        return int(handler(args, env))
    except UsageError as exc:
        env.stderr.write(redactor.redact(f"egress-doctor: error: {visible(str(exc))}\n"))
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        env.stderr.write("egress-doctor: interrupted\n")
        return ExitStatus.INTERRUPTED
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except Exception as exc:
        if _is_configuration_error(exc):  # raised where plan_or_refuse could not see it (a probe thread)
            env.stderr.write(redactor.redact(f"egress-doctor: error: {type(exc).__name__}: {visible(str(exc))}\n"))
            return ExitStatus.USAGE
        env.stderr.write(redactor.redact(f"egress-doctor: internal error: {type(exc).__name__}: {visible(str(exc))}\n"))
        if verbose:
            import traceback

            env.stderr.write(redactor.redact(visible(traceback.format_exc(), newlines=True)))
        else:
            env.stderr.write("run again with -v for a (redacted) traceback\n")
        return ExitStatus.INTERNAL


def _is_configuration_error(exc: BaseException) -> bool:
    """botocore refusing its configuration (an unparsable config or credentials file, a missing
    profile): the user's input, named in the message, not a bug. botocore is only asked when it was
    loaded: `--help` never imports it."""
    errors = sys.modules.get("botocore.exceptions")
    if errors is None:
        return False
    kinds = (errors.ConfigParseError, errors.ConfigNotFound, errors.ProfileNotFound, errors.InvalidConfigError)
    return isinstance(exc, kinds)


def run() -> None:
    """The `egress-doctor` executable: `main()`, then out at once.

    The report is written and every thread of the run has ended by the deadline; what is left is
    the interpreter's own teardown of boto3's, botocore's and kubernetes's thousands of modules and
    classes, which measured 0.4-0.6 s on a loaded 2-CPU machine: more than the half second a run
    may take past its --deadline. The streams are flushed, then the process ends without it.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said anyway
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
