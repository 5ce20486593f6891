"""`egress-doctor check`: parse options, run the probes, diagnose, render through the redactor."""

from __future__ import annotations

import argparse
import json
from typing import Any

from egress_doctor import validate
from egress_doctor.context import Environment
from egress_doctor.model import ExitStatus, Report
from egress_doctor.redact import Redactor


def check_options(args: argparse.Namespace, env: Environment) -> Any:
    from egress_doctor.net.connect_to import parse_connect_to, parse_connect_to_env
    from egress_doctor.probes.check import CheckOptions

    rules = []
    try:
        rules += [parse_connect_to(spec) for spec in args.connect_to]
        rules += parse_connect_to_env(env.environ.get("EGRESS_DOCTOR_CONNECT_TO", ""))
    except ValueError as exc:
        raise validate.UsageError(str(exc)) from None
    return CheckOptions(
        region=validate.region(args.region) if args.region else None,
        tables=[validate.table(t) for t in args.table],
        deadline=validate.positive_seconds("--deadline", args.deadline),
        connect_timeout=validate.positive_seconds("--connect-timeout", args.connect_timeout),
        read_timeout=validate.positive_seconds("--read-timeout", args.read_timeout),
        connect_to=rules,
    )


def run_check_command(args: argparse.Namespace, env: Environment, redactor: Redactor) -> ExitStatus:
    options = check_options(args, env)
    from egress_doctor.probes.check import run_check

    facts = env.facts(env.pod_namespace(args.namespace), [str(r) for r in options.connect_to])
    report = run_check(options, env.environ, facts, redactor)
    add_diagnosis(report, args)
    write_report(report, args, env, redactor)
    return report.exit_status


def add_diagnosis(report: Report, args: argparse.Namespace) -> None:
    from egress_doctor.diagnose import DiagnoseOptions, diagnose

    options = DiagnoseOptions(
        namespace=args.namespace, istio_api=args.istio_api, wildcard=args.wildcard, imds_fix=args.imds_fix
    )
    assert report.facts is not None
    diagnosis = diagnose(report.identity, report.checks, report.facts, options)
    report.findings = diagnosis.findings
    report.fixes = diagnosis.fixes


def write_report(report: Report, args: argparse.Namespace, env: Environment, redactor: Redactor) -> None:
    from egress_doctor.render.fix_yaml import render_fixes
    from egress_doctor.render.json_v1 import report_to_v1

    if args.fix_only:
        text = render_fixes(report.fixes)
    elif args.output == "table":
        from egress_doctor.render.table import render_table

        color = not args.no_color and "NO_COLOR" not in env.environ and env.stdout_is_tty()
        text = render_table(report, color=color, verbose=args.verbose, fix_yaml=render_fixes(report.fixes))
    else:
        document = redactor.redact_obj(report_to_v1(report, transcript=args.verbose))
        if args.output == "json":
            text = json.dumps(document, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    env.stdout.write(redactor.redact(text))
