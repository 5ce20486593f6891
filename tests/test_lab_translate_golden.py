"""Golden files: each scenario's Istio YAML -> the Envoy config sections that decide egress.

The digest keeps what a reader of `istioctl proxy-config` would look at (listeners and their
chains, route "80"'s virtual hosts, clusters with type and endpoints) and drops boilerplate
(access-log format, retry policy). Regenerate after a deliberate change with
`EGRESS_DOCTOR_UPDATE_GOLDEN=1 pytest tests/test_lab_translate_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.istio.parse import load_files
from egress_doctor.istio.scope import Proxy, proxy_scope
from egress_doctor.lab.translate import EnvoyResources, LabPorts, translate
from egress_doctor.lab.upstreams import Endpoint, Upstreams

ROOT = Path(__file__).parent.parent
SCENARIOS = ROOT / "egress_doctor" / "lab" / "scenarios"
GOLDEN = Path(__file__).parent / "golden" / "lab"
INPUTS = GOLDEN / "inputs"
PORTS = LabPorts(http=20080, tls=20443, catch_all=20001, admin=20000)
UPSTREAMS = Upstreams(aws=Endpoint("127.0.0.1", 21443), imds=Endpoint("127.0.0.1", 21080),
                      pod_identity=Endpoint("127.0.0.1", 21081), ca_bundle="/lab/ca.pem")
CASES = [(p.name, p) for p in sorted(SCENARIOS.iterdir())]
CASES += [(p.stem, p) for p in sorted(INPUTS.glob("*.yaml"))]


def resources(path: Path, mode: Mode) -> EnvoyResources:
    objects, _ = load_files([path], "app")
    return translate(proxy_scope(objects, Proxy("app"), MeshConfig(outbound_traffic_policy=mode)), PORTS, UPSTREAMS)


def _addr(a: dict[str, Any]) -> str:
    sa = a["socket_address"]
    return f"{sa['address']}:{sa['port_value']}"


def _filters(chain: dict[str, Any]) -> str:
    last = chain["filters"][-1]["typed_config"]
    if "rds" in last:
        return f"http_connection_manager rds={last['rds']['route_config_name']}"
    if "weighted_clusters" in last:
        return "tcp_proxy " + ",".join(c["name"] for c in last["weighted_clusters"]["clusters"])
    return f"tcp_proxy {last['cluster']}"


def _chain(chain: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"to": _filters(chain)}
    if chain.get("name"):
        out["name"] = chain["name"]
    if chain.get("filter_chain_match"):
        out["match"] = chain["filter_chain_match"]
    return out


def _listener(x: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"address": _addr(x["address"])}
    if x.get("additional_addresses"):
        out["additional_addresses"] = [_addr(a["address"]) for a in x["additional_addresses"]]
    if x.get("bind_to_port") is False:
        out["bind_to_port"] = False
    if x.get("listener_filters"):
        out["listener_filters"] = [f["name"].rsplit(".", 1)[-1] for f in x["listener_filters"]]
    out["chains"] = [_chain(c) for c in x["filter_chains"]]
    if "default_filter_chain" in x:
        out["default"] = _chain(x["default_filter_chain"])
    return out


def _route(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"match": r["match"]}
    if "direct_response" in r:
        out["direct_response"] = r["direct_response"]["status"]
    else:
        action = r["route"]
        out["cluster"] = action.get("cluster") or [c["name"] for c in action["weighted_clusters"]["clusters"]]
    return {r["name"]: out}


def _cluster(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c["type"]}
    lab = c.get("metadata", {}).get("filter_metadata", {}).get("egress-doctor.lab", {})
    if "istio_type" in lab:
        out["istio_type"] = lab["istio_type"]
    if "load_assignment" in c:
        out["endpoints"] = [_addr(e["endpoint"]["address"]) for g in c["load_assignment"]["endpoints"]
                            for e in g["lb_endpoints"]]
    if "transport_socket" in c:
        out["tls_sni"] = c["transport_socket"]["typed_config"]["sni"]
    return out


def _vhost(v: dict[str, Any]) -> dict[str, Any]:
    return {"vhost": v["name"], "domains": v["domains"], "routes": [_route(x) for x in v["routes"]]}


def digest(res: EnvoyResources) -> dict[str, Any]:
    return {
        "listeners": {x["name"]: _listener(x) for x in res.listeners},
        "routes": {r["name"]: [_vhost(v) for v in r["virtual_hosts"]] for r in res.routes},
        "clusters": {c["name"]: _cluster(c) for c in res.clusters},
        "notes": res.notes,
    }


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(("name", "path"), CASES, ids=[c[0] for c in CASES])
def test_translation_matches_the_golden_envoy_sections(name: str, path: Path, mode: Mode) -> None:
    text = yaml.safe_dump(digest(resources(path, mode)), sort_keys=False, width=120)
    golden = GOLDEN / f"{name}.{mode.value.lower().replace('_', '-')}.yaml"
    if os.environ.get("EGRESS_DOCTOR_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}: run with EGRESS_DOCTOR_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8"), f"translation of {name} ({mode}) changed"
