from __future__ import annotations

import socket
import threading
import time
import tracemalloc

import pytest
import urllib3

from egress_doctor.model import Layer, Symptom
from egress_doctor.net.connect_to import ConnectToMap
from egress_doctor.net.dial import DeadlineExceeded, dial_scope
from egress_doctor.net.http import HttpResult, read_bounded, request
from tests import canned
from tests.canned import CannedServer, Reply
from tests.sockets import Acceptor, Pki, refused_port


def _get(server: CannedServer, **kwargs: object) -> HttpResult:
    options: dict[str, object] = {"connect_timeout": 1.0, "read_timeout": 1.0}
    options.update(kwargs)
    return request("GET", server.url("/latest/api/token"), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "status", "body"),
    [
        (canned.envoy_block_all_502(), 502, b""),
        (
            canned.envoy_upstream_connect_error_503(),
            503,
            b"upstream connect error or disconnect/reset before headers."
            b" reset reason: remote connection failure",
        ),
        (canned.envoy_no_healthy_upstream_503(), 503, b"no healthy upstream"),
        (canned.envoy_upstream_timeout_504(), 504, b"upstream request timeout"),
        (canned.envoy_no_route_404(), 404, b""),
        (canned.envoy_rbac_403(), 403, b"RBAC: access denied"),
    ],
    ids=["502-block-all", "503-uf", "503-uh", "504-ut", "404-nr", "403-rbac"],
)
def test_envoy_local_reply_is_an_answer_with_status_body_and_server_envoy(
    reply: Reply, status: int, body: bytes
) -> None:
    with CannedServer(reply) as server:
        result = _get(server)
    assert result.ok and result.layer is None and result.error is None
    assert result.evidence.status == status
    assert result.body == body
    assert result.evidence.body_prefix == (body.decode() or None)
    assert result.evidence.headers["server"] == "envoy"
    assert "x-envoy-upstream-service-time" not in result.evidence.headers
    assert "x-amzn-requestid" not in result.evidence.headers
    assert not result.evidence.body_truncated


def test_only_interesting_headers_are_kept_in_evidence_but_all_in_result() -> None:
    reply = Reply(200, (("server", "envoy"), ("x-envoy-upstream-service-time", "3"), ("x-other", "1")), b"ok")
    with CannedServer(reply) as server:
        result = _get(server)
    assert result.evidence.headers["x-envoy-upstream-service-time"] == "3"
    assert "x-other" not in result.evidence.headers
    assert result.headers["x-other"] == "1"
    assert result.evidence.headers["content-length"] == "2"


@pytest.mark.parametrize(
    ("reply", "status", "content_type"),
    [
        (
            canned.aws_xml_error(403, "InvalidClientTokenId", "The security token is invalid."),
            403,
            "text/xml",
        ),
        (
            canned.aws_json_error(400, "UnrecognizedClientException", "The security token is invalid."),
            400,
            "application/x-amz-json-1.0",
        ),
    ],
    ids=["sts-xml", "dynamodb-json"],
)
def test_aws_error_reply_keeps_request_id_and_body(reply: Reply, status: int, content_type: str) -> None:
    with CannedServer(reply) as server:
        result = _get(server)
    assert result.evidence.status == status
    assert result.evidence.headers["x-amzn-requestid"] == canned.REQUEST_ID
    assert result.evidence.headers["content-type"] == content_type
    assert b"InvalidClientTokenId" in result.body or b"UnrecognizedClientException" in result.body


def test_request_sends_method_headers_and_body_and_keeps_the_original_host_under_connect_to() -> None:
    with (
        CannedServer(Reply(200, body=b"token")) as server,
        dial_scope(connect_to=ConnectToMap([server.rule("metadata.test", 80)])),
    ):
        result = request(
            "PUT",
            "http://metadata.test/latest/api/token",
            headers={"x-aws-ec2-metadata-token-ttl-seconds": "21600"},
            body=b"",
            connect_timeout=1,
            read_timeout=1,
        )
    assert result.body == b"token"
    (sent,) = server.requests
    assert (sent.method, sent.target) == ("PUT", "/latest/api/token")
    assert sent.headers["host"] == "metadata.test"
    assert sent.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"


def test_https_request_verifies_with_the_given_ca_file(pki: Pki) -> None:
    with (
        CannedServer(canned.sts_get_caller_identity_ok(), tls=pki.ca, hostnames=["sts.test"]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule("sts.test")])),
    ):
        result = request("POST", "https://sts.test/", connect_timeout=1, read_timeout=1, ca_file=pki.ca_file)
    assert result.evidence.status == 200, result.error
    assert b"<Account>111122223333</Account>" in result.body


def test_https_request_to_an_untrusted_server_is_a_tls_untrusted_failure(pki: Pki) -> None:
    with (
        CannedServer(Reply(), tls=pki.rogue_ca, hostnames=["sts.test"]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule("sts.test")])),
    ):
        result = request("GET", "https://sts.test/", connect_timeout=1, read_timeout=1, ca_file=pki.ca_file)
    assert (result.layer, result.symptom) == (Layer.TLS, Symptom.TLS_UNTRUSTED)
    assert result.evidence.status is None


