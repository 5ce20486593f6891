"""Behaviour through the running lab: plain boto3/urllib3/ssl clients with the pod's environment,
steered by the lab's connect-to rules (egress_doctor.net.dial), against a real Envoy 1.40
configured like the Istio sidecar. The exceptions asserted here are the ones docs/lab.md lists."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bx
import pytest
import urllib3
from botocore.config import Config

from egress_doctor.istio.objects import Mode
from egress_doctor.istio.scope import Reason
from egress_doctor.lab.runner import Lab, LabConfig
from egress_doctor.net.connect_to import ConnectToMap, parse_connect_to_env
from egress_doctor.net.dial import dial_scope

pytestmark = pytest.mark.lab

SCENARIOS = Path(__file__).parent.parent / "egress_doctor" / "lab" / "scenarios"
INPUTS = Path(__file__).parent / "golden" / "lab" / "inputs"
REGION = "us-east-1"
ACCOUNT = "111122223333"
STS = f"sts.{REGION}.amazonaws.com"
# A handshake Envoy closed: botocore says SSLError (EOF) or ConnectionClosedError (RST).
CLOSED = (bx.SSLError, bx.ConnectionClosedError)
CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 1})


def lab_config(scenario: str, **kwargs: Any) -> LabConfig:
    path = SCENARIOS / scenario if (SCENARIOS / scenario).exists() else INPUTS / f"{scenario}.yaml"
    kwargs.setdefault("tables", ("orders",))
    return LabConfig(files=(str(path),), **kwargs)


@pytest.fixture
def pod(monkeypatch: pytest.MonkeyPatch) -> Callable[[Lab], None]:
    """Give this process the pod's AWS environment (botocore reads os.environ)."""

    def enter(lab: Lab) -> None:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in lab.env.items():
            monkeypatch.setenv(key, value)

    return enter


def call(lab: Lab, service: str, operation: str, **env: str) -> Any:
    """One SDK call as the app would make it, with the lab's connect-to rules applied."""
    rules = ConnectToMap(parse_connect_to_env(lab.env["EGRESS_DOCTOR_CONNECT_TO"]))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with dial_scope(rules):
            session = boto3.session.Session()
            session._session.set_default_client_config(CONFIG)
            return getattr(session.client(service), operation)()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def root(exc: BaseException) -> BaseException:
    while True:
        kwargs = getattr(exc, "kwargs", None)
        inner = kwargs.get("error") if isinstance(kwargs, dict) else None
        nxt = inner or exc.__cause__ or exc.__context__
        if nxt is None:
            return exc
        exc = nxt


def assert_handshake_closed(exc: BaseException) -> None:
    """Envoy's tcp_proxy to BlackHoleCluster: EOF (SSLEOFError) or RST (ECONNRESET), nothing else."""
    assert isinstance(exc, bx.SSLError | bx.ConnectionClosedError), f"not a closed handshake: {exc!r}"
    inner = root(exc)
    assert isinstance(inner, ssl.SSLEOFError | ConnectionResetError), f"root cause {inner!r}"


def imds_token(lab: Lab) -> urllib3.BaseHTTPResponse:
    url = lab.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] + "latest/api/token"
    return urllib3.request("PUT", url, headers={"x-aws-ec2-metadata-token-ttl-seconds": "60"}, retries=False,
                           timeout=3)


