"""Print how long the lab takes to come up, reconfigure and tear down (target: bring-up < 2 s on
2 cores). Figures only: nothing here asserts a time.

    .venv/bin/python benchmarks/lab_bringup.py [--runs N] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from egress_doctor.istio.objects import Mode
from egress_doctor.lab.runner import Lab, LabConfig

SCENARIOS = Path(__file__).resolve().parent.parent / "egress_doctor" / "lab" / "scenarios"


def measure(scenario: str, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"bring-up": [], "reconfigure": [], "teardown": []}
    for _ in range(runs):
        lab = Lab(LabConfig(files=(str(SCENARIOS / scenario),), mode=Mode.REGISTRY_ONLY, tables=("orders",)))
        started = time.perf_counter()
        lab.start()
        figures["bring-up"].append(time.perf_counter() - started)
        started = time.perf_counter()
        lab.reconfigure(mode=Mode.ALLOW_ANY)
        figures["reconfigure"].append(time.perf_counter() - started)
        started = time.perf_counter()
        lab.close()
        figures["teardown"].append(time.perf_counter() - started)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenario", default="correct")
    args = parser.parse_args()
    print(f"lab bring-up, scenario {args.scenario}, {args.runs} runs, {os.cpu_count()} CPUs")
    figures = measure(args.scenario, args.runs)
    for name, values in figures.items():
        print(f"  {name:12} first {values[0]:.3f} s  median {statistics.median(values):.3f} s  "
              f"max {max(values):.3f} s")
    print("  (the first bring-up includes importing moto and botocore's data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
