from __future__ import annotations

import contextvars
import errno
import socket
import threading
import time

import pytest
import urllib3
import urllib3.util.connection

from egress_doctor.net import dial
from egress_doctor.net.connect_to import ConnectTo, ConnectToMap
from egress_doctor.net.dial import DeadlineExceeded, DialRecorder, dial_scope
from tests import canned, sockets
from tests.canned import CannedServer, Reply
from tests.sockets import BacklogFullServer, TlsStallServer, refused_port

STS = "sts.us-east-1.amazonaws.com"


def _to(port: int, host: str = STS, match_port: int = 443) -> ConnectToMap:
    return ConnectToMap([ConnectTo(host, match_port, "127.0.0.1", port)])


def test_install_is_idempotent_and_keeps_urllib3s_original_reachable() -> None:
    dial.install()
    dial.install()
    assert dial.installed()
    assert urllib3.util.connection.create_connection.egress_doctor_original is not None  # type: ignore[attr-defined]


def test_dial_outside_any_scope_behaves_like_urllib3_and_records_nothing() -> None:
    # A rule sending everything to port 1 would make the dial below fail, were it applied.
    with dial_scope(connect_to=ConnectToMap([ConnectTo("", None, "127.0.0.1", 1)])) as finished:
        pass
    with CannedServer(Reply(204)) as server:
        dial.dial("127.0.0.1", server.port, 1.0).close()
    assert dial.current_scope() is None
    assert finished.recorder.records == []


def test_connect_to_rule_dials_the_target_and_records_the_skipped_lookup() -> None:
    with CannedServer(Reply(204)) as server, dial_scope(connect_to=_to(server.port)) as scope:
        sock = dial.dial(STS, 443, 1.0)
        sock.close()
        (record,) = scope.recorder.records
    assert (record.host, record.port) == (STS, 443)
    assert (record.dialled_host, record.dialled_port) == ("127.0.0.1", server.port)
    assert record.connect_to == f"127.0.0.1:{server.port}"
    assert record.dns is not None
    assert record.dns.name == STS
    assert record.dns.skipped == "--connect-to rule to 127.0.0.1"
    assert record.tcp[0].connected
    assert record.tcp[0].address == "127.0.0.1"


def test_dialling_an_ip_literal_records_dns_as_skipped_ip_literal() -> None:
    with CannedServer(Reply(204)) as server, dial_scope() as scope:
        dial.dial("127.0.0.1", server.port, 1.0).close()
        (record,) = scope.recorder.records
    assert record.dns is not None
    assert record.dns.skipped == "ip literal"
    assert record.connect_to is None


def test_dialling_a_name_records_the_lookup_with_addresses_and_duration() -> None:
    with CannedServer(Reply(204)) as server, dial_scope() as scope:
        dial.dial("localhost", server.port, 1.0).close()
        (record,) = scope.recorder.records
    assert record.dns is not None
    assert record.dns.skipped is None
    assert "127.0.0.1" in record.dns.addresses
    assert record.dns.duration_ms is not None


def test_refused_connect_records_errno_and_raises_connection_refused() -> None:
    with refused_port() as port, dial_scope(connect_to=_to(port)) as scope:
        with pytest.raises(ConnectionRefusedError):
            dial.dial(STS, 443, 1.0)
        (record,) = scope.recorder.records
    assert record.tcp[-1].errno == errno.ECONNREFUSED
    assert not record.tcp[-1].connected
    assert not record.tcp[-1].timed_out


def test_dropped_syn_times_out_at_the_connect_timeout_and_records_timed_out() -> None:
    with BacklogFullServer() as server, dial_scope(connect_to=_to(server.port)) as scope:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            dial.dial(STS, 443, 0.2)
        elapsed = time.monotonic() - started
        (record,) = scope.recorder.records
    assert not isinstance(caught.value, DeadlineExceeded)
    assert record.tcp[-1].timed_out
    assert 0.15 < elapsed < 0.8


def test_scope_deadline_shortens_a_connect_and_raises_deadline_exceeded() -> None:
    with (
        BacklogFullServer() as server,
        dial_scope(connect_to=_to(server.port), deadline=time.monotonic() + 0.2),
    ):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            dial.dial(STS, 443, 30.0)
        assert time.monotonic() - started < 0.8


def test_dial_after_the_deadline_fails_at_once_without_connecting() -> None:
    with (
        CannedServer(Reply(204)) as server,
        dial_scope(connect_to=_to(server.port), deadline=time.monotonic() - 1),
    ):
        with pytest.raises(DeadlineExceeded):
            dial.dial(STS, 443, 1.0)
        assert server.connections == 0


