"""Figures for `egress-doctor blocked`. Prints; asserts nothing.

    .venv/bin/python benchmarks/blocked_scale.py [--lines 200000] [--megabytes 100] [--pods 200]

1. Parsing: Istio access-log lines (text, then JSON) through the tally, in memory: lines per second.
   The mix: 70 % records of registered hosts, 15 % BlackHoleCluster, 5 % block_all, 10 % the
   proxy's own messages.
2. A 100 MB sidecar log served by the test's Kubernetes API (real HTTPS on 127.0.0.1), generated
   chunk by chunk (never held), read whole by `blocked` (`--max-log-bytes 128Mi`): wall time, the
   peak Python heap of the read (tracemalloc, a second run), the process's peak RSS.
3. 200 pods, each with a 150-line log, listed and read through the same API: wall time of `blocked -n`
   (the first run pays the imports: kubernetes, botocore's endpoint data).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from egress_doctor.cli import main  # noqa: E402
from egress_doctor.context import Environment  # noqa: E402
from egress_doctor.diagnose.refusals import LogTally  # noqa: E402
from tests.kube_api import FakeApiServer, write_kubeconfig  # noqa: E402
from tests.kube_logs import FakePod, log_routes, text_log  # noqa: E402
from tests.sockets import Pki  # noqa: E402


def text_line(i: int) -> str:
    at = f"2026-12-02T14:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
    kind = i % 20
    if kind < 14:
        return (f'[{at}] "- - -" 0 - - - "-" 1564 2605 48 - "-" "-" "-" "-" "52.94.{i % 250}.{i % 7}:443" '
                f"outbound|443||sts.us-east-1.amazonaws.com 10.0.0.7:{30000 + i % 9000} 52.94.{i % 250}.{i % 7}:443 "
                f"10.0.0.7:{40000 + i % 9000} sts.us-east-1.amazonaws.com -")
    if kind < 17:
        return (f'[{at}] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" BlackHoleCluster - 52.94.0.{i % 9}:443 '
                f"10.0.0.7:{40000 + i % 9000} sqs-{i % 40}.us-east-1.amazonaws.com -")
    if kind < 18:
        return (f'[{at}] "GET /v1/x HTTP/1.1" 502 - direct_response - "-" 0 0 0 - "-" "app/1.0" '
                f'"{i:08x}-1b7e-498e-80bc-75d99df3e662" "telemetry.example.com" "-" - - 93.184.216.34:80 '
                f"10.0.0.7:{40000 + i % 9000} - block_all")
    return f"{at[:10]}T{at[11:]}\tinfo\txdsproxy\tconnected to upstream XDS server: istiod.istio-system.svc:15012"


def json_line(i: int) -> str:
    text = text_line(i)
    if "\tinfo\t" in text:
        return text
    parts = text.split('"')
    tail = parts[-1].split()
    return json.dumps({"start_time": text[1:25], "upstream_cluster": tail[0], "downstream_local_address": tail[2],
                       "requested_server_name": None if tail[4] == "-" else tail[4],
                       "route_name": None if tail[5] == "-" else tail[5], "response_code": 0,
                       "response_flags": "UH" if tail[0] == "BlackHoleCluster" else "-", "authority": None})


def parse_rate(lines: int) -> None:
    for name, make in (("text", text_line), ("json", json_line)):
        data = [make(i) for i in range(lines)]
        size = sum(len(line) + 1 for line in data)
        tally = LogTally()
        started = time.perf_counter()
        for line in data:
            tally.add(line)
        took = time.perf_counter() - started
        print(f"parse {name:<5} {lines:>9,} lines ({size / 2**20:6.1f} MiB) in {took:6.2f} s: "
              f"{lines / took:>10,.0f} lines/s, {size / 2**20 / took:6.1f} MiB/s; "
              f"{tally.refusals:,} refusals in {len(tally.seen)} destinations")


def generated(megabytes: int) -> Iterator[bytes]:
    block, i = bytearray(), 0
    total = megabytes << 20
    sent = 0
    while sent < total:
        while len(block) < 1 << 16:
            block += (text_line(i) + "\n").encode()
            i += 1
        yield bytes(block)
        sent += len(block)
        block.clear()


def run_blocked(pods: list[FakePod], pki: Pki, directory: Path, *args: str) -> tuple[float, dict]:
    with FakeApiServer(log_routes(pods), tls=pki.ca) as api:
        kubeconfig = write_kubeconfig(directory, {"lab": api.url}, pki.ca_file, current="lab")
        out = io.StringIO()
        started = time.perf_counter()
        main(["blocked", "--kubeconfig", str(kubeconfig), "-n", "payments", "-o", "json", "--deadline", "600",
              *args], Environment(environ={}, stdout=out, stderr=io.StringIO(), resolver=lambda name: []))
        took = time.perf_counter() - started
    return took, json.loads(out.getvalue())


def big_log(pki: Pki, directory: Path, megabytes: int) -> None:
    pods = [FakePod("api-1", log=lambda: generated(megabytes), honour_limit=False)]
    took, document = run_blocked(pods, pki, directory, "--max-log-bytes", "128Mi")
    pod = document["pods"][0]
    print(f"{megabytes} MB log via the API: {pod['bytes'] / 2**20:.1f} MiB, {pod['lines']:,} lines read in "
          f"{took:.2f} s ({pod['lines'] / took:,.0f} lines/s end to end); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (server and client in one process)")
    tracemalloc.start()
    run_blocked(pods, pki, directory, "--max-log-bytes", "128Mi")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{megabytes} MB log via the API: peak Python heap during the run {peak / 2**20:.1f} MiB (tracemalloc)")


def many_pods(pki: Pki, directory: Path, count: int) -> None:
    log = "".join(text_line(i) + "\n" for i in range(150)).encode()
    pods = [FakePod(f"api-{i}", log=text_log(log)) for i in range(count)]
    for parallel, when in (("8", "first run, imports included"), ("8", "again"), ("16", "again")):
        took, document = run_blocked(pods, pki, directory, "--parallel", parallel)
        read = sum(1 for p in document["pods"] if p["read"])
        print(f"{count} pods ({len(log) / 1024:.0f} KB log each) via the API, --parallel {parallel} ({when}): "
              f"{read} read in {took:.2f} s ({took / count * 1000:.1f} ms per pod)")


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    parse_rate(args.lines)
    with tempfile.TemporaryDirectory(prefix="egress-doctor-bench-") as tmp:
        directory = Path(tmp)
        pki = Pki(directory)
        many_pods(pki, directory, args.pods)
        big_log(pki, directory, args.megabytes)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
