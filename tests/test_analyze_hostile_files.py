"""`analyze -f` on hostile files, as a pull-request gate meets them: YAML bombs, endless or blocking
files, loops, nothing at all. Each is one line on stderr and exit 2, in bounded time and memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from egress_doctor.istio.yaml_load import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES
from tests.test_analyze_cli import BASE, run

REPO = Path(__file__).resolve().parents[1]
SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sts, namespace: default}
spec:
  hosts: [sts.us-east-1.amazonaws.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""


def alias_bomb(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """The issue's bomb: `levels` anchors, each a list of `width` aliases to the one before."""
    lines = [f"{indent}a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"{indent}a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def assert_refused(code: int, out: str, err: str, *fragments: str) -> None:
    assert (code, out) == (2, ""), (code, err, out[:300])
    assert err.startswith("egress-doctor: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def _limit_memory() -> None:
    one_gib = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (one_gib, one_gib))


def run_cli_process(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """The CLI in its own process, with 1 GiB of address space: expanding a bomb would die."""
    done = subprocess.run([sys.executable, "-m", "egress_doctor.cli", "analyze", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory,
                          env={"PATH": os.environ.get("PATH", "")})
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("where", ["top-level", "inside-a-service-entry-spec"])
def test_a_yaml_alias_bomb_is_refused_on_one_line_not_expanded(tmp_path: Path, where: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    if where == "top-level":
        bomb.write_text(alias_bomb())
    else:
        bomb.write_text(SE + "  extra:\n" + alias_bomb(indent="    "))
    assert bomb.stat().st_size < 800  # 387 million nodes once expanded
    code, out, err = run_cli_process("-f", str(bomb), *BASE)
    assert_refused(code, out, err, str(bomb), "aliases expand to more than", str(MAX_ALIAS_NODES))


def test_aliases_within_the_bound_are_read_as_before(tmp_path: Path) -> None:
    item = "- apiVersion: networking.istio.io/v1\n  kind: ServiceEntry\n  metadata: {{name: {name}}}\n" \
           "  spec:\n    hosts: [sts.us-east-1.amazonaws.com]\n    ports: {ports}\n    resolution: DNS\n"
    (tmp_path / "list.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        + item.format(name="a", ports="&ports [{number: 443, name: tls, protocol: TLS}]")
        + item.format(name="b", ports="*ports"))
    code, out, err = run("-f", str(tmp_path), *BASE, "--credentials", "env", "--service", "sts", "--mode",
                         "REGISTRY_ONLY", "-o", "json")
    assert (code, err) == (0, ""), err
    assert "2 Istio objects" in out


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("spec: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", f"nested more than {MAX_DEPTH} levels"),
        ("spec:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * 102 + "x\n",
         f"nested more than {MAX_DEPTH} levels"),
        ("loop: &self [1, *self]\n", "an alias refers to an anchor that contains it"),
    ],
    ids=["flow-nesting", "block-nesting", "self-referring-alias"],
)
def test_nesting_past_the_bound_and_alias_cycles_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert_refused(*run("-f", str(path), *BASE), str(path), fragment)


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    assert_refused(*run("-f", str(path), *BASE), str(path), "larger than 16 MiB")


def test_dev_zero_is_refused_as_a_device_not_read_forever() -> None:
    assert_refused(*run("-f", "/dev/zero", *BASE), "/dev/zero: a character device, not a file")


def test_a_fifo_is_refused_without_blocking_on_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # Its own process: opening a FIFO for reading blocks until a writer comes, which none will.
    code, out, err = run_cli_process("-f", str(fifo), *BASE, timeout=30)
    assert_refused(code, out, err, f"{fifo}: a FIFO, not a file")


def test_a_fifo_inside_a_directory_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "se.yaml").write_text(SE)
    os.mkfifo(tmp_path / "pipe.yaml")
    code, out, err = run_cli_process("-f", str(tmp_path), *BASE, timeout=30)
    assert_refused(code, out, err, "pipe.yaml: a FIFO")


def test_a_symlink_loop_is_named_as_a_loop_not_as_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert_refused(*run("-f", str(tmp_path / "a.yaml"), *BASE), "a loop of symbolic links")


def test_a_dangling_symlink_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "gone.yaml")
    assert_refused(*run("-f", str(tmp_path / "a.yaml"), *BASE), "a symbolic link to nothing")


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SE.encode() + b"# caf\xe9\n")
    assert_refused(*run("-f", str(path), *BASE), str(path), "not UTF-8")


def test_an_empty_directory_is_nothing_to_analyze_not_a_pass(tmp_path: Path) -> None:
    assert_refused(*run("-f", str(tmp_path), *BASE), "nothing to analyze: no *.yaml or *.yml file")


def test_yaml_without_istio_content_is_nothing_to_analyze_unless_a_mode_is_given(tmp_path: Path) -> None:
    (tmp_path / "deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n")
    assert_refused(*run("-f", str(tmp_path), *BASE), "nothing to analyze", "holds no Istio object", "--mode")
    code, out, err = run("-f", str(tmp_path), *BASE, "--mode", "REGISTRY_ONLY", "-o", "json")
    assert (code, err) == (1, "") and '"ED630"' in out


def test_the_analyze_footer_names_no_deadline(tmp_path: Path) -> None:
    (tmp_path / "se.yaml").write_text(SE)
    _, out, _ = run("-f", str(tmp_path), *BASE, "--no-color")
    summary = out.rstrip().splitlines()[-1]
    assert " in " in summary and "deadline" not in summary, summary
