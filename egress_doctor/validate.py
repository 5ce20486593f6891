"""Validation of user input: one clear line per mistake, raised as UsageError (exit 2)."""

from __future__ import annotations

import math
import re

# botocore's own rule for region names (botocore.utils.validate_region_name).
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")
# DynamoDB table names: 3-255 of [a-zA-Z0-9_.-]; ARNs: arn:<partition>:dynamodb:<region>:<account>:table/<name>
_TABLE = re.compile(r"^[a-zA-Z0-9_.\-]{3,255}$")
_TABLE_ARN = re.compile(r"^arn:aws[a-z\-]*:dynamodb:[a-z0-9\-]+:\d{12}:table/([a-zA-Z0-9_.\-]{3,255})$")


class UsageError(Exception):
    """A bad flag or value: reported on one line, exit 2, nothing probed."""


def region(value: str, source: str = "--region") -> str:
    """`value` when botocore accepts it as a region name; `source` (the flag, variable or file it
    came from) is named in the error."""
    if not _REGION.match(value):
        raise UsageError(f"invalid region {value!r} ({source}): expected a name such as us-east-1")
    return value


def table(value: str) -> str:
    if value.startswith("arn:"):
        if not _TABLE_ARN.match(value):
            raise UsageError(
                f"invalid table ARN {value!r}: expected arn:aws:dynamodb:<region>:<12-digit account>:table/<name>"
            )
        return value
    if not _TABLE.match(value):
        raise UsageError(f"invalid table name {value!r}: 3-255 characters of letters, digits, '_', '-' and '.'")
    return value


MAX_SECONDS = 3600.0  # the longest --deadline or per-call timeout


def positive_seconds(name: str, value: str) -> float:
    """A deadline or timeout flag: seconds ("2.5") or a duration ("5s", "1m", "500ms"), as --interval."""
    return duration(name, value, maximum=MAX_SECONDS)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(flag: str, text: str, *, maximum: float | None = None) -> float:
    """Seconds in `text`: plain seconds ("30", "2.5") or Go-style units ("90s", "1m30s", "500ms")."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = list(_DURATION_PART.finditer(value))
        if not parts or "".join(p.group(0) for p in parts) != value:
            raise UsageError(f"{flag} {text!r}: expected a duration such as 30s, 2m, 1m30s or 500ms") from None
        seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)
    if not seconds > 0 or math.isinf(seconds) or (maximum is not None and seconds > maximum):
        limit = f" and at most {maximum:g} s" if maximum is not None else ""
        raise UsageError(f"{flag} {text!r}: expected a positive duration{limit}")
    return seconds


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def egress_via(value: str) -> str:
    """--egress-via: "direct", or NAMESPACE/GATEWAY (the Gateway object the routes bind)."""
    if value in ("", "direct"):  # "": the default, follow the mesh
        return value
    namespace, slash, name = value.partition("/")
    if not slash or not _K8S_NAME.match(namespace) or not _K8S_NAME.match(name):
        import argparse

        raise argparse.ArgumentTypeError(f"expected NAMESPACE/GATEWAY or direct, not {value!r}")
    return value
