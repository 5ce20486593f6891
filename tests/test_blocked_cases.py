"""`blocked`'s diagnosis as a rule table (pure): sidecar logs in, destinations, findings and fixes out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from egress_doctor.diagnose.blocked import BlockedOptions, Diagnosis, Naming, diagnose_blocked
from egress_doctor.diagnose.naming import predict
from egress_doctor.sources.kube_client import Problem, ReadError
from egress_doctor.sources.pod_logs import LogsRead, PodInfo, PodLog

IRSA = {"AWS_REGION": "us-east-1", "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/app",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
STS = "sts.us-east-1.amazonaws.com"
SQS = "sqs.us-east-1.amazonaws.com"
FORBIDDEN_LOG = ('pods "api-1" is forbidden: User "system:serviceaccount:payments:egress-doctor" cannot get resource '
                 '"pods/log" in API group "" in the namespace "payments"')


def tcp(sni: str = "-", ip: str = "52.94.0.10", port: int = 443, cluster: str = "BlackHoleCluster",
        flags: str = "UH", at: str = "2026-12-02T14:01:53.177Z") -> str:
    return (f'[{at}] "- - -" 0 {flags} - - "-" 0 0 1 - "-" "-" "-" "-" "-" {cluster} - {ip}:{port} '
            f"10.0.0.7:45662 {sni} -")


def http(authority: str, ip: str = "93.184.216.34", port: int = 80, code: int = 502, flags: str = "-",
         details: str = "direct_response", cluster: str = "-", route: str = "block_all",
         at: str = "2026-12-02T14:01:54.000Z") -> str:
    return (f'[{at}] "GET /v1/x HTTP/1.1" {code} {flags} {details} - "-" 0 0 0 - "-" "app/1.0" "id" '
            f'"{authority}" "-" {cluster} - {ip}:{port} 10.0.0.7:58520 - {route}')


DDB = "111122223333.ddb.us-east-1.amazonaws.com"
GATEWAY = "istio-system/istio-egressgateway-6d5f"
GATEWAY_RBAC = (f'[2026-12-02T17:09:48.786Z] "- - -" 0 - - rbac_access_denied_matched_policy[none] "-" 517 0 4 - "-" '
                f'"-" "-" "-" "127.0.0.1:33271" outbound|443||{DDB} 127.0.0.1:45316 127.0.0.1:49781 '
                f'127.0.0.1:59842 {DDB} -')
GATEWAY_UF = (f'[2026-12-02T17:09:50.755Z] "- - -" 0 UF,URX - - "delayed_connect_error:_Connection_refused" 0 0 2 '
              f'- "-" "-" "-" "-" "127.0.0.1:59435" outbound|443||{DDB} - 127.0.0.1:60493 127.0.0.1:33276 {DDB} -')
ENVOY = "[2026-12-02 14:01:53.048][8249][warning][main] [source/server/server.cc:961] Usage of the deprecated key"


@dataclass
class Case:
    """One row: each pod's log (pod ref → lines), and the codes, destinations and fixes it must give."""

    id: str
    logs: Mapping[str, Sequence[str]]
    codes: list[str]
    rows: list[tuple[str, int, str, str]] = field(default_factory=list)  # (host, port, how, finding)
    fixes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=lambda: dict(IRSA))
    resolved: Mapping[str, list[str] | str] = field(default_factory=dict)
    options: BlockedOptions = field(default_factory=BlockedOptions)
    errors: list[ReadError] = field(default_factory=list)
    mesh_logging: str = ""

    def read(self) -> LogsRead:
        result = LogsRead(errors=list(self.errors))
        for ref, lines in self.logs.items():
            namespace, name = ref.split("/")
            log = PodLog(PodInfo(name, namespace, True, "Running", "1.30.3", self.env), read=True)
            for line in lines:
                log.tally.add(line)
            result.pods.append(log)
        return result

    def run(self) -> Diagnosis:
        read = self.read()
        naming = Naming({log.pod.ref: predict(log.pod.env) for log in read.pods}, self.resolved)
        return diagnose_blocked(read, naming, self.options, self.mesh_logging)


