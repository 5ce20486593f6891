"""Wall-time figures for `egress-doctor check` against the loopback fakes. Prints; asserts nothing.

    .venv/bin/python benchmarks/check_timing.py [--runs 20] [--blackholed-runs 5]

- all-pass `check` (in-process, like the tests) with static keys and with IRSA,
- a blackholed run: every :443 connection and IMDS drop SYNs (full accept queues), `--deadline 3`,
  with static keys and with IMDS credentials,
- `egress-doctor --help` as a subprocess (interpreter start-up and imports included).

Everything listens on 127.0.0.1; the AWS names are steered there by connect-to rules.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.checkrun import World, aws_world, run_cli  # noqa: E402
from tests.sockets import BacklogFullServer  # noqa: E402


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = statistics.quantiles(ordered, n=10)[-1] if len(ordered) > 1 else ordered[0]
    return (
        f"{name:<44} n={len(ordered):<3} median {statistics.median(ordered) * 1000:8.1f} ms"
        f"   p90 {p90 * 1000:8.1f} ms   min {ordered[0] * 1000:8.1f} ms   max {ordered[-1] * 1000:8.1f} ms"
    )


Setup = Callable[[World, ExitStack], None]


def timed_checks(setup: Setup, runs: int, *args: str, expect: int) -> list[float]:
    """Run `check` `runs` times in one fake world (one warm-up run first, not counted)."""
    times: list[float] = []
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        tempfile.TemporaryDirectory() as tmp,
        aws_world(monkeypatch, Path(tmp)) as world,
        ExitStack() as stack,
    ):
        setup(world, stack)
        for index in range(runs + 1):
            started = time.perf_counter()
            result = run_cli("check", "-o", "json", *args)
            elapsed = time.perf_counter() - started
            if result.code != expect:
                raise SystemExit(f"unexpected exit {result.code}: {result.stderr}{result.stdout[:2000]}")
            if index:
                times.append(elapsed)
    return times


def blackholed(static_keys: bool) -> Setup:
    """Every :443 connection and IMDS go to listeners whose accept queue is full."""

    def setup(world: World, stack: ExitStack) -> None:
        aws = stack.enter_context(BacklogFullServer())
        imds = stack.enter_context(BacklogFullServer())
        if static_keys:
            world.static_keys()
        world.use(
            EGRESS_DOCTOR_CONNECT_TO=f":443:127.0.0.1:{aws.port}",
            AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{imds.port}/",
        )

    return setup


def timed_help(runs: int) -> list[float]:
    script = Path(sys.executable).with_name("egress-doctor")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(script), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--blackholed-runs", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.runs} runs (+1 warm-up) per all-pass case\n")
    static = timed_checks(lambda world, _stack: world.static_keys(), args.runs, expect=0)
    print(summary("check, all pass, static env keys", static))
    irsa = timed_checks(lambda world, _stack: world.irsa(), args.runs, expect=0)
    print(summary("check, all pass, IRSA", irsa))
    for static_keys, label in ((True, "static keys"), (False, "IMDS creds")):
        times = timed_checks(blackholed(static_keys), args.blackholed_runs, "--deadline", "3", expect=1)
        print(summary(f"check, blackholed, {label}, --deadline 3", times))
    print(summary("egress-doctor --help (subprocess)", timed_help(args.runs)))


if __name__ == "__main__":
    main()
