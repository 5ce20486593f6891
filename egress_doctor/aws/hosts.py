"""How two AWS endpoint names for the same service differ (pure): the near misses that keep a
ServiceEntry from matching the host the SDK uses."""

from __future__ import annotations

from egress_doctor.fixes.builders import aws_service_region, is_account_ddb_host


def _traits(host: str) -> dict[str, object] | None:
    found = aws_service_region(host)
    if found is None:
        return None
    first = host.split(".")[0]
    return {"service": found[0], "region": found[1], "fips": "fips" in host.split(".")[0] or "-fips." in host,
            "dualstack": host.endswith(".api.aws") or ".dualstack." in host,
            "account": is_account_ddb_host(host) or (first == "*" and ".ddb." in host)}


def near_miss(need: str, registered: str) -> str | None:
    """How a registered AWS host differs from the one the SDK uses, or None when unrelated."""
    a, b = _traits(need), _traits(registered)
    if a is None or b is None or a["service"] != b["service"] or need == registered:
        return None
    diffs = []
    if a["region"] != b["region"]:
        kind = {"global": "the global endpoint"}.get(str(b["region"]), f"region {b['region']}")
        diffs.append(f"{kind} instead of {'the global endpoint' if a['region'] == 'global' else a['region']}")
    if a["account"] != b["account"]:
        diffs.append("the regional endpoint, not the account-based one" if a["account"]
                     else "an account-based endpoint, not the regional one")
    if a["fips"] != b["fips"]:
        diffs.append("FIPS endpoint needed" if a["fips"] else "a FIPS endpoint, the SDK uses the standard one")
    if a["dualstack"] != b["dualstack"]:
        diffs.append("dual-stack (api.aws) endpoint needed" if a["dualstack"] else "a dual-stack endpoint")
    return "; ".join(diffs) or "another form of the same endpoint"