API = "payments/api-1"
CASES = [
    # an egress gateway's own log (lab/rbac.py's filters on a real Envoy logged these lines)
    Case("a tls connection the egress gateway's authorization policy refused is named and gets no service entry",
         {GATEWAY: [ENVOY, GATEWAY_RBAC]}, ["ED658"], [(DDB, 443, "RBAC denied", "ED658")], [],
         ["refused 111122223333.ddb.us-east-1.amazonaws.com:443 1 time(s) by an AuthorizationPolicy"]),
    Case("a host the egress gateway routed but could not reach itself is named and gets no service entry",
         {GATEWAY: [GATEWAY_UF, GATEWAY_UF]}, ["ED659"], [(DDB, 443, "upstream connect failed", "ED659")], []),
    Case("an in-mesh service whose pods refuse connections is not an egress refusal",
         {API: [tcp(cluster="outbound|8080||reviews.default.svc.cluster.local", flags="UF,URX", port=8080)]}, []),
    Case("a blackholed tls connection is named by its sni and gets a tls service entry",
         {API: [ENVOY, tcp(SQS)]}, ["ED650"], [(SQS, 443, "BlackHoleCluster", "ED650")],
         ["serviceentry/sqs-us-east-1-amazonaws-com"], ["Pod payments/api-1 tried sqs.us-east-1.amazonaws.com:443"]),
    Case("an http host refused by block_all gets an http service entry on its port",
         {API: [http("telemetry.example.com")]}, ["ED650"], [("telemetry.example.com", 80, "502 block_all", "ED650")],
         ["serviceentry/telemetry-example-com"]),
    Case("instance metadata refused by block_all gets the metadata entry check prints",
         {API: [http("169.254.169.254", ip="169.254.169.254")]}, ["ED650"],
         [("169.254.169.254", 80, "502 block_all", "ED650")], ["serviceentry/aws-imds"]),
    Case("an address only is named by the one sdk host that resolves to it",
         {API: [tcp(ip="52.94.0.7")]}, ["ED650"], [(STS, 443, "BlackHoleCluster", "ED650")],
         ["serviceentry/sts-us-east-1-amazonaws-com"], ["logged only the address 52.94.0.7"],
         resolved={STS: ["52.94.0.7"], "dynamodb.us-east-1.amazonaws.com": ["3.218.180.1"]}),
    Case("an address no sdk host resolves to stays an unknown address without a fix",
         {API: [tcp(ip="3.3.3.3", port=8443)]}, ["ED651"], [("3.3.3.3", 8443, "BlackHoleCluster", "ED651")], [],
         ["none of the pod's SDK hosts uses port 8443", "ISTIO_META_DNS_CAPTURE"]),
    Case("an address two sdk hosts resolve to names neither of them",
         {API: [tcp(ip="52.94.0.7")]}, ["ED651"], [("52.94.0.7", 443, "BlackHoleCluster", "ED651")], [],
         ["all resolve to it"], resolved={STS: ["52.94.0.7"], "dynamodb.us-east-1.amazonaws.com": ["52.94.0.7"]}),
    Case("an address of a pod whose spec names no region cannot be predicted",
         {API: [tcp(ip="52.94.0.7")]}, ["ED651"], messages=["sets no AWS_REGION"], env={}),
    Case("a lookup that failed is said, and the address stays an address",
         {API: [tcp(ip="52.94.0.7")]}, ["ED651"], messages=["sts.us-east-1.amazonaws.com: timed out"],
         resolved={STS: "timed out"}),
    Case("what else an address carried in the logs is shown as evidence, not used as its name",
         {API: [tcp(SQS, ip="52.94.0.8"), tcp(ip="52.94.0.8", port=8443)]}, ["ED650", "ED651"],
         fixes=["serviceentry/sqs-us-east-1-amazonaws-com"],
         messages=["Elsewhere in the logs this address carried sqs.us-east-1.amazonaws.com"]),
    Case("no route is a routing finding with no service entry",
         {API: [http("orders.example.com", code=404, flags="NR", details="route_not_found", route="-",
                     cluster="-")]}, ["ED652"], [("orders.example.com", 80, "NR", "ED652")], []),
    Case("a protocol mismatch reset is its own finding with no service entry",
         {API: [http("files.example.com", port=443, code=400, flags="DPE", details="http1.codec_error",
                     route="-")]}, ["ED653"], [("files.example.com", 443, "reset", "ED653")], []),
    Case("passthrough is not reported unless asked for",
         {API: [tcp(SQS, cluster="PassthroughCluster", flags="-")]}, [], [], []),
    Case("passthrough asked for is the what-if list with its service entries",
         {API: [tcp(SQS, cluster="PassthroughCluster", flags="-")]}, ["ED654"],
         [(SQS, 443, "PassthroughCluster", "ED654")], ["serviceentry/sqs-us-east-1-amazonaws-com"],
         options=BlockedOptions(passthrough=True)),
    Case("no access record at all means logging is off: the telemetry that turns it on",
         {API: [ENVOY, ENVOY]}, ["ED655"], [], ["telemetry/access-logging"],
         ["no access-log record from the last 1 h", "sets no accessLogFile"],
         mesh_logging="the mesh config sets no accessLogFile (Istio's default), so access logging is off"),
    Case("an in-mesh name is reported but no service entry is written for it",
         {API: [http("reports.billing.svc.cluster.local")]}, ["ED650"], fixes=[],
         messages=["not an external DNS name"]),
    Case("the same host refused in several pods is one destination with every pod and the summed count",
         {API: [tcp(SQS, at="2026-12-02T14:01:55.000Z")],
          "payments/api-2": [tcp(SQS, at="2026-12-02T14:01:50.000Z")] * 2,
          "payments/api-3": [tcp(SQS, at="2026-12-02T14:01:59.000Z")]},
         ["ED650"], [(SQS, 443, "BlackHoleCluster", "ED650")], ["serviceentry/sqs-us-east-1-amazonaws-com"],
         ["Pods payments/api-1, payments/api-2, payments/api-3 tried sqs.us-east-1.amazonaws.com:443 4 time(s) "
          "between 2026-12-02T14:01:50.000Z and 2026-12-02T14:01:59.000Z"]),
    Case("pods of two namespaces get a service entry each, in their own namespace",
         {API: [tcp(SQS)], "orders/worker-1": [tcp(SQS)]}, ["ED650"], [(SQS, 443, "BlackHoleCluster", "ED650")],
         ["serviceentry/sqs-us-east-1-amazonaws-com@orders", "serviceentry/sqs-us-east-1-amazonaws-com@payments"]),
    Case("wildcard allows any account's dynamodb host",
         {API: [tcp("111122223333.ddb.us-east-1.amazonaws.com")]}, ["ED650"],
         fixes=["serviceentry/wildcard-ddb-us-east-1-amazonaws-com"], options=BlockedOptions(wildcard=True)),
    Case("a pod log refused by rbac is one finding naming the verb and the resource",
         {}, ["ED640"], messages=["may not get pods/log in namespace payments", "k8s/rbac-blocked.yaml"],
         errors=[ReadError("get", "pods/log", "payments", 403, FORBIDDEN_LOG, Problem.FORBIDDEN, "api-1"),
                 ReadError("get", "pods/log", "payments", 403, FORBIDDEN_LOG, Problem.FORBIDDEN, "api-2")]),
    Case("an unreachable api server and the deadline are the tool's findings",
         {}, ["ED910", "ED911"],
         errors=[ReadError("list", "pods", "payments", None, "ConnectionRefusedError", Problem.UNREACHABLE),
                 ReadError("get", "pods/log", "payments", None, "deadline", Problem.DEADLINE, "api-1")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_blocked_rule_table(case: Case) -> None:
    result = case.run()
    assert sorted({f.code for f in result.findings}) == case.codes
    if case.rows:
        assert [(d.host, d.port, d.how, d.finding) for d in result.destinations] == case.rows
    assert [f.id for f in result.fixes] == case.fixes
    text = " ".join(f.message for f in result.findings)
    for expected in case.messages:
        assert expected in text


def test_every_finding_with_a_fix_names_one_that_was_printed() -> None:
    for case in CASES:
        result = case.run()
        ids = {f.id for f in result.fixes}
        assert all(f.fix is None or f.fix in ids for f in result.findings), case.id
        assert all(d.fix is None or d.fix in ids for d in result.destinations), case.id
