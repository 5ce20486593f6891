"""What a `telemetry.istio.io` Telemetry applied to the lab does: turn the sidecar's access log on
or off, as istiod does for the built-in `envoy` provider (an access log to /dev/stdout in the mesh's
encoding). Only access logging is modelled; metrics and tracing sections are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ENVOY_PROVIDER = "envoy"  # istiod's built-in file access log provider (/dev/stdout)


def is_telemetry(item: object) -> bool:
    return (isinstance(item, Mapping) and item.get("kind") == "Telemetry"
            and str(item.get("apiVersion", "")).startswith("telemetry.istio.io/"))


def access_log_after(items: Sequence[Any], current: str | None) -> tuple[list[Any], str | None]:
    """(the items that are not Telemetry objects, the access log encoding once they are applied).

    An `accessLogging` entry naming the `envoy` provider turns logging on (TEXT, or the encoding
    already in use), one with `disabled: true` turns it off; the last such entry wins.
    """
    rest = [i for i in items if not is_telemetry(i)]
    encoding = current
    for item in (i for i in items if is_telemetry(i)):
        for logging in (item.get("spec") or {}).get("accessLogging") or ():
            if not isinstance(logging, Mapping):
                continue
            if logging.get("disabled") is True:
                encoding = None
                continue
            names = [p.get("name") for p in logging.get("providers") or () if isinstance(p, Mapping)]
            if not names or ENVOY_PROVIDER in names:  # no providers: the mesh's default, envoy
                encoding = current or "TEXT"
    return rest, encoding
