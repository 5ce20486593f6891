"""`make bench`: every benchmark, one after the other; each prints its own figures.

Loopback only, bounded in count and time (see each script). Figures, not assertions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("check_timing.py", "footprint_timing.py", "lab_bringup.py", "analyze_scale.py", "serve_load.py",
           "hostile_inputs.py", "blocked_scale.py")


def main() -> int:
    failed = 0
    for script in SCRIPTS:
        print(f"\n=== benchmarks/{script}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script)], check=False).returncode != 0
    print("\n=== benchmarks/serve_load.py --services", flush=True)
    failed += subprocess.run([sys.executable, str(HERE / "serve_load.py"), "--services"], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
