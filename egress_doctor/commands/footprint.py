"""The app's AWS footprint for `check` and `serve`: `--service`, the resource options and `--config`.

The resource options are made from the registry's table (`probes.registry.OPTIONS`), so `--help`,
the footprint file's keys and the checks they ask for cannot drift apart. A footprint file
(`--config FILE`, else `$EGRESS_DOCTOR_CONFIG`) is YAML; the options add to it and `--region`
wins over its region:

    region: us-east-1
    services: [sqs]
    tables: [invoices]
    buckets: [invoice-archive]
    queues: [billing-events]
    secrets: [billing/db]

A file that cannot be read, is not YAML, has a key that is not one of these or a value of the
wrong type is a usage error (exit 2, nothing probed), reported on one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from egress_doctor.probes.registry import OPTIONS
from egress_doctor.validate import UsageError

ENV_CONFIG = "EGRESS_DOCTOR_CONFIG"
MAX_CONFIG_BYTES = 256 * 1024  # a footprint is a few lines; anything larger is not one
# Keys of a footprint file: region, services, and one list per resource option.
CONFIG_KEYS = ("region", "services", *(o.config_key for o in OPTIONS))


def dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_footprint_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the app's AWS footprint (each repeatable; see docs/checks.md)",
        "Each resource is checked at the host the SDK uses for it; an ARN or queue URL in another\n"
        "region is checked in that region. Without any of these: STS and DynamoDB ListTables.",
    )
    group.add_argument(
        "--service", action="append", default=[], metavar="NAME",
        help="any botocore service name (s3, sqs, kms, …): its cheapest read-only call that needs no resource",
    )
    for option in OPTIONS:
        group.add_argument(option.flag, action="append", default=[], metavar=option.metavar, dest=dest(option.flag),
                           help=option.help)
    group.add_argument(
        "--config", metavar="FILE",
        help=f"the footprint as YAML (region, services, {', '.join(o.config_key for o in OPTIONS)}); "
        f"default ${ENV_CONFIG}. Options add to it",
    )


# argparse dests of the footprint options (serve shares them with check).
FOOTPRINT_DESTS = ("service", "config", *(dest(o.flag) for o in OPTIONS))


def footprint_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """The footprint the options and the file describe (UsageError on any bad value)."""
    from egress_doctor.aws.resources import parse
    from egress_doctor.probes.plan import Footprint

    path = getattr(args, "config", None) or environ.get(ENV_CONFIG) or None
    base = load_footprint(path) if path else Footprint()
    resources = tuple(parse(o.kind, v) for o in OPTIONS for v in getattr(args, dest(o.flag), None) or ())
    services = tuple(_service_name(s) for s in getattr(args, "service", None) or ())
    return base.merged(Footprint(services=services, resources=resources))


def footprint_calls(footprint: Any) -> tuple[Any, ...]:
    """The footprint's calls as `check` plans them, for `analyze` to predict (aws.endpoints
    .FootprintCall); STS and DynamoDB are predicted by aws.endpoints itself (credentials, the
    regional and account hosts, table ARNs)."""
    from botocore.loaders import create_loader

    from egress_doctor.aws.endpoints import FootprintCall
    from egress_doctor.probes.plan import plan_calls

    calls = plan_calls(footprint, create_loader())
    return tuple(FootprintCall(c.service, c.operation, c.params, c.title, c.region) for c in calls
                 if c.service not in ("sts", "dynamodb"))


def _service_name(value: str) -> str:
    name = value.strip().lower()
    if not name:
        raise UsageError("--service: empty service name")
    return name


def load_footprint(path: str) -> Any:
    """The footprint in the YAML file at `path`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a footprint")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--config {path}: not UTF-8 text") from None
    return parse_footprint(text, path)


def parse_footprint(text: str, where: str = "<config>") -> Any:
    import yaml

    from egress_doctor.aws.resources import parse
    from egress_doctor.probes.plan import Footprint
    from egress_doctor.validate import region as valid_region

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"--config {where}: not valid YAML{at}") from None
    if data is None:
        return Footprint()
    if not isinstance(data, dict):
        raise UsageError(f"--config {where}: expected a mapping of {', '.join(CONFIG_KEYS)}")
    unknown = [str(k) for k in data if k not in CONFIG_KEYS]
    if unknown:
        raise UsageError(f"--config {where}: unknown key {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
    region = data.get("region")
    if region is not None and not isinstance(region, str):
        raise UsageError(f"--config {where}: region must be a string, not {type(region).__name__}")
    services = tuple(_service_name(s) for s in _strings(data, "services", where))
    resources = tuple(parse(o.kind, v) for o in OPTIONS for v in _strings(data, o.config_key, where))
    return Footprint(region=valid_region(region) if region else None, services=services, resources=resources)


def _strings(data: dict[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"--config {where}: {key} must be a list of strings")
    return list(value)
