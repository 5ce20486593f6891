"""`yaml.safe_load_all`, bounded against hostile input and faster on big repositories.

Bounds, checked on the composed node graph before anything is built (`YamlLimitError`, a
`yaml.YAMLError`, names the one that was hit):

* nesting: at most `MAX_DEPTH` collections deep (libyaml itself stops at 1,000; Kubernetes objects
  need about 20);
* aliases: every alias stands for a copy of its anchor's subtree; all aliases of a text together
  may add at most `MAX_ALIAS_NODES` nodes. A 342-byte "billion laughs" file (9 levels of 9 aliases)
  would expand to 387 million nodes and gigabytes of memory; it is refused in microseconds. An
  alias to an anchor that contains it (a cycle) is refused too.

The size of the text is the caller's bound (`sources.files` reads at most `MAX_FILE_BYTES`).

libyaml (when PyYAML has it) parses and composes; the nodes are then built by a small constructor
that knows only the core schema (maps, sequences, strings, ints, floats, booleans, null). Any other
tag (timestamps, binary, sets, merge keys `<<`) or an unhashable key makes the document go through
PyYAML's own safe constructor instead, so the output is always what `yaml.safe_load_all` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"

MAX_DEPTH = 100  # collections inside collections
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add to one text, all documents together
MAX_FILE_BYTES = 16 << 20  # the largest YAML file read (16 MiB; the 10,000-entry benchmark is 3 MB)


class YamlLimitError(yaml.YAMLError):
    """YAML refused before it was built: nested too deep, or aliases that expand too far."""


class _Unusual(Exception):
    """A node the core-schema constructor does not build: use PyYAML's."""


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_bounds(root: Node, alias_budget: int = MAX_ALIAS_NODES) -> int:
    """Raise YamlLimitError when `root` nests deeper than MAX_DEPTH or its aliases add more than
    `alias_budget` nodes; return what is left of the budget. Iterative: no recursion to exhaust.

    A node reached twice is an alias: it adds its whole expanded subtree again. Sizes are
    memoised, so the check costs one visit per distinct node whatever the expansion.
    """
    size: dict[int, int] = {}  # id(node) → nodes in its expanded subtree (itself included)
    depth: dict[int, int] = {}  # id(node) → collection depth of its expanded subtree
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = (1 + max((depth[id(c)] for c in children), default=0)) if isinstance(
                node, SequenceNode | MappingNode) else 0
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            alias_budget -= size[key]  # a second reference: an alias, expanded once more
            if alias_budget < 0:
                raise YamlLimitError(f"aliases expand to more than {MAX_ALIAS_NODES} extra nodes "
                                     "(a YAML alias bomb?)")
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to an anchor that contains it")
        on_path.add(key)
        stack.append((node, True))
        if len(on_path) > MAX_DEPTH + 1:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, False) for child in reversed(_children(node)))
    return alias_budget


def _builder(loader: Any) -> Callable[[Node, int], Any]:
    scalars: dict[str, Callable[[ScalarNode], Any]] = {
        _TAG + "str": lambda n: n.value,
        _TAG + "int": loader.construct_yaml_int,
        _TAG + "bool": loader.construct_yaml_bool,
        _TAG + "null": lambda n: None,
        _TAG + "float": loader.construct_yaml_float,
    }

    def build(node: Node, depth: int) -> Any:
        if type(node) is ScalarNode:
            construct = scalars.get(node.tag)
            if construct is None:
                raise _Unusual(node.tag)
            return construct(node)
        if depth >= MAX_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
        if type(node) is SequenceNode and node.tag == _TAG + "seq":
            return [build(item, depth + 1) for item in node.value]
        if type(node) is MappingNode and node.tag == _TAG + "map":
            out = {}
            for key, value in node.value:
                if key.tag == _TAG + "merge":
                    raise _Unusual("merge key")
                built = build(key, depth + 1)
                try:
                    out[built] = build(value, depth + 1)
                except TypeError:
                    raise _Unusual("unhashable key") from None
            return out
        raise _Unusual(node.tag)

    return build


def load_all(text: str) -> list[Any]:
    """Every document of `text`, as `yaml.safe_load_all` would return them (raises yaml.YAMLError,
    YamlLimitError when a bound is hit)."""
    # Without an anchor (`&`) there is no alias: the graph is a tree, and the builder bounds its
    # depth itself; the full check (one more visit of every node) is for texts that may alias.
    may_alias = "&" in text
    loader = _LOADER(text)
    try:
        build = _builder(loader)
        documents = []
        budget = MAX_ALIAS_NODES
        while loader.check_node():
            node = loader.get_node()
            if may_alias:
                budget = check_bounds(node, budget)
            try:
                documents.append(build(node, 0))
            except _Unusual:
                check_bounds(node, budget)  # PyYAML's constructor bounds nothing itself
                documents.append(loader.construct_document(node))
        return documents
    finally:
        loader.dispose()


def load_one(text: str) -> Any:
    """The single document of `text` (None when empty), as `yaml.safe_load` would return it, bounded
    as `load_all`. More than one document is a yaml.YAMLError, as in `yaml.safe_load`."""
    documents = load_all(text)
    if len(documents) > 1:
        raise yaml.YAMLError("expected a single document, found several")
    return documents[0] if documents else None
