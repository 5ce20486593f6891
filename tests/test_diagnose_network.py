"""Rule table: DNS, TCP and TLS failures, and who was (not) in the path."""

from __future__ import annotations

import pytest

from egress_doctor.model import Status, Symptom
from tests.test_diagnose_evidence import (
    ARWWI,
    DDB,
    DDB_REGIONAL,
    DESCRIBE,
    GCI,
    IMDS_CREDS,
    LIST,
    ROLE,
    STS,
    STS_GLOBAL,
    TOKEN,
    Case,
    assert_case,
    facts,
    identity,
    passed,
    skipped,
)
from tests.test_diagnose_replies import (
    closed_after_tls,
)
from tests.test_diagnose_transport import (
    connect_timeout,
    dns_failure,
    plain_reset,
    refused,
    tls_eof,
    tls_failure,
    tls_reset,
    unreachable,
)

SE_STS = "serviceentry/sts-us-east-1-amazonaws-com"
SE_DDB = "serviceentry/111122223333-ddb-us-east-1-amazonaws-com"
SE_DDB_REGIONAL = "serviceentry/dynamodb-us-east-1-amazonaws-com"
SE_IMDS = "serviceentry/aws-imds"
HOLD = "patch/hold-application-until-proxy-starts"


def _tls_closed_without_handshake() -> list:
    """ConnectionClosedError on https whose TLS step failed: the SNI-listener variant of the blackhole."""
    check = closed_after_tls(GCI)
    assert check.evidence.tls is not None
    check.evidence.tls.ok = False
    return [check]


