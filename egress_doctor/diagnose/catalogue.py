"""The findings catalogue (`catalogue.yaml`): stable codes, levels, titles and message templates.

Rules name a code and its arguments; the wording lives in the YAML so that it can be reviewed,
documented (`docs/findings/<code>.md`) and kept stable without touching code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

LEVELS = ("error", "warning", "info")
GROUPS = {
    "blocked": "a generic cause: the host is unknown to the sidecar's registry",
    "registry_blocks": "evidence that this sidecar blocks hosts missing from its registry",
    "mesh_blocks": "a mesh explanation of why a destination is blocked",
    "always_breaks": "breaks the host even under ALLOW_ANY",
}
CODE = re.compile(r"^ED[1-69]\d\d$")
RANGES = {
    "1": "DNS",
    "2": "TCP / interception",
    "3": "TLS / SNI",
    "4": "Envoy / HTTP",
    "5": "AWS credentials and API",
    "6": "mesh configuration",
    "9": "tool errors",
}


class CatalogueError(ValueError):
    """The catalogue file is malformed (a bug caught by the tests, never by users)."""


@dataclass(frozen=True)
class Entry:
    code: str
    name: str
    level: str
    title: str
    template: str
    args: tuple[str, ...]
    docs: str
    # Attributes the rules read (GROUPS), and the mesh codes that may replace this one: None when
    # it is not refined by the mesh view, () for any mesh explanation.
    groups: tuple[str, ...] = ()
    refined_by: tuple[str, ...] | None = None

    def render(self, args: Mapping[str, object]) -> str:
        """The message with `args` filled in; every declared argument is required, no others."""
        given = set(args)
        if given != set(self.args):
            missing = sorted(set(self.args) - given)
            extra = sorted(given - set(self.args))
            raise KeyError(f"{self.code}: missing args {missing}, unexpected args {extra}")
        return self.template.format_map({k: str(v) for k, v in args.items()})


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _entry(raw: Mapping[str, object]) -> Entry:
    try:
        entry = Entry(
            code=str(raw["code"]),
            name=str(raw["name"]),
            level=str(raw["level"]),
            title=str(raw["title"]),
            template=str(raw["template"]),
            args=tuple(str(a) for a in raw["args"]),  # type: ignore[attr-defined]
            docs=str(raw["docs"]),
            groups=tuple(str(g) for g in raw.get("groups") or ()),  # type: ignore[attr-defined]
            refined_by=_refined_by(raw.get("refined_by")),
        )
    except KeyError as exc:
        raise CatalogueError(f"entry {raw.get('code', '?')} lacks {exc}") from None
    if not CODE.match(entry.code):
        raise CatalogueError(f"{entry.code}: codes are ED followed by a range digit (1-6, 9) and two digits")
    if entry.level not in LEVELS:
        raise CatalogueError(f"{entry.code}: level {entry.level!r} is not one of {LEVELS}")
    if template_fields(entry.template) != set(entry.args):
        raise CatalogueError(f"{entry.code}: template fields differ from args {list(entry.args)}")
    unknown = set(entry.groups) - set(GROUPS)
    if unknown:
        raise CatalogueError(f"{entry.code}: unknown groups {sorted(unknown)}")
    if entry.docs != f"docs/findings/{entry.code}.md":
        raise CatalogueError(f"{entry.code}: docs must be docs/findings/{entry.code}.md")
    return entry


def _refined_by(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if value == "any":
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise CatalogueError(f"refined_by must be 'any' or a list of codes, not {value!r}")


def parse_catalogue(text: str) -> Mapping[str, Entry]:
    """Entries by code, in file order; raises CatalogueError on duplicates or disorder."""
    import yaml  # only when a finding is rendered: a run where everything passes needs no catalogue

    # libyaml's safe loader when PyYAML has it (its wheels do): the same documents, 67 -> 6 ms for
    # this file, paid by every run that renders a finding
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    entries = [_entry(raw) for raw in data.get("findings", [])]
    codes = [e.code for e in entries]
    if len(set(codes)) != len(codes):
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        raise CatalogueError("duplicate codes: " + ", ".join(duplicates))
    if codes != sorted(codes):
        raise CatalogueError("entries must be ordered by code")
    return MappingProxyType({e.code: e for e in entries})


@cache
def catalogue() -> Mapping[str, Entry]:
    """The packaged catalogue (read once)."""
    text = resources.files("egress_doctor.diagnose").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text)


def entry(code: str) -> Entry:
    try:
        return catalogue()[code]
    except KeyError:
        raise KeyError(f"{code} is not in the findings catalogue") from None


def codes_with(group: str) -> Any:
    """The codes in a group (a frozenset); for "refines", a mapping code → the mesh codes that may
    replace it (None: any mesh explanation)."""
    if group == "refines":
        return {c: (e.refined_by or None) for c, e in catalogue().items() if e.refined_by is not None}
    if group not in GROUPS:
        raise KeyError(f"unknown group {group!r}")
    return frozenset(c for c, e in catalogue().items() if group in e.groups)
