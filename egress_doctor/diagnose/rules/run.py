"""Rules about the whole run: who ran the probes, the sidecar's lifecycle, environment traps."""

from __future__ import annotations

from egress_doctor.diagnose.rules.base import (
    AGENT_ADDRESSES,
    IMDS_ADDRESSES,
    PROXY_UID,
    Cause,
    Observation,
    RunContext,
)
from egress_doctor.model import Layer, Status, Symptom

NETWORK_LAYERS = (Layer.DNS, Layer.TCP, Layer.TLS, Layer.HTTP, Layer.API)


def _reached_network(o: Observation) -> bool:
    """The check dialled its destination (it passed, or broke somewhere on the wire)."""
    if o.host is None or o.skipped:
        return False
    return o.check.status is Status.PASS or o.check.layer in NETWORK_LAYERS


def ran_as_proxy_uid(ctx: RunContext) -> list[Cause]:
    """ED201: uid or gid 1337 is never redirected, so nothing here went through Envoy."""
    if ctx.sidecar_in_path:
        return []
    dialled = tuple(o for o in ctx.observations if _reached_network(o))
    uid, gid = ctx.facts.uid, ctx.facts.gid
    args = {"uid": uid, "gid": gid}
    return [Cause("ED201", args, checks=dialled)] if PROXY_UID in (uid, gid) else []


def _worked_before(o: Observation, dialled: list[Observation]) -> bool:
    return any(p.index < o.index and p.check.status is Status.PASS and (p.host, p.port) == (o.host, o.port)
               for p in dialled)


def sidecar_not_ready(ctx: RunContext) -> list[Cause]:
    """ED202: Envoy was not (or no longer) listening on 15001.

    Either every dialled destination refused, or each refusal hit a destination that answered
    earlier in this run (the proxy went away). A node-local agent alone refusing is more likely
    the agent itself (ED520), so at least one refused destination must be something else.
    """
    if not ctx.sidecar_in_path:
        return []
    dialled = [o for o in ctx.observations if _reached_network(o)]
    refused = [o for o in dialled if o.symptom is Symptom.CONNECT_REFUSED]
    if not refused or all(o.host in AGENT_ADDRESSES for o in refused):
        return []
    if len(refused) == len(dialled):
        when = "(every destination did)"
    elif all(_worked_before(o, dialled) for o in refused):
        when = "after answering earlier in this run"
    else:
        return []
    hosts = tuple(dict.fromkeys(f"{o.host}:{o.port}" for o in refused))
    return [
        Cause(
            "ED202",
            {"hosts": ", ".join(hosts), "when": when},
            checks=tuple(refused),
            hosts=tuple(dict.fromkeys(str(o.host) for o in refused)),
            hold_proxy=True,
            consumes=frozenset(o.index for o in refused),
        )
    ]


def region_ignored(ctx: RunContext) -> list[Cause]:
    """ED550: botocore ignores AWS_REGION; only AWS_DEFAULT_REGION (or the config file) counts."""
    env = ctx.facts.env
    region = env.get("AWS_REGION", "")
    if not region or env.get("AWS_DEFAULT_REGION"):
        return []
    identity = ctx.identity
    if identity.region and identity.region_source not in (None, "--region"):
        if identity.region == region:
            return []
        effect = f"the SDK uses {identity.region} from {identity.region_source} instead"
    else:
        effect = "STS goes to the global sts.amazonaws.com and DynamoDB fails with NoRegionError"
    return [Cause("ED550", {"region": region, "effect": effect})]


def metadata_via_proxy(ctx: RunContext) -> list[Cause]:
    """ED551: IMDS honours HTTP_PROXY (container credentials do not)."""
    imds = [o for o in ctx.observations if o.host in IMDS_ADDRESSES]
    if not imds and ctx.identity.source != "imds":
        return []
    address = str(imds[0].host) if imds else IMDS_ADDRESSES[0]
    proxy = ctx.proxy_for("http", address)
    if proxy is None:
        return []
    return [Cause("ED551", {"proxy": proxy, "address": address}, checks=tuple(imds), hosts=(address,))]


def aws_via_https_proxy(ctx: RunContext) -> list[Cause]:
    """ED603: behind HTTPS_PROXY the sidecar sees the proxy's address, not the AWS hosts."""
    via: dict[str, list[Observation]] = {}
    for o in ctx.observations:
        if o.host is None or o.is_metadata or o.scheme != "https" or o.id.startswith("container."):
            continue  # container credential fetches ignore proxies
        proxy = ctx.proxy_for("https", o.host)
        if proxy is not None:
            via.setdefault(proxy, []).append(o)
    causes = []
    for proxy, observed in sorted(via.items()):
        hosts = tuple(dict.fromkeys(str(o.host) for o in observed))
        args = {"proxy": proxy, "hosts": ", ".join(hosts)}
        causes.append(Cause("ED603", args, checks=tuple(observed), hosts=hosts))
    return causes
