"""Time and memory of egress-doctor against hostile input (issue 10): figures, not assertions.

    .venv/bin/python benchmarks/hostile_inputs.py [--deadline 2]

Each case runs the real CLI as its own process (`python -m egress_doctor.cli …`) and prints its
wall time measured from outside, its peak RSS (`wait4`'s ru_maxrss) and exit code:

- `analyze -f` on the 342-byte-class alias bomb (9 levels of 9), alone and inside a ServiceEntry spec;
- `check` against an Envoy admin stand-in answering `/config_dump` with 31 MB, with 1,000,000 `[`,
  and with headers sent one byte a second;
- `check` with a Kubernetes API that accepts TCP and never answers (TLS never completes);
- `check` with an IMDS that answers its token PUT with a 100 MB line;
- a baseline `check` with nothing hostile, for the RSS every run has anyway.

Everything listens on 127.0.0.1 and stops when its case ends; AWS itself is a refused port (the
probes fail at once: what is measured is what the hostile peer costs). Bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_INFO = (b'{"version": "abc/1.40.0/Clean/RELEASE/BoringSSL", "state": "LIVE", '
               b'"node": {"metadata": {"ISTIO_VERSION": "1.30.3"}}}')

Serve = Callable[[socket.socket, bytes], None]  # (connection, request head)


@contextmanager
def server(serve: Serve) -> Iterator[int]:
    """A thread-per-connection server on 127.0.0.1 calling `serve(conn, request_head)`; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                while not stop.is_set():
                    head = b""
                    while b"\r\n\r\n" not in head:
                        more = conn.recv(65536)
                        if not more:
                            return
                        head += more
                    serve(conn, head)
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def reply(conn: socket.socket, body: bytes, chunk: int = 1 << 20) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                 + str(len(body)).encode() + b"\r\n\r\n")
    for start in range(0, len(body), chunk):
        conn.sendall(body[start:start + chunk])


def admin(other: Callable[[socket.socket], None]) -> Serve:
    def serve(conn: socket.socket, head: bytes) -> None:
        if head.split(b" ", 2)[1].startswith(b"/server_info"):
            reply(conn, SERVER_INFO)
        else:
            other(conn)
            raise OSError("one answer per connection")

    return serve


def drip_headers(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}":
        time.sleep(1.0)
        conn.sendall(bytes([byte]))


def stall(conn: socket.socket, head: bytes) -> None:
    time.sleep(30)


def stall_tls(conn: socket.socket) -> None:
    time.sleep(30)


def imds_100_mb_line(conn: socket.socket, head: bytes) -> None:
    line = b"t" * (1 << 20)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: " + str(100 << 20).encode() + b"\r\n\r\n")
    for _ in range(100):
        conn.sendall(line)


def alias_bomb(indent: str = "") -> str:
    lines = [f"{indent}a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"{indent}a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def measure(label: str, argv: list[str], env: dict[str, str]) -> None:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "egress_doctor.cli", *argv], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    first_error = (process.stderr.read().decode(errors="replace").splitlines() or [""])[0] if process.stderr else ""
    print(f"{label:<58} {wall:6.2f} s wall  {usage.ru_maxrss / 1024:6.0f} MiB peak RSS  exit {process.returncode}"
          + (f"  (…{first_error[-60:]})" if first_error else ""), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=2.0)
    args = parser.parse_args()
    deadline = str(args.deadline)
    tmp = Path(tempfile.mkdtemp(prefix="egress-doctor-hostile-"))
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "AWS_CONFIG_FILE": str(tmp / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"), "AWS_DEFAULT_REGION": "us-east-1"}
    with socket.create_server(("127.0.0.1", 0)) as holder:  # bound, never listening: AWS is refused
        refused = f":443:127.0.0.1:{holder.getsockname()[1]}"
    keys = {**base, "AWS_ACCESS_KEY_ID": "AKIABENCHMARKEXAMPLE", "AWS_SECRET_ACCESS_KEY": "benchmark-secret-value",
            "EGRESS_DOCTOR_CONNECT_TO": refused}
    check = ["check", "--deadline", deadline, "--no-color"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, --deadline {deadline} s "
          f"(the bound is deadline + 0.5 s)\n")

    (tmp / "bomb").mkdir()
    (tmp / "bomb" / "bomb.yaml").write_text(alias_bomb())
    (tmp / "bomb-in-spec.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n"
        "  hosts: [sts.us-east-1.amazonaws.com]\n  extra:\n" + alias_bomb("    "))
    analyze = ["analyze", "--region", "us-east-1"]
    measure(f"analyze: alias bomb ({(tmp / 'bomb' / 'bomb.yaml').stat().st_size} bytes)",
            [*analyze, "-f", str(tmp / "bomb")], base)
    measure("analyze: alias bomb inside a ServiceEntry spec", [*analyze, "-f", str(tmp / "bomb-in-spec.yaml")], base)

    measure("check: baseline (no admin, no cluster)", [*check, "--no-envoy-admin"], keys)
    dump = b'{"configs": [' + b",".join([b'{"name": "' + b"x" * 1000 + b'"}'] * 31_000) + b"]}"
    # Just under the 4 MiB cap, shaped like SNI filter chains: parsed, the most a legitimate answer costs.
    chain = (b'{"filter_chain_match": {"server_names": ["svc-%d.example.com"]}, "filters": [{"name": '
             b'"envoy.filters.network.tcp_proxy", "typed_config": {"stat_prefix": "outbound|443||svc-%d", '
             b'"cluster": "outbound|443||svc-%d.example.com"}}]}')
    chains = b",".join(chain % (i, i, i) for i in range(16_500))
    under_cap = b'{"configs": [{"active_state": {"listener": {"name": "0.0.0.0_443", "filter_chains": [' \
        + chains + b"]}}}]}"
    cases: list[tuple[str, Serve]] = [
        (f"check: admin /config_dump of {len(dump) / 1e6:.0f} MB", admin(lambda c: reply(c, dump))),
        (f"check: admin /config_dump of {len(under_cap) / 2**20:.1f} MiB (parsed)",
         admin(lambda c: reply(c, under_cap))),
        ("check: admin /config_dump of 1,000,000 '['", admin(lambda c: reply(c, b"[" * 1_000_000))),
        ("check: admin sending its headers at 1 byte/s", admin(drip_headers)),
    ]
    for label, serve in cases:
        with server(serve) as port:
            measure(label, [*check, "--envoy-admin", f"http://127.0.0.1:{port}"], keys)
    with server(stall) as port:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
            f"clusters: [{{name: lab, cluster: {{server: 'https://127.0.0.1:{port}',"
            " insecure-skip-tls-verify: true}}]\n"
            "users: [{name: lab, user: {token: benchmark}}]\n"
            "contexts: [{name: lab, context: {cluster: lab, user: lab}}]\n")
        measure("check: Kubernetes API accepting and never answering",
                [*check, "--no-envoy-admin", "--kubeconfig", str(kubeconfig), "--context", "lab"], keys)
    with server(imds_100_mb_line) as port:
        measure("check: IMDS answering its token PUT with a 100 MB line", [*check, "--no-envoy-admin"],
                {**base, "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}/",
                 "EGRESS_DOCTOR_CONNECT_TO": refused})
    return 0


if __name__ == "__main__":
    sys.exit(main())
