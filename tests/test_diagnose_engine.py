"""The engine's contract: options, determinism, fix linkage, purity, robustness."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pytest

from egress_doctor.diagnose import DiagnoseOptions, diagnose
from egress_doctor.diagnose import engine as engine_module
from egress_doctor.diagnose.catalogue import catalogue
from egress_doctor.render.fix_yaml import render_fixes
from tests.test_diagnose_evidence import (
    AGENT,
    ARWWI,
    DDB,
    DESCRIBE,
    GCI,
    ROLE,
    STS,
    TOKEN,
    facts,
    identity,
    passed,
    skipped,
)
from tests.test_diagnose_replies import (
    aws_error,
    envoy,
)
from tests.test_diagnose_transport import (
    tls_eof,
)

# Codes whose cause is the mesh (a missing entry or the sidecar's lifecycle) and that a fix addresses.
MESH_FIXED = {"ED202", "ED205", "ED301", "ED401", "ED601", "ED602"}


def _blocked_run() -> list:
    return [envoy(TOKEN, "block_all"), skipped(ROLE), tls_eof(ARWWI), tls_eof(DESCRIBE, host=DDB)]


def test_same_evidence_gives_the_same_findings_fixes_and_yaml() -> None:
    first = diagnose(identity("imds"), _blocked_run(), facts())
    second = diagnose(identity("imds"), _blocked_run(), facts())
    assert [asdict(f) for f in first.findings] == [asdict(f) for f in second.findings]
    assert render_fixes(first.fixes) == render_fixes(second.fixes)


def test_findings_are_ordered_errors_first_then_by_code() -> None:
    diagnosis = diagnose(identity("imds"), _blocked_run(), facts(AWS_REGION="eu-west-1"))
    levels = [f.level for f in diagnosis.findings]
    assert levels == sorted(levels, key=["error", "warning", "info"].index)
    assert [f.code for f in diagnosis.findings] == ["ED301", "ED301", "ED401", "ED550", "ED601", "ED602"]


def test_every_mesh_finding_names_a_printed_fix_and_every_other_finding_names_none() -> None:
    diagnosis = diagnose(identity("imds"), _blocked_run(), facts(AWS_REGION="eu-west-1"))
    ids = {f.id for f in diagnosis.fixes}
    for finding in diagnosis.findings:
        if finding.code in MESH_FIXED:
            assert finding.fix in ids, finding.code
        else:
            assert finding.fix is None, finding.code


def test_fixes_go_to_the_pods_namespace_unless_the_options_name_one() -> None:
    checks = [tls_eof(GCI)]
    from_facts = diagnose(identity(), checks, facts(namespace="payments"))
    from_options = diagnose(identity(), checks, facts(namespace="payments"), DiagnoseOptions(namespace="ops"))
    default = diagnose(identity(), checks, facts(namespace=None))
    namespaces = [
        d.fixes[0].manifests[0]["metadata"]["namespace"] for d in (from_facts, from_options, default)
    ]
    assert namespaces == ["payments", "ops", "default"]


def test_export_to_and_api_version_follow_the_options() -> None:
    options = DiagnoseOptions(istio_api="v1beta1", export_to=["*"])
    (fix,) = diagnose(identity(), [tls_eof(GCI)], facts(), options).fixes
    manifest = fix.manifests[0]
    assert manifest["apiVersion"] == "networking.istio.io/v1beta1"
    assert manifest["spec"]["exportTo"] == ["*"]


@pytest.mark.parametrize(
    "options",
    [DiagnoseOptions(istio_api="v2"), DiagnoseOptions(imds_fix="iptables")],
    ids=["unknown istio api", "unknown imds fix"],
)
def test_invalid_options_are_refused_before_any_work(options: DiagnoseOptions) -> None:
    with pytest.raises(ValueError):
        diagnose(identity(), [], facts(), options)


def test_annotation_option_turns_every_metadata_address_into_one_exclusion_patch() -> None:
    checks = [envoy(AGENT, "block_all")]
    diagnosis = diagnose(identity("pod-identity"), checks, facts(), DiagnoseOptions(imds_fix="annotation"))
    (fix,) = diagnosis.fixes
    assert fix.id == "patch/exclude-outbound-ip-ranges"
    assert fix.manifests == []
    assert "169.254.170.23/32" in (fix.patch or "")
    assert diagnosis.findings[0].fix == fix.id


def test_diagnosis_does_not_modify_the_checks_it_reads() -> None:
    checks = [tls_eof(GCI), envoy(TOKEN, "block_all")]
    before = copy.deepcopy(checks)
    diagnose(identity("imds"), checks, facts())
    assert checks == before


def test_a_run_where_everything_passed_has_nothing_to_say_and_nothing_to_apply() -> None:
    diagnosis = diagnose(identity(), [passed(ARWWI), passed(GCI), passed(DESCRIBE)], facts())
    assert diagnosis.findings == [] and diagnosis.fixes == []
    assert render_fixes(diagnosis.fixes) == ""


def test_mesh_fine_run_renders_no_yaml() -> None:
    diagnosis = diagnose(identity(), [passed(GCI), aws_error(DESCRIBE, "ResourceNotFoundException")], facts())
    assert render_fixes(diagnosis.fixes) == ""


def test_a_crashing_rule_becomes_an_internal_error_finding_and_the_rest_still_runs(monkeypatch) -> None:
    def broken(group, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(engine_module, "HOST_RULES", (broken,))
    diagnosis = diagnose(
        identity(), [tls_eof(GCI), aws_error(DESCRIBE, "ResourceNotFoundException")], facts()
    )
    codes = [f.code for f in diagnosis.findings]
    assert codes == ["ED543", "ED902"]
    assert "boom" in diagnosis.findings[1].message


def test_finding_titles_levels_and_docs_come_from_the_catalogue() -> None:
    diagnosis = diagnose(identity(), [tls_eof(GCI)], facts())
    for finding in diagnosis.findings:
        entry = catalogue()[finding.code]
        assert (finding.title, finding.level, finding.docs) == (entry.title, entry.level, entry.docs)


def test_two_blocked_hosts_of_one_service_get_one_serviceentry_each() -> None:
    checks = [
        tls_eof(DESCRIBE, host=DDB),
        tls_eof("dynamodb.list-tables", host="dynamodb.us-east-1.amazonaws.com"),
    ]
    fixes = diagnose(identity(), checks, facts()).fixes
    assert [fix.manifests[0]["spec"]["hosts"] for fix in fixes] == [
        ["111122223333.ddb.us-east-1.amazonaws.com"],
        ["dynamodb.us-east-1.amazonaws.com"],
    ]


def test_each_fix_comment_names_the_code_host_and_why_it_was_blocked() -> None:
    (fix,) = diagnose(identity(), [tls_eof(GCI)], facts()).fixes
    assert fix.description.splitlines()[0] == (
        f"egress-doctor: ED301 — allows {STS}:443 (blocked: TLS closed during handshake)"
    )
