"""Fixture grid: Istio YAML + the sidecar's view + probe evidence → finding codes and fix YAML.

Each row is a run the way `check` sees it (probe evidence from the transport/reply factories, which
mirror what a real Envoy did in the lab) plus a `MeshView`. The fix YAML of every row with fixes is
a golden file under tests/golden/explain/ (`EGRESS_DOCTOR_UPDATE_GOLDEN=1` rewrites them; review
the diff).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from egress_doctor.diagnose import diagnose
from egress_doctor.diagnose.engine import Diagnosis
from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.render.fix_yaml import render_fixes
from egress_doctor.sources.files import read_yaml
from egress_doctor.sources.view import ClusterInfo, MeshView, SidecarView, SniChain, VirtualHostInfo
from tests.test_diagnose_evidence import (
    AGENT,
    ARWWI,
    DDB_REGIONAL,
    DESCRIBE,
    GCI,
    IMDS_CREDS,
    ROLE,
    STS,
    STS_GLOBAL,
    TOKEN,
    Case,
    assert_case,
    facts,
    identity,
    skipped,
)
from tests.test_diagnose_replies import envoy
from tests.test_diagnose_transport import plain_reset, tls_eof, tls_failure

GOLDEN = Path(__file__).parent / "golden" / "explain"
NS = "payments"
ADMIN = "http://127.0.0.1:15000"


# --- building views -------------------------------------------------------------------------------


def sidecar(
    mode: Mode = Mode.REGISTRY_ONLY,
    clusters: dict[str, tuple[str, tuple[str, ...]]] | None = None,
    sni: dict[int, list[str]] | None = None,
    vhosts: dict[str, list[tuple[str, tuple[str, ...]]]] | None = None,
) -> SidecarView:
    """A sidecar as read from its admin port: clusters {name: (type, endpoints)}, SNI names per port,
    virtual hosts per route (the catch-all is appended)."""
    view = SidecarView(admin_url=ADMIN, present=True, ready=True, istio_version="1.30.3",
                       envoy_version="1.40.0", outbound_mode=mode)
    for name, (kind, endpoints) in (clusters or {}).items():
        view.clusters[name] = ClusterInfo(name, kind, endpoints, len(endpoints))
    for port, names in (sni or {}).items():
        view.sni_chains[port] = [SniChain(f"0.0.0.0_{port}", (n,), f"outbound|{port}||{n}") for n in names]
    catch_all = "block_all" if mode is Mode.REGISTRY_ONLY else "allow_any"
    for route, hosts in (vhosts or {}).items():
        view.http_routes[route] = [VirtualHostInfo(route, name, domains) for name, domains in hosts]
    view.http_routes.setdefault("80", []).append(VirtualHostInfo("80", catch_all, ("*",)))
    return view


def absent() -> SidecarView:
    view = SidecarView(admin_url=ADMIN)
    view.warnings.append(f"no Envoy admin at {ADMIN} (connect-refused): no sidecar in this pod")
    return view


def mesh_view(yaml_text: str | None = None, side: SidecarView | None = None, mode: Mode = Mode.REGISTRY_ONLY,
              namespace_labels: dict[str, str] | None = None) -> MeshView:
    if yaml_text is None:
        return MeshView(sidecar=side, pod_namespace=NS, namespace_labels=namespace_labels or {})
    read = read_yaml(yaml_text, NS)
    return MeshView(sidecar=side, objects=read.objects, mesh=MeshConfig(outbound_traffic_policy=mode),
                    pod_namespace=NS, namespace_labels=namespace_labels or {}, source="files",
                    manifests=read.manifests, gateways=read.gateways)


def se(name: str, hosts: list[str], *, ns: str = "platform", port: int = 443, protocol: str = "TLS",
       resolution: str = "DNS", extra: str = "") -> str:
    host_lines = "".join(f"\n  - {h!r}" for h in hosts)
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts:{host_lines}
  ports: [{{number: {port}, name: p{port}, protocol: {protocol}}}]
  location: MESH_EXTERNAL
  resolution: {resolution}
{extra}---"""


