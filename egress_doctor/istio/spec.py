"""Typed reads from an Istio object's spec, with CRD-like errors that name the field (for
`istio.parse`)."""

from __future__ import annotations

import enum
from typing import Any

from egress_doctor.istio.objects import IstioParseError


def mapping(value: Any, path: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IstioParseError(f"{path}: must be an object", source)
    return value


class Spec:
    """Typed reads from a spec mapping, with CRD-like errors that name the field."""

    def __init__(self, data: dict[str, Any], source: str, path: str = "spec") -> None:
        self.data = data
        self.source = source
        self.path = path

    def fail(self, field_name: str, message: str) -> IstioParseError:
        return IstioParseError(f"{self.path}.{field_name}: {message}", self.source)

    def child(self, field_name: str, value: Any) -> Spec:
        return Spec(mapping(value, f"{self.path}.{field_name}", self.source), self.source,
                     f"{self.path}.{field_name}")

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return tuple(value)

    def string(self, name: str, default: str = "") -> str:
        value = self.data.get(name, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        return value

    def integer(self, name: str, default: int = 0) -> int:
        value = self.data.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be an integer")
        return value

    def items(self, name: str) -> list[Spec]:
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return [self.child(f"{name}[{i}]", item) for i, item in enumerate(value)]

    def labels(self, name: str) -> dict[str, str] | None:
        """A string map; None when the field is absent."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object")
        return {str(k): str(v) for k, v in value.items()}

    def selector(self, name: str, key: str = "labels") -> dict[str, str] | None:
        """`workloadSelector: {labels: ...}` (`matchLabels` for a DestinationRule); {} when present
        without labels, None when absent."""
        if self.data.get(name) is None:
            return None
        return self.child(name, self.data[name]).labels(key) or {}

    def enum(self, name: str, values: type[enum.StrEnum], default: enum.StrEnum) -> Any:
        raw = self.string(name, default.value)
        try:
            return values(raw)
        except ValueError:
            allowed = ", ".join(v.value for v in values)
            raise self.fail(name, f'Unsupported value: "{raw}": supported values: {allowed}') from None
