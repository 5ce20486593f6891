"""JSON from the network, parsed with its nesting bounded before `json.loads` sees it.

`json.loads` recurses once per `[` or `{`: a million of them (`/config_dump` answering
`[[[[…`) end in RecursionError, which no caller expects from a parser. `loads` measures the
nesting first, in C-speed passes over the bytes (strings removed by one regex, brackets kept by
`bytes.translate`, the running depth by `itertools.accumulate`), and refuses what is deeper than
`MAX_DEPTH` with `JsonLimitError` (a ValueError, like every other "not JSON"). The size is the
caller's bound: every body here was read with a byte limit.
"""

from __future__ import annotations

import array
import itertools
import json
import re
from typing import Any

MAX_DEPTH = 100  # arrays and objects inside each other (Envoy's config dumps need about 30)

# A JSON string, or an unterminated one up to the end (linear: one pass, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# '[' and '{' → +1, ']' and '}' → -1 (0xff read as a signed byte).
_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")


class JsonLimitError(ValueError):
    """JSON refused before parsing: nested deeper than MAX_DEPTH."""


def depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body` (0 for a scalar), brackets in strings
    ignored. Unbalanced input gives a number too; json.loads then says what is wrong with it."""
    steps = _STRING.sub(b"", body).translate(_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(array.array("b", steps)), default=0)


def loads(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads(body)`, refusing (JsonLimitError) nesting deeper than `max_depth`. Raises
    ValueError for anything that is not JSON (UnicodeDecodeError included), never RecursionError."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    found = depth(raw)
    if found > max_depth:
        raise JsonLimitError(f"nested more than {max_depth} levels deep")
    return json.loads(raw)
