"""The sidecar reader against the lab's real Envoy admin port, for every lab scenario.

One lab per pod namespace, reconfigured per scenario (Envoy relaunches on the same ports).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_doctor.istio.objects import Mode
from egress_doctor.istio.parse import load_files
from egress_doctor.lab.ports import allocate_ports
from egress_doctor.lab.runner import Lab, LabConfig
from egress_doctor.sources.envoy_admin import read_sidecar
from egress_doctor.sources.view import SidecarView

SCENARIOS = Path(__file__).resolve().parents[1] / "egress_doctor" / "lab" / "scenarios"
STS, STS_GLOBAL = "sts.us-east-1.amazonaws.com", "sts.amazonaws.com"
DDB, DDB_REGIONAL = "111122223333.ddb.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"
IMDS, POD_IDENTITY = "169.254.169.254", "169.254.170.23"


def _lab(namespace: str) -> Iterator[Lab]:
    with Lab(LabConfig(files=(str(SCENARIOS / "correct"),), namespace=namespace)) as lab:
        yield lab


@pytest.fixture(scope="module")
def default_lab() -> Iterator[Lab]:
    yield from _lab("default")


@pytest.fixture(scope="module")
def payments_lab() -> Iterator[Lab]:
    yield from _lab("payments")


def read(lab: Lab, scenario: str, mode: Mode = Mode.REGISTRY_ONLY) -> SidecarView:
    objects, _ = load_files([SCENARIOS / scenario], lab.config.namespace)
    lab.reconfigure(objects, mode=mode)
    assert lab.admin_url is not None
    view = read_sidecar(lab.admin_url, deadline=time.monotonic() + 5)
    assert view.present and view.warnings == [], view.warnings
    return view


def test_correct_entries_show_registry_only_versions_and_an_entry_for_every_host(default_lab: Lab) -> None:
    view = read(default_lab, "correct")
    assert (view.outbound_mode, view.istio_version, view.envoy_version) == (Mode.REGISTRY_ONLY, "1.30.3", "1.40.0")
    assert view.mode_evidence == ["listener virtualOutbound chain virtualOutbound-catchall-tcp → BlackHoleCluster",
                                  'route "80" ends with virtual host block_all']
    assert view.ready is True
    sts = view.coverage(STS, 443)
    assert sts.sni_chain is not None and sts.cluster is not None and sts.cluster.type == "STRICT_DNS"
    assert sts.cluster.endpoints and sts.cluster.healthy == len(sts.cluster.endpoints)
    assert sts.cluster.services == (f"default/{STS}",)
    account = view.coverage(DDB, 443)
    assert account.cluster is None and account.wildcard_cluster is not None and account.sni_chain is not None
    for address in (IMDS, POD_IDENTITY):
        assert view.coverage(address, 80).virtual_host is not None, address


def test_the_same_entries_under_allow_any_read_as_allow_any(default_lab: Lab) -> None:
    assert read(default_lab, "correct", Mode.ALLOW_ANY).outbound_mode is Mode.ALLOW_ANY


def test_a_sidecar_allow_any_policy_is_the_mode_this_pod_gets(default_lab: Lab) -> None:
    view = read(default_lab, "allow-any")
    assert view.outbound_mode is Mode.ALLOW_ANY
    assert view.http_routes["80"][-1].name == "allow_any"


def test_blog_2018_has_global_sts_and_regional_dynamodb_but_not_what_the_sdk_calls(default_lab: Lab) -> None:
    view = read(default_lab, "blog-2018")
    assert not view.coverage(STS, 443).covered
    assert view.similar_entries(STS, 443) == [DDB_REGIONAL, STS_GLOBAL]
    assert view.coverage(STS_GLOBAL, 443).sni_chain is not None
    assert not view.coverage(DDB, 443).covered
    assert not view.coverage(IMDS, 80).covered  # the IP-as-host entry was refused


def test_dns_typo_leaves_the_sts_cluster_without_endpoints_behind_a_valid_sni_chain(default_lab: Lab) -> None:
    view = read(default_lab, "dns-typo")
    sts = view.coverage(STS, 443)
    assert sts.sni_chain is not None and sts.cluster is not None
    assert (sts.cluster.type, sts.cluster.endpoints, sts.cluster.resolves_by_dns) == ("STRICT_DNS", (), True)


def test_dynamodb_declared_http_has_a_route_443_virtual_host_and_no_sni_chain(default_lab: Lab) -> None:
    view = read(default_lab, "dynamodb-declared-http")
    ddb = view.coverage(DDB_REGIONAL, 443)
    assert ddb.sni_chain is None and ddb.virtual_host is not None and ddb.virtual_host.route == "443"


def test_no_service_entries_means_no_outbound_cluster_at_all(default_lab: Lab) -> None:
    view = read(default_lab, "no-service-entries")
    assert sorted(view.clusters) == ["BlackHoleCluster", "PassthroughCluster"]
    assert view.sni_chains == {} and [v.name for v in view.http_routes["80"]] == ["block_all"]


@pytest.mark.parametrize("scenario", ["hidden-by-export-to", "hidden-by-sidecar"])
def test_entries_hidden_from_the_pods_namespace_are_absent_from_its_sidecar(payments_lab: Lab,
                                                                            scenario: str) -> None:
    view = read(payments_lab, scenario)
    assert not view.coverage(STS, 443).covered and not view.coverage(DDB, 443).covered
    assert view.similar_entries(STS, 443) == []


def test_read_keeps_the_coverage_of_the_hosts_the_run_used(default_lab: Lab) -> None:
    read(default_lab, "correct")
    assert default_lab.admin_url is not None
    view = read_sidecar(default_lab.admin_url, hosts=[(STS, 443), (IMDS, 80), (STS, 443)])
    assert [(c.host, c.port, c.covered) for c in view.hosts] == [(STS, 443, True), (IMDS, 80, True)]


def test_a_lab_without_envoy_reads_as_no_sidecar_with_a_warning_quickly() -> None:
    port = allocate_ports().admin  # nothing listens there
    started = time.monotonic()
    view = read_sidecar(f"http://127.0.0.1:{port}", deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 1.0
    assert not view.present and view.clusters == {}
    assert "connect-refused" in view.warnings[0] and "no sidecar" in view.warnings[0]


def test_a_read_for_the_run_hosts_asks_only_for_their_ports_and_clusters_and_agrees_with_a_full_read(
        default_lab: Lab) -> None:
    read(default_lab, "correct")
    assert default_lab.admin_url is not None
    hosts = [(STS, 443), (DDB, 443), (IMDS, 80)]
    full = read_sidecar(default_lab.admin_url)
    narrow = read_sidecar(default_lab.admin_url, hosts=hosts)
    assert narrow.warnings == []
    assert [narrow.coverage(h, p) for h, p in hosts] == [full.coverage(h, p) for h, p in hosts]
    assert (narrow.outbound_mode, narrow.mode_evidence) == (full.outbound_mode, full.mode_evidence)
    assert set(narrow.clusters) < set(full.clusters)
    assert all(name.startswith(("outbound|443|", "outbound|80|")) for name in narrow.clusters)
    with_endpoints = {name for name, cluster in narrow.clusters.items() if cluster.endpoints}
    assert with_endpoints == {f"outbound|443||{STS}", "outbound|443||*.ddb.us-east-1.amazonaws.com"}
