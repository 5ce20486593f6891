"""The lab's real Envoy, configured from egress-doctor's model of istiod, against Istio's own tests
(tests/conformance/*.yaml): each call, made for real, lands where Istio's test says. Cases the
lab cannot run (a destination IP needs iptables) say why and run on the model only; docs/lab.md
lists them."""

from __future__ import annotations

import pytest

from tests.conformance_cases import Case, expected, load_cases
from tests.conformance_lab import lab_proxy, run_call

pytestmark = pytest.mark.lab

CASES = [c for c in load_cases() if not c.lab]


def test_most_of_the_corpus_runs_on_the_lab() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_labs_envoy_answers_what_istio_asserts(case: Case) -> None:
    failures = []
    with lab_proxy(case) as proxy:
        for item in case.calls:
            got = run_call(proxy, item.call, item.expect)
            want = expected(item.expect)
            if got != want:
                failures.append(f"{item.call}: Istio {want}, lab {got}")
    assert not failures, f"{case}\n" + "\n".join(failures)


def test_docs_lab_lists_every_case_the_lab_cannot_run() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "lab.md").read_text(encoding="utf-8")
    missing = [c.id for c in load_cases() if c.lab and f"`{c.id}`" not in text]
    assert not missing, f"docs/lab.md does not say why the lab skips {missing}"
