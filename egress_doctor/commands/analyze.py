"""`egress-doctor analyze -f PATH…`: the offline check of Istio YAML against the hosts the AWS SDK
will contact. No probes, no cluster, no network (see docs/analyze.md)."""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from collections.abc import Mapping
from typing import Any

from egress_doctor import __version__, validate
from egress_doctor.context import Environment
from egress_doctor.model import Identity, Report, RunFacts
from egress_doctor.validate import UsageError

ANALYZE_EPILOG = """exit codes:
  0    every host the SDK needs is carried by this pod's sidecar (or passes, under ALLOW_ANY)
  1    something needed is not covered: the findings say why, the fix edits what exists
  2    unreadable or invalid input (a file, a flag), or nothing to analyze: one line on stderr
  3    internal error in egress-doctor
  what produces each: docs/exit-codes.md

examples:
  egress-doctor analyze -f deploy/ --namespace payments --region us-east-1 --credentials irsa \\
      --account 111122223333 --table orders
  egress-doctor analyze -f mesh.yaml --mode REGISTRY_ONLY --fix-only | kubectl apply -f -
"""


def add_analyze_parser(commands: Any) -> None:
    from egress_doctor.aws.endpoints import ACCOUNT_MODES, CREDENTIAL_MODES
    from egress_doctor.commands.footprint import add_footprint_arguments

    p = commands.add_parser(
        "analyze",
        help="offline: check Istio YAML (files, a GitOps repo) against the hosts the AWS SDK will use",
        description="Read Istio YAML and say whether a pod in NAMESPACE would reach the AWS hosts its SDK "
        "contacts (computed by botocore, without any network call); print the findings and the fix.",
        epilog=ANALYZE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="a YAML file or a directory (walked recursively); repeatable")
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    p.add_argument("--account", metavar="ID", help="12-digit account id the credentials carry (DynamoDB's "
                   "account endpoint); without it, irsa and pod-identity need *.ddb.<region>…")
    p.add_argument("--credentials", choices=CREDENTIAL_MODES,
                   help="how the app gets credentials (default: from the app's environment, else irsa)")
    p.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default: default)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a pod label, for Sidecar workloadSelectors (repeatable; default: unknown)")
    p.add_argument("--mode", choices=("ALLOW_ANY", "REGISTRY_ONLY"),
                   help="mesh outboundTrafficPolicy (default: from an IstioOperator or istio ConfigMap in the "
                   "files, else ALLOW_ANY like Istio)")
    p.add_argument("--fips", action="store_true", default=None, help="the app sets AWS_USE_FIPS_ENDPOINT=true")
    p.add_argument("--dualstack", action="store_true", default=None,
                   help="the app sets AWS_USE_DUALSTACK_ENDPOINT=true")
    p.add_argument("--account-endpoint-mode", choices=ACCOUNT_MODES,
                   help="the app's AWS_ACCOUNT_ID_ENDPOINT_MODE (default: its environment's, else preferred)")
    env_group = p.add_argument_group(
        "the app's environment (botocore reads it: AWS_STS_REGIONAL_ENDPOINTS, AWS_ENDPOINT_URL_*, FIPS, …)")
    env_group.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                           help="a variable of the app's environment (repeatable; wins over the others)")
    env_group.add_argument("--env-file", action="append", default=[], metavar="FILE",
                           help="NAME=VALUE lines (repeatable; # comments, export allowed)")
    env_group.add_argument("--workload", metavar="[KIND/]NAME",
                           help="the Pod, Deployment, StatefulSet, Job… in the files whose container env is the "
                           "app's (default: the only one there is)")
    env_group.add_argument("--container", metavar="NAME", help="the app's container in that workload")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.add_argument("--fix-only", action="store_true", help="print only the fix as multi-document YAML")
    p.add_argument("--istio-api", choices=("v1", "v1beta1", "v1alpha3"),
                   help="networking.istio.io version of new objects (default: the files' own, else v1; edits "
                   "keep their own)")
    p.add_argument("--wildcard", action="store_true",
                   help="allow *.ddb.<region>.amazonaws.com and *.s3[.<region>].amazonaws.com (resolution NONE) "
                   "instead of one account's DynamoDB host and each bucket's S3 host")
    p.add_argument("--imds-fix", choices=("serviceentry", "annotation"), default="serviceentry")
    p.add_argument("--egress-via", metavar="NAMESPACE/GATEWAY|direct", type=validate.egress_via, default="",
                   help="where AWS hosts go out: through NAMESPACE/GATEWAY, or direct (never through "
                       "a gateway); default: like the hosts the mesh routes already (docs/egress-gateway.md)")
    p.add_argument("--no-color", action="store_true")
    add_footprint_arguments(p)
    p.set_defaults(handler=run_analyze_command, verbose=False)


def _labels(values: list[str]) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--label: {value!r} is not KEY=VALUE")
        out[key] = val
    return out


