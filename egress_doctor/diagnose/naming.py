"""A name for an address the sidecar logged without one — from evidence, never a guess.

When a refused connection carries no TLS server name and no HTTP Host, the sidecar logged only
the address the app dialled. The hosts the pod's SDK would call are known offline (botocore's
prediction from the pod's spec environment, `aws.pod_env`); the command resolves them
(`sources.resolver`), and an address is named when exactly one of those hosts, on the same port,
resolved to it. Two hosts on one address, or none, leave it an address. Pure, apart from botocore's
offline prediction (cached per environment).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from egress_doctor.aws.endpoints import SdkEndpoint
from egress_doctor.aws.hosts import is_ip

Resolved = Mapping[str, "list[str] | str"]  # name → addresses, or why none (the resolver's error)


@dataclass
class Prediction:
    """The hosts one pod's SDK would call, or why they are unknown."""

    endpoints: list[SdkEndpoint] = field(default_factory=list)
    reason: str = ""  # why there is no prediction ("" when there is one)


def predict(env: Mapping[str, str]) -> Prediction:
    """botocore's hosts for this environment (cached: the pods of a Deployment share theirs)."""
    return _predict(tuple(sorted(env.items())))


@functools.lru_cache(maxsize=64)
def _predict(items: tuple[tuple[str, str], ...]) -> Prediction:
    from egress_doctor.aws.endpoints import sdk_endpoints
    from egress_doctor.aws.pod_env import endpoint_options

    options = endpoint_options(dict(items))
    if options is None:
        return Prediction(reason="the pod's spec sets no AWS_REGION or AWS_DEFAULT_REGION")
    try:
        return Prediction(sdk_endpoints(options))
    except Exception as exc:  # botocore refusing the settings is a fact about the pod, not a bug
        return Prediction(reason=f"botocore could not predict its hosts ({type(exc).__name__}: {exc})")


def names_to_resolve(predictions: Iterable[Prediction]) -> list[str]:
    """DNS names among the predicted hosts (no addresses, no wildcards), in first-seen order."""
    names = (e.host for p in predictions for e in p.endpoints)
    return list(dict.fromkeys(n for n in names if not is_ip(n) and "*" not in n))


@dataclass(frozen=True)
class Match:
    endpoint: SdkEndpoint | None  # the one host the address belongs to; None: no name
    tried: str  # what was tried, for the finding ("resolved sts.us-east-1.amazonaws.com → 52.94.0.1, …")


def match_address(address: str, port: int, prediction: Prediction, resolved: Resolved) -> Match:
    """The predicted host that resolves to `address` on `port`, when exactly one does."""
    if not prediction.endpoints:
        return Match(None, f"no prediction: {prediction.reason}" if prediction.reason else "no prediction")
    hits: dict[str, SdkEndpoint] = {}
    tried: list[str] = []
    for endpoint in prediction.endpoints:
        if endpoint.port != port:
            continue
        if is_ip(endpoint.host):
            if endpoint.host == address:
                hits[endpoint.host] = endpoint
            continue
        answer = resolved.get(endpoint.host)
        if isinstance(answer, list):
            tried.append(f"{endpoint.host} → {', '.join(answer[:4]) or 'no address'}")
            if address in answer:
                hits[endpoint.host] = endpoint
        elif answer is not None:
            tried.append(f"{endpoint.host}: {answer}")
    summary = "; ".join(tried) or f"none of the pod's SDK hosts uses port {port}"
    if len(hits) == 1:
        return Match(next(iter(hits.values())), summary)
    if len(hits) > 1:
        return Match(None, f"{', '.join(sorted(hits))} all resolve to it, so it names none of them ({summary})")
    return Match(None, summary)