@pytest.fixture
def lab_of(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def start(scenario: str, **kwargs: Any) -> Lab:
        lab = Lab(lab_config(scenario, **kwargs)).start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.close()


# ---- scenarios -----------------------------------------------------------------------------------


def test_no_service_entries_under_registry_only_imds_gets_block_all_and_aws_closes_the_handshake(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("no-service-entries", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    reply = imds_token(lab)
    assert reply.status == 502 and reply.data == b""
    assert reply.headers["server"] == "envoy" and "x-envoy-upstream-service-time" not in reply.headers
    # virtualOutbound closes right after accept: usually EOF (SSLError), RST when the ClientHello won.
    with pytest.raises(CLOSED) as sts:
        call(lab, "sts", "get_caller_identity")
    assert_handshake_closed(sts.value)
    with pytest.raises(CLOSED) as ddb:
        call(lab, "dynamodb", "list_tables")
    assert_handshake_closed(ddb.value)


def test_no_service_entries_imds_credentials_are_not_found_behind_block_all(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("no-service-entries", mode=Mode.REGISTRY_ONLY, credentials="imds")
    pod(lab)
    with pytest.raises(bx.NoCredentialsError):
        call(lab, "sts", "get_caller_identity")


def test_blog_2018_entries_miss_regional_sts_and_the_account_endpoint_and_the_imds_ip_is_refused(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("blog-2018", mode=Mode.REGISTRY_ONLY, account_id=ACCOUNT)
    pod(lab)
    assert lab.scope is not None and "ServiceEntry default/aws-metadata" in lab.scope.refused
    with pytest.raises(CLOSED) as sts:
        call(lab, "sts", "get_caller_identity")
    assert_handshake_closed(sts.value)  # the SNI listener read the ClientHello: usually RST
    with pytest.raises(CLOSED) as ddb:
        call(lab, "dynamodb", "list_tables")
    assert f"{ACCOUNT}.ddb.{REGION}.amazonaws.com" in str(ddb.value)
    assert imds_token(lab).status == 502


def test_blog_2018_entries_still_work_for_the_hosts_they_name(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("blog-2018", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    assert call(lab, "dynamodb", "list_tables")["TableNames"] == ["orders"]  # no account id: regional host
    assert call(lab, "sts", "get_caller_identity", AWS_STS_REGIONAL_ENDPOINTS="legacy")["Account"]


@pytest.mark.parametrize("credentials", ["env", "irsa", "imds", "pod-identity"])
def test_correct_entries_let_every_credential_mode_reach_sts_and_dynamodb(
        credentials: str, lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("correct", mode=Mode.REGISTRY_ONLY, credentials=credentials, account_id=ACCOUNT)
    pod(lab)
    assert call(lab, "sts", "get_caller_identity")["Arn"].startswith("arn:aws:sts::")
    assert call(lab, "dynamodb", "list_tables")["TableNames"] == ["orders"]


def test_allow_any_passes_everything_through_without_any_entry(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("no-service-entries", mode=Mode.ALLOW_ANY, credentials="imds")
    pod(lab)
    assert call(lab, "sts", "get_caller_identity")["Account"]
    assert call(lab, "dynamodb", "list_tables")["TableNames"] == ["orders"]


def test_a_sidecar_allow_any_policy_overrides_a_registry_only_mesh(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("allow-any", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    assert lab.scope is not None and lab.scope.mode is Mode.ALLOW_ANY
    assert call(lab, "sts", "get_caller_identity")["Account"]


def test_dynamodb_declared_http_on_443_closes_the_tls_handshake(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("dynamodb-declared-http", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    with pytest.raises(CLOSED) as ddb:
        call(lab, "dynamodb", "list_tables")
    assert_handshake_closed(ddb.value)
    assert call(lab, "sts", "get_caller_identity")["Account"]


@pytest.mark.parametrize(("scenario", "reason"), [("hidden-by-export-to", Reason.NOT_EXPORTED),
                                                  ("hidden-by-sidecar", Reason.NOT_IMPORTED)])
def test_entries_the_pod_cannot_see_behave_as_if_they_did_not_exist(
        scenario: str, reason: Reason, lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of(scenario, mode=Mode.REGISTRY_ONLY)
    pod(lab)
    assert lab.scope is not None and lab.scope.explain(STS)[0].reason is reason
    with pytest.raises(CLOSED) as sts:
        call(lab, "sts", "get_caller_identity")
    assert_handshake_closed(sts.value)
    assert imds_token(lab).status == 502


def test_dns_entry_whose_endpoint_does_not_resolve_closes_like_a_blackhole_but_clusters_shows_no_host(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("dns-typo", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    with pytest.raises(CLOSED) as sts:
        call(lab, "sts", "get_caller_identity")
    assert_handshake_closed(sts.value)
    with urllib.request.urlopen(f"{lab.admin_url}/clusters") as resp:
        lines = resp.read().decode().splitlines()
    assert f"outbound|443||{STS}::added_via_api::true" in lines
    assert not [x for x in lines if x.startswith(f"outbound|443||{STS}::127.")]


def test_tls_origination_on_a_tls_port_wraps_the_apps_tls_and_fails_with_wrong_version_number(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("tls-origination", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    with pytest.raises(bx.SSLError) as sts:
        call(lab, "sts", "get_caller_identity")
    assert getattr(root(sts.value), "reason", None) == "WRONG_VERSION_NUMBER"


def test_sidecar_not_ready_refuses_every_connection(lab_of: Callable[..., Lab],
                                                    pod: Callable[[Lab], None]) -> None:
    lab = lab_of("correct", mode=Mode.REGISTRY_ONLY, sidecar_ready=False)
    pod(lab)
    assert lab.admin_url is None and lab.envoy_pid is None
    with pytest.raises(bx.EndpointConnectionError) as sts:
        call(lab, "sts", "get_caller_identity")
    assert isinstance(root(sts.value), ConnectionRefusedError)
    with pytest.raises(urllib3.exceptions.NewConnectionError) as imds:
        imds_token(lab)
    assert isinstance(root(imds.value), ConnectionRefusedError)


# ---- the lab itself ------------------------------------------------------------------------------


def test_applying_the_fix_to_a_running_lab_keeps_its_ports_and_makes_the_call_pass(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("blog-2018", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    before = (lab.ports, list(lab.connect_to), dict(lab.env), lab.envoy_pid)
    with pytest.raises(CLOSED):
        call(lab, "sts", "get_caller_identity")
    fix = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "aws-sts"},
           "spec": {"hosts": [STS], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                    "resolution": "DNS"}}
    lab.apply([fix])
    assert (lab.ports, lab.connect_to, lab.env) == before[:3] and lab.envoy_pid != before[3]
    assert [o.meta.name for o in lab.objects].count("aws-sts") == 1  # replaced, like kubectl apply
    assert call(lab, "sts", "get_caller_identity")["Account"]


def test_reconfigure_to_allow_any_opens_what_registry_only_closed(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None]) -> None:
    lab = lab_of("no-service-entries", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    lab.reconfigure(mode=Mode.ALLOW_ANY)
    assert call(lab, "sts", "get_caller_identity")["Account"]
    assert imds_token(lab).status == 200


@pytest.mark.parametrize(("credentials", "expected"), [
    ("env", {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCOUNT_ID"}),
    ("irsa", {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}),
    ("pod-identity", {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                      "AWS_STS_REGIONAL_ENDPOINTS"}),
    ("imds", set()),
])
def test_each_credential_mode_gives_exactly_the_pods_aws_variables(
        credentials: str, expected: set[str], lab_of: Callable[..., Lab]) -> None:
    lab = lab_of("correct", credentials=credentials, account_id=ACCOUNT, tables=())
    always = {"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CA_BUNDLE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
              "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"}
    assert {k for k in lab.env if k.startswith("AWS_")} == always | expected
    assert lab.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == f"http://127.169.254.254:{lab.ports.http}/"  # type: ignore
    if credentials == "irsa":
        assert lab.env["AWS_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/egress-doctor-lab"
        assert Path(lab.env["AWS_WEB_IDENTITY_TOKEN_FILE"]).read_text().count(".") == 2  # JWT-shaped
    if credentials == "pod-identity":
        uri = f"http://127.169.170.23:{lab.ports.http}/v1/credentials"  # type: ignore[union-attr]
        assert lab.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == uri


def test_the_command_environment_drops_inherited_aws_variables(lab_of: Callable[..., Lab]) -> None:
    lab = lab_of("correct", credentials="imds", tables=())
    env = lab.command_env({"AWS_PROFILE": "prod", "AWS_ACCESS_KEY_ID": "AKIAREAL", "PATH": "/bin"})
    assert "AWS_PROFILE" not in env and "AWS_ACCESS_KEY_ID" not in env and env["PATH"] == "/bin"
    assert env["EGRESS_DOCTOR_CONNECT_TO"] == ",".join(lab.connect_to)


def test_the_command_environment_drops_the_real_cluster_so_a_lab_run_in_a_pod_stays_in_the_lab(
        lab_of: Callable[..., Lab]) -> None:
    lab = lab_of("correct", credentials="imds", tables=())
    env = lab.command_env({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
                           "KUBECONFIG": "/home/me/.kube/config", "PATH": "/bin"})
    assert not any(k.startswith("KUBERNETES_") for k in env) and "KUBECONFIG" not in env


def test_connect_to_rules_keep_loopback_and_steer_link_local_80_443_and_the_rest(
        lab_of: Callable[..., Lab]) -> None:
    lab = lab_of("correct", tables=())
    p = lab.ports
    assert p is not None
    rules = ConnectToMap(parse_connect_to_env(lab.env["EGRESS_DOCTOR_CONNECT_TO"]))
    assert rules.resolve("127.0.0.1", p.admin) == ("127.0.0.1", p.admin)
    assert rules.resolve("169.254.169.254", 80) == ("127.169.254.254", p.http)
    assert rules.resolve("169.254.170.23", 80) == ("127.169.170.23", p.http)
    assert rules.resolve("example.com", 80) == ("127.0.0.1", p.http)
    assert rules.resolve(STS, 443) == ("127.0.0.1", p.tls)
    assert rules.resolve(STS, 8443) == ("127.0.0.1", p.catch_all)


def test_closing_the_lab_stops_envoy_and_removes_its_directory_even_after_an_error() -> None:
    lab = Lab(lab_config("correct", tables=()))
    with pytest.raises(RuntimeError, match="boom"), lab:
        pid, directory = lab.envoy_pid, lab.directory
        raise RuntimeError("boom")
    assert pid is not None and directory is not None
    assert not Path(f"/proc/{pid}").exists() and not directory.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", lab.ports.tls)) != 0  # type: ignore[union-attr]
    lab.close()  # twice is fine


def test_a_lab_that_fails_to_start_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("EGRESS_DOCTOR_ENVOY", str(tmp_path / "no-envoy"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    lab = Lab(lab_config("correct", tables=()))
    with pytest.raises(Exception, match="no-envoy"):
        lab.start()
    assert list(tmp_path.iterdir()) == []


def test_admin_config_dump_reports_the_mode_where_a_sidecar_reader_looks_for_it(
        lab_of: Callable[..., Lab]) -> None:
    import json

    lab = lab_of("correct", mode=Mode.ALLOW_ANY, tables=())
    with urllib.request.urlopen(f"{lab.admin_url}/config_dump?resource=dynamic_listeners") as resp:
        dump = json.load(resp)
    listeners = {x["name"]: x["active_state"]["listener"] for x in dump["configs"]}
    catch_all = listeners["virtualOutbound"]["filter_chains"][1]
    assert catch_all["name"] == "virtualOutbound-catchall-tcp"
    assert catch_all["filters"][0]["typed_config"]["cluster"] == "PassthroughCluster"


def test_a_reconfiguration_envoy_refuses_leaves_the_running_lab_untouched(
        lab_of: Callable[..., Lab], pod: Callable[[Lab], None], monkeypatch: pytest.MonkeyPatch) -> None:
    from egress_doctor.lab import runner
    from egress_doctor.lab.envoy import EnvoyError

    lab = lab_of("correct", mode=Mode.REGISTRY_ONLY)
    pod(lab)
    pid, objects = lab.envoy_pid, lab.objects
    real = runner.translate

    def broken(*args: Any, **kwargs: Any) -> Any:
        res = real(*args, **kwargs)
        res.clusters[0]["type"] = "NOT_A_TYPE"
        return res

    monkeypatch.setattr(runner, "translate", broken)
    with pytest.raises(EnvoyError, match="keeps the old one"):
        lab.reconfigure([])
    assert lab.envoy_pid == pid and lab.objects == objects
    assert call(lab, "sts", "get_caller_identity")["Account"]
