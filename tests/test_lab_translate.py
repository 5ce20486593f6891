"""Istio objects -> the Envoy resources istiod would build for the sidecar (lab/translate.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.istio.parse import load_files, parse_documents
from egress_doctor.istio.scope import Proxy, proxy_scope
from egress_doctor.lab.translate import EnvoyResources, LabPorts, translate
from egress_doctor.lab.upstreams import Endpoint, Upstreams, is_aws_host

SCENARIOS = Path(__file__).parent.parent / "egress_doctor" / "lab" / "scenarios"
PORTS = LabPorts(http=20080, tls=20443, catch_all=20001, admin=20000)
UPSTREAMS = Upstreams(aws=Endpoint("127.0.0.1", 21443), imds=Endpoint("127.0.0.1", 21080),
                      pod_identity=Endpoint("127.0.0.1", 21081), ca_bundle="/lab/ca.pem")
STS = "sts.us-east-1.amazonaws.com"


def build(yaml_text: str = "", mode: Mode = Mode.REGISTRY_ONLY, **kwargs: Any) -> EnvoyResources:
    docs = [d for d in yaml.safe_load_all(yaml_text) if d]
    objects, _ = parse_documents(docs, "app")
    view = proxy_scope(objects, Proxy("app"), MeshConfig(outbound_traffic_policy=mode))
    return translate(view, PORTS, UPSTREAMS, **kwargs)


def scenario(name: str, mode: Mode = Mode.REGISTRY_ONLY) -> EnvoyResources:
    objects, _ = load_files([SCENARIOS / name], "app")
    return translate(proxy_scope(objects, Proxy("app"), MeshConfig(outbound_traffic_policy=mode)), PORTS, UPSTREAMS)


def listener(res: EnvoyResources, name: str) -> dict[str, Any]:
    return next(x for x in res.listeners if x["name"] == name)


def cluster(res: EnvoyResources, name: str) -> dict[str, Any]:
    return next(c for c in res.clusters if c["name"] == name)


def route(res: EnvoyResources, name: str) -> dict[str, Any]:
    return next(r for r in res.routes if r["name"] == name)


def tcp_cluster(chain: dict[str, Any]) -> str:
    return str(chain["filters"][-1]["typed_config"]["cluster"])


def endpoints(c: dict[str, Any]) -> list[str]:
    return [f"{e['endpoint']['address']['socket_address']['address']}:"
            f"{e['endpoint']['address']['socket_address']['port_value']}"
            for group in c["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]


def service_entry(host: str, port: int = 443, protocol: str = "TLS", resolution: str = "DNS",
                  **extra: Any) -> str:
    spec = {"hosts": [host], "ports": [{"number": port, "name": f"p{port}", "protocol": protocol}],
            "resolution": resolution, **extra}
    return yaml.safe_dump({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                           "metadata": {"name": host.replace("*", "star")[:50]}, "spec": spec}) + "---\n"


def test_blackhole_and_passthrough_clusters_exist_whatever_the_mode() -> None:
    for mode in Mode:
        names = [c["name"] for c in build(mode=mode).clusters]
        assert names[:2] == ["BlackHoleCluster", "PassthroughCluster"]
    assert "load_assignment" not in cluster(build(), "BlackHoleCluster")


def test_without_a_tls_entry_there_is_no_443_listener_and_virtual_outbound_holds_the_443_stand_in() -> None:
    res = build()
    assert "0.0.0.0_443" not in [x["name"] for x in res.listeners]
    vo = listener(res, "virtualOutbound")
    extra = [a["address"]["socket_address"] for a in vo["additional_addresses"]]
    assert {"address": "127.0.0.1", "port_value": PORTS.tls} in extra
    assert "listener_filters" not in vo  # closes right after accept, no ClientHello read
    chains = [c["name"] for c in vo["filter_chains"]]
    assert chains == ["virtualOutbound-blackhole", "virtualOutbound-catchall-tcp"]
    assert tcp_cluster(vo["filter_chains"][1]) == "BlackHoleCluster"


def test_virtual_outbound_catch_all_goes_to_passthrough_under_allow_any() -> None:
    vo = listener(build(mode=Mode.ALLOW_ANY), "virtualOutbound")
    assert tcp_cluster(vo["filter_chains"][1]) == "PassthroughCluster"


def test_a_tls_entry_gets_an_sni_chain_on_the_443_stand_in_and_unknown_sni_falls_to_the_blackhole() -> None:
    res = build(service_entry(STS))
    sni = listener(res, "0.0.0.0_443")
    assert sni["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": PORTS.tls}
    assert [f["name"] for f in sni["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    (chain,) = sni["filter_chains"]
    assert chain["filter_chain_match"] == {"server_names": [STS]}
    assert tcp_cluster(chain) == f"outbound|443||{STS}"
    assert sni["default_filter_chain"]["name"] == "PassthroughFilterChain"
    assert tcp_cluster(sni["default_filter_chain"]) == "BlackHoleCluster"
    assert not any(a["address"]["socket_address"]["port_value"] == PORTS.tls
                   for a in listener(res, "virtualOutbound").get("additional_addresses", []))


def test_port_80_route_ends_with_block_all_returning_a_bare_502() -> None:
    vhosts = route(build(), "80")["virtual_hosts"]
    last = vhosts[-1]
    assert (last["name"], last["domains"]) == ("block_all", ["*"])
    assert last["routes"] == [{"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}]


def test_port_80_route_ends_with_allow_any_to_passthrough_under_allow_any() -> None:
    last = route(build(mode=Mode.ALLOW_ANY), "80")["virtual_hosts"][-1]
    assert last["name"] == "allow_any" and last["domains"] == ["*"]
    assert last["routes"][-1]["route"]["cluster"] == "PassthroughCluster"
    assert last["routes"][-1]["route"]["timeout"] == "0s"


def test_http_listener_matches_plaintext_http_only_like_istio_1_30() -> None:
    http = listener(build(), "0.0.0.0_80")
    (chain,) = http["filter_chains"]
    assert chain["filter_chain_match"] == {"transport_protocol": "raw_buffer",
                                           "application_protocols": ["http/1.1", "h2c"]}
    assert [f["name"] for f in http["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["rds"]["route_config_name"] == "80"
    stand_ins = {a["address"]["socket_address"]["address"] for a in http["additional_addresses"]}
    assert stand_ins == {"127.169.254.254", "127.169.170.23", "127.169.170.2"}


def test_without_assuming_an_http_service_port_80_falls_to_virtual_outbound() -> None:
    res = build(assume_http_80=False)
    assert [x["name"] for x in res.listeners] == ["virtualOutbound"] and res.routes == []


def test_imds_entry_addresses_put_the_ip_and_its_loopback_stand_in_into_the_virtual_host_domains() -> None:
    res = scenario("correct")
    vhost = next(v for v in route(res, "80")["virtual_hosts"] if v["name"] == "imds.aws.internal:80")
    assert vhost["domains"] == ["imds.aws.internal", "imds.aws.internal.", "169.254.169.254", "127.169.254.254"]
    assert vhost["routes"][0]["route"]["cluster"] == "outbound|80||imds.aws.internal"
    assert route(res, "80")["ignore_port_in_host_matching"] is True


def test_an_ip_as_host_is_refused_so_the_blog_2018_imds_entry_leaves_only_block_all() -> None:
    vhosts = route(scenario("blog-2018"), "80")["virtual_hosts"]
    assert [v["name"] for v in vhosts] == ["block_all"]


@pytest.mark.parametrize(("resolution", "envoy_type", "istio_type"), [
    ("DNS", "STRICT_DNS", None), ("DNS_ROUND_ROBIN", "LOGICAL_DNS", None),
    ("STATIC", "STATIC", "EDS"), ("NONE", "STATIC", "ORIGINAL_DST"),
])
def test_cluster_type_follows_resolution(resolution: str, envoy_type: str, istio_type: str | None) -> None:
    extra = {"endpoints": [{"address": "10.1.2.3"}]} if resolution == "STATIC" else {}
    c = cluster(build(service_entry(STS, resolution=resolution, **extra)), f"outbound|443||{STS}")
    assert c["type"] == envoy_type
    assert c["metadata"]["filter_metadata"].get("egress-doctor.lab", {}).get("istio_type") == istio_type
    assert c["metadata"]["filter_metadata"]["istio"]["services"][0]["host"] == STS
    assert endpoints(c) == ["127.0.0.1:21443"]


def test_dns_entry_for_a_name_that_does_not_resolve_leaves_an_empty_cluster_and_a_note() -> None:
    res = build(service_entry("sts.us-east1.amazonaws.com"))
    assert endpoints(cluster(res, "outbound|443||sts.us-east1.amazonaws.com")) == []
    assert any("sts.us-east1.amazonaws.com" in n for n in res.notes)


@pytest.mark.parametrize(("name", "aws"), [(STS, True), ("sts.amazonaws.com", True),
                                           ("111122223333.ddb.us-east-1.amazonaws.com", True),
                                           ("dynamodb.eu-central-1.amazonaws.com", True),
                                           ("sts.us-east1.amazonaws.com", False), ("example.com", False),
                                           ("dynamodb.amazonaws.com", False)])
def test_lab_resolves_only_real_aws_endpoint_names(name: str, aws: bool) -> None:
    assert is_aws_host(name) is aws


def test_port_declared_http_on_443_builds_an_http_chain_that_a_client_hello_cannot_match() -> None:
    sni = listener(build(service_entry("dynamodb.us-east-1.amazonaws.com", protocol="HTTP")), "0.0.0.0_443")
    assert [f["name"] for f in sni["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    (chain,) = sni["filter_chains"]
    assert chain["filter_chain_match"]["application_protocols"] == ["http/1.1", "h2c"]
    assert tcp_cluster(sni["default_filter_chain"]) == "BlackHoleCluster"


def test_http_and_tls_entries_on_443_share_one_listener_with_both_inspectors() -> None:
    res = build(service_entry(STS) + service_entry("dynamodb.us-east-1.amazonaws.com", protocol="HTTP"))
    filters = [f["name"] for f in listener(res, "0.0.0.0_443")["listener_filters"]]
    assert filters == ["envoy.filters.listener.tls_inspector", "envoy.filters.listener.http_inspector"]


def test_tls_entry_with_an_address_gets_a_vip_listener_without_sni_that_the_lab_cannot_reach() -> None:
    res = build(service_entry(STS, addresses=["10.9.9.9"]))
    vip = listener(res, "10.9.9.9_443")
    assert vip["bind_to_port"] is False and "listener_filters" not in vip
    assert tcp_cluster(vip["filter_chains"][0]) == f"outbound|443||{STS}"
    assert "0.0.0.0_443" not in [x["name"] for x in res.listeners]
    assert any("10.9.9.9_443" in n for n in res.notes)


def test_cidr_address_becomes_a_prefix_range_match_on_the_wildcard_listener() -> None:
    res = build(service_entry("*.amazonaws.com", resolution="NONE", addresses=["52.94.0.0/16"]))
    (chain,) = listener(res, "0.0.0.0_443")["filter_chains"]
    assert chain["filter_chain_match"]["prefix_ranges"] == [{"address_prefix": "52.94.0.0", "prefix_len": 16}]


def test_destination_rule_tls_simple_makes_the_cluster_originate_tls_trusting_the_stand_in_roots() -> None:
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec: {{host: {STS}, trafficPolicy: {{tls: {{mode: SIMPLE}}}}}}\n")
    c = cluster(build(service_entry(STS) + dr), f"outbound|443||{STS}")
    context = c["transport_socket"]["typed_config"]
    assert context["sni"] == STS
    assert context["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == "/lab/ca.pem"


def test_virtual_service_tls_route_replaces_the_automatic_sni_chain() -> None:
    vs = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: via-gateway}}
spec:
  hosts: [{STS}]
  gateways: [mesh]
  tls:
  - match: [{{port: 443, sniHosts: [{STS}]}}]
    route: [{{destination: {{host: {STS}, subset: blue, port: {{number: 443}}}}}}]
"""
    (chain,) = listener(build(service_entry(STS) + vs), "0.0.0.0_443")["filter_chains"]
    assert chain["filter_chain_match"]["server_names"] == [STS]
    assert tcp_cluster(chain) == f"outbound|443|blue|{STS}"


