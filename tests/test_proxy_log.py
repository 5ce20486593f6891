"""Istio's access log read line by line: both encodings as the lab's real Envoy 1.40 wrote them
(tests/recorded/proxy-log, captured with Istio's formats and the pod's addresses), older and foreign
formats, the proxy's own messages, and what can never be shown of an unparsed line."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_doctor.sources.proxy_log import AccessEntry, LineKind, parse_line, preview

RECORDED = Path(__file__).parent / "recorded" / "proxy-log"


def lines(encoding: str) -> list[str]:
    return (RECORDED / f"istio-proxy.{encoding}.log").read_text(encoding="utf-8").splitlines()


def entries(encoding: str) -> list[AccessEntry]:
    return [e for e in map(parse_line, lines(encoding)) if isinstance(e, AccessEntry)]


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_every_line_the_lab_sidecar_wrote_is_a_record_or_its_own_message(encoding: str) -> None:
    kinds = [parse_line(line) for line in lines(encoding)]
    assert LineKind.UNPARSED not in kinds
    assert sum(isinstance(k, AccessEntry) for k in kinds) == 8
    assert LineKind.PROXY in kinds  # Envoy's warnings share the container log


def _essentials(e: AccessEntry) -> tuple[object, ...]:
    return (e.method, e.protocol, e.code, e.flags, e.details, e.authority, e.cluster, e.local, e.sni, e.route)


def test_the_text_and_json_encodings_of_the_same_traffic_read_the_same() -> None:
    assert sorted(map(_essentials, entries("text"))) == sorted(map(_essentials, entries("json")))


def test_a_blackholed_tls_connection_carries_its_server_name_and_original_destination() -> None:
    (refused,) = [e for e in entries("text") if e.cluster == "BlackHoleCluster"]
    assert (refused.sni, refused.local, refused.flags, refused.code) == (
        "dynamodb-fips.us-east-1.amazonaws.com", "127.0.0.1:443", "UH", 0)
    assert refused.start == "2026-12-02T14:12:39.891Z"


def test_a_block_all_reply_carries_the_authority_route_and_details() -> None:
    blocked = [e for e in entries("json") if e.route == "block_all"]
    assert {(e.authority, e.code, e.details, e.flags) for e in blocked} == {
        ("telemetry.example.com", 502, "direct_response", ""), ("169.254.169.254:80", 502, "direct_response", "")}


def test_the_request_path_is_never_kept() -> None:
    for entry in entries("text") + entries("json"):
        assert "token=abc" not in repr(entry)


@pytest.mark.parametrize(
    "line",
    [
        # Istio before 1.9: no response code details, mixer status instead
        '[2020-01-02T03:04:05.678Z] "- - -" 0 UH "-" "-" 0 0 1 - "-" "-" "-" "-" "-" BlackHoleCluster - '
        "52.94.0.10:443 10.1.2.3:40000 sqs.us-east-1.amazonaws.com -",
        # a user agent with quotes and spaces in it
        '[2026-01-02T03:04:05.678Z] "GET / HTTP/1.1" 502 - direct_response - "-" 0 0 0 - "-" "odd "agent" 1.0" '
        '"id" "sqs.us-east-1.amazonaws.com" "-" - - 52.94.0.10:80 10.1.2.3:40000 - block_all',
    ],
    ids=["istio-1.8", "quoted-user-agent"],
)
def test_older_istio_formats_and_odd_user_agents_still_parse(line: str) -> None:
    entry = parse_line(line)
    assert isinstance(entry, AccessEntry)
    assert entry.local == "52.94.0.10:443" or entry.route == "block_all"
    assert "sqs.us-east-1.amazonaws.com" in (entry.sni, entry.authority)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("", LineKind.EMPTY),
        ("2026-12-02T14:01:53.048141Z\tinfo\tads\tADS: new connection for node:sidecar~10.0.0.1", LineKind.PROXY),
        ('{"level":"info","time":"2026-12-02T14:01:53.048Z","scope":"ads","msg":"new connection"}', LineKind.PROXY),
        ("[2026-12-02 14:01:53.048][8249][warning][misc] [source/common/x.cc:23] Deprecated field", LineKind.PROXY),
        ('{"start_time":"2026-12-02T14:01:53.177Z","upstream_cluster":"BlackHoleCluster"', LineKind.UNPARSED),
        ('[2026-12-02T14:01:53.177Z] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" BlackH', LineKind.UNPARSED),
        ('[2026-12-02T14:01:53.177Z] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" BlackHoleCluster - '
         "52.94.0.10:443 10.0.0.7:45662 sqs.us-ea", LineKind.UNPARSED),
        ('[2026-12-02T14:01:53.177Z] "GET / HTTP/1.1" 200 - 0 0 3 2 "-" "curl" "id" "a.example" "1.2.3.4:80"',
         LineKind.UNPARSED),  # Envoy's default format: no cluster, no addresses
        ('{"ts":"2026-12-02T14:01:53Z","host":"a.example","status":502}', LineKind.UNPARSED),
        ("\x00\x01\x02 binary garbage \xff", LineKind.UNPARSED),
        ('{"start_time":"t","upstream_cluster":"x","downstream_local_address":"1.2.3.4:1","response_code":"five"}',
         LineKind.UNPARSED),
        ("[1, 2, 3]", LineKind.UNPARSED),
    ],
    ids=["empty", "agent", "agent-json", "envoy", "truncated-json", "truncated-text", "cut-in-the-tail",
         "envoy-default-format",
         "foreign-json", "binary", "bad-code", "json-list"],
)
def test_lines_that_are_not_istio_records_are_told_apart(line: str, kind: LineKind) -> None:
    assert parse_line(line) is kind


def test_json_nulls_and_numbers_read_like_the_texts_dashes() -> None:
    line = ('{"start_time":"t","upstream_cluster":"BlackHoleCluster","downstream_local_address":"1.2.3.4:443",'
            '"requested_server_name":null,"response_code":0,"response_flags":"UH","authority":null}')
    entry = parse_line(line)
    assert isinstance(entry, AccessEntry)
    assert tuple(entry) == ("t", "", "", 0, "UH", "", "", "", "BlackHoleCluster", "1.2.3.4:443", "", "", "")


SECRETS = ["Bearer sk_live_51HqZzPLANTED0secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY",
           "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJQTEFOVEVEIn0.c2lnbmF0dXJl", "0123456789abcdef0123456789abcdef01234567"]


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f'[t] "GET /x HTTP/1.1" 200 "{SECRETS[0]}" custom', "sk_live_51HqZzPLANTED0secret"),
        (f"custom-format aws_secret={SECRETS[1]} end", SECRETS[1]),
        (f"jwt {SECRETS[2]} end", SECRETS[2]),
        (f'[t] "GET /o?X-Amz-Signature={SECRETS[3]} HTTP/1.1" 200', SECRETS[3]),
        (f'{{"authorization": "Basic {SECRETS[1]}"}}', SECRETS[1]),
    ],
    ids=["bearer", "assignment", "jwt", "presigned-url", "json-header"],
)
def test_a_preview_of_an_unparsed_line_never_shows_a_credential(line: str, secret: str) -> None:
    assert secret not in preview(line)
    assert "<masked>" in preview(line)


def test_a_preview_keeps_host_names_times_and_request_ids_readable() -> None:
    line = "odd 2026-12-02T14:01:53.245Z fee33377-1b7e-498e-80bc-75d99df3e662 dynamodb-fips.us-east-1.amazonaws.com"
    assert preview(line) == line


def test_a_preview_is_short() -> None:
    assert len(preview("x " * 10_000)) <= 161
