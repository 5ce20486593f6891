"""Reading Istio YAML from files and trees for `analyze`: what is kept, what is skipped, and the
fast YAML path that must give exactly `yaml.safe_load_all`'s result."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from egress_doctor.istio.objects import Mode
from egress_doctor.istio.yaml_load import load_all
from egress_doctor.sources.files import FilesError, read_files, read_yaml

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.example.com], ports: [{number: 443, name: tls, protocol: TLS}]}
"""


@pytest.mark.parametrize(
    "text",
    [
        SE,
        "a: 1\nb: [true, null, 1.5, '443', 0x1F, 0o17, ~]\n---\n- x\n- {y: z}\n",
        "base: &b {port: 443}\nother: *b\nlist: [*b, *b]\n",
        "merged:\n  <<: {a: 1}\n  b: 2\n",
        "when: 2024-01-02T03:04:05Z\nday: 2024-01-02\n",
        "data: !!binary aGVsbG8=\nset: !!set {a, b}\n",
        "? [a, b]\n: complex key\n",
        "",
        "---\n---\n",
    ],
    ids=["istio", "scalars", "aliases", "merge-key", "timestamps", "binary-and-set", "unhashable-key", "empty",
         "empty-docs"],
)
def test_fast_yaml_gives_exactly_what_safe_load_all_gives(text: str) -> None:
    try:
        expected = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            load_all(text)
        return
    assert load_all(text) == expected


def test_fast_yaml_raises_what_safe_load_raises_on_bad_input() -> None:
    for text in ("a: [unclosed", "tag: !custom x\n"):
        with pytest.raises(yaml.YAMLError):
            load_all(text)


def test_lists_gateways_mesh_config_and_the_pods_namespace_are_read(tmp_path: Path) -> None:
    text = f"""apiVersion: v1
kind: List
items:
- {yaml.safe_load(SE)}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress, namespace: istio-system}}
spec: {{selector: {{istio: egressgateway}}, servers: [{{port: {{number: 443}}, hosts: ["*/a.example.com"]}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data: {{mesh: "outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\\nrootNamespace: istio-config"}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: payments, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
"""
    read = read_yaml(text, "payments")
    assert [o.meta.ref for o in read.objects] == ["ServiceEntry payments/a", "Gateway istio-system/egress"]
    assert [(g.ref, g.hosts, g.ports) for g in read.gateways] == [
        ("Gateway istio-system/egress", ("*/a.example.com",), (443,))]
    assert read.mesh is not None and read.mesh.outbound_traffic_policy is Mode.REGISTRY_ONLY
    assert read.mesh.root_namespace == "istio-config"
    assert read.namespace_labels == {"istio.io/dataplane-mode": "ambient"}
    assert set(read.manifests) == {"ServiceEntry payments/a", "Gateway istio-system/egress"}


def test_trees_skip_hidden_directories_and_other_suffixes(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yaml").write_text("{broken")
    (tmp_path / "README.md").write_text("# not yaml {")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "se.yml").write_text(SE)
    read = read_files([tmp_path], "default")
    assert read.files == 1 and [o.meta.name for o in read.objects] == ["a"]


def test_a_template_is_skipped_with_a_warning_but_broken_yaml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("metadata:\n  name: {{ .Values.name }}\n  labels: {{ toYaml . }}\n")
    read = read_files([tmp_path], "default")
    assert read.objects == [] and "a template" in read.skipped[0]
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(FilesError, match=r"bad.yaml:.*not valid YAML"):
        read_files([tmp_path], "default")
