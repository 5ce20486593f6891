"""Where the cluster reader's client configuration comes from: a kubeconfig (with --context), the
pod's service account (KUBERNETES_SERVICE_HOST + token + CA), or nowhere, and what a bad one does."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from egress_doctor.sources.kube import ClusterConfigError, ClusterOptions, Problem, connect, read_cluster
from tests.kube_api import (
    NAMESPACE,
    POD,
    TOKEN,
    Answer,
    FakeApiServer,
    cluster_routes,
    pod_path,
    recorded,
    write_kubeconfig,
    write_service_account,
)
from tests.sockets import Pki, refused_port


def in_cluster_env(api: FakeApiServer, **extra: str) -> dict[str, str]:
    """What the kubelet puts in every container's environment for the `kubernetes` Service."""
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port), **extra}


# ---- kubeconfig ----------------------------------------------------------------------------------


def test_the_context_flag_reads_the_named_context_not_the_current_one(pki: Pki, tmp_path: Path) -> None:
    with refused_port() as port, FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        contexts = {"laptop": f"https://127.0.0.1:{port}", "lab": api.url}
        kubeconfig = write_kubeconfig(tmp_path, contexts, pki.ca_file, current="laptop")
        result = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), context="lab", pod_name=POD), environ={})
    assert result.errors == [] and result.server == api.url
    assert result.source == f"kubeconfig {kubeconfig} context lab"


def test_a_kubeconfig_without_a_context_uses_its_current_context(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        result = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), pod_name=POD), environ={})
    assert result.errors == [] and result.source.endswith("context lab")


def test_the_contexts_namespace_is_the_pods_namespace_unless_one_is_given(pki: Pki, tmp_path: Path) -> None:
    routes = cluster_routes()
    routes["/api/v1/namespaces/ledger"] = Answer(recorded("namespace-ledger-ambient"))
    with FakeApiServer(routes, tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        from_context = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig)), environ={})
        given = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), namespace="ledger"), environ={})
        plain = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab", namespace=None)
        neither = read_cluster(ClusterOptions(kubeconfig=str(plain)), environ={})
    assert from_context.view.pod_namespace == NAMESPACE
    assert given.view.pod_namespace == "ledger" and given.view.ambient
    assert neither.view.pod_namespace == "default"


def test_a_context_alone_reads_the_kubeconfig_named_by_KUBECONFIG(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        result = read_cluster(ClusterOptions(context="lab", pod_name=POD), environ={"KUBECONFIG": str(kubeconfig)})
    assert result.errors == [] and str(kubeconfig) in result.source


def test_nothing_is_read_without_flags_or_a_service_host_even_with_a_kubeconfig_at_hand(
    pki: Pki, tmp_path: Path
) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        environ = {"KUBECONFIG": str(kubeconfig), "POD_NAME": POD}
        assert connect(ClusterOptions(), environ) is None
        result = read_cluster(ClusterOptions(), environ=environ)
    assert not result.attempted and result.errors == [] and result.view.objects is None
    assert api.requests == [], "the laptop's current context must not be read silently"


def test_an_unknown_context_is_a_config_error_before_any_request(pki: Pki, tmp_path: Path) -> None:
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        options = ClusterOptions(kubeconfig=str(kubeconfig), context="prod")
        with pytest.raises(ClusterConfigError, match="prod"):
            connect(options, {})
        result = read_cluster(options, environ={})
    [error] = result.errors
    assert error.problem is Problem.CONFIG and "prod" in error.message
    assert api.requests == []


def test_a_kubeconfig_file_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match=r"kubeconfig .*missing"):
        connect(ClusterOptions(kubeconfig=str(tmp_path / "missing")), {})


# ---- in-cluster ----------------------------------------------------------------------------------


def test_in_a_pod_the_service_account_token_and_ca_are_used(pki: Pki, tmp_path: Path) -> None:
    token, ca = write_service_account(tmp_path, pki.ca_file)
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        options = ClusterOptions(namespace=NAMESPACE, token_file=token, ca_file=ca)
        result = read_cluster(options, environ=in_cluster_env(api, POD_NAME=POD))
    assert result.errors == [] and result.source == "in-cluster service account"
    assert result.server == api.url and result.pod is not None
    assert {r.headers["authorization"] for r in api.requests} == {f"bearer {TOKEN}"}


def test_in_a_pod_without_POD_NAME_the_hostname_names_the_pod(pki: Pki, tmp_path: Path) -> None:
    token, ca = write_service_account(tmp_path, pki.ca_file)
    hostname = socket.gethostname()
    routes = cluster_routes()
    routes[pod_path(hostname)] = routes.pop(pod_path())
    with FakeApiServer(routes, tls=pki.ca) as api:
        options = ClusterOptions(namespace=NAMESPACE, token_file=token, ca_file=ca)
        result = read_cluster(options, environ=in_cluster_env(api))
    assert result.errors == [] and result.pod is not None
    assert pod_path(hostname) in api.paths


@pytest.mark.parametrize(
    ("prepare", "complaint"),
    [
        (lambda account: (account / "token").unlink(), "Service token file does not exist"),
        (lambda account: (account / "token").write_text(""), "Token file exists but empty"),
        (lambda account: (account / "ca.crt").unlink(), "Service certification file does not exist"),
    ],
    ids=["no-token (automountServiceAccountToken false)", "empty-token", "no-ca"],
)
def test_in_a_pod_an_unusable_service_account_is_a_config_error_not_a_crash(
    prepare: Callable[[Path], object], complaint: str, pki: Pki, tmp_path: Path
) -> None:
    token, ca = write_service_account(tmp_path, pki.ca_file)
    prepare(Path(token).parent)
    with FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        result = read_cluster(ClusterOptions(token_file=token, ca_file=ca), environ=in_cluster_env(api))
    [error] = result.errors
    assert error.problem is Problem.CONFIG and complaint in error.message
    assert api.requests == []


def test_flags_choose_the_kubeconfig_even_in_a_pod(pki: Pki, tmp_path: Path) -> None:
    with refused_port() as port, FakeApiServer(cluster_routes(), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(tmp_path, {"lab": api.url}, pki.ca_file, current="lab")
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
        result = read_cluster(ClusterOptions(kubeconfig=str(kubeconfig), pod_name=POD), environ=environ)
    assert result.errors == [] and result.server == api.url


def test_the_check_parsers_default_istio_namespace_is_the_readers() -> None:
    from egress_doctor.commands import cluster
    from egress_doctor.sources import kube

    assert cluster.ISTIO_NAMESPACE == kube.ISTIO_NAMESPACE
