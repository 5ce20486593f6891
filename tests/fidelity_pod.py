"""A pod behind the lab's real Envoy in a mesh shaped like a real cluster: the Istio objects and the
mesh config served by a fake Kubernetes API (real HTTP) *and* configured into the lab's Envoy by
the model, so `check --kubeconfig …` reads exactly what the sidecar runs. A fix is applied the way
`kubectl apply -f -` would: to the cluster (the API's lists) and to the sidecar (the lab)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.istio.objects import Mode
from egress_doctor.lab.runner import Lab, LabConfig
from egress_doctor.sources.kube_facts import parse_mesh_config
from tests.checkrun import CliResult, become_the_pod, run_cli
from tests.kube_api import FakeApiServer, routes_for_objects, write_kubeconfig
from tests.sockets import Pki

ACCOUNT = "111122223333"
POD_NAME = "app-5d9f7c8b6-abcde"


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def _key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return str(doc.get("kind")), str(meta.get("namespace")), str(meta.get("name"))


@dataclass
class MeshPod:
    lab: Lab
    api: FakeApiServer
    kubeconfig: Path
    manifests: list[dict[str, Any]]
    mesh: dict[str, Any]
    namespace: str
    labels: Mapping[str, str] | None
    applied: list[list[dict[str, Any]]] = field(default_factory=list)

    def check(self, *extra: str) -> CliResult:
        return run_cli("check", "--table", "orders", "-o", "json", "--deadline", "8",
                       "--kubeconfig", str(self.kubeconfig), "--context", "lab", *extra)

    def fix(self, *extra: str) -> list[dict[str, Any]]:
        return docs(self.check("--fix-only", *extra).stdout)

    def gateway_stat(self, name: str) -> int:
        """One counter of the gateway Envoy's admin `/stats` (summed over its listeners)."""
        assert self.lab.gateway is not None
        with urllib.request.urlopen(f"{self.lab.gateway.admin_url}/stats?filter={name}", timeout=3) as answer:
            lines = answer.read().decode().splitlines()
        return sum(int(v) for k, _, v in (x.partition(": ") for x in lines) if k.endswith(name) and v.isdigit())

    def apply(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        """`kubectl apply -f -`: same kind, namespace and name replaced, others added."""
        new = [dict(m) for m in manifests]
        keys = {_key(m) for m in new}
        self.manifests = [m for m in self.manifests if _key(m) not in keys] + new
        self.applied.append(new)
        self.lab.apply(new)
        self.api.routes.update(routes_for_objects(self.manifests, self.mesh, self.namespace, POD_NAME, self.labels))


@contextmanager
def mesh_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki, objects: str, mesh: Mapping[str, Any],
             namespace: str = "payments", credentials: str = "irsa",
             labels: Mapping[str, str] | None = None, imds_address: str | None = None,
             egress_gateway: bool = False, enforce: bool = False, gateway_refused: bool = False) -> Iterator[MeshPod]:
    manifests = docs(objects)
    mesh_config, _ = parse_mesh_config(yaml.safe_dump(dict(mesh)))
    config = LabConfig(objects=tuple(manifests), mode=Mode(mesh_config.outbound_traffic_policy), namespace=namespace,
                       credentials=credentials, account_id=ACCOUNT, tables=("orders",), labels=labels,  # type: ignore[arg-type]
                       mesh_config=mesh_config, imds_address=imds_address, egress_gateway=egress_gateway,
                       enforce=enforce, gateway_refused=gateway_refused)
    routes = routes_for_objects(manifests, mesh, namespace, POD_NAME, labels)
    with Lab(config) as lab, FakeApiServer(routes, tls=pki.ca) as api:
        become_the_pod(monkeypatch, {**lab.command_env(), "POD_NAME": POD_NAME})
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab", namespace=namespace)
        yield MeshPod(lab, api, kubeconfig, manifests, dict(mesh), namespace, labels)


def codes(result: CliResult) -> list[str]:
    return [f["code"] for f in result.json()["findings"]]


def failing(result: CliResult) -> list[str]:
    return [f"{c['id']}: {c['reason']}" for c in result.json()["checks"] if c["status"] != "pass"]


def closes_in_one_round(pod: MeshPod, expected_codes: set[str]) -> list[dict[str, Any]]:
    """The pod fails with (at least) these findings; its printed fix, applied once, makes every call pass."""
    before = pod.check()
    assert before.code == 1, before.stdout[:600]
    assert expected_codes <= set(codes(before)), codes(before)
    fix = pod.fix()
    assert fix, "no fix printed"
    pod.apply(fix)
    after = pod.check()
    assert after.code == 0, f"{failing(after)}\n{codes(after)}\nfix: {fix}"
    return fix
