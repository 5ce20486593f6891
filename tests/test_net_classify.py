"""The classifier on real exceptions: raised by botocore against the misbehaving servers, and
raw from sockets. No exception here is constructed by hand."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import urllib3

from egress_doctor.model import Layer, Symptom
from egress_doctor.net.classify import chain, classify, error_info, unwrap
from egress_doctor.net.connect_to import ConnectTo, ConnectToMap
from egress_doctor.net.dial import dial_scope
from tests import canned
from tests.canned import CannedServer
from tests.sockets import BacklogFullServer, CloseServer, Pki, TlsStallServer, refused_port

STS = "sts.us-east-1.amazonaws.com"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No AWS configuration from the machine: no profile, no config file, no IMDS."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _sts(pki: Pki) -> Any:
    config = botocore.config.Config(
        connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1}
    )
    return boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=config,
        verify=pki.ca_file,
    )


def _call_sts(port: int, pki: Pki) -> BaseException:
    """GetCallerIdentity against sts.us-east-1.amazonaws.com:443, steered to 127.0.0.1:port."""
    client = _sts(pki)
    with dial_scope(connect_to=ConnectToMap([ConnectTo(STS, 443, "127.0.0.1", port)])):
        try:
            client.get_caller_identity()
        except Exception as exc:
            return exc
    raise AssertionError("GetCallerIdentity unexpectedly succeeded")


@contextlib.contextmanager
def _port_of(factory: Callable[[Pki], Any], pki: Pki) -> Iterator[int]:
    with factory(pki) as server:
        yield server.port


SERVERS: dict[str, Callable[[Pki], Any]] = {
    "accept-fin": lambda pki: CloseServer("accept", "fin"),
    "accept-rst": lambda pki: CloseServer("accept", "rst"),
    "client-hello-fin": lambda pki: CloseServer("client_hello", "fin"),
    "client-hello-rst": lambda pki: CloseServer("client_hello", "rst"),
    "tls-stall": lambda pki: TlsStallServer(),
    "untrusted-ca": lambda pki: CannedServer(canned.Reply(), tls=pki.rogue_ca, hostnames=[STS]),
    "wrong-name": lambda pki: CannedServer(canned.Reply(), tls=pki.ca, hostnames=["wrong.example.com"]),
    "plain-http": lambda pki: CannedServer(canned.Reply()),
    "close-after-request": lambda pki: CannedServer(
        canned.close_after_request(), tls=pki.ca, hostnames=[STS]
    ),
    "reset-after-request": lambda pki: CannedServer(
        canned.reset_after_request(), tls=pki.ca, hostnames=[STS]
    ),
    "slow": lambda pki: CannedServer(
        canned.slow(canned.sts_get_caller_identity_ok(), 3), tls=pki.ca, hostnames=[STS]
    ),
    "garbage": lambda pki: CannedServer(canned.garbage(), tls=pki.ca, hostnames=[STS]),
}


# An RST usually surfaces in the handshake (ConnectionClosedError); when it beats connect()'s
# completion check, from connect() itself (EndpointConnectionError): the race aws-sdk.md §5 saw.
RESET_TYPES = (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)


@pytest.mark.parametrize(
    ("kind", "botocore_type", "layer", "symptom"),
    [
        ("accept-fin", botocore.exceptions.SSLError, Layer.TLS, Symptom.TLS_CLOSED),
        ("accept-rst", RESET_TYPES, Layer.TLS, Symptom.TLS_CLOSED),
        ("client-hello-fin", botocore.exceptions.SSLError, Layer.TLS, Symptom.TLS_CLOSED),
        ("client-hello-rst", RESET_TYPES, Layer.TLS, Symptom.TLS_CLOSED),
        ("tls-stall", botocore.exceptions.ReadTimeoutError, Layer.TLS, Symptom.TLS_TIMEOUT),
        ("untrusted-ca", botocore.exceptions.SSLError, Layer.TLS, Symptom.TLS_UNTRUSTED),
        ("wrong-name", botocore.exceptions.SSLError, Layer.TLS, Symptom.TLS_NAME_MISMATCH),
        ("plain-http", botocore.exceptions.SSLError, Layer.TLS, Symptom.TLS_WRONG_VERSION),
        ("close-after-request", botocore.exceptions.ConnectionClosedError, Layer.HTTP, Symptom.HTTP_CLOSED),
        ("reset-after-request", botocore.exceptions.ConnectionClosedError, Layer.HTTP, Symptom.HTTP_CLOSED),
        ("slow", botocore.exceptions.ReadTimeoutError, Layer.HTTP, Symptom.HTTP_TIMEOUT),
        ("garbage", botocore.exceptions.ConnectionClosedError, Layer.HTTP, Symptom.NOT_AWS),
    ],
)
def test_botocore_sts_failure_against_misbehaving_server_is_classified_at_the_right_layer(
    kind: str, botocore_type: type | tuple[type, ...], layer: Layer, symptom: Symptom, pki: Pki, aws_env: None
) -> None:
    with _port_of(SERVERS[kind], pki) as port:
        exc = _call_sts(port, pki)
    assert isinstance(exc, botocore_type), repr(exc)
    assert classify(exc) == (layer, symptom), unwrap(exc)


def test_botocore_connection_refused_is_tcp_connect_refused(pki: Pki, aws_env: None) -> None:
    with refused_port() as port:
        exc = _call_sts(port, pki)
    assert isinstance(exc, botocore.exceptions.EndpointConnectionError)
    assert classify(exc) == (Layer.TCP, Symptom.CONNECT_REFUSED)
    root = error_info(exc).root
    assert root is not None and root.type == "ConnectionRefusedError" and root.errno == 111


def test_botocore_dropped_syn_is_tcp_connect_timeout(pki: Pki, aws_env: None) -> None:
    with BacklogFullServer() as server:
        exc = _call_sts(server.port, pki)
    assert isinstance(exc, botocore.exceptions.ConnectTimeoutError)
    assert classify(exc) == (Layer.TCP, Symptom.CONNECT_TIMEOUT)


def test_botocore_connect_cut_by_the_scope_deadline_is_deadline_not_connect_timeout(
    pki: Pki, aws_env: None
) -> None:
    client = _sts(pki)
    with (
        BacklogFullServer() as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)]), deadline=time.monotonic() + 0.2),
        pytest.raises(botocore.exceptions.ConnectTimeoutError) as caught,
    ):
        client.get_caller_identity()
    assert classify(caught.value) == (Layer.TCP, Symptom.DEADLINE)


def test_botocore_tls_stall_is_bounded_by_the_connect_timeout_not_the_read_timeout(
    pki: Pki, aws_env: None
) -> None:
    # urllib3 runs the handshake under the connect timeout and reports it as a read timeout.
    config = botocore.config.Config(
        connect_timeout=0.3, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1}
    )
    client = boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
        config=config,
        verify=pki.ca_file,
    )
    with TlsStallServer() as server, dial_scope(connect_to=ConnectToMap([server.rule(STS)])):
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ReadTimeoutError) as caught:
            client.get_caller_identity()
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert classify(caught.value) == (Layer.TLS, Symptom.TLS_TIMEOUT)


def test_botocore_ssl_error_chain_is_unwrapped_outermost_first_down_to_the_ssl_reason(
    pki: Pki, aws_env: None
) -> None:
    with _port_of(SERVERS["client-hello-fin"], pki) as port:
        exc = _call_sts(port, pki)
    links = unwrap(exc)
    assert [link.type for link in links] == [
        "botocore.exceptions.SSLError",
        "urllib3.exceptions.SSLError",
        "ssl.SSLEOFError",
    ]
    assert links[-1].reason == "UNEXPECTED_EOF_WHILE_READING"
    assert links[-1].errno == 8
    info = error_info(exc)
    assert info.type == "botocore.exceptions.SSLError"
    assert info.root == links[-1]


def test_untrusted_chain_carries_verify_code_20(pki: Pki, aws_env: None) -> None:
    with _port_of(SERVERS["untrusted-ca"], pki) as port:
        exc = _call_sts(port, pki)
    root = error_info(exc).root
    assert root is not None
    assert (root.type, root.reason, root.verify_code) == (
        "ssl.SSLCertVerificationError",
        "CERTIFICATE_VERIFY_FAILED",
        20,
    )


def test_rst_during_handshake_ignores_sslsockets_incidental_enotconn_context(pki: Pki, aws_env: None) -> None:
    # ssl probes getpeername() before the handshake; the ENOTCONN it catches becomes the
    # __context__ of the reset and must not be taken for the root cause.
    with _port_of(SERVERS["accept-rst"], pki) as port:
        exc = _call_sts(port, pki)
    root = error_info(exc).root
    assert root is not None and root.errno in {104, 32}


def test_success_through_connect_to_keeps_sni_and_host_of_the_real_name(pki: Pki, aws_env: None) -> None:
    with (
        CannedServer(canned.sts_get_caller_identity_ok(), tls=pki.ca, hostnames=[STS]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)])),
    ):
        identity = _sts(pki).get_caller_identity()
    assert identity["Account"] == "111122223333"
    assert server.requests[0].headers["host"] == STS


def test_reset_while_connecting_is_tls_closed_on_a_tls_endpoint_and_connect_reset_on_plain_http() -> None:
    with (
        CloseServer("accept", "rst") as server,
        pytest.raises(ConnectionResetError) as caught,
        socket.create_connection(server.address, timeout=2) as sock,
    ):
        time.sleep(0.05)  # let the RST arrive (it may even beat connect())
        sock.recv(1)
    assert classify(caught.value, during="tcp", tls=True) == (Layer.TLS, Symptom.TLS_CLOSED)
    assert classify(caught.value, during="tcp", tls=False) == (Layer.TCP, Symptom.CONNECT_RESET)
    assert classify(caught.value, during="tls") == (Layer.TLS, Symptom.TLS_CLOSED)
    assert classify(caught.value, during="http") == (Layer.HTTP, Symptom.HTTP_CLOSED)


def test_unwrap_follows_cause_and_context_and_stops_on_cycles() -> None:
    with contextlib.suppress(RuntimeError):
        try:
            socket.socket().connect(("127.0.0.1", 1))
        except OSError as inner:
            outer = RuntimeError("wrapped")
            outer.__cause__ = inner
            inner.__context__ = outer  # a cycle
            raise outer from inner
    links = chain(outer)
    assert [type(link) for link in links] == [RuntimeError, ConnectionRefusedError]


def test_raw_timeout_is_placed_by_the_during_hint() -> None:
    with TlsStallServer() as server, socket.create_connection(server.address, timeout=0.1) as sock:
        context = ssl.create_default_context()
        with pytest.raises(TimeoutError) as caught:
            context.wrap_socket(sock, server_hostname="localhost")
    assert classify(caught.value) == (Layer.TLS, Symptom.TLS_TIMEOUT)  # found from the traceback
    assert classify(caught.value, during="tls") == (Layer.TLS, Symptom.TLS_TIMEOUT)
    assert classify(caught.value, during="http") == (Layer.HTTP, Symptom.HTTP_TIMEOUT)


@pytest.mark.parametrize("in_scope", [False, True])
def test_host_name_urllib3_cannot_encode_is_not_classified_as_a_network_failure(in_scope: bool) -> None:
    # urllib3 refuses an over-long label before any lookup (dial() does the same in a scope).
    with contextlib.ExitStack() as stack:
        if in_scope:
            stack.enter_context(dial_scope())
        with pytest.raises(urllib3.exceptions.LocationParseError) as caught:
            urllib3.PoolManager().request("GET", f"http://{'a' * 64}.localhost/", retries=False)
    assert classify(caught.value) is None


def test_non_network_errors_are_not_classified() -> None:
    assert classify(ValueError("nope")) is None
    assert classify(botocore.exceptions.NoCredentialsError()) is None
    assert classify(KeyError("GetCallerIdentityResult")) is None
