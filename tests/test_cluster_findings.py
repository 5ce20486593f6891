"""What could not be read from the cluster becomes findings: a rule table from ReadError records
(pure), and `egress-doctor check --context ...` against the fake API server (end to end)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from egress_doctor.commands.check import add_diagnosis
from egress_doctor.diagnose import Diagnosis
from egress_doctor.diagnose.cluster import cluster_findings
from egress_doctor.model import Report
from egress_doctor.sources.kube import ClusterRead, Problem, ReadError
from egress_doctor.sources.view import MeshView
from tests.checkrun import CliResult, World, aws_world, run_cli
from tests.kube_api import POD, FakeApiServer, cluster_routes, istio_path, status_answer, write_kubeconfig
from tests.sockets import Pki, refused_port
from tests.test_diagnose_evidence import GCI, facts, identity
from tests.test_diagnose_transport import tls_eof

SE = "serviceentries.networking.istio.io"
SERVER = "https://10.100.0.1:443"
FORBIDDEN_SE = ('serviceentries.networking.istio.io is forbidden: User "system:serviceaccount:payments:payments-api" '
                'cannot list resource "serviceentries" in API group "networking.istio.io" at the cluster scope')


def forbidden(verb: str, resource: str, namespace: str | None, name: str | None = None) -> ReadError:
    return ReadError(verb, resource, namespace, 403, FORBIDDEN_SE, Problem.FORBIDDEN, name)


def missing(plural: str) -> ReadError:
    return ReadError("list", f"{plural}.networking.istio.io", None, 404,
                     "the server could not find the requested resource", Problem.NOT_SERVED)


@dataclass
class Case:
    """One rule-table row: the errors of a read and the finding codes they must give, in order."""

    id: str
    errors: list[ReadError]
    codes: list[str]
    messages: list[str] = field(default_factory=list)  # substrings the findings' messages must hold

    def run(self) -> Diagnosis:
        view = MeshView(pod_namespace="payments", source="cluster")
        read = ClusterRead(view, self.errors, source="in-cluster service account", server=SERVER)
        return Diagnosis(findings=cluster_findings(read))


CASES = [
    Case("a clean read gives no finding", [], []),
    Case(
        "a forbidden cluster-wide list with a namespaced fallback names what was still read",
        [forbidden("list", SE, None)],
        ["ED640"],
        ["may not list serviceentries.networking.istio.io in all namespaces (403 Forbidden)",
         "ServiceEntries were read only in namespace payments and istio-system", "k8s/rbac.yaml",
         'User "system:serviceaccount:payments:payments-api"'],
    ),
    Case(
        "every scope of one resource forbidden is one finding",
        [forbidden("list", SE, None), forbidden("list", SE, "payments"), forbidden("list", SE, "istio-system")],
        ["ED640"],
        ["in all namespaces and in namespace payments and in namespace istio-system",
         "ServiceEntries in payments and istio-system are unknown"],
    ),
    Case(
        "a forbidden mesh ConfigMap says the mesh defaults are assumed",
        [forbidden("get", "configmaps", "istio-system", "istio")],
        ["ED640"],
        ["may not get configmaps/istio in namespace istio-system", "Istio's defaults are assumed"],
    ),
    Case(
        "a forbidden pod and namespace are two findings",
        [forbidden("get", "pods", "payments", POD), forbidden("get", "namespaces", None, "payments")],
        ["ED640", "ED640"],
        [f"may not get pods/{POD} in namespace payments", "may not get namespaces/payments (403"],
    ),
    Case(
        "missing Istio CRDs are one finding naming every resource",
        [missing("serviceentries"), missing("sidecars"), missing("gateways")],
        ["ED641"],
        [f"{SERVER} serves no serviceentries.networking.istio.io, sidecars.networking.istio.io, "
         "gateways.networking.istio.io"],
    ),
    Case(
        "a missing mesh ConfigMap suggests --istio-namespace",
        [ReadError("get", "configmaps", "istio-system", 404, 'configmaps "istio" not found', Problem.NOT_FOUND,
                   "istio")],
        ["ED642"],
        ["ConfigMap istio-system/istio does not exist", "--istio-namespace"],
    ),
    Case(
        "a pod that is not there suggests POD_NAME",
        [ReadError("get", "pods", "payments", 404, f'pods "{POD}" not found', Problem.NOT_FOUND, POD)],
        ["ED643"],
        [f"Pod payments/{POD} does not exist", "POD_NAME"],
    ),
    Case(
        "an object the model refuses is named with the field",
        [ReadError("list", SE, "payments", None, "spec.ports: must be a list", Problem.UNPARSEABLE, "aws-sts")],
        ["ED644"],
        [f"{SE}/aws-sts in namespace payments could not be understood", "spec.ports: must be a list"],
    ),
    Case(
        "an unreachable API server is one finding",
        [ReadError("get", "pods", "payments", None, "ConnectionRefusedError: [Errno 111] Connection refused",
                   Problem.UNREACHABLE, POD)],
        ["ED910"],
        [f"The Kubernetes API server at {SERVER} could not be reached (ConnectionRefusedError"],
    ),
    Case(
        "the read's deadline names what was not read",
        [ReadError("read", "the cluster", None, None, "5 s passed; not read: Sidecars, Gateways", Problem.DEADLINE)],
        ["ED911"],
        ["stopped at its deadline (5 s passed; not read: Sidecars, Gateways)"],
    ),
    Case(
        "no service-account token is an unusable configuration",
        [ReadError("connect", "the Kubernetes API", None, None,
                   "in-cluster service account: Service token file does not exist.", Problem.CONFIG)],
        ["ED912"],
        ["Service token file does not exist", "automountServiceAccountToken"],
    ),
    Case(
        "a rejected token and a slow request are failed reads",
        [ReadError("get", "pods", "payments", 401, "Unauthorized", Problem.FAILED, POD),
         ReadError("list", SE, None, None, "no answer within 2 s", Problem.TIMEOUT)],
        ["ED913", "ED913"],
        [f"get pods/{POD} in namespace payments failed (HTTP 401: Unauthorized)",
         f"list {SE} in all namespaces failed (no answer within 2 s)"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_read_errors_become_findings(case: Case) -> None:
    findings = case.run().findings
    assert [f.code for f in findings] == case.codes, [f.message for f in findings]
    text = "\n".join(f.message for f in findings)
    for expected in case.messages:
        assert expected in text
    assert all(f.level == "warning" and f.fix is None for f in findings), "incomplete reads never fail the run"


# ---- end to end: `egress-doctor check` -----------------------------------------------------------


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        yield world


def check_json(*args: str) -> CliResult:
    """`check -o json` without the sidecar's admin port (none runs here: that has its own finding)."""
    return run_cli("check", "-o", "json", "--no-envoy-admin", *args)


