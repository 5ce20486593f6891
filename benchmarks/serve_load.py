"""Print what `egress-doctor serve` costs: memory over many runs, CPU per run, `/readyz` latency
under a burst. Figures only: nothing here asserts a time.

    .venv/bin/python benchmarks/serve_load.py [--runs 100] [--burst 200] [--rounds 5] [--irsa] [--services]

Everything stays on loopback: the lab's fake AWS (moto over TLS) runs in a child process, so
that `resource.getrusage` in this process counts only egress-doctor's own work; the service is
built exactly as `egress-doctor serve` builds it, with static keys and every HTTPS connection
steered to the fake by a connect-to rule. Bounded: --runs runs at an interval of 10 ms, then
--rounds bursts of --burst concurrent requests, each wait capped at WAIT seconds. --services: the
footprint of six services (STS, DynamoDB, S3, SQS, Secrets Manager, KMS) instead of STS + DynamoDB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from egress_doctor.cli import build_parser
from egress_doctor.commands.serve import build_service
from egress_doctor.context import Environment
from egress_doctor.redact import Redactor
from egress_doctor.serve import ReadinessService

WAIT = 120.0  # seconds: a cap on any single wait, so the benchmark always ends
WARM_UP_RUNS = 10


# --services: what each run checks beyond STS (and the resources the fake AWS then holds).
FOOTPRINT = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events",
             "--secret", "billing/db", "--key", "alias/billing")


def serve_fakes(conn: Any, directory: str, services: bool) -> None:
    """Child process: the fake AWS on 127.0.0.1 until the parent says stop."""
    from egress_doctor.aws.resources import parse
    from egress_doctor.lab.fakes import MOTO_DEFAULT_ACCOUNT, FakeAws, LabPKI

    with FakeAws(LabPKI(Path(directory))) as aws:
        if services:
            kinds = {"--table": "table", "--bucket": "bucket", "--queue": "queue", "--secret": "secret",
                     "--key": "key"}
            resources = [parse(kinds[flag], value) for flag, value in zip(FOOTPRINT[::2], FOOTPRINT[1::2], strict=True)]
            aws.create_resources(resources, accounts=(MOTO_DEFAULT_ACCOUNT, "444455556666"))
        conn.send((aws.port, str(aws.pki.ca_bundle_path)))
        conn.recv()


# A JWT-shaped token for --irsa: moto does not verify it.
BENCH_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YmVuY2gifQ.YmVuY2gtc2lnbmF0dXJl"


def use_fake_aws(port: int, ca_bundle: str, directory: str, irsa: bool) -> None:
    """This process's environment as `aws_world` makes it (clean, loopback-only), then static keys,
    or IRSA (a role and a token file: STS issues new credentials on every run)."""
    for name in [n for n in os.environ if n.startswith(("AWS_", "EGRESS_DOCTOR_")) or n.lower().endswith("_proxy")]:
        del os.environ[name]
    os.environ.update(
        AWS_CONFIG_FILE=os.path.join(directory, "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(directory, "no-aws-credentials"),
        AWS_CA_BUNDLE=ca_bundle,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        EGRESS_DOCTOR_CONNECT_TO=f":443:127.0.0.1:{port}",
    )
    if irsa:
        token = Path(directory) / "web-identity-token"
        token.write_text(BENCH_JWT)
        os.environ.update(AWS_ROLE_ARN="arn:aws:iam::444455556666:role/bench", AWS_WEB_IDENTITY_TOKEN_FILE=str(token))
    else:
        os.environ.update(
            AWS_ACCESS_KEY_ID="AKIABENCHMARKEXAMPLE", AWS_SECRET_ACCESS_KEY="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"
        )


SERVE_EXTRA: list[str] = []  # the footprint options, with --services


def make_service(interval: str) -> ReadinessService:
    args = build_parser().parse_args(["serve", "--listen", "127.0.0.1:0", "--interval", interval, *SERVE_EXTRA])
    return build_service(args, Environment(stdout=io.StringIO(), stderr=io.StringIO()), Redactor())


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_runs(runs: int) -> None:
    service = make_service("10ms").start()
    scheduler = service.scheduler
    checkpoints: list[tuple[int, float]] = []
    try:
        if not scheduler.wait_for_runs(WARM_UP_RUNS, WAIT):
            raise SystemExit("the warm-up runs did not complete")
        done_before = scheduler.snapshot.runs
        checkpoints.append((0, rss_mib()))
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        for quarter in (1, 2, 3, 4):
            if not scheduler.wait_for_runs(done_before + runs * quarter // 4, WAIT):
                raise SystemExit(f"{runs} runs did not complete in time")
            checkpoints.append((scheduler.snapshot.runs - done_before, rss_mib()))
        done = scheduler.snapshot.runs - done_before
        cpu, wall = cpu_seconds() - cpu_before, time.perf_counter() - wall_before
        ready = scheduler.snapshot.ready
    finally:
        service.close()
    print(f"runs: {done} back to back (interval 10 ms) after {WARM_UP_RUNS} warm-up runs; last verdict ready={ready}")
    trail = ", ".join(f"{n}: {mib:.1f}" for n, mib in checkpoints)
    print(
        f"  RSS in MiB after warm-up and then after N runs ({trail}); "
        f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB"
    )
    print(
        f"  CPU per run {cpu / done * 1000:.1f} ms (user+system, getrusage); wall per run {wall / done * 1000:.1f} ms"
    )


async def _one_request(host: str, port: int, go: asyncio.Event) -> float:
    await go.wait()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n")
    answer = await reader.read()  # HTTP/1.0: the server closes when done
    writer.close()
    if not answer.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"/readyz answered {answer[:40]!r}")
    return time.perf_counter() - started


async def _bursts(host: str, port: int, size: int, rounds: int) -> list[float]:
    samples: list[float] = []
    for _ in range(rounds):
        go = asyncio.Event()
        tasks = [asyncio.create_task(_one_request(host, port, go)) for _ in range(size)]
        await asyncio.sleep(0)  # every request waits at the gate
        go.set()
        samples += await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    return samples


def burst_client(conn: Any, url: str, size: int, rounds: int) -> None:
    """Child process: `rounds` bursts of `size` concurrent GET /readyz, from one event loop, so
    that the client's own threads do not compete with the server for this process's GIL."""
    parts = urlsplit(url)
    conn.send(asyncio.run(_bursts(parts.hostname or "127.0.0.1", parts.port or 80, size, rounds)))


def measure_latency(size: int, rounds: int, interval: str, label: str) -> None:
    service = make_service(interval).start()
    try:
        if not service.scheduler.wait_for_runs(1, WAIT):
            raise SystemExit("the first run did not complete")
        runs_before = service.scheduler.runs_started
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        client = context.Process(target=burst_client, args=(theirs, service.url, size, rounds), daemon=True)
        client.start()
        if not ours.poll(WAIT):
            raise SystemExit("the burst client did not finish")
        samples = ours.recv()
        client.join(WAIT)
        extra = service.scheduler.runs_started - runs_before
    finally:
        service.close()
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)] * 1000
    print(f"/readyz, {rounds} x {size} concurrent request(s) (client in another process), {label}:")
    print(
        f"  p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {ordered[-1] * 1000:.2f} ms; probe runs started meanwhile: {extra}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--irsa", action="store_true", help="IRSA instead of static keys (one more STS call per run)")
    parser.add_argument("--services", action="store_true",
                        help="six services a run (STS, DynamoDB, S3, SQS, Secrets Manager, KMS), not two")
    args = parser.parse_args()
    credentials = "IRSA" if args.irsa else "static keys"
    checked = "STS, DynamoDB, S3, SQS, Secrets Manager, KMS" if args.services else "STS, DynamoDB"
    SERVE_EXTRA[:] = FOOTPRINT if args.services else []
    print(f"egress-doctor serve, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {credentials}; {checked}")
    with tempfile.TemporaryDirectory(prefix="serve-load-") as directory:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        fakes = context.Process(target=serve_fakes, args=(theirs, directory, args.services), daemon=True)
        fakes.start()
        try:
            if not ours.poll(WAIT):
                raise SystemExit("the fake AWS did not start")
            port, ca_bundle = ours.recv()
            use_fake_aws(port, ca_bundle, directory, args.irsa)
            measure_runs(args.runs)
            measure_latency(1, args.burst, "1h", "one at a time, scheduler idle (service time, no queueing)")
            measure_latency(args.burst, args.rounds, "1h", "scheduler idle (interval 1h)")
            measure_latency(args.burst, args.rounds, "10ms", "while runs go on back to back (interval 10 ms)")
        finally:
            ours.send("stop")
            fakes.join(WAIT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