def test_abort_unblocks_a_read_stalled_in_another_thread() -> None:
    recorder = DialRecorder()
    outcome: list[object] = []
    with TlsStallServer() as server, dial_scope(connect_to=_to(server.port), recorder=recorder):
        sock = dial.dial(STS, 443, 1.0)
        sock.settimeout(10)

        def stalled_read() -> None:
            try:
                outcome.append(sock.recv(1))
            except OSError as exc:
                outcome.append(exc)

        reader = threading.Thread(target=stalled_read)
        reader.start()
        time.sleep(0.05)
        started = time.monotonic()
        assert recorder.abort() == 1
        reader.join(2)
        sock.close()
    assert not reader.is_alive()
    assert time.monotonic() - started < 1
    assert outcome == [b""]


def test_abort_reaches_a_socket_after_tls_wrapping_detached_the_original() -> None:
    import ssl

    recorder = DialRecorder()
    errors: list[BaseException] = []
    with TlsStallServer() as server, dial_scope(connect_to=_to(server.port), recorder=recorder):
        sock = dial.dial(STS, 443, 10.0)
        context = ssl.create_default_context()

        def handshake() -> None:
            try:
                context.wrap_socket(sock, server_hostname=STS)
            except OSError as exc:
                errors.append(exc)

        worker = threading.Thread(target=handshake)
        worker.start()
        time.sleep(0.1)
        recorder.abort()
        worker.join(2)
        sock.close()
    assert not worker.is_alive()
    assert errors and not isinstance(errors[0], TimeoutError)


def test_dial_in_an_aborted_scope_fails_with_deadline_exceeded() -> None:
    recorder = DialRecorder()
    recorder.abort()
    with (
        CannedServer(Reply(204)) as server,
        dial_scope(connect_to=_to(server.port), recorder=recorder),
        pytest.raises(DeadlineExceeded),
    ):
        dial.dial(STS, 443, 1.0)


def test_urllib3_requests_pass_through_dial_and_keep_the_original_host_header() -> None:
    with (
        CannedServer(Reply(204)) as server,
        dial_scope(connect_to=_to(server.port, host="metadata.test", match_port=80)) as scope,
    ):
        response = urllib3.PoolManager().request("GET", "http://metadata.test/latest/", retries=False)
    assert response.status == 204
    assert server.requests[0].headers["host"] == "metadata.test"
    assert scope.recorder.records[0].host == "metadata.test"


def test_scope_is_per_context_so_a_worker_thread_sees_only_the_scope_it_was_given() -> None:
    seen: dict[str, object] = {}
    with dial_scope() as scope:
        context = contextvars.copy_context()

    def probe() -> None:
        seen["bare"] = dial.current_scope()

    def probe_in_context() -> None:
        seen["copied"] = dial.current_scope()

    bare = threading.Thread(target=probe)
    copied = threading.Thread(target=context.run, args=(probe_in_context,))
    bare.start()
    copied.start()
    bare.join()
    copied.join()
    assert seen["bare"] is None
    assert seen["copied"] is scope
    assert dial.current_scope() is None


def test_socket_options_and_source_address_are_applied() -> None:
    with CannedServer(Reply(204)) as server, dial_scope():
        sock = dial.dial(
            "127.0.0.1",
            server.port,
            1.0,
            source_address=("127.0.0.2", 0),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        with sock:
            assert sock.getsockname()[0] == "127.0.0.2"
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_sockets_module_servers_stop_without_leaking_threads() -> None:
    before = threading.active_count()
    with CannedServer(canned.slow(Reply(204), 5)) as server, dial_scope():
        sock = dial.dial("127.0.0.1", server.port, 1.0)
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(0.05)
    sock.close()
    assert threading.active_count() == before


def test_abort_ends_a_botocore_call_stalled_on_a_slow_response_long_before_its_read_timeout(
    pki: sockets.Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import botocore.config
    import botocore.exceptions

    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    client = boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
        verify=pki.ca_file,
        config=botocore.config.Config(
            connect_timeout=1, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 1}
        ),
    )
    recorder = DialRecorder()
    reply = canned.slow(canned.sts_get_caller_identity_ok(), 10)
    with (
        CannedServer(reply, tls=pki.ca, hostnames=[STS]) as server,
        dial_scope(connect_to=ConnectToMap([server.rule(STS)]), recorder=recorder),
    ):
        watchdog = threading.Timer(0.2, recorder.abort)
        watchdog.start()
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.BotoCoreError):
            client.get_caller_identity()
        elapsed = time.monotonic() - started
        watchdog.join()
    assert elapsed < 2
    assert recorder.aborted
