"""Start-up: `--help` stays cheap (no AWS SDK imported), lists the exit codes; `--version` works."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import egress_doctor
from egress_doctor.model import ExitStatus
from tests.checkrun import aws_world

REPO = Path(__file__).resolve().parents[1]
# `import time: self [us] | cumulative | imported package` (the name is indented by depth).
_IMPORT_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s+(?P<name>\S+)\s*$")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def imported_by_help() -> frozenset[str]:
    """Every module `python -X importtime -m egress_doctor.cli --help` imports."""
    result = _run(sys.executable, "-X", "importtime", "-m", "egress_doctor.cli", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    names = {m["name"] for line in result.stderr.splitlines() if (m := _IMPORT_LINE.match(line))}
    assert "egress_doctor.cli" in names or "egress_doctor" in names, "no import-time lines parsed"
    return frozenset(names)


def _top_level(names: frozenset[str]) -> set[str]:
    return {name.split(".", 1)[0] for name in names}


@pytest.mark.parametrize(
    "package",
    [
        "boto3",
        "botocore",
        "urllib3",
        "requests",
        "kubernetes",
        "tabulate",
        "moto",
        "yaml",
        "prometheus_client",
    ],
)
def test_help_does_not_import(package):
    assert package not in _top_level(imported_by_help())


def test_a_check_run_never_imports_the_lab_nor_the_other_commands(monkeypatch, tmp_path):
    # The lab (fakes, a second Envoy, moto) is for tests, the demo and benchmarks: a real check in a
    # pod must not carry it. The run talks only to the test's fakes on loopback.
    with aws_world(monkeypatch, tmp_path) as world:
        world.static_keys()
        result = _run(sys.executable, "-X", "importtime", "-m", "egress_doctor.cli", "check", "--no-cluster",
                      "--no-envoy-admin", "--no-mirror", "--deadline", "10")
    names = {m["name"] for line in result.stderr.splitlines() if (m := _IMPORT_LINE.match(line))}
    assert "egress_doctor.probes.check" in names, result.stderr[-2000:]  # the run really ran
    assert not [n for n in names if n.startswith("egress_doctor.lab")]
    others = ("egress_doctor.commands.analyze", "egress_doctor.commands.blocked", "egress_doctor.commands.demo")
    assert not names & set(others)  # their parsers are not built for a check


def test_help_lists_every_exit_code_with_its_meaning():
    result = _run(sys.executable, "-m", "egress_doctor.cli", "--help")
    assert result.returncode == 0
    for status in ExitStatus:
        assert re.search(rf"^\s+{int(status)}\s+\S", result.stdout, re.MULTILINE), f"exit code {int(status)} missing"


def test_check_help_lists_every_exit_code_too():
    result = _run(sys.executable, "-m", "egress_doctor.cli", "check", "--help")
    assert result.returncode == 0
    for status in ExitStatus:
        assert re.search(rf"^\s+{int(status)}\s+\S", result.stdout, re.MULTILINE), f"exit code {int(status)} missing"


def test_console_script_prints_the_installed_version():
    script = Path(sys.executable).with_name("egress-doctor")
    result = _run(str(script), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"egress-doctor {egress_doctor.__version__}"
    assert egress_doctor.__version__ == importlib.metadata.version("egress-doctor")
    assert result.stderr == ""
