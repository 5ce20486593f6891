"""One sidecar log tallied: how each record counts, which name a destination gets, and the bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_doctor.diagnose import refusals
from egress_doctor.diagnose.refusals import Destination, LogTally, Refusal, destination_of, refusal_of, split_address
from egress_doctor.sources.proxy_log import AccessEntry

RECORDED = Path(__file__).parent / "recorded" / "proxy-log"


def entry(**fields: object) -> AccessEntry:
    base: dict[str, object] = {"start": "2026-01-01T00:00:00.000Z", "method": "", "protocol": "", "code": 0,
                               "flags": "", "details": "", "authority": "", "upstream_host": "", "cluster": "",
                               "local": "52.94.0.10:443", "sni": "", "route": ""}
    return AccessEntry(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"route": "block_all", "code": 502, "details": "direct_response"}, Refusal.BLOCK_ALL),
        ({"cluster": "BlackHoleCluster", "flags": "UH"}, Refusal.BLACKHOLE),
        ({"code": 404, "flags": "NR", "details": "route_not_found"}, Refusal.NO_ROUTE),
        ({"flags": "NC", "cluster": "outbound|443|v1|gw"}, Refusal.NO_ROUTE),
        ({"code": 400, "flags": "DPE", "details": "http1.codec_error"}, Refusal.RESET),
        ({"cluster": "PassthroughCluster"}, Refusal.PASSTHROUGH),
        ({"route": "allow_any", "cluster": "lab|passthrough|169.254.169.254"}, Refusal.PASSTHROUGH),
        ({"cluster": "outbound|443||sts.us-east-1.amazonaws.com"}, None),
        ({"cluster": "outbound|443||x", "flags": "UF,URX", "code": 503}, Refusal.UPSTREAM),
        ({"cluster": "outbound|9080||reviews.default.svc.cluster.local", "flags": "UF,URX", "code": 503}, None),
        ({"cluster": "outbound|443||x", "termination": "rbac_access_denied_matched_policy[none]"}, Refusal.RBAC),
        ({"code": 403, "details": "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny]-rule[0]]"},
         Refusal.RBAC),
    ],
    ids=["block-all", "blackhole", "no-route", "no-cluster", "dpe", "passthrough", "allow-any", "registered",
         "upstream-failure", "in-mesh-upstream-failure", "rbac-tcp", "rbac-http"],
)
def test_a_record_counts_by_the_way_the_sidecar_treated_it(fields: dict, expected: Refusal | None) -> None:
    assert refusal_of(entry(**fields)) is expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sni": "SQS.us-east-1.amazonaws.com.", "authority": "x.example"},
         Destination("sqs.us-east-1.amazonaws.com", 443, "tls", "sni")),
        ({"authority": "user:pw@Telemetry.Example.com:8080", "local": "93.184.216.34:8080", "method": "GET"},
         Destination("telemetry.example.com", 8080, "http", "authority")),
        ({"authority": "169.254.169.254", "local": "", "method": "PUT"},
         Destination("169.254.169.254", 80, "http", "authority")),
        ({"local": "[2600:1f18::1]:8443"}, Destination("2600:1f18::1", 8443, "tcp", "address")),
        ({"local": "3.3.3.3:80", "method": "GET"}, Destination("3.3.3.3", 80, "http", "address")),
    ],
    ids=["sni-first", "authority-without-userinfo", "authority-default-port", "ipv6-address", "http-address"],
)
def test_a_destination_is_named_by_the_sni_else_the_authority_else_only_its_address(fields, expected) -> None:
    assert destination_of(entry(**fields)) == expected


def test_a_record_without_any_destination_is_not_a_destination() -> None:
    assert destination_of(entry(local="")) is None
    assert split_address("not-an-address") == ("not-an-address", None)


def tally_of(path: Path) -> LogTally:
    tally = LogTally()
    for line in path.read_text(encoding="utf-8").splitlines():
        tally.add(line)
    return tally


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_the_lab_sidecars_log_tallies_its_refusals_and_passthrough(encoding: str) -> None:
    tally = tally_of(RECORDED / f"istio-proxy.{encoding}.log")
    found = {(r.value, d.host, d.port): s.count for (r, d), s in tally.seen.items()}
    assert found == {
        ("BlackHoleCluster", "dynamodb-fips.us-east-1.amazonaws.com", 443): 1,
        ("502 block_all", "telemetry.example.com", 80): 1,
        ("502 block_all", "169.254.169.254", 80): 1,
        ("PassthroughCluster", "telemetry.example.com", 80): 1,
        ("PassthroughCluster", "169.254.169.254", 80): 1,
        ("PassthroughCluster", "dynamodb-fips.us-east-1.amazonaws.com", 443): 1,
    }
    assert (tally.access, tally.unparsed, tally.refusals) == (8, 0, 3)


def test_first_and_last_seen_hold_even_when_records_come_out_of_order() -> None:
    tally = LogTally()
    for second in ("05", "01", "09", "03"):
        tally.add(f'[2026-01-01T00:00:{second}.000Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" '
                  "BlackHoleCluster - 52.94.0.10:443 10.0.0.1:1 sqs.us-east-1.amazonaws.com -")
    (seen,) = tally.seen.values()
    assert (seen.count, seen.first, seen.last) == (4, "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:09.000Z")
    assert tally.last_record == "2026-01-01T00:00:09.000Z"


def test_names_an_address_carried_elsewhere_in_the_log_are_kept_as_evidence_not_loopback() -> None:
    tally = LogTally()
    tally.add('[t] "- - -" 0 - - - "-" 1 1 1 - "-" "-" "-" "-" "52.94.0.1:443" '
              "outbound|443||sts.us-east-1.amazonaws.com 10.0.0.1:2 52.94.0.1:443 10.0.0.1:3 "
              "sts.us-east-1.amazonaws.com -")
    tally.add('[t] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 127.0.0.1:443 '
              "10.0.0.1:1 x.example -")
    assert tally.names == {"52.94.0.1": {"sts.us-east-1.amazonaws.com"}}


def test_a_hostile_log_costs_counts_not_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals, "MAX_DESTINATIONS", 10)
    tally = LogTally()
    for i in range(50):
        tally.add(f'[t] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 10.0.{i}.1:443 '
                  f"10.0.0.1:1 host{i}.example -")
    tally.add("x" * 70_000)
    assert (len(tally.seen), tally.overflow, tally.too_long, tally.lines) == (10, 40, 1, 51)
