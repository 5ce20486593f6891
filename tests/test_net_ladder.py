from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from egress_doctor.model import Layer, Symptom
from egress_doctor.net.connect_to import ConnectTo, ConnectToMap
from egress_doctor.net.dial import DialRecorder, dial_scope
from egress_doctor.net.ladder import LadderResult, probe_endpoint
from tests import canned
from tests.canned import CannedServer
from tests.sockets import BacklogFullServer, CloseServer, Pki, TlsStallServer, refused_port

STS = "sts.us-east-1.amazonaws.com"
URL = f"https://{STS}/"
# Short: the SYN-drop and stall cases each cost one of these.
CONNECT_TIMEOUT = 0.3


@contextlib.contextmanager
def _server(kind: str, pki: Pki) -> Iterator[int]:
    """Start the server named `kind` and yield its port."""
    factories: dict[str, Callable[[], Any]] = {
        "backlog-full": BacklogFullServer,
        "accept-fin": lambda: CloseServer("accept", "fin"),
        "accept-rst": lambda: CloseServer("accept", "rst"),
        "client-hello-fin": lambda: CloseServer("client_hello", "fin"),
        "client-hello-rst": lambda: CloseServer("client_hello", "rst"),
        "tls-stall": TlsStallServer,
        "untrusted-ca": lambda: CannedServer(canned.Reply(), tls=pki.rogue_ca, hostnames=[STS]),
        "wrong-name": lambda: CannedServer(canned.Reply(), tls=pki.ca, hostnames=["wrong.example.com"]),
        "plain-http": lambda: CannedServer(canned.Reply()),
    }
    if kind == "refused":
        with refused_port() as port:
            yield port
        return
    with factories[kind]() as server:
        yield server.port


def _climb(port: int, pki: Pki, url: str = URL) -> LadderResult:
    with dial_scope(connect_to=ConnectToMap([ConnectTo(STS, None, "127.0.0.1", port)])):
        return probe_endpoint(url, ca_file=pki.ca_file, connect_timeout=CONNECT_TIMEOUT, read_timeout=1)


@pytest.mark.parametrize(
    ("kind", "layer", "symptom"),
    [
        ("refused", Layer.TCP, Symptom.CONNECT_REFUSED),
        ("backlog-full", Layer.TCP, Symptom.CONNECT_TIMEOUT),
        ("accept-fin", Layer.TLS, Symptom.TLS_CLOSED),
        ("accept-rst", Layer.TLS, Symptom.TLS_CLOSED),
        ("client-hello-fin", Layer.TLS, Symptom.TLS_CLOSED),
        ("client-hello-rst", Layer.TLS, Symptom.TLS_CLOSED),
        ("tls-stall", Layer.TLS, Symptom.TLS_TIMEOUT),
        ("untrusted-ca", Layer.TLS, Symptom.TLS_UNTRUSTED),
        ("wrong-name", Layer.TLS, Symptom.TLS_NAME_MISMATCH),
        ("plain-http", Layer.TLS, Symptom.TLS_WRONG_VERSION),
    ],
)
def test_ladder_stops_at_the_rung_each_misbehaving_server_breaks(
    kind: str, layer: Layer, symptom: Symptom, pki: Pki
) -> None:
    with _server(kind, pki) as port:
        result = _climb(port, pki)
    assert (result.layer, result.symptom) == (layer, symptom), result.error
    assert not result.ok
    assert result.error is not None and result.error.chain
    assert result.dns is not None and result.dns.skipped == "--connect-to rule to 127.0.0.1"
    assert result.tcp is not None
    if layer is Layer.TCP:
        assert not result.tcp.connected
        assert result.tls is None
    else:
        # An RST may beat connect()'s completion check (errno 104 from connect): still TLS_CLOSED.
        assert result.tcp.connected or result.tcp.errno == 104
        assert result.tls is not None and not result.tls.ok and result.tls.sni == STS