def codes(result_json: dict[str, object]) -> list[str]:
    return [f["code"] for f in result_json["findings"]]  # type: ignore[attr-defined, index]


def test_check_reports_a_forbidden_list_and_still_passes(world: World, pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes[istio_path("serviceentries")] = status_answer("status-403-serviceentries-cluster")
    with FakeApiServer(routes, tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        world.use(POD_NAME=POD)
        result = check_json("--kubeconfig", str(kubeconfig), "--context", "lab")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert codes(doc) == ["ED640"]
    assert "k8s/rbac.yaml" in doc["findings"][0]["message"]
    assert {r.method for r in api.requests} == {"GET"}


def test_check_with_an_unreachable_api_server_reports_it_once(world: World, pki: Pki, tmp_path: Path) -> None:
    with refused_port() as port:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": f"https://127.0.0.1:{port}"}, pki.ca_file, current="lab")
        result = check_json("--context", "lab", "--kubeconfig", str(kubeconfig))
    assert result.code == 0, result.stdout + result.stderr
    assert codes(result.json()) == ["ED910"]


@pytest.mark.parametrize(("flag", "served", "written"), [
    (None, "v1beta1", "networking.istio.io/v1beta1"),
    (None, None, "networking.istio.io/v1"),
    ("v1", "v1beta1", "networking.istio.io/v1"),
], ids=["cluster-serves-v1beta1", "not-known", "flag-wins"])
def test_the_fix_is_written_in_the_version_the_cluster_serves(flag: str | None, served: str | None,
                                                              written: str) -> None:
    """--istio-api, else the networking.istio.io version the cluster answered in, else v1."""
    report = Report(identity=identity(), checks=[tls_eof(GCI)], facts=facts())
    args = argparse.Namespace(istio_api=flag, namespace=None, wildcard=False, imds_fix="serviceentry")
    add_diagnosis(report, args, ClusterRead(MeshView(source="cluster"), istio_api=served, source="kubeconfig"))
    assert report.fixes, [f.code for f in report.findings]
    assert {m["apiVersion"] for fix in report.fixes for m in fix.manifests} == {written}


def test_a_bad_context_is_a_usage_error_before_any_probe(world: World, pki: Pki, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path, {"lab": "https://127.0.0.1:6443"}, pki.ca_file, current="lab")
    result = run_cli("check", "--context", "prod", "--kubeconfig", str(kubeconfig))
    assert result.code == 2 and "prod" in result.stderr and result.stdout == ""


def test_no_cluster_flag_reads_nothing_even_in_a_pod(world: World, pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        world.use(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(api.port))
        result = check_json("--no-cluster")
    assert result.code == 0 and codes(result.json()) == [] and api.requests == []


def test_in_a_pod_without_a_service_account_token_check_warns_and_goes_on(world: World) -> None:
    world.use(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="6443")
    result = check_json()
    assert result.code == 0, result.stdout + result.stderr
    assert codes(result.json()) == ["ED912"]


@pytest.mark.parametrize("value", ["Istio-System", "-x", "a/b"])
def test_a_malformed_istio_namespace_is_a_usage_error(value: str, world: World) -> None:
    result = run_cli("check", "--istio-namespace", value)
    assert result.code == 2 and "--istio-namespace" in result.stderr