def test_allow_any_routes_link_local_hosts_to_their_fakes_and_everything_else_to_passthrough() -> None:
    res = build(mode=Mode.ALLOW_ANY)
    routes = route(res, "80")["virtual_hosts"][-1]["routes"]
    assert [r["route"]["cluster"] for r in routes] == [
        "lab|passthrough|169.254.169.254", "lab|passthrough|169.254.170.23", "lab|passthrough|169.254.170.2",
        "PassthroughCluster"]
    assert endpoints(cluster(res, "lab|passthrough|169.254.169.254")) == ["127.0.0.1:21080"]


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.iterdir()))
@pytest.mark.parametrize("mode", list(Mode))
def test_no_generated_upstream_is_outside_loopback(name: str, mode: Mode) -> None:
    res = scenario(name, mode)
    for c in res.clusters:
        for address in endpoints(c) if "load_assignment" in c else []:
            assert ipaddress.ip_address(address.rsplit(":", 1)[0]).is_loopback, (c["name"], address)
    for x in res.listeners:
        addr = x["address"]["socket_address"]["address"]
        assert x.get("bind_to_port") is False or ipaddress.ip_address(addr).is_loopback, x["name"]


def test_node_metadata_carries_the_istio_version_like_a_real_sidecar_bootstrap() -> None:
    node = build(istio_version="1.29.1").node
    assert node["metadata"]["ISTIO_VERSION"] == "1.29.1"
    assert node["id"].startswith("sidecar~127.0.0.1~") and node["metadata"]["NAMESPACE"] == "app"