@dataclass
class MeshCase(Case):
    mesh: MeshView | None = None
    golden: str | None = None  # file name under tests/golden/explain/

    def run(self) -> Diagnosis:
        return diagnose(self.identity, self.checks, self.facts, self.options, mesh=self.mesh)


EDIT_STS = "edit/serviceentry/platform/aws-sts"
IMDS_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: aws-imds, namespace: payments}
spec:
  hosts: [imds.aws.internal]
  %s
  ports: [{number: 80, name: http, protocol: %s}]
  resolution: STATIC
  endpoints: [{address: 169.254.169.254}]
"""
SIDECAR_LOCAL = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: payments}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
"""
GATEWAY_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sts-via-egress, namespace: payments}
spec:
  hosts: [sts.us-east-1.amazonaws.com]
  gateways: [mesh, istio-egressgateway]
  tls:
  - match: [{gateways: [mesh], port: 443, sniHosts: [sts.us-east-1.amazonaws.com]}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: sts, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443, sniHosts: [sts.us-east-1.amazonaws.com]}]
    route: [{destination: {host: sts.us-east-1.amazonaws.com, port: {number: 443}}}]
---"""
GATEWAY_WITHOUT_HOST = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: payments}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [dynamodb.us-east-1.amazonaws.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway, namespace: payments}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: dynamodb}]
"""
GATEWAY_FOR_STS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: payments}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: %d, name: tls, protocol: TLS}
    hosts: [sts.us-east-1.amazonaws.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway, namespace: payments}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: sts}]
"""
AUTHZ = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress-allowlist, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: %s
  rules:
  - when:
    - key: connection.sni
      %s
"""


