"""The conformance corpus (tests/conformance/*.yaml, Istio's own tests as data), loaded, and run
against egress-doctor's model of istiod. tests/test_conformance_model.py and
tests/test_conformance_lab.py hold every case to Istio's answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from egress_doctor.istio.gateway_proxy import build_gateway
from egress_doctor.istio.objects import IstioObject, MeshConfig
from egress_doctor.istio.outbound import build_sidecar
from egress_doctor.istio.parse import parse_yaml
from egress_doctor.istio.scope import Proxy, ProxyKind, proxy_scope
from egress_doctor.istio.simulate import Call, Result
from egress_doctor.istio.xds import ProxyConfig
from egress_doctor.sources.kube_facts import parse_mesh_config

CORPUS = Path(__file__).parent / "conformance"
FIELDS = ("cluster", "vhost", "destination_rule", "tls_origination", "subsets")


@dataclass(frozen=True)
class CaseCall:
    call: Call
    expect: dict[str, Any]


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    test: str
    mesh: MeshConfig
    proxy: Proxy
    objects: tuple[IstioObject, ...]
    calls: tuple[CaseCall, ...]
    lab: str = ""  # why the lab cannot run it ("" : it can)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"{self.id} ({self.source} :: {self.test})"


def _proxy(raw: dict[str, Any]) -> Proxy:
    kind = ProxyKind(raw.get("type", "sidecar"))
    labels = raw.get("labels")
    default_labels = {} if labels is None else {str(k): str(v) for k, v in labels.items()}
    return Proxy(namespace=raw.get("namespace", "default"), labels=default_labels, kind=kind)


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text(encoding="utf-8")):
            mesh, _ = parse_mesh_config(yaml.safe_dump(raw.get("mesh") or {}), f"{path.name}:{raw['id']}")
            proxy = _proxy(raw.get("proxy") or {})
            objects, _ = parse_yaml(raw.get("config") or "", proxy.namespace, f"{path.name}:{raw['id']}")
            calls = tuple(CaseCall(Call(str(c["host"]), int(c["port"]), c["protocol"], str(c.get("address") or "")),
                                   dict(c.get("expect") or {})) for c in raw["calls"])
            cases.append(Case(raw["id"], raw["source"], raw.get("test", ""), mesh, proxy, tuple(objects), calls,
                              str(raw.get("lab") or ""), raw))
    return cases


def model_config(case: Case) -> ProxyConfig:
    scope = proxy_scope(case.objects, case.proxy, case.mesh)
    return build_gateway(scope) if case.proxy.kind is ProxyKind.GATEWAY else build_sidecar(scope)


def observed(config: ProxyConfig, result: Result, wanted: dict[str, Any]) -> dict[str, Any]:
    """The model's answer for the fields the case asserts."""
    out: dict[str, Any] = {}
    cluster = result.config
    for name in wanted:
        if name == "cluster":
            out[name] = result.cluster or "none"
        elif name == "vhost":
            out[name] = result.vhost or "none"
        elif name == "destination_rule":
            out[name] = cluster.rule.ref if cluster is not None and cluster.rule is not None else "none"
        elif name == "tls_origination":
            out[name] = cluster.tls.mode if cluster is not None and cluster.tls is not None else "none"
        elif name == "subsets":
            out[name] = sorted(subsets(config, result.cluster))
    return out


def subsets(config: ProxyConfig, cluster: str) -> list[str]:
    parts = cluster.split("|")
    if len(parts) != 4:
        return []
    return [c.subset for c in config.clusters.values()
            if c.subset and c.service is not None and c.service.hostname == parts[3]
            and c.port is not None and str(c.port.number) == parts[1]]


def expected(wanted: dict[str, Any]) -> dict[str, Any]:
    return {k: (sorted(str(s) for s in v) if k == "subsets" else str(v)) for k, v in wanted.items()}
