"""Suite-wide fixtures. The network guard keeps every test on loopback."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sockets import Pki

# Hostnames a test may resolve: they never leave the machine (RFC 6761).
_LOCAL_NAMES = ("localhost", "localhost.")


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _check(sock: socket.socket, address: Any, what: str) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, "?")
    if not _is_loopback(host):
        pytest.fail(f"network guard: {what} to {host}:{port} is outside 127.0.0.0/8 and ::1")


def _guard_lookup(original: Any) -> Any:
    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            pytest.fail(f"network guard: DNS lookup of {host!r} (only loopback names and addresses)")
        return original(host, *args, **kwargs)

    return lookup


@pytest.fixture(autouse=True, scope="session")
def network_guard() -> Iterator[None]:
    """Fail any test whose process connects, sends or resolves off loopback.

    Patched at the `socket.socket` level (connect, connect_ex, sendto, and bind: servers listen on
    loopback only; ssl.SSLSocket inherits them), plus the name lookups, so a connect-to rule that
    does not match fails loudly instead of sending a DNS query for a real AWS name. Subprocesses
    are not covered (tests/netns.py isolates them). The failure is pytest's `Failed`, a
    BaseException: library `except Exception` blocks (urllib3, botocore) cannot swallow it.
    """
    originals = {
        "connect": socket.socket.connect,
        "connect_ex": socket.socket.connect_ex,
        "sendto": socket.socket.sendto,
        "bind": socket.socket.bind,
    }

    def bind(self: socket.socket, address: Any) -> None:
        # A server on 0.0.0.0 (or "") would be reachable from off the machine: tests listen on
        # loopback only.
        _check(self, address, "bind")
        originals["bind"](self, address)

    def connect(self: socket.socket, address: Any) -> None:
        _check(self, address, "connect")
        originals["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address, "connect_ex")
        return int(originals["connect_ex"](self, address))

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _check(self, args[-1], "sendto")
        return int(originals["sendto"](self, data, *args))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket.socket, "sendto", sendto)
        patch.setattr(socket.socket, "bind", bind)
        patch.setattr(socket, "getaddrinfo", _guard_lookup(socket.getaddrinfo))
        patch.setattr(socket, "gethostbyname", _guard_lookup(socket.gethostbyname))
        patch.setattr(socket, "gethostbyname_ex", _guard_lookup(socket.gethostbyname_ex))
        patch.setattr(socket, "gethostbyaddr", _guard_lookup(socket.gethostbyaddr))
        yield


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A trusted test CA (`pki.ca`, PEM at `pki.ca_file`) and an untrusted one (`pki.rogue_ca`)."""
    return Pki(Path(tmp_path_factory.mktemp("pki")))