CASES = [
    MeshCase(
        "entry exported only to its own namespace is hidden: the fix adds the pod's namespace to exportTo",
        [tls_eof(GCI)], ["ED610"], [EDIT_STS],
        mesh=mesh_view(se("aws-sts", [STS, STS_GLOBAL], extra="  exportTo: ['.']\n")), golden="not-exported",
    ),
    MeshCase(
        "entry with no exportTo under a mesh default of '.' is hidden too",
        [tls_eof(GCI)], ["ED610"], [EDIT_STS],
        mesh=MeshView(objects=read_yaml(se("aws-sts", [STS]), NS).objects, pod_namespace=NS,
                      mesh=MeshConfig(Mode.REGISTRY_ONLY, default_service_export_to=(".",))),
        golden="not-exported-mesh-default",
    ),
    MeshCase(
        "a Sidecar whose egress hosts miss the entry's namespace: the fix imports ns/host into that Sidecar",
        [tls_eof(ARWWI), skipped(GCI)], ["ED611"], ["edit/sidecar/payments/default"],
        mesh=mesh_view(se("aws-sts", [STS]) + SIDECAR_LOCAL), golden="sidecar-egress",
    ),
    MeshCase(
        "a Sidecar sets REGISTRY_ONLY while the mesh is ALLOW_ANY: context next to the new entry",
        [tls_eof(GCI)], ["ED301", "ED601", "ED612"], ["serviceentry/sts-us-east-1-amazonaws-com"],
        mesh=mesh_view(SIDECAR_LOCAL.replace("  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]",
                                             "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}"),
                       mode=Mode.ALLOW_ANY),
    ),
    MeshCase(
        "dynamodb declared HTTP on 443 while the SDK speaks TLS: the fix declares the port TLS",
        [tls_eof(DESCRIBE, host=DDB_REGIONAL)], ["ED613"], ["edit/serviceentry/platform/aws-dynamodb"],
        identity=identity("env"), mesh=mesh_view(se("aws-dynamodb", [DDB_REGIONAL], protocol="HTTP")),
        golden="declared-http",
    ),
    MeshCase(
        "entry names the host with port 80 only: the fix adds port 443 (TLS)",
        [tls_eof(GCI)], ["ED614"], [EDIT_STS],
        mesh=mesh_view(se("aws-sts", [STS], port=80, protocol="HTTP")), golden="port-missing",
    ),
    MeshCase(
        "a credentials agent named by host declares port 80 as TLS: plain HTTP falls to the blackhole, "
        "the fix declares it HTTP",
        [plain_reset(AGENT, host="credentials.agent.example")], ["ED615"],
        ["edit/serviceentry/platform/agent"], identity=identity("pod-identity"),
        mesh=mesh_view(se("agent", ["credentials.agent.example"], port=80)), golden="agent-port-tls",
    ),
    MeshCase(
        "metadata entry without the IP in addresses: Host 169.254.169.254 misses, the fix adds the address",
        [envoy(TOKEN, "block_all"), envoy(ROLE, "block_all"), skipped(IMDS_CREDS)], ["ED616"],
        ["edit/serviceentry/payments/aws-imds"], identity=identity("imds"),
        mesh=mesh_view(IMDS_ENTRY % ("", "HTTP")), golden="metadata-no-address",
    ),
    MeshCase(
        "global STS registered while the SDK calls regional STS: the fix adds the regional host",
        [tls_eof(GCI)], ["ED617"], [EDIT_STS], mesh=mesh_view(se("aws-sts", [STS_GLOBAL])), golden="near-miss-sts",
    ),
    MeshCase(
        "regional dynamodb registered while the SDK calls the account endpoint: the fix adds the account host",
        [tls_eof(DESCRIBE)], ["ED617"], ["edit/serviceentry/platform/aws-dynamodb"],
        mesh=mesh_view(se("aws-dynamodb", [DDB_REGIONAL])), golden="near-miss-ddb-account",
    ),
    MeshCase(
        "standard STS registered while the app uses FIPS: the fix adds the FIPS host",
        [tls_eof(GCI, host="sts-fips.us-east-1.amazonaws.com")], ["ED617"], [EDIT_STS],
        mesh=mesh_view(se("aws-sts", [STS])), golden="near-miss-fips",
    ),
    MeshCase(
        "IPv4-only dynamodb registered while the app uses dual-stack api.aws: the fix adds the api.aws host",
        [tls_eof(DESCRIBE, host="dynamodb.us-east-1.api.aws")], ["ED617"],
        ["edit/serviceentry/platform/aws-dynamodb"], identity=identity("env"),
        mesh=mesh_view(se("aws-dynamodb", [DDB_REGIONAL])), golden="near-miss-dualstack",
    ),
    MeshCase(
        "the IMDS IP written in hosts is refused by the webhook: the fix rewrites it with a placeholder host",
        [envoy(TOKEN, "block_all"), envoy(ROLE, "block_all"), skipped(IMDS_CREDS)], ["ED618"],
        ["edit/serviceentry/payments/aws-metadata"], identity=identity("imds"),
        mesh=mesh_view(se("aws-metadata", ["169.254.169.254"], ns=NS, port=80, protocol="HTTP")),
        golden="refused-ip-host",
    ),
    MeshCase(
        "a wildcard with resolution DNS is refused: the fix switches it to resolution NONE",
        [tls_eof(DESCRIBE)], ["ED618"], ["edit/serviceentry/platform/aws-ddb-accounts"],
        mesh=mesh_view(se("aws-ddb-accounts", ["*.ddb.us-east-1.amazonaws.com"])), golden="refused-dns-wildcard",
    ),
    MeshCase(
        "a DNS entry whose endpoint name does not resolve: empty cluster, the fix drops the endpoints",
        [tls_eof(GCI)], ["ED619"], [EDIT_STS],
        mesh=mesh_view(se("aws-sts", [STS], extra="  endpoints: [{address: sts.us-east1.amazonaws.com}]\n"),
                       sidecar(clusters={f"outbound|443||{STS}": ("STRICT_DNS", ())}, sni={443: [STS]})),
        golden="dns-no-endpoints",
    ),
    MeshCase(
        "the sidecar alone shows an empty DNS cluster: the finding names it, no manifest",
        [tls_eof(GCI)], ["ED619"],
        mesh=mesh_view(None, sidecar(clusters={f"outbound|443||{STS}": ("STRICT_DNS", ())}, sni={443: [STS]})),
    ),
    MeshCase(
        "a DestinationRule originating TLS toward STS wraps TLS in TLS: the fix removes its tls",
        [tls_failure(GCI, "wrong-version")], ["ED620"], ["edit/destinationrule/payments/sts-tls"],
        mesh=mesh_view(se("aws-sts", [STS]) + """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sts-tls, namespace: payments}
spec:
  host: sts.us-east-1.amazonaws.com
  trafficPolicy:
    tls: {mode: SIMPLE}
    connectionPool: {tcp: {maxConnections: 10}}
"""), golden="tls-origination",
    ),
    MeshCase(
        "a route to the egress gateway without Gateway and subset: the fix creates both",
        [tls_eof(GCI)], ["ED621", "ED622"],
        ["create/destinationrule/payments/istio-egressgateway", "create/gateway/payments/istio-egressgateway"],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS), golden="egress-gateway-missing",
    ),
    MeshCase(
        "a route to the egress gateway whose Gateway and DestinationRule miss this host: the fix edits both",
        [tls_eof(GCI)], ["ED621", "ED622"],
        ["edit/destinationrule/payments/egressgateway", "edit/gateway/payments/istio-egressgateway"],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_WITHOUT_HOST), golden="egress-gateway-edit",
    ),
    MeshCase(
        "the entry is exported to the pod's namespace only, so the egress gateway has no cluster for it: "
        "the fix exports it to the gateway's namespace too",
        [tls_eof(GCI)], ["ED660"], ["edit/serviceentry/payments/aws-sts"],
        mesh=mesh_view(se("aws-sts", [STS], ns=NS, extra="  exportTo: ['.']\n") + GATEWAY_VS + GATEWAY_FOR_STS % 443),
        golden="egress-gateway-hidden-entry",
    ),
    # istio.authz, after pilot/pkg/security/authz/builder/builder.go and model/model.go: on the
    # gateway's TLS passthrough chain the RBAC network filter decides on the SNI
    MeshCase(
        "an AuthorizationPolicy on the egress gateway allows a list of SNIs without STS's: the fix adds STS's "
        "regional name to that list",
        [tls_eof(GCI)], ["ED663"], ["edit/authorizationpolicy/istio-system/egress-allowlist"],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 443 + "---" + AUTHZ % (
            "ALLOW", "values: [dynamodb.us-east-1.amazonaws.com]")), golden="egress-gateway-authz-allow",
    ),
    MeshCase(
        "an AuthorizationPolicy on the egress gateway denies every SNI but a list without STS's: the fix adds "
        "STS's regional name to the notValues",
        [tls_eof(GCI)], ["ED663"], ["edit/authorizationpolicy/istio-system/egress-allowlist"],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 443 + "---" + AUTHZ % (
            "DENY", "notValues: [sts.amazonaws.com]")),
    ),
    MeshCase(
        "an ALLOW policy on the egress gateway names the app's namespace, which a TLS passthrough gateway cannot "
        "see: the refusal is named and no fix is guessed",
        [tls_eof(GCI)], ["ED663"], [],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 443 + "---" + AUTHZ.replace(
            "  - when:", "  - from: [{source: {namespaces: [payments]}}]\n    when:") % (
            "ALLOW", "values: [sts.us-east-1.amazonaws.com]")),
    ),
    MeshCase(
        "the whole path through the egress gateway is open and the call still fails: the gateway's own egress "
        "refuses it, and no ServiceEntry is printed",
        [tls_eof(GCI)], ["ED664"], [],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 443),
    ),
    MeshCase(
        "the path through the egress gateway looks open but its AuthorizationPolicies could not be read: the "
        "finding says a policy may refuse it instead",
        [tls_eof(GCI)], ["ED664"], [],
        mesh=dataclasses.replace(
            mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 443),
            read_errors=["list authorizationpolicies.security.istio.io: HTTP 403: forbidden"]),
    ),
    MeshCase(
        "the Gateway serves the host on another port only: the fix adds a server for the port",
        [tls_eof(GCI)], ["ED621"], ["edit/gateway/payments/istio-egressgateway"],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS + GATEWAY_FOR_STS % 8443), golden="egress-gateway-port",
    ),
    MeshCase(
        "the route sends the host to the egress gateway but nothing routes it there: no fix the model can "
        "verify, so none is printed",
        [tls_eof(GCI)], ["ED301", "ED626"], [],
        mesh=mesh_view(se("aws-sts", [STS]) + GATEWAY_VS.split("  - match: [{gateways: [istio-egressgateway]")[0]
                       + "---\n" + GATEWAY_FOR_STS % 443),
    ),
    MeshCase(
        "no sidecar answers and the namespace is ambient: waypoint advice instead of a ServiceEntry",
        [tls_eof(GCI)], ["ED623"],
        mesh=mesh_view(None, absent(), namespace_labels={"istio.io/dataplane-mode": "ambient"}),
    ),
    MeshCase(
        "no Envoy admin answers: a warning, and the other findings unchanged",
        [tls_eof(GCI)], ["ED301", "ED624", "ED601"], ["serviceentry/sts-us-east-1-amazonaws-com"],
        mesh=mesh_view(None, absent()),
    ),
    MeshCase(
        "the sidecar has no entry for the account host but one for regional dynamodb: it says so",
        [tls_eof(DESCRIBE)], ["ED625", "ED602"], ["serviceentry/111122223333-ddb-us-east-1-amazonaws-com"],
        mesh=mesh_view(None, sidecar(clusters={f"outbound|443||{DDB_REGIONAL}": ("STRICT_DNS", ("52.94.0.10:443",))},
                                     sni={443: [DDB_REGIONAL]})),
        golden="sidecar-no-entry",
    ),
    MeshCase(
        "the sidecar alone shows 443 as an HTTP virtual host without an SNI chain: declared HTTP, no manifest",
        [tls_eof(DESCRIBE, host=DDB_REGIONAL)], ["ED613"], identity=identity("env"),
        mesh=mesh_view(None, sidecar(clusters={f"outbound|443||{DDB_REGIONAL}": ("STRICT_DNS", ("52.94.0.10:443",))},
                                     vhosts={"443": [(f"{DDB_REGIONAL}:443", (DDB_REGIONAL,))]})),
    ),
    MeshCase(
        "a predicted host the objects already cover is not predicted blocked",
        [tls_eof(ARWWI), skipped(DESCRIBE)], ["ED301", "ED601"], ["serviceentry/sts-us-east-1-amazonaws-com"],
        mesh=mesh_view(se("aws-ddb", ["*.ddb.us-east-1.amazonaws.com"], resolution="NONE")),
    ),
    MeshCase(
        "covered by a wildcard in the sidecar: a TLS close there is not explained by the mesh view",
        [tls_eof(DESCRIBE)], ["ED301", "ED602"], ["serviceentry/111122223333-ddb-us-east-1-amazonaws-com"],
        mesh=mesh_view(None, sidecar(clusters={"outbound|443||*.ddb.us-east-1.amazonaws.com": ("ORIGINAL_DST", ())},
                                     sni={443: ["*.ddb.us-east-1.amazonaws.com"]})),
    ),
    MeshCase(
        "probes as uid 1337 bypassed the sidecar: the mesh view does not refine anything",
        [tls_eof(GCI)], ["ED201", "ED306"], facts=facts(uid=1337),
        mesh=mesh_view(se("aws-sts", [STS], extra="  exportTo: ['.']\n")),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mesh_rule_table(case: MeshCase) -> None:
    diagnosis = assert_case(case)
    if case.golden is None:
        return
    text = render_fixes(diagnosis.fixes)
    golden = GOLDEN / f"{case.golden}.yaml"
    if os.environ.get("EGRESS_DOCTOR_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}: run with EGRESS_DOCTOR_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_without_a_view_the_diagnosis_is_exactly_the_old_one() -> None:
    for case in CASES:
        plain = diagnose(case.identity, case.checks, case.facts, case.options)
        empty = diagnose(case.identity, case.checks, case.facts, case.options, mesh=None)
        assert plain == empty, case.id


def test_golden_names_are_unique_so_one_row_owns_one_file() -> None:
    names = [c.golden for c in CASES if c.golden]
    assert len(names) == len(set(names))





def test_a_refusal_beyond_the_gateway_says_when_the_gateways_policies_could_not_be_read() -> None:
    case = next(c for c in CASES if "could not be read" in c.id)
    (finding,) = case.run().findings
    assert "AuthorizationPolicies could not be read (list authorizationpolicies.security.istio.io: HTTP 403" in (
        finding.message)
    plain = next(c for c in CASES if "own egress refuses it" in c.id)
    assert "could not be read" not in plain.run().findings[0].message
