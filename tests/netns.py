"""Run Python in a private network and mount namespace: DNS failures without sending a packet.

`unshare -rmn` gives the child a user namespace (it is "root" there), a mount namespace and a
network namespace whose only interface is `lo` (brought up here). Private copies of
`/etc/nsswitch.conf`, `/etc/hosts` and `/etc/resolv.conf` are bind-mounted over the real ones
inside that namespace only, so glibc's resolver sees exactly what the test wrote:

- `hosts: files` + an /etc/hosts without the name  → getaddrinfo fails with EAI_NONAME (-2);
- `hosts: dns` + `nameserver 127.0.0.1`, nothing listening → EAI_AGAIN (-3), at once (the
  query gets ICMP port-unreachable on lo);
- `hosts: files` + a line mapping a real AWS name to 127.0.0.1 → that address.

Nothing leaves the namespace: it has no route anywhere but lo.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Files bind-mounted over; all must exist on the host for the mount to have a target.
ETC_FILES = ("/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf")
# A namespace run that takes longer than this is a hang, not a slow resolver.
RUN_TIMEOUT = 30.0


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used on this machine (None if they can)."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if probe.returncode != 0:
        return f"`unshare -rn true` failed: {probe.stderr.strip() or probe.returncode}"
    missing = [path for path in ETC_FILES if not os.path.exists(path)]
    if missing:
        return f"no bind-mount target for {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class Resolver:
    """The resolver configuration seen inside the namespace."""

    nsswitch_hosts: str = "files"  # the `hosts:` line of nsswitch.conf
    hosts: str = "127.0.0.1 localhost\n::1 localhost\n"
    resolv_conf: str = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def run_python(code: str, resolver: Resolver, workdir: Path) -> dict[str, Any]:
    """Run `code` with this interpreter inside a fresh namespace; return the JSON it prints last.

    `code` runs with the repository on sys.path and must print one JSON object as its last line.
    """
    files = {
        "nsswitch.conf": f"hosts: {resolver.nsswitch_hosts}\n",
        "hosts": resolver.hosts,
        "resolv.conf": resolver.resolv_conf,
    }
    for name, text in files.items():
        (workdir / name).write_text(text)
    script_path = workdir / "snippet.py"
    script_path.write_text(code)
    mounts = " && ".join(
        f"mount --bind {shlex.quote(str(workdir / Path(target).name))} {target}" for target in ETC_FILES
    )
    shell = (
        "set -e; ip link set lo up; "
        f"{mounts}; exec {shlex.quote(sys.executable)} {shlex.quote(str(script_path))}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        cwd=str(workdir),
    )
    if done.returncode != 0:
        raise RuntimeError(f"namespace run failed ({done.returncode}):\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
