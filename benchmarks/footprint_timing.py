"""`check` with a wide footprint against the floor of importing boto3, side by side. Prints; asserts nothing.

    .venv/bin/python benchmarks/footprint_timing.py [--runs 15]

The pod is the lab: a real Envoy configured like the sidecar (REGISTRY_ONLY, every host of the
footprint allowed), the fake AWS over TLS, IRSA credentials. Measured, alternating one with the
other so that both see the same machine:

- the floor: `python -c "import boto3, botocore.session"`;
- `egress-doctor check` (a subprocess, exactly as in a pod, reading the sidecar's admin port) with
  STS, DynamoDB and four more services: S3, SQS, Secrets Manager, KMS; all pass.

Both run with bytecode caching on (a pod's image has its .pyc files), in a cache directory of
their own. The target (issue 12) is check at most 1.5 times the floor.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from egress_doctor.aws.resources import parse  # noqa: E402
from egress_doctor.istio.objects import Mode  # noqa: E402
from egress_doctor.lab.runner import Lab, LabConfig  # noqa: E402

ACCOUNT = "111122223333"
FOOTPRINT = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events",
             "--secret", "billing/db", "--key", "alias/billing")
HOSTS = ("sts.us-east-1.amazonaws.com", f"{ACCOUNT}.ddb.us-east-1.amazonaws.com", "invoice-archive.s3.amazonaws.com",
         "sqs.us-east-1.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com", "kms.us-east-1.amazonaws.com")


def allowed() -> dict[str, object]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "aws"},
            "spec": {"hosts": list(HOSTS), "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `argv` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{argv[:4]}… exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def line(name: str, wall: list[float], cpu: list[float]) -> str:
    ordered = sorted(wall)
    return (f"{name:<52} n={len(ordered):<3} wall median {statistics.median(ordered) * 1000:6.0f} ms "
            f"(min {ordered[0] * 1000:4.0f}, max {ordered[-1] * 1000:5.0f})   CPU median "
            f"{statistics.median(cpu) * 1000:5.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    resources = tuple(parse(k, v) for k, v in (("bucket", "invoice-archive"), ("queue", "billing-events"),
                                                ("secret", "billing/db"), ("key", "alias/billing")))
    config = LabConfig(objects=(allowed(),), mode=Mode.REGISTRY_ONLY, namespace="payments", account_id=ACCOUNT,
                       credentials="irsa", tables=("invoices",), resources=resources)
    floor = [sys.executable, "-c", "import boto3, botocore.session"]
    check = [sys.executable, "-m", "egress_doctor.cli", "check", "--no-cluster", "--no-mirror", *FOOTPRINT]
    with Lab(config) as lab, tempfile.TemporaryDirectory() as pycache:
        env = {k: v for k, v in lab.command_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for _ in range(2):  # warm-up: bytecode written, moto's backends loaded
            timed(floor, env), timed(check, env)
        floors, checks = [], []
        for _ in range(args.runs):
            floors.append(timed(floor, env))
            checks.append(timed(check, env))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{args.runs} runs each (+2 warm-up), alternating\n")
    print(line('floor: python -c "import boto3, botocore.session"', [w for w, _ in floors], [c for _, c in floors]))
    print(line("check: STS, DynamoDB, S3, SQS, Secrets Manager, KMS", [w for w, _ in checks], [c for _, c in checks]))
    for index, what in ((0, "wall"), (1, "CPU")):
        ratio = statistics.median(c[index] for c in checks) / statistics.median(f[index] for f in floors)
        per_run = sorted(c[index] / f[index] for c, f in zip(checks, floors, strict=True))
        print(f"check / floor, {what:<4}: median {ratio:.2f}x (run by run {per_run[0]:.2f}x to {per_run[-1]:.2f}x)")
    print("target: wall at most 1.5x (CPU shows the work itself when the machine is busy)")


if __name__ == "__main__":
    main()
