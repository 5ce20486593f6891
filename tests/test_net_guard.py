from __future__ import annotations

import socket

import pytest


def test_network_guard_fails_a_connect_outside_loopback_naming_the_address() -> None:
    # 198.18.0.0/15 is the benchmarking range: nothing answers there, and the guard must stop
    # the call before the kernel sees it.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(pytest.fail.Exception, match=r"198\.18\.0\.1:9"),
    ):
        sock.connect(("198.18.0.1", 9))


def test_network_guard_fails_connect_ex_and_sendto_outside_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(pytest.fail.Exception):
        sock.connect_ex(("198.18.0.1", 9))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(pytest.fail.Exception):
        sock.sendto(b"x", ("198.18.0.1", 9))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock, pytest.raises(pytest.fail.Exception):
        sock.sendto(b"x", 0, ("2001:db8::1", 9))


def test_network_guard_fails_a_dns_lookup_of_a_real_name() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"sts\.us-east-1\.amazonaws\.com"):
        socket.getaddrinfo("sts.us-east-1.amazonaws.com", 443)


def test_network_guard_lets_loopback_through() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("127.0.0.1", 9))
    assert socket.getaddrinfo("localhost", 80)


def test_network_guard_fails_a_server_listening_on_every_interface() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(pytest.fail.Exception):
        sock.bind(("0.0.0.0", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(pytest.fail.Exception):
        sock.bind(("", 0))


def test_network_guard_fails_reverse_and_ex_lookups_of_real_names() -> None:
    with pytest.raises(pytest.fail.Exception):
        socket.gethostbyname_ex("dynamodb.us-east-1.amazonaws.com")
    with pytest.raises(pytest.fail.Exception):
        socket.gethostbyaddr("198.18.0.1")
