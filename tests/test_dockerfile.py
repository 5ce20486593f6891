"""The Dockerfile's structure, read as text (no `docker build` here): a pinned base, a final stage
without compilers, a numeric non-root user that is not the sidecar's 1337, the CLI as entrypoint,
no secrets, and the README's build and push lines naming this version.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
IMAGE = f"REGISTRY/egress-doctor:{VERSION}"
SIDECAR_ID = 1337
# The uid and gid of every container in k8s/.
MANIFEST_ID = 10001
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|python3?-dev)\b")
SECRET_NAMES = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY", re.IGNORECASE)
SECRET_FILES = re.compile(r"(^|/)(\.aws|\.ssh|\.env|\.netrc|\.pypirc|credentials|id_rsa|[^ ]*\.pem|[^ ]*\.key)\b")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined


@dataclass
class Stage:
    base: str  # the FROM image, ${ARG}s of the global scope resolved
    name: str | None
    instructions: list[Instruction]


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions: comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def _arg_defaults(before_first_from: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for instruction in before_first_from:
        name, _, value = instruction.args.partition("=")
        defaults[name] = value.strip('"')
    return defaults


def stages(text: str) -> list[Stage]:
    parsed = instructions(text)
    first_from = next(i for i, ins in enumerate(parsed) if ins.keyword == "FROM")
    defaults = _arg_defaults([ins for ins in parsed[:first_from] if ins.keyword == "ARG"])
    out: list[Stage] = []
    for ins in parsed[first_from:]:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--platform")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            out.append(Stage(base, name, []))
        else:
            out[-1].instructions.append(ins)
    return out


STAGES = stages(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def final(keyword: str) -> list[Instruction]:
    return [i for i in FINAL.instructions if i.keyword == keyword]


def pinned(image: str) -> bool:
    """A digest, or a tag carrying a full major.minor.patch version (never `latest`, never no tag)."""
    if "@sha256:" in image:
        return True
    repository, _, tag = image.rpartition(":")
    return bool(repository) and "/" not in tag and re.match(r"^v?\d+\.\d+\.\d+", tag) is not None


# --- the parser reads Dockerfiles as Docker does -------------------------------------------------


def test_the_parser_joins_continuations_skips_comments_and_resolves_global_args():
    text = 'ARG BASE=python:3.12.1-slim\nFROM ${BASE} AS b\n# note\nRUN a \\\n  # inner\n  && b\nFROM $BASE\nUSER 1:1\n'
    parsed = stages(text)
    assert [(s.base, s.name) for s in parsed] == [("python:3.12.1-slim", "b"), ("python:3.12.1-slim", None)]
    assert parsed[0].instructions == [Instruction("RUN", "a && b")]


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("python:3.11.14-slim-bookworm", True),
        ("python@sha256:" + "a" * 64, True),
        ("registry.example.com:5000/python:3.11.14", True),
        ("python:latest", False),
        ("python", False),
        ("python:3.11-slim", False),
        ("registry.example.com:5000/python", False),
    ],
)
def test_a_base_is_pinned_only_by_a_digest_or_a_full_version_tag(image, ok):
    assert pinned(image) is ok


# --- the Dockerfile ------------------------------------------------------------------------------


def test_every_base_image_is_pinned():
    for stage in STAGES:
        assert pinned(stage.base), f"FROM {stage.base} is not pinned to a full version or a digest"


def test_the_build_is_multi_stage_and_the_final_stage_has_no_compiler():
    assert len(STAGES) >= 2
    assert FINAL.base not in {s.name for s in STAGES}, "the final stage is built on another stage"
    for ins in FINAL.instructions:
        assert not COMPILERS.search(ins.args), f"final stage: {ins.keyword} {ins.args}"
        installs = re.search(r"\bapt(-get)? +install\b|\bapk +add\b", ins.args)
        assert not installs, f"final stage installs OS packages: {ins.args}"


def test_the_final_stage_keeps_no_build_output_in_a_layer():
    copied = [i.args for i in final("COPY") + final("ADD") if "--from=" in i.args]
    assert copied == [], f"copied from another stage into a layer: {copied}"


def test_the_image_runs_as_a_numeric_non_root_user_that_is_not_the_sidecars_1337():
    [user] = final("USER")[-1:]
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user.args}: numeric, or runAsNonRoot cannot verify it"
    assert int(uid) != 0 and int(gid) != 0
    assert SIDECAR_ID not in (int(uid), int(gid)), "uid/gid 1337 bypasses the sidecar's capture"
    assert (int(uid), int(gid)) == (MANIFEST_ID, MANIFEST_ID), "k8s/ manifests set runAsUser/runAsGroup 10001"
    assert FINAL.instructions.index(user) > max(FINAL.instructions.index(r) for r in final("RUN")), (
        "a RUN after USER would run as the user, or the user is set before it exists"
    )


def test_the_entrypoint_is_the_cli_in_exec_form():
    [entrypoint] = final("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["egress-doctor"]
    assert "egress-doctor" in PYPROJECT["project"]["scripts"]
    [cmd] = final("CMD")
    assert json.loads(cmd.args) == ["check"]


def test_no_build_argument_or_environment_variable_carries_a_secret():
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword in ("ARG", "ENV"):
            names = re.findall(r"(\w+)=", ins.args) or [ins.args.split()[0]]
            for name in names:
                assert not SECRET_NAMES.search(name), f"{ins.keyword} {name}: a secret in the image history"
        if ins.keyword in ("COPY", "ADD"):
            assert not SECRET_FILES.search(ins.args), f"{ins.keyword} {ins.args}"


def test_the_copied_sources_exist_so_the_readme_build_line_works():
    for stage in STAGES:
        for ins in stage.instructions:
            if ins.keyword == "COPY" and "--from=" not in ins.args:
                *sources, _destination = [w for w in ins.args.split() if not w.startswith("--")]
                for source in sources:
                    assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_the_image_labels_carry_this_version():
    labels = " ".join(i.args for i in final("LABEL"))
    assert f'org.opencontainers.image.version="{VERSION}"' in labels


def test_docker_has_no_health_check_as_kubernetes_uses_probes():
    assert [i.args for i in final("HEALTHCHECK")] == ["NONE"]


def test_the_readme_and_the_dockerfile_build_and_push_this_version():
    readme = (REPO / "README.md").read_text()
    assert f"docker build -t {IMAGE} ." in readme
    assert f"docker push {IMAGE}" in readme
    assert f"docker build -t {IMAGE} ." in DOCKERFILE.read_text()
