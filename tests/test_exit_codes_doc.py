"""docs/exit-codes.md documents every exit code, and every place that lists them points there."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_doctor.model import ExitStatus
from tests.checkrun import run_cli

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "exit-codes.md").read_text()


@pytest.mark.parametrize("status", list(ExitStatus), ids=lambda s: s.name)
def test_every_exit_status_has_a_row_and_a_section_in_the_doc(status: ExitStatus) -> None:
    assert f"| {int(status)} | `{status.name}` |" in DOC
    assert f"\n## {int(status)}: " in DOC or status is ExitStatus.OK


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["analyze", "--help"]])
def test_help_that_lists_exit_codes_links_the_doc(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(*args, env={}).code == 0
    assert "docs/exit-codes.md" in capsys.readouterr().out  # argparse prints help to sys.stdout


def test_the_readme_links_the_doc() -> None:
    assert "(docs/exit-codes.md)" in (REPO / "README.md").read_text()
