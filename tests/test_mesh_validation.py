"""istiod's webhook rules (mesh/validation.py): exact messages from istio 1.30.3
pkg/config/validation/validation.go and agent/validation.go."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from egress_doctor.istio.names import fqdn_error, wildcard_domain_error
from egress_doctor.istio.objects import IstioObject
from egress_doctor.istio.parse import parse_documents
from egress_doctor.istio.validation import (
    Level,
    denial,
    is_admitted,
    namespace_slash_host_errors,
    validate,
)


def se(**spec: Any) -> IstioObject:
    spec.setdefault("hosts", ["sts.us-east-1.amazonaws.com"])
    spec.setdefault("ports", [{"number": 443, "name": "tls", "protocol": "TLS"}])
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
           "metadata": {"name": "x", "namespace": "app"}, "spec": spec}
    return parse_documents([doc], "app")[0][0]


def obj(text: str) -> IstioObject:
    return parse_documents([yaml.safe_load(text)], "app")[0][0]


def errors_of(o: IstioObject) -> list[str]:
    return [m.message for m in validate(o) if m.level is Level.ERROR]


def warnings_of(o: IstioObject) -> list[str]:
    return [m.message for m in validate(o) if m.level is Level.WARNING]


def test_an_ip_address_as_host_is_refused_with_istiods_message_naming_the_labels_after_the_first() -> None:
    # ValidateWildcardDomain checks "169" as a wildcard label and "254.169.254" as the rest.
    entry = se(hosts=["169.254.169.254"], ports=[{"number": 80, "name": "http", "protocol": "HTTP"}])
    assert errors_of(entry) == [
        'domain name "254.169.254" invalid (top level domain "254" cannot be all-numeric)']


def test_an_ip_host_with_dns_resolution_also_fails_the_fqdn_rule_with_the_whole_address() -> None:
    entry = se(hosts=["169.254.169.254"], resolution="DNS",
               ports=[{"number": 80, "name": "http", "protocol": "HTTP"}])
    assert errors_of(entry)[1] == (
        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution "
        'mode DNS, domain name "169.254.169.254" invalid (top level domain "254" cannot be all-numeric)')


def test_a_wildcard_host_with_dns_resolution_and_no_endpoints_is_refused() -> None:
    entry = se(hosts=["*.amazonaws.com"], resolution="DNS")
    assert errors_of(entry) == [
        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution "
        'mode DNS, domain name "*.amazonaws.com" invalid (label "*" invalid)']


def test_a_wildcard_host_with_dns_resolution_is_admitted_when_endpoints_are_given() -> None:
    assert is_admitted(se(hosts=["*.amazonaws.com"], resolution="DNS",
                          endpoints=[{"address": "proxy.example.com"}]))


def test_a_wildcard_host_with_resolution_none_is_the_admitted_way_to_allow_many_names() -> None:
    assert validate(se(hosts=["*.ddb.us-east-1.amazonaws.com"], resolution="NONE")) == []


@pytest.mark.parametrize(("spec", "message"), [
    ({"hosts": ["*"]}, "invalid host *"),
    ({"hosts": []}, "service entry must have at least one host"),
    ({"resolution": "NONE", "endpoints": [{"address": "1.2.3.4"}]},
     "no endpoints should be provided for resolution type none"),
    ({"resolution": "DNS", "addresses": ["10.0.0.0/8"]},
     "CIDR addresses are allowed only for NONE/STATIC resolution types"),
    ({"addresses": ["10.0.0.300"]}, "10.0.0.300 is not a valid IP"),
    ({"addresses": ["10.0.0.0/33"]}, "10.0.0.0/33 is not a valid CIDR block"),
    ({"ports": [{"number": 443, "name": "tls", "protocol": "TLS"},
                {"number": 443, "name": "tls2", "protocol": "TLS"}]},
     "service entry port 443 already defined"),
    ({"ports": [{"number": 443, "name": "tls", "protocol": "TLS"},
                {"number": 8443, "name": "tls", "protocol": "TLS"}]},
     'service entry port name "tls" already defined'),
    ({"ports": [{"number": 443, "name": "TLS_Port", "protocol": "TLS"}]}, "invalid port name: TLS_Port"),
    ({"ports": [{"number": 443, "name": "quic", "protocol": "QUIC"}]}, "unsupported protocol: QUIC"),
    ({"ports": [{"number": 70000, "name": "big", "protocol": "TLS"}]},
     "port number 70000 must be in the range 1..65535"),
    ({"resolution": "STATIC", "endpoints": [{"address": "imds.example.com"}]},
     'endpoint address "imds.example.com" is not a valid IP address'),
    ({"resolution": "DNS", "endpoints": [{"address": "not_a_name!"}]},
     'endpoint address "not_a_name!" is not a valid FQDN or an IP address'),
    ({"resolution": "DNS_ROUND_ROBIN",
      "endpoints": [{"address": "a.example.com"}, {"address": "b.example.com"}]},
     "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN"),
    ({"resolution": "STATIC", "endpoints": [{"address": "1.2.3.4", "ports": {"web": 8080}}]},
     "endpoint port 8080 is not defined by the service entry"),
    ({"hosts": ["a.example.com", "b.example.com"], "resolution": "DNS",
      "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}]},
     "multiple hosts provided with non-HTTP, non-TLS ports"),
    ({"exportTo": ["app", "."]}, "duplicate entries in exportTo: . and current namespace app"),
    ({"exportTo": [".", "app"]}, "duplicate entries in exportTo for entry app"),
    ({"exportTo": ["*", "*"]}, "duplicate entries in exportTo for entry *"),
    ({"exportTo": ["Not_A_Namespace"]}, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry"),
    ({"workloadSelector": {"labels": {"app": "x"}}, "resolution": "STATIC",
      "endpoints": [{"address": "1.2.3.4"}]},
     "only one of WorkloadSelector or Endpoints is allowed in Service Entry"),
    ({"resolution": "DYNAMIC_DNS"}, "host must be wildcarded for resolution mode DYNAMIC_DNS"),
])
def test_service_entry_is_refused_by_the_webhook_with(spec: dict[str, Any], message: str) -> None:
    assert message in errors_of(se(**spec))


@pytest.mark.parametrize(("spec", "message"), [
    ({"hosts": ["*foo.example.com"]}, 'partial wildcard "*foo.example.com" not allowed'),
    ({"ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}], "resolution": "NONE"},
     "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not "
     "enabled"),
    ({"workloadSelector": {}, "resolution": "DNS"},
     "service entry: workload selector specified without labels, will be applied to all services in "
     "namespace"),
])
def test_service_entry_is_admitted_with_the_warning(spec: dict[str, Any], message: str) -> None:
    entry = se(**spec)
    assert message in warnings_of(entry) and is_admitted(entry)


def test_tcp_without_addresses_gets_no_warning_when_istiod_auto_allocates_an_address() -> None:
    assert warnings_of(se(ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}], resolution="DNS",
                          hosts=["db.example.com"])) == []


def test_exportto_tilde_is_allowed_on_a_service_entry_but_not_on_a_destination_rule() -> None:
    assert is_admitted(se(exportTo=["~"]))
    rule = obj("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec: {host: sts.us-east-1.amazonaws.com, exportTo: ["~"]}
""")
    assert errors_of(rule) == ["exportTo ~ (none) is not allowed for Istio configuration objects"]


