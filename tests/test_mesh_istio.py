"""Parsing Istio YAML into the one typed model (mesh/parse.py into mesh/istio.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_doctor.istio.objects import (
    DestinationRule,
    IstioParseError,
    Location,
    Mode,
    Protocol,
    Resolution,
    ServiceEntry,
    Sidecar,
    VirtualService,
)
from egress_doctor.istio.parse import load_files, parse_yaml

SE = """
apiVersion: networking.istio.io/{version}
kind: ServiceEntry
metadata: {{name: sts}}
spec:
  hosts: [sts.us-east-1.amazonaws.com]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: DNS
"""


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_api_version_parses_to_the_same_service_entry(version: str) -> None:
    (obj,), ignored = parse_yaml(SE.format(version=version), "app")
    assert isinstance(obj, ServiceEntry) and not ignored
    assert obj.hosts == ("sts.us-east-1.amazonaws.com",)
    assert obj.resolution is Resolution.DNS
    assert obj.ports[0].protocol is Protocol.TLS
    assert obj.meta.api_version == f"networking.istio.io/{version}"


def test_object_without_namespace_lands_in_the_pods_namespace_and_explicit_one_is_kept() -> None:
    other = SE.format(version="v1").replace("{name: sts}", "{name: other, namespace: platform}")
    text = SE.format(version="v1") + "---\n" + other
    first, second = parse_yaml(text, "app")[0]
    assert (first.meta.namespace, second.meta.namespace) == ("app", "platform")


def test_service_entry_defaults_are_the_proto_zero_values_none_and_mesh_external() -> None:
    (obj,), _ = parse_yaml("""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bare}
spec: {hosts: [example.com], ports: [{number: 443, name: https}]}
""", "app")
    assert isinstance(obj, ServiceEntry)
    assert obj.resolution is Resolution.NONE
    assert obj.location is Location.MESH_EXTERNAL
    assert obj.ports[0].protocol is Protocol.UNSUPPORTED  # no protocol: istiod sniffs


@pytest.mark.parametrize(("written", "parsed"), [("http", Protocol.HTTP), ("HTTPS", Protocol.HTTPS),
                                                 ("tls", Protocol.TLS), ("Tcp", Protocol.TCP),
                                                 ("grpc", Protocol.GRPC), ("", Protocol.UNSUPPORTED),
                                                 ("quic", Protocol.UNSUPPORTED)])
def test_protocol_names_parse_case_insensitively_like_istio(written: str, parsed: Protocol) -> None:
    assert Protocol.parse(written) is parsed


def test_https_and_tls_are_both_tls_for_sidecar_egress_and_http_is_not() -> None:
    assert Protocol.HTTPS.is_tls and Protocol.TLS.is_tls
    assert not Protocol.HTTP.is_tls and Protocol.HTTP.is_http


def test_sidecar_outbound_policy_without_mode_means_registry_only_and_absent_means_inherit() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: empty-policy}
spec: {outboundTrafficPolicy: {}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: no-policy}
spec: {egress: [{hosts: ["./*"]}]}
"""
    empty, absent = parse_yaml(text, "app")[0]
    assert isinstance(empty, Sidecar) and isinstance(absent, Sidecar)
    assert empty.outbound_traffic_policy is Mode.REGISTRY_ONLY
    assert absent.outbound_traffic_policy is None
    assert absent.egress[0].hosts == ("./*",)


def test_workload_selector_without_labels_is_kept_as_an_empty_selector_not_as_absent() -> None:
    (obj,), _ = parse_yaml("""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec: {workloadSelector: {}, egress: [{hosts: ["*/*"]}]}
""", "app")
    assert isinstance(obj, Sidecar) and obj.workload_selector == {}


def test_destination_rule_and_virtual_service_keep_the_egress_relevant_fields() -> None:
    text = """
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: sts.us-east-1.amazonaws.com
  trafficPolicy: {tls: {mode: SIMPLE, sni: sts.us-east-1.amazonaws.com}}
  subsets: [{name: v1, labels: {a: b}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [sts.us-east-1.amazonaws.com]
  gateways: [mesh, istio-egressgateway]
  tls:
  - match: [{port: 443, sniHosts: [sts.us-east-1.amazonaws.com], gateways: [mesh]}]
    route:
    - destination: {host: egress.istio-system.svc.cluster.local, subset: sts, port: {number: 443}}
"""
    dr, vs = parse_yaml(text, "app")[0]
    assert isinstance(dr, DestinationRule) and isinstance(vs, VirtualService)
    assert dr.tls is not None and dr.tls.mode == "SIMPLE" and dr.subsets[0].name == "v1"
    assert vs.applies_to_sidecars
    dest = vs.tls[0].route[0].destination
    assert (dest.subset, dest.port) == ("sts", 443)
    assert vs.tls[0].match[0].sni_hosts == ("sts.us-east-1.amazonaws.com",)


def test_other_kinds_and_groups_are_ignored_and_listed_not_parsed() -> None:
    objects, ignored = parse_yaml("""
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: wg}
""", "app")
    assert objects == [] and [i.kind for i in ignored] == ["ConfigMap", "WorkloadGroup"]


def test_a_kubernetes_list_is_flattened() -> None:
    objects, _ = parse_yaml("""
apiVersion: v1
kind: List
items:
- {apiVersion: networking.istio.io/v1, kind: ServiceEntry, metadata: {name: a}, spec: {hosts: [a.example]}}
- {apiVersion: networking.istio.io/v1, kind: ServiceEntry, metadata: {name: b}, spec: {hosts: [b.example]}}
""", "app")
    assert [o.meta.name for o in objects] == ["a", "b"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: x}\n", "unknown version"),
    ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {}\n", "without metadata.name"),
    ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: a.com}\n",
     "spec.hosts: must be a list of strings"),
    ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {resolution: DSN}\n",
     'Unsupported value: "DSN"'),
    ("- not\n- a mapping\n", "must be a mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_malformed_objects_are_refused_with_the_field_that_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(IstioParseError, match=fragment.replace("[", r"\[")):
        parse_yaml(text, "app", source="bad.yaml")


def test_load_files_reads_a_directory_of_yaml_and_names_the_source(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SE.format(version="v1"))
    (tmp_path / "notes.txt").write_text("ignored: not yaml by name")
    objects, _ = load_files([tmp_path], "app")
    assert len(objects) == 1 and objects[0].meta.source.endswith("a.yaml#0")
