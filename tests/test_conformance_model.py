"""egress-doctor's model of istiod against Istio's own tests (tests/conformance/*.yaml): for every
case, each call lands where Istio's test says it does."""

from __future__ import annotations

import pytest

from egress_doctor.istio.simulate import simulate
from tests.conformance_cases import Case, expected, load_cases, model_config, observed

CASES = load_cases()


def test_the_corpus_holds_at_least_sixty_cases_from_istios_own_tests() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert all(c.source.startswith(("pilot/", "pkg/", "tests/")) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_model_answers_what_istio_asserts(case: Case) -> None:
    config = model_config(case)
    failures = []
    for item in case.calls:
        got = observed(config, simulate(config, item.call), item.expect)
        want = expected(item.expect)
        if got != want:
            failures.append(f"{item.call}: Istio {want}, model {got}")
    assert not failures, f"{case}\n" + "\n".join(failures)