CASES = [
    # --- DNS: never the mesh ---
    Case(
        "sts name that does not exist is a DNS finding without an Istio fix",
        [dns_failure(ARWWI, -2), skipped(GCI)],
        ["ED101"],
    ),
    Case("unreachable resolver is its own DNS finding", [dns_failure(ARWWI, -3)], ["ED102"]),
    Case("other resolver errors are reported with their text", [dns_failure(DESCRIBE, -5)], ["ED103"]),
    Case(
        "one DNS failure explains every later failure on the same host",
        [dns_failure(ARWWI, -2), dns_failure(GCI, -2)],
        ["ED101"],
    ),
    # --- who is in the path ---
    Case(
        "uid 1337 bypasses the sidecar: no Istio fix even for a TLS close",
        [tls_eof(GCI)],
        ["ED201", "ED306"],
        facts=facts(uid=1337),
    ),
    Case(
        "gid 1337 bypasses the sidecar too",
        [passed(GCI), refused(DESCRIBE)],
        ["ED201", "ED203"],
        facts=facts(gid=1337),
    ),
    Case(
        "every destination refused means the sidecar was not ready",
        [refused(TOKEN), refused(ROLE), skipped(IMDS_CREDS)],
        ["ED202"],
        [HOLD],
        identity=identity("imds"),
    ),
    Case(
        "refused by a host that answered earlier in the run means the sidecar went away",
        [passed(ARWWI), refused(GCI)],
        ["ED202"],
        [HOLD],
    ),
    Case(
        "refused everywhere across STS and DynamoDB is the startup race",
        [refused(ARWWI), refused(DESCRIBE)],
        ["ED202"],
        [HOLD],
    ),
    Case(
        "refused on one host while another connects bypassed the sidecar",
        [passed(GCI), refused(DESCRIBE)],
        ["ED203"],
    ),
    Case("unanswered SYN never went through Envoy", [connect_timeout(GCI)], ["ED204"]),
    Case("no route to host is a network finding", [unreachable(LIST)], ["ED207"]),
    Case(
        "plain-HTTP metadata reset by the sidecar needs the metadata ServiceEntry",
        [plain_reset(TOKEN), plain_reset(ROLE), skipped(IMDS_CREDS)],
        ["ED205"],
        [SE_IMDS],
        identity=identity("imds"),
    ),
    Case(
        "plain-HTTP metadata closed after the request is the same catch-all blackhole",
        [passed(TOKEN), plain_reset(ROLE, after_request=True)],
        ["ED205"],
        [SE_IMDS],
        identity=identity("imds"),
    ),
    Case(
        "a reset without a sidecar in the path gets no Istio fix",
        [plain_reset(TOKEN)],
        ["ED201", "ED206"],
        identity=identity("imds"),
        facts=facts(uid=1337),
    ),
    # --- TLS ---
    Case(
        "regional STS closed during the handshake needs a ServiceEntry for that exact host",
        [tls_eof(ARWWI), skipped(GCI)],
        ["ED301", "ED601"],
        [SE_STS],
    ),
    Case(
        "account DynamoDB host reset during the handshake needs its own ServiceEntry",
        [passed(ARWWI), tls_reset(DESCRIBE)],
        ["ED301", "ED602"],
        [SE_DDB],
    ),
    Case(
        "RST racing the ClientHello (EndpointConnectionError ECONNRESET) is the same blackhole",
        [tls_reset(GCI, race=True)],
        ["ED301", "ED601"],
        [SE_STS],
    ),
    Case(
        "ConnectionClosedError with a failed handshake is the blackhole, not an HTTP close",
        _tls_closed_without_handshake(),
        ["ED301", "ED601"],
        [SE_STS],
    ),
    Case(
        "global STS blocked gets its own global ServiceEntry and no regional note",
        [tls_eof(GCI, host=STS_GLOBAL)],
        ["ED301"],
        ["serviceentry/sts-amazonaws-com"],
    ),
    Case(
        "regional DynamoDB host blocked gets no account-endpoint note",
        [tls_eof(LIST, host=DDB_REGIONAL)],
        ["ED301"],
        [SE_DDB_REGIONAL],
    ),
    Case(
        "both STS and DynamoDB blocked get one ServiceEntry each",
        [tls_eof(ARWWI), tls_eof(DESCRIBE, host=DDB)],
        ["ED301", "ED301", "ED601", "ED602"],
        [SE_DDB, SE_STS],
    ),
    Case(
        "stalled handshake is an upstream problem behind Envoy, no fix",
        [tls_failure(GCI, "timeout")],
        ["ED302"],
    ),
    Case(
        "untrusted certificate means interception or a missing CA bundle, no fix",
        [tls_failure(GCI, "untrusted")],
        ["ED303"],
    ),
    Case(
        "certificate for another name is a routing problem, no fix",
        [tls_failure(DESCRIBE, "mismatch")],
        ["ED304"],
    ),
    Case(
        "WRONG_VERSION_NUMBER behind the sidecar is TLS originated by a DestinationRule",
        [tls_failure(GCI, "wrong-version")],
        ["ED305"],
    ),
    Case(
        "WRONG_VERSION_NUMBER without a sidecar is a plain TLS failure",
        [tls_failure(GCI, "wrong-version")],
        ["ED201", "ED306"],
        facts=facts(uid=1337),
    ),
    Case("other TLS alerts are reported with their reason", [tls_failure(GCI, "other")], ["ED306"]),
    # --- calls that never happened because an earlier one was blocked ---
    Case(
        "IRSA blocked by the registry: the fix also covers the DynamoDB host the SDK would call next",
        [tls_eof(ARWWI), skipped(GCI), skipped(DESCRIBE)],
        ["ED301", "ED307", "ED601", "ED602"],
        [SE_DDB, SE_STS],
    ),
    Case(
        "a skipped call is not predicted blocked when nothing shows the registry blocking",
        [dns_failure(ARWWI, -2), skipped(GCI), skipped(DESCRIBE)],
        ["ED101"],
    ),
    Case(
        "no prediction when the probes bypassed the sidecar (uid 1337)",
        [tls_eof(ARWWI), skipped(DESCRIBE)],
        ["ED201", "ED306"],
        facts=facts(uid=1337),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_network_rule_table(case: Case) -> None:
    assert_case(case)


def test_tls_closed_names_the_exact_host_and_port_the_sdk_dialled() -> None:
    diagnosis = next(c for c in CASES if c.id.startswith("regional STS closed")).run()
    blocked = diagnosis.findings[0]
    assert blocked.hosts == [STS]
    assert f"{STS}:443" in blocked.message
    assert blocked.checks == ["sts.assume-role-with-web-identity"]


def test_sidecar_not_ready_lists_every_refused_destination_and_offers_the_hold_patch() -> None:
    diagnosis = next(c for c in CASES if c.id.startswith("refused everywhere")).run()
    (finding,) = diagnosis.findings
    assert finding.fix == "patch/hold-application-until-proxy-starts"
    assert set(finding.hosts) == {STS, DDB}
    assert "holdApplicationUntilProxyStarts" in (diagnosis.fixes[0].patch or "")


def test_run_as_1337_lists_every_dialled_check_but_not_the_skipped_ones() -> None:
    case = Case("x", [tls_eof(ARWWI), skipped(DESCRIBE)], ["ED201", "ED306"], facts=facts(uid=1337))
    bypass = assert_case(case).findings[0]
    assert bypass.checks == ["sts.assume-role-with-web-identity"]
    assert "1337" in bypass.message


def test_a_passing_check_with_a_symptom_left_over_is_not_a_failure() -> None:
    check = passed(GCI)
    check.symptom = Symptom.TLS_CLOSED
    assert check.status is Status.PASS
    assert_case(Case("x", [check], []))
