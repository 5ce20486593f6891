"""Escape sequences from the network and from analyzed YAML are shown, never obeyed, in every human
output: the table, `-v`, the one-line summary and stderr. JSON carries them escaped by its encoder."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_doctor.render.printable import MAX_CELL, cell, visible
from tests import canned
from tests.canned import CannedServer
from tests.checkrun import REGION, aws_world, run_cli
from tests.test_analyze_cli import BASE, run

STS = f"sts.{REGION}.amazonaws.com"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
ERASE = "\x1b[2K\r"  # erases the line, back to its start
OVERRIDE = "\u202e"  # right-to-left override


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (TITLE, "\\x1b]0;pwned\\x07"),
        (ERASE, "\\x1b[2K\\x0d"),
        ("a\tb\nc", "a\\x09b\\x0ac"),
        ("\x9b31m", "\\x9b31m"),
        (f"{OVERRIDE}txt.exe", "\\u202etxt.exe"),
        ("plain: ünïcödé → ok", "plain: ünïcödé → ok"),
    ],
    ids=["osc-title", "erase-line", "tab-newline", "c1-csi", "bidi-override", "printable-unicode"],
)
def test_control_characters_become_visible_escapes_and_nothing_else_changes(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_a_cell_is_cut_to_its_width_with_a_mark() -> None:
    assert cell("x" * 65536) == "x" * (MAX_CELL - 1) + "…"
    assert cell("short") == "short"


def _assert_no_raw_controls(text: str) -> None:
    for char in ("\x1b", "\x07", "\x9b", OVERRIDE):
        assert char not in text, f"raw {char!r} in output: {text[:400]!r}"


@pytest.fixture
def world(monkeypatch, tmp_path):
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


def test_an_sts_error_body_with_escape_sequences_is_shown_escaped_in_the_table_verbose_and_summary(world):
    # What a hostile proxy in the path answers instead of STS (an XML body could not carry them).
    reply = canned.text_reply(403, f"denied {TITLE}{ERASE}all good{OVERRIDE}")
    with CannedServer(reply, tls=world.aws.pki.ca, hostnames=[STS]) as server:
        result = run_cli("check", "-v", "--no-color", "--no-envoy-admin", "--summary-to-stderr",
                         "--connect-to", f"{STS}:443:127.0.0.1:{server.port}")
    assert result.code == 1
    _assert_no_raw_controls(result.stdout)
    _assert_no_raw_controls(result.stderr)
    assert "\\x1b]0;pwned\\x07" in result.stdout and "\\x1b[2K" in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stderr  # the --summary-to-stderr line


def test_the_json_report_keeps_the_text_escaped_by_json_itself(world):
    reply = canned.text_reply(403, f"denied {TITLE}")
    with CannedServer(reply, tls=world.aws.pki.ca, hostnames=[STS]) as server:
        result = run_cli("check", "-o", "json", "--no-envoy-admin", "--connect-to",
                         f"{STS}:443:127.0.0.1:{server.port}")
    _assert_no_raw_controls(result.stdout)
    assert TITLE in result.check("sts.get-caller-identity")["reason"]  # the data itself is intact


def test_names_and_hosts_in_analyzed_yaml_are_shown_escaped(tmp_path: Path) -> None:
    (tmp_path / "se.yaml").write_text(
        'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n'
        'metadata: {name: "evil\\e]0;pwned\\a\\e[2K", namespace: default}\n'
        'spec:\n  hosts: ["sts.us-east-1.amazonaws.com", "x\\e[2K.example.com"]\n'
        '  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n  exportTo: ["other"]\n')
    code, out, err = run("-f", str(tmp_path), *BASE, "--mode", "REGISTRY_ONLY", "--no-color")
    assert code == 1, err
    _assert_no_raw_controls(out)
    assert "evil\\x1b]0;pwned\\x07\\x1b[2K" in out


def test_an_error_message_quoting_a_value_is_shown_escaped_on_stderr(world) -> None:
    result = run_cli("check", "--table", f"orders{TITLE}")
    assert result.code == 2
    _assert_no_raw_controls(result.stderr)