def test_the_recommended_entries_pass_without_any_message() -> None:
    imds = se(hosts=["imds.aws.internal"], addresses=["169.254.169.254"], resolution="STATIC",
              ports=[{"number": 80, "name": "http", "protocol": "HTTP"}],
              endpoints=[{"address": "169.254.169.254"}])
    assert validate(imds) == [] and validate(se(resolution="DNS")) == []


def test_denial_reads_like_kubectls_error_for_a_refused_object() -> None:
    text = denial(se(hosts=["*"]))
    assert text == ('admission webhook "validation.istio.io" denied the request: configuration is invalid: '
                    "invalid host *")
    assert denial(se()) is None


@pytest.mark.parametrize(("host", "problems"), [
    ("./*", []),
    ("*/*", []),
    ("~/*", []),
    ("istio-system/*.amazonaws.com", []),
    ("sts.amazonaws.com", ["host must be of form namespace/dnsName"]),
    ("./sts", ["short names (non FQDN) are not allowed"]),
    ("Bad_NS/*", ['invalid namespace value "Bad_NS" in sidecar']),
    ("./*foo.example.com", ['partial wildcard "*foo.example.com" not allowed']),
    ("./foo*.example.com", ['domain name "foo*.example.com" invalid (label "foo*" invalid)',
                            'partial wildcard "foo*.example.com" not allowed']),
])
def test_sidecar_egress_host_entries_follow_the_namespace_slash_host_rules(host: str,
                                                                           problems: list[str]) -> None:
    assert namespace_slash_host_errors(host) == problems


def test_a_sidecar_with_nothing_in_it_is_refused_and_one_with_only_a_policy_is_admitted() -> None:
    empty = obj("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {}\n")
    policy = obj("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\n"
                 "spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\n")
    assert errors_of(empty) == ["sidecar: empty configuration provided"]
    assert is_admitted(policy)


def test_sidecar_catch_all_egress_listener_must_be_last_and_ports_unique() -> None:
    sidecar = obj("""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec:
  egress:
  - hosts: ["./*"]
  - {port: {number: 443, protocol: TLS, name: tls}, hosts: ["./*"]}
  - {port: {number: 443, protocol: TLS, name: tls2}, hosts: ["./*"]}
""")
    assert errors_of(sidecar) == [
        "sidecar: the egress listener with empty port should be the last listener in the list",
        "sidecar: ports on IP bound listeners must be unique"]


def test_virtual_service_bound_to_the_mesh_may_not_use_the_bare_wildcard_host() -> None:
    vs = obj("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  tls: [{match: [{sniHosts: [a.example.com]}], route: [{destination: {host: a.example.com}}]}]
""")
    assert errors_of(vs) == ["wildcard host * is not allowed for virtual services bound to the mesh gateway"]


def test_tls_route_without_sni_hosts_is_refused() -> None:
    vs = obj("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a.example.com]
  tls: [{match: [{port: 443}], route: [{destination: {host: a.example.com}}]}]
""")
    assert errors_of(vs) == ["TLS match must have at least one SNI host"]


def test_destination_rule_subset_names_must_be_unique_dns_labels() -> None:
    rule = obj("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec: {host: a.example.com, subsets: [{name: v1}, {name: v1}, {name: V_2}]}
""")
    assert errors_of(rule) == ["duplicate subset names: v1", "subset name is invalid: V_2"]


@pytest.mark.parametrize(("name", "ok"), [("sts.amazonaws.com", True), ("istio.io.", True),
                                          ("*.amazonaws.com", False), ("1.2.3.4", False), ("", False)])
def test_fqdn_rule_accepts_only_plain_dns_names(name: str, ok: bool) -> None:
    assert (fqdn_error(name) is None) is ok


@pytest.mark.parametrize(("name", "ok"), [("*.amazonaws.com", True), ("*", True), ("*foo.bar.com", True),
                                          ("foo.*.com", False), ("foo*.bar.com", False), ("1.1.1.1", False)])
def test_wildcard_domain_rule_matches_istios_unit_test_table(name: str, ok: bool) -> None:
    assert (wildcard_domain_error(name) is None) is ok
