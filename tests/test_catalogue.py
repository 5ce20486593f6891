"""The findings catalogue and its documentation pages stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from egress_doctor.diagnose.catalogue import (
    RANGES,
    CatalogueError,
    catalogue,
    entry,
    parse_catalogue,
    template_fields,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "findings"
LINK = re.compile(r"\]\((https://[^)\s]+)\)")
# Documentation the pages may link to: Istio, Envoy and AWS, nothing else.
DOC_HOSTS = ("https://istio.io/", "https://www.envoyproxy.io/", "https://docs.aws.amazon.com/")


def _page_codes() -> set[str]:
    return {p.stem for p in PAGES.glob("ED*.md")}


def test_every_code_has_a_page_and_every_page_a_code() -> None:
    assert set(catalogue()) == _page_codes()


def test_codes_sit_in_their_documented_range_with_a_known_level() -> None:
    for code, e in catalogue().items():
        assert code[2] in RANGES, code
        assert e.level in ("error", "warning", "info"), code


def test_each_page_has_cause_evidence_fix_and_an_istio_or_aws_link() -> None:
    for code, e in catalogue().items():
        text = (ROOT / e.docs).read_text(encoding="utf-8")
        assert text.startswith(f"# {code}: {e.title}\n"), code
        for section in ("## Cause", "## Evidence", "## Fix", "## Documentation"):
            assert section in text, f"{code} lacks {section}"
        links = LINK.findall(text)
        assert links and all(link.startswith(DOC_HOSTS) for link in links), code


def test_pages_state_the_catalogue_level() -> None:
    for code, e in catalogue().items():
        assert f"Level: **{e.level}**" in (ROOT / e.docs).read_text(encoding="utf-8"), code


def test_the_index_lists_every_code_once() -> None:
    index = (PAGES / "README.md").read_text(encoding="utf-8")
    for code in catalogue():
        assert index.count(f"[{code}]({code}.md)") == 1, code


def test_template_fields_are_exactly_the_declared_args() -> None:
    for code, e in catalogue().items():
        assert template_fields(e.template) == set(e.args), code


def test_render_refuses_missing_or_unexpected_arguments() -> None:
    e = entry("ED301")
    with pytest.raises(KeyError):
        e.render({"host": "sts.us-east-1.amazonaws.com"})
    with pytest.raises(KeyError):
        e.render({"host": "h", "port": 443, "extra": 1})
    assert "sts.us-east-1.amazonaws.com:443" in e.render({"host": "sts.us-east-1.amazonaws.com", "port": 443})


def test_unknown_code_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="ED999 is not in the findings catalogue"):
        entry("ED999")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("findings: [{code: ED101, name: A, level: error, title: t, template: '{x}', args: [y], "
         "docs: docs/findings/ED101.md}]", "template fields differ"),
        ("findings: [{code: ED701, name: A, level: error, title: t, template: t, args: [], "
         "docs: docs/findings/ED701.md}]", "range digit"),
        ("findings: [{code: ED101, name: A, level: fatal, title: t, template: t, args: [], "
         "docs: docs/findings/ED101.md}]", "level"),
        ("findings: [{code: ED102, name: A, level: info, title: t, template: t, args: [], "
         "docs: docs/findings/ED102.md}, {code: ED101, name: B, level: info, title: t, template: t, "
         "args: [], docs: docs/findings/ED101.md}]", "ordered by code"),
        ("findings: [{code: ED101, name: A, level: info, title: t, template: t, args: [], "
         "docs: docs/findings/ED101.md}, {code: ED101, name: B, level: info, title: t, template: t, "
         "args: [], docs: docs/findings/ED101.md}]", "duplicate"),
        ("findings: [{code: ED101, name: A, level: info, title: t, template: t, args: [], "
         "docs: docs/ED101.md}]", "docs must be"),
        ("findings: [{code: ED101, level: info}]", "lacks"),
    ],
    ids=["template-args", "range", "level", "order", "duplicate", "docs-path", "missing-key"],
)
def test_a_malformed_catalogue_is_rejected_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(CatalogueError, match=complaint):
        parse_catalogue(text)