def test_tls_untrusted_records_verify_code_20_and_the_ssl_reason(pki: Pki) -> None:
    with _server("untrusted-ca", pki) as port:
        result = _climb(port, pki)
    assert result.tls is not None
    assert result.tls.verify_code == 20
    assert result.tls.reason == "CERTIFICATE_VERIFY_FAILED"


def test_tls_name_mismatch_records_verify_code_62(pki: Pki) -> None:
    with _server("wrong-name", pki) as port:
        result = _climb(port, pki)
    assert result.tls is not None and result.tls.verify_code == 62


def test_tls_stall_gives_up_after_the_connect_timeout_as_urllib3_does(pki: Pki) -> None:
    with _server("tls-stall", pki) as port:
        started = time.monotonic()
        _climb(port, pki)
        elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT * 0.9 < elapsed < CONNECT_TIMEOUT + 0.5


def test_healthy_tls_endpoint_passes_every_rung_and_records_the_peer_certificate(pki: Pki) -> None:
    with CannedServer(canned.envoy_block_all_502(), tls=pki.ca, hostnames=[STS]) as server:
        result = _climb(server.port, pki)
        requests = list(server.requests)
    assert result.ok, result.error
    assert result.connect_to == f"127.0.0.1:{server.port}"
    assert result.tls is not None and result.tls.ok
    assert result.tls.protocol in {"TLSv1.2", "TLSv1.3"}
    assert result.tls.cipher
    assert result.tls.trust == f"ca_file={pki.ca_file}"
    assert f"DNS:{STS}" in result.tls.peer_san
    assert result.tls.peer_issuer and "trustme" in result.tls.peer_issuer
    # The ladder never sends an HTTP request: Envoy's 502 must not be seen here.
    assert requests == []


def test_trust_label_is_recorded_as_given(pki: Pki) -> None:
    with (
        CannedServer(canned.Reply(), tls=pki.ca, hostnames=[STS]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)])),
    ):
        result = probe_endpoint(
            URL, ca_file=pki.ca_file, connect_timeout=1, read_timeout=1, trust=f"AWS_CA_BUNDLE={pki.ca_file}"
        )
    assert result.tls is not None and result.tls.trust == f"AWS_CA_BUNDLE={pki.ca_file}"


def test_plain_http_url_stops_after_tcp_without_tls(pki: Pki) -> None:
    with CannedServer(canned.Reply()) as server:
        result = _climb(server.port, pki, url=f"http://{STS}/")
    assert result.ok
    assert result.tcp is not None and result.tcp.connected
    assert result.tls is None


def test_ladder_after_the_scope_deadline_reports_deadline_at_tcp(pki: Pki) -> None:
    with (
        CannedServer(canned.Reply(), tls=pki.ca, hostnames=[STS]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)]), deadline=time.monotonic() - 1),
    ):
        result = probe_endpoint(URL, ca_file=pki.ca_file, connect_timeout=1, read_timeout=1)
    assert (result.layer, result.symptom) == (Layer.TCP, Symptom.DEADLINE)


def test_handshake_cut_short_by_the_scope_deadline_reports_deadline_at_tls(pki: Pki) -> None:
    with (
        TlsStallServer() as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)]), deadline=time.monotonic() + 0.2),
    ):
        started = time.monotonic()
        result = probe_endpoint(URL, ca_file=pki.ca_file, connect_timeout=5, read_timeout=5)
    assert (result.layer, result.symptom) == (Layer.TLS, Symptom.DEADLINE)
    assert time.monotonic() - started < 1


def test_handshake_aborted_by_the_recorder_reports_deadline_not_tls_closed(pki: Pki) -> None:
    import threading

    recorder = DialRecorder()
    with (
        TlsStallServer() as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)]), recorder=recorder),
    ):
        timer = threading.Timer(0.1, recorder.abort)
        timer.start()
        result = probe_endpoint(URL, ca_file=pki.ca_file, connect_timeout=5, read_timeout=5)
        timer.join()
    assert (result.layer, result.symptom) == (Layer.TLS, Symptom.DEADLINE)