def _region(args: argparse.Namespace, env: Environment, app: Mapping[str, str] | None) -> str:
    """--region, else the app's AWS_REGION / AWS_DEFAULT_REGION, else this shell's; a set but empty or
    malformed one is named."""
    if args.region is not None:
        return validate.region(args.region)
    for source, where in ((app or {}, "the app's "), (env.environ, "")):
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            value = source.get(name)
            if value is not None:
                return validate.region(value, f"{where}{name}")
    raise UsageError("--region is required (or AWS_REGION): the hosts depend on it")


def run_analyze_command(args: argparse.Namespace, env: Environment) -> int:
    from egress_doctor.aws.endpoints import EndpointOptions, sdk_endpoints
    from egress_doctor.commands.analyze_env import app_environment, credentials_of, istio_api_of
    from egress_doctor.commands.footprint import footprint_calls, footprint_from
    from egress_doctor.diagnose.engine import DiagnoseOptions
    from egress_doctor.diagnose.offline import analyze
    from egress_doctor.istio.objects import MeshConfig, Mode
    from egress_doctor.redact import Redactor
    from egress_doctor.sources.files import FilesError, read_files, to_view

    started = time.monotonic()
    footprint = footprint_from(args, env.environ)
    tables = tuple(validate.table(r.text) for r in footprint.resources if r.kind == "table")
    redactor = Redactor()
    try:
        read = read_files(args.filename, args.namespace)
        app = app_environment(args, read, redactor)
        region = args.region or footprint.region or _region(args, env, app.environ)
        credentials, account = credentials_of(args, app.environ)
        endpoint_options = EndpointOptions(
            region=region, credentials=credentials, account=account, tables=tables,
            services=_sdk_services(footprint), calls=footprint_calls(footprint),
            fips=args.fips if app.environ is not None else bool(args.fips),
            dualstack=args.dualstack if app.environ is not None else bool(args.dualstack),
            account_endpoint_mode=args.account_endpoint_mode or (None if app.environ is not None else "preferred"),
            environ=app.environ)
    except (ValueError, FilesError) as exc:
        raise UsageError(str(exc)) from None
    _refuse_nothing(read, args)
    mesh = read.mesh or MeshConfig()
    if args.mode:
        mesh = MeshConfig(Mode(args.mode), mesh.root_namespace, mesh.default_service_export_to,
                          mesh.default_virtual_service_export_to, mesh.default_destination_rule_export_to)
    view = to_view(read, args.namespace, mesh, _labels(args.label))
    identity = Identity(source=credentials, region=region, region_source="--region" if args.region else "env",
                        account_id=account)
    options = DiagnoseOptions(namespace=args.namespace, istio_api=args.istio_api or istio_api_of(read),
                              wildcard=args.wildcard, imds_fix=args.imds_fix, egress_via=args.egress_via)
    result = analyze(view, sdk_endpoints(endpoint_options), identity, options)
    report = Report(identity=identity, checks=result.checks,
                    facts=RunFacts(uid=env.uid, gid=env.gid, namespace=args.namespace),
                    findings=result.findings, fixes=result.fixes,
                    started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    duration_ms=round((time.monotonic() - started) * 1000, 1), tool_version=__version__,
                    warnings=_warnings(read, mesh, args) + app.notes, mesh=view)
    from egress_doctor.commands.check import write_report

    write_report(report, args, env, redactor)
    return int(report.exit_status)


def _sdk_services(footprint: Any) -> tuple[str, ...]:
    """STS always (credentials, GetCallerIdentity); DynamoDB's regional and account hosts when the
    footprint names no service or resource (what `check` calls then), DynamoDB or a table."""
    dynamodb = footprint.empty or "dynamodb" in footprint.services or any(
        r.kind == "table" for r in footprint.resources)
    return ("sts", "dynamodb") if dynamodb else ("sts",)


def _refuse_nothing(read: Any, args: argparse.Namespace) -> None:
    """A gate that passes on an empty or mistyped directory would pass on anything: with no YAML
    file at all, or no Istio content and no --mode to analyze against, there is nothing to analyze."""
    paths = ", ".join(args.filename)
    if read.files == 0:
        raise UsageError(f"nothing to analyze: no *.yaml or *.yml file in {paths}")
    if not (read.objects or read.gateways or read.mesh or read.namespace_labels or args.mode):
        raise UsageError(f"nothing to analyze: {paths} holds no Istio object, mesh config or Namespace "
                         f"({read.files} YAML file{'s' if read.files != 1 else ''} read); pass --mode to "
                         "analyze a mesh without any entry")


def _warnings(read: Any, mesh: Any, args: argparse.Namespace) -> list[str]:
    source = "--mode" if args.mode else (read.mesh_source or "Istio's default (no mesh config in the files)")
    out = [f"analyze: {read.files} files, {len(read.objects)} Istio objects; namespace {args.namespace}; "
           f"mesh mode {mesh.outbound_traffic_policy} from {source}"]
    return out + list(read.skipped)