def test_record_body_false_keeps_a_credentials_body_out_of_the_evidence() -> None:
    with CannedServer(Reply(200, body=b'{"SecretAccessKey": "fake"}')) as server:
        result = _get(server, record_body=False)
    assert result.body == b'{"SecretAccessKey": "fake"}'
    assert result.evidence.body_prefix is None
    assert result.evidence.body_bytes == len(result.body)


def test_refused_port_is_a_tcp_connect_refused_failure() -> None:
    with refused_port() as port:
        result = request("GET", f"http://127.0.0.1:{port}/", connect_timeout=1, read_timeout=1)
    assert (result.layer, result.symptom) == (Layer.TCP, Symptom.CONNECT_REFUSED)
    assert result.error is not None and result.error.root is not None
    assert result.error.root.errno == 111


def test_close_after_request_is_http_closed() -> None:
    with CannedServer(canned.close_after_request()) as server:
        result = _get(server)
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.HTTP_CLOSED)


def test_reset_after_request_is_http_closed() -> None:
    with CannedServer(canned.reset_after_request()) as server:
        result = _get(server)
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.HTTP_CLOSED)


def test_garbage_instead_of_http_is_not_aws_at_the_http_layer() -> None:
    with CannedServer(canned.garbage()) as server:
        result = _get(server)
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.NOT_AWS)


def test_slow_response_is_an_http_timeout_after_the_read_timeout() -> None:
    with CannedServer(canned.slow(Reply(204), 5)) as server:
        started = time.monotonic()
        result = _get(server, read_timeout=0.2)
        elapsed = time.monotonic() - started
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.HTTP_TIMEOUT)
    assert 0.15 < elapsed < 1


def test_slow_response_past_the_deadline_is_reported_as_deadline() -> None:
    with CannedServer(canned.slow(Reply(204), 5)) as server:
        started = time.monotonic()
        result = _get(server, read_timeout=5, deadline=time.monotonic() + 0.2)
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.DEADLINE)
    assert time.monotonic() - started < 1


def test_slow_drip_body_cannot_outlive_the_deadline() -> None:
    # 4096 bytes, one every 20 ms: 80 s in all, although every single read is quick.
    with CannedServer(canned.slow_drip(4096, 0.02)) as server:
        started = time.monotonic()
        result = _get(server, read_timeout=1, deadline=time.monotonic() + 0.3)
        elapsed = time.monotonic() - started
    assert elapsed < 0.8
    assert result.evidence.status == 200
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.DEADLINE)
    assert 0 < len(result.body) < 4096


class HeaderDrip(Acceptor):
    """Answers every request with a complete 200, its head sent one byte every 50 ms (3 s in all)."""

    name = "header-drip"

    def _handle(self, conn: socket.socket, stop: threading.Event) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            more = conn.recv(65536)
            if not more:
                return
            head += more
        for byte in b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok":
            if stop.wait(0.05):
                return
            conn.sendall(bytes([byte]))


def test_headers_that_drip_in_one_byte_at_a_time_are_cut_at_the_deadline_not_read_to_the_end() -> None:
    # Every single read succeeds within the read timeout: only the deadline can end this.
    with HeaderDrip() as server:
        result = request("GET", f"http://127.0.0.1:{server.port}/", connect_timeout=1, read_timeout=1,
                         deadline=time.monotonic() + 0.3)
    assert result.evidence.status is None, "the whole head was read: the deadline did not hold"
    assert (result.layer, result.symptom) == (Layer.HTTP, Symptom.DEADLINE)


def test_100_mb_body_is_read_to_max_body_only_with_flat_memory() -> None:
    size = 100 * 2**20
    with CannedServer(canned.huge_body(size)) as server:
        tracemalloc.start()
        try:
            result = _get(server, max_body=65536)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = server.bytes_sent
    assert result.ok
    assert result.evidence.headers["content-length"] == str(size)
    assert len(result.body) == 65536
    assert result.evidence.body_bytes is not None and result.evidence.body_bytes <= 65536
    assert result.evidence.body_truncated
    assert peak < 4 * 2**20
    assert sent < size  # the connection was closed, not drained


def test_read_bounded_reports_not_truncated_when_the_body_fits() -> None:
    with CannedServer(Reply(200, body=b"x" * 100)) as server, urllib3.PoolManager() as pool:
        response = pool.request("GET", server.url(), preload_content=False, retries=False)
        body, truncated = read_bounded(response, 100)
        response.close()
    assert (body, truncated) == (b"x" * 100, False)


def test_read_bounded_raises_deadline_exceeded_carrying_what_was_read() -> None:
    with CannedServer(canned.slow_drip(1000, 0.02)) as server, urllib3.PoolManager() as pool:
        response = pool.request("GET", server.url(), preload_content=False, retries=False, timeout=5)
        with pytest.raises(DeadlineExceeded) as caught:
            read_bounded(response, 1000, time.monotonic() + 0.15)
        response.close()
    assert 0 < len(caught.value.partial) < 1000


def test_a_request_whose_deadline_already_passed_reports_the_deadline_instead_of_crashing() -> None:
    import time as _time

    from egress_doctor.model import Symptom as _Symptom
    from egress_doctor.net.http import request as _request
    from tests.sockets import TlsStallServer

    with TlsStallServer() as server:
        result = _request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            connect_timeout=1,
            read_timeout=1,
            deadline=_time.monotonic() - 1,
        )
    assert result.error is not None
    assert result.symptom is _Symptom.DEADLINE
