"""For `--service NAME`: the service's cheapest read-only call that needs no resource, chosen from
botocore's own model of the service.

    cheapest_read(loader, "sqs")   # ServiceCall("sqs", "ListQueues", {"MaxResults": 1}, "SQS")

Candidates are the List* and Describe* operations that take no required parameter, return no
value the model marks sensitive, and are not deprecated. The call is read-only by its verb (and
by its HTTP method, GET or HEAD, on REST services). The pick, in order: an operation that lists the service's
main resource (the identifier most operations require, such as QueueUrl, KeyId, FunctionName)
rather than a side feature; one with a page size (set to its smallest value); the shortest name.
The model cannot tell for a few services, which `OVERRIDES` names: STS has no List* at all, and
for SSM, Kinesis and CloudWatch Logs the identifier heuristic lands on a newer side feature.
"""

from __future__ import annotations

import collections
import difflib
from dataclasses import dataclass, field
from typing import Any

from egress_doctor.validate import UsageError

READ_VERBS = ("List", "Describe")
# Members that size a page when the paginator does not name one (botocore's paginators do for most).
PAGE_MEMBERS = ("MaxResults", "maxResults", "Limit", "limit", "MaxItems", "MaxRecords", "PageSize", "MaxBuckets")
# Where the model cannot tell: the call egress-doctor makes, and its parameters.
OVERRIDES: dict[str, tuple[str, dict[str, Any]]] = {
    "sts": ("GetCallerIdentity", {}),  # no List*/Describe*; the call every SDK user can make
    "ssm": ("DescribeParameters", {"MaxResults": 1}),
    "kinesis": ("ListStreams", {"Limit": 1}),
    "logs": ("DescribeLogGroups", {"limit": 1}),
}


@dataclass(frozen=True)
class ServiceCall:
    service: str
    operation: str  # botocore operation name (PascalCase)
    params: dict[str, Any] = field(default_factory=dict)
    title: str = ""  # the service's serviceId: "S3", "Secrets Manager"


def available_services(loader: Any) -> list[str]:
    return sorted(loader.list_available_services("service-2"))


def unknown_service_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see `aws help` or botocore's data for the names)"
    return f"unknown service {name!r}: botocore knows {len(known)} services by name{hint}"


def cheapest_read(loader: Any, service: str) -> ServiceCall:
    """The call for `--service service`; UsageError (with close matches) for a name botocore lacks."""
    from botocore.model import ServiceModel

    known = available_services(loader)
    if service not in known:
        raise UsageError(unknown_service_message(service, known))
    model = ServiceModel(loader.load_service_model(service, "service-2"), service_name=service)
    title = str(model.metadata.get("serviceId") or service)
    if service in OVERRIDES:
        operation, params = OVERRIDES[service]
        return ServiceCall(service, operation, dict(params), title)
    pages = _paginator_limits(loader, service, model.api_version)
    identifier = _main_identifier(model)
    ranked = []
    for name in model.operation_names:
        op = model.operation_model(name)
        if not is_candidate(op):
            continue
        page = pages.get(name) or next((m for m in PAGE_MEMBERS if m in _members(op.input_shape)), None)
        lists_main = bool(identifier) and any(identifier.lower() in n.lower() for n in _names(op.output_shape))
        ranked.append(((not lists_main, page is None, len(name), name), name, page, op))
    if not ranked:
        raise UsageError(f"service {service!r} has no List* or Describe* call that needs no resource: "
                         "name one of its resources instead")
    _, name, page, op = min(ranked, key=lambda r: r[0])
    params = {page: smallest_page(op.input_shape.members[page])} if page else {}
    return ServiceCall(service, name, params, title)


def is_candidate(op: Any) -> bool:
    """A List*/Describe* call with no required input that returns nothing marked sensitive, sent
    with GET or HEAD on REST services."""
    if not op.name.startswith(READ_VERBS) or op.deprecated:
        return False
    if op.input_shape is not None and op.input_shape.required_members:
        return False
    rest = op.metadata.get("protocol") in ("rest-json", "rest-xml")
    if op.http.get("method", "POST") not in (("GET", "HEAD") if rest else ("POST", "GET")):
        return False  # REST services read with GET/HEAD; a POST there may change something
    return not returns_sensitive(op.output_shape)


def returns_sensitive(shape: Any, depth: int = 0, seen: frozenset[str] = frozenset()) -> bool:
    """Whether any member of `shape` (recursively) is marked sensitive in botocore's model."""
    if shape is None or depth > 12 or shape.name in seen:
        return False
    if shape.metadata.get("sensitive"):
        return True
    seen = seen | {shape.name}
    kind = shape.type_name
    if kind == "structure":
        return any(returns_sensitive(m, depth + 1, seen) for m in shape.members.values())
    if kind == "list":
        return returns_sensitive(shape.member, depth + 1, seen)
    if kind == "map":
        return returns_sensitive(shape.key, depth + 1, seen) or returns_sensitive(shape.value, depth + 1, seen)
    return False


def smallest_page(shape: Any) -> int:
    """The smallest page the service accepts (the shape's `min`, at least 1)."""
    return max(1, int(shape.metadata.get("min") or 1))


def _members(shape: Any) -> dict[str, Any]:
    return dict(shape.members) if shape is not None else {}


def _names(shape: Any, depth: int = 0) -> set[str]:
    out: set[str] = set()
    if shape is None or depth > 4:
        return out
    if shape.type_name == "structure":
        for key, member in shape.members.items():
            out.add(key)
            out |= _names(member, depth + 1)
    elif shape.type_name == "list":
        out |= _names(shape.member, depth + 1)
    return out


def _main_identifier(model: Any) -> str | None:
    """The input member most operations require: the service's main resource (QueueUrl, KeyId…)."""
    counts: collections.Counter[str] = collections.Counter()
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        counts.update(shape.required_members if shape is not None else ())
    return counts.most_common(1)[0][0] if counts else None


def _paginator_limits(loader: Any, service: str, api_version: str) -> dict[str, str]:
    from botocore.exceptions import DataNotFoundError

    try:
        data = loader.load_service_model(service, "paginators-1", api_version)
    except DataNotFoundError:
        return {}
    return {name: p["limit_key"] for name, p in data.get("pagination", {}).items() if "limit_key" in p}
