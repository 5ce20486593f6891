"""`egress-doctor analyze` over a generated mesh: 10,000 ServiceEntries and 1,000 Sidecars.

    .venv/bin/python benchmarks/analyze_scale.py [--entries 10000] [--sidecars 1000] [--repeat 3]

Writes a GitOps-like tree (100 namespaces, 10 files each, multi-document YAML) to a temporary
directory, then runs the real command in-process (`analyze -f DIR -o json`) and prints the wall
time of each run and the peak Python heap (tracemalloc, one extra run) and the process's peak RSS.
The entries for the SDK's hosts sit among the generated ones: one ServiceEntry exported only to
its own namespace, one Sidecar that hides it, so the run has findings to explain.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

from egress_doctor.cli import main
from egress_doctor.context import Environment

NAMESPACES = 100


def _entry(i: int, ns: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": f"svc-{i}", "namespace": ns},
            "spec": {"hosts": [f"svc-{i}.{ns}.example.com"], "exportTo": [".", "payments"] if i % 7 else ["*"],
                     "location": "MESH_EXTERNAL", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                     "resolution": "DNS"}}


def _sidecar(i: int, ns: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": f"sc-{i}", "namespace": ns},
            "spec": {"workloadSelector": {"labels": {"app": f"app-{i}"}},
                     "egress": [{"hosts": ["./*", "istio-system/*", f"ns-{(i + 1) % NAMESPACES}/*"]}],
                     "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}


def generate(root: Path, entries: int, sidecars: int) -> None:
    per_ns_entries, per_ns_sidecars = entries // NAMESPACES, sidecars // NAMESPACES
    for n in range(NAMESPACES):
        ns = f"ns-{n}"
        docs = [_entry(n * per_ns_entries + i, ns) for i in range(per_ns_entries)]
        docs += [_sidecar(n * per_ns_sidecars + i, ns) for i in range(per_ns_sidecars)]
        directory = root / ns
        directory.mkdir(parents=True)
        for f in range(10):
            (directory / f"part-{f}.yaml").write_text(yaml.safe_dump_all(docs[f::10]), encoding="utf-8")
    (root / "aws.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "aws", "namespace": "platform"},
         "spec": {"hosts": ["sts.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"], "exportTo": ["."],
                  "location": "MESH_EXTERNAL", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                  "resolution": "DNS"}},
        {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
         "metadata": {"name": "default", "namespace": "payments"},
         "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}},
    ]), encoding="utf-8")


def run_once(root: Path) -> tuple[float, int, str]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = main(["analyze", "-f", str(root), "--region", "us-east-1", "--account", "111122223333", "-n", "payments",
                 "--mode", "REGISTRY_ONLY", "-o", "json"], Environment(environ={}, stdout=out, stderr=err))
    return time.perf_counter() - started, int(code), err.getvalue()


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--sidecars", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-doctor-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.entries, args.sidecars)
        size = sum(p.stat().st_size for p in root.rglob("*.yaml")) / 1e6
        print(f"generated {args.entries} ServiceEntries + {args.sidecars} Sidecars in "
              f"{len(list(root.rglob('*.yaml')))} files ({size:.1f} MB)")
        for i in range(args.repeat):
            seconds, code, err = run_once(root)
            print(f"run {i + 1}: {seconds:.2f} s wall, exit {code}" + (f" stderr: {err.strip()}" if err else ""))
        tracemalloc.start()
        seconds, _, _ = run_once(root)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak Python heap {peak / 1e6:.0f} MB (tracemalloc run: {seconds:.2f} s); peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
