"""Every catalogue code is produced by at least one rule-table case (and no case invents one)."""

from __future__ import annotations

from egress_doctor.diagnose.catalogue import catalogue
from tests import (
    test_analyze_cases,
    test_blocked_cases,
    test_cluster_findings,
    test_diagnose_aws,
    test_diagnose_envoy,
    test_diagnose_metadata,
    test_diagnose_network,
    test_explain_egress_policy,
    test_explain_table,
    test_sidecar_counters,
)

TABLES = {
    "network": test_diagnose_network.CASES,
    "envoy": test_diagnose_envoy.CASES,
    "metadata": test_diagnose_metadata.CASES,
    "aws": test_diagnose_aws.CASES,
    "mesh": test_explain_table.CASES,
    "egress-policy": test_explain_egress_policy.CASES,
    "cluster": test_cluster_findings.CASES,
    "analyze": test_analyze_cases.CASES,
    "blocked": test_blocked_cases.CASES,
    "counters": test_sidecar_counters.CASES,
}


def _produced() -> dict[str, list[str]]:
    """Code → the ids of the cases whose diagnosis contains it."""
    produced: dict[str, list[str]] = {}
    for table, cases in TABLES.items():
        for case in cases:
            for finding in case.run().findings:
                produced.setdefault(finding.code, []).append(f"{table}: {case.id}")
    return produced


def test_every_catalogue_code_is_produced_by_some_rule_table_case() -> None:
    missing = sorted(set(catalogue()) - set(_produced()))
    assert missing == [], f"codes no rule-table case produces: {missing}"


def test_rule_tables_produce_only_catalogue_codes() -> None:
    unknown = sorted(set(_produced()) - set(catalogue()))
    assert unknown == []


def test_rule_table_case_ids_are_unique_so_failures_point_at_one_row() -> None:
    ids = [case.id for cases in TABLES.values() for case in cases]
    assert len(ids) == len(set(ids))
