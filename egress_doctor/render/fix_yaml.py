"""Fixes as multi-document YAML for `egress-doctor check --fix-only | kubectl apply -f -`.

Each manifest is one document led by a comment block (the fix's description: which finding,
which host, why). Fixes that are patches, not objects, are printed as comments only, with the
command that applies them, so the stream stays valid input for `kubectl apply`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from egress_doctor.model import Fix

TOP_LEVEL_ORDER = ("apiVersion", "kind", "metadata", "spec")


@functools.cache
def _dumper() -> Any:
    """yaml's SafeDumper with block style and lists indented under their key (what kubectl users
    expect to read); built on first use: a run with nothing to fix never imports yaml."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    def quoted_wildcards(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        """Double-quote the namespace wildcards ("." and "*"): plain, they read like YAML syntax."""
        style = '"' if value in (".", "*", "~") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, quoted_wildcards)
    return Dumper


def ordered(manifest: dict[str, Any]) -> dict[str, Any]:
    """apiVersion, kind, metadata, spec first; any other keys after them, sorted."""
    head = {k: manifest[k] for k in TOP_LEVEL_ORDER if k in manifest}
    tail = {k: manifest[k] for k in sorted(manifest) if k not in head}
    return {**head, **tail}


def comment_block(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def dump(manifest: dict[str, Any]) -> str:
    import yaml

    return yaml.dump(ordered(manifest), Dumper=_dumper(), sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def _render_fix(fix: Fix) -> list[str]:
    if fix.manifests:
        return [comment_block(fix.description) + dump(m) for m in fix.manifests]
    if fix.patch:
        return [comment_block(fix.description) + comment_block("patch:\n" + fix.patch)]
    return []


def render_fixes(fixes: Sequence[Fix]) -> str:
    """Multi-document YAML with one comment block per document; "" when there is nothing to fix."""
    documents = [doc for fix in fixes for doc in _render_fix(fix)]
    return "---\n".join(documents)
