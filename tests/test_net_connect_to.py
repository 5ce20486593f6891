from __future__ import annotations

import pytest

from egress_doctor.net.connect_to import ConnectTo, ConnectToMap, parse_connect_to, parse_connect_to_env


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        (
            "sts.us-east-1.amazonaws.com:443:127.0.0.1:8443",
            ConnectTo("sts.us-east-1.amazonaws.com", 443, "127.0.0.1", 8443),
        ),
        ("::127.0.0.1:", ConnectTo("", None, "127.0.0.1", None)),
        ("example.com:443::", ConnectTo("example.com", 443, "", None)),
        (":443:egress.istio-system.svc:", ConnectTo("", 443, "egress.istio-system.svc", None)),
        ("[::1]:443:[::1]:8443", ConnectTo("::1", 443, "::1", 8443)),
        ("[fd00:ec2::254]:80:127.0.0.1:8080", ConnectTo("fd00:ec2::254", 80, "127.0.0.1", 8080)),
        ("  a.example:1:b.example:65535  ", ConnectTo("a.example", 1, "b.example", 65535)),
    ],
)
def test_well_formed_connect_to_spec_parses_into_its_four_fields(spec: str, rule: ConnectTo) -> None:
    assert parse_connect_to(spec) == rule


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "host:443:127.0.0.1",
        "host:443:127.0.0.1:8443:9",
        "host:https:127.0.0.1:8443",
        "host:443:127.0.0.1:0",
        "host:443:127.0.0.1:65536",
        "host:-1:127.0.0.1:1",
        "::1:443:127.0.0.1:1",
        "[::1:443:127.0.0.1:1",
        "[not-v6]:443:127.0.0.1:1",
        "[::1]x:443:127.0.0.1:1",
        "bad host:443:127.0.0.1:1",
        "host/path:443:127.0.0.1:1",
    ],
)
def test_malformed_connect_to_spec_raises_value_error_naming_the_spec(spec: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_connect_to(spec)
    message = str(caught.value)
    assert repr(spec) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "spec",
    ["a.example:443:127.0.0.1:8443", "::127.0.0.1:", ":443::8443", "[::1]:443:[::1]:8443", "x:1::"],
)
def test_connect_to_rule_round_trips_through_str(spec: str) -> None:
    assert str(parse_connect_to(spec)) == spec
    assert parse_connect_to(str(parse_connect_to(spec))) == parse_connect_to(spec)


def test_ipv6_literal_in_rule_is_compared_in_canonical_form() -> None:
    rules = ConnectToMap([parse_connect_to("[0:0::1]:443:127.0.0.1:9")])
    assert rules.resolve("::1", 443) == ("127.0.0.1", 9)
    assert rules.resolve("[::1]", 443) == ("127.0.0.1", 9)


def test_host_match_ignores_case_and_trailing_dot() -> None:
    rules = ConnectToMap([parse_connect_to("sts.us-east-1.amazonaws.com:443:127.0.0.1:9")])
    assert rules.resolve("STS.US-EAST-1.amazonaws.com.", 443) == ("127.0.0.1", 9)


def test_rule_for_another_port_or_host_does_not_apply() -> None:
    rules = ConnectToMap([parse_connect_to("sts.us-east-1.amazonaws.com:443:127.0.0.1:9")])
    assert rules.resolve("sts.us-east-1.amazonaws.com", 80) is None
    assert rules.resolve("sts.amazonaws.com", 443) is None


def test_empty_match_fields_match_any_host_and_port() -> None:
    rules = ConnectToMap([parse_connect_to("::127.0.0.1:")])
    assert rules.resolve("dynamodb.us-west-2.amazonaws.com", 443) == ("127.0.0.1", 443)
    assert rules.resolve("anything", 80) == ("127.0.0.1", 80)


def test_empty_target_fields_keep_the_original_host_or_port() -> None:
    assert ConnectToMap([parse_connect_to(":443::8443")]).resolve("a.example", 443) == ("a.example", 8443)
    assert ConnectToMap([parse_connect_to(":443:b.example:")]).resolve("a.example", 443) == ("b.example", 443)


def test_first_matching_rule_wins() -> None:
    rules = ConnectToMap(parse_connect_to_env("sts.us-east-1.amazonaws.com:443:127.0.0.1:1,:443:127.0.0.1:2"))
    assert rules.resolve("sts.us-east-1.amazonaws.com", 443) == ("127.0.0.1", 1)
    assert rules.resolve("dynamodb.us-east-1.amazonaws.com", 443) == ("127.0.0.1", 2)


def test_env_list_ignores_empty_items_and_whitespace() -> None:
    assert parse_connect_to_env(None) == []
    assert parse_connect_to_env("") == []
    assert parse_connect_to_env(" a:1:b:2 , ,c:3::") == [
        ConnectTo("a", 1, "b", 2),
        ConnectTo("c", 3, "", None),
    ]


def test_env_list_with_one_bad_rule_raises_naming_that_rule() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        parse_connect_to_env("a:1:b:2,nope")


def test_empty_map_resolves_nothing_and_is_falsy() -> None:
    assert not ConnectToMap()
    assert ConnectToMap().resolve("a", 1) is None
