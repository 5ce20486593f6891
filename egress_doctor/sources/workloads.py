"""The app's environment as its manifest declares it: a Pod, or the pod template of a Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job or CronJob (for `analyze`, whose SDK hosts depend on it).

    env, notes = container_environment(deployment, container=None)

Only literal `env[].value`s are known offline; a `valueFrom` (a Secret, a ConfigMap, a field) or
an `envFrom` is named in the notes, never guessed. The sidecar (`istio-proxy`) and init containers
are not the app. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
SIDECAR_CONTAINER = "istio-proxy"


def pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec
    if doc.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def ref(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')} {meta.get('namespace') or '(namespace of -n)'}/{meta.get('name')}"


def app_containers(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    containers = pod_spec(doc).get("containers") or []
    return [c for c in containers if isinstance(c, Mapping) and c.get("name") != SIDECAR_CONTAINER]


def container_environment(doc: Mapping[str, Any], container: str | None) -> tuple[dict[str, str], list[str]]:
    """The literal environment of the chosen container (`container`, else the only app container,
    else the first), and notes on what could not be known."""
    containers = app_containers(doc)
    notes: list[str] = []
    if not containers:
        return {}, [f"{ref(doc)}: no app container"]
    chosen = next((c for c in containers if c.get("name") == container), None) if container else None
    if container and chosen is None:
        names = ", ".join(str(c.get("name")) for c in containers)
        raise ValueError(f"--container {container}: {ref(doc)} has no such container (it has {names})")
    if chosen is None:
        chosen = containers[0]
        if len(containers) > 1:
            notes.append(f"{ref(doc)}: {len(containers)} app containers; using {chosen.get('name')!r} "
                         "(--container chooses)")
    env: dict[str, str] = {}
    for item in chosen.get("env") or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        if "value" in item:
            env[str(item["name"])] = str(item["value"])
        elif str(item["name"]).startswith("AWS_"):
            notes.append(f"{ref(doc)}: {item['name']} comes from valueFrom and is unknown offline (--env sets it)")
    if chosen.get("envFrom"):
        notes.append(f"{ref(doc)}: envFrom variables are unknown offline (--env or --env-file sets them)")
    return env, notes


def pod_labels(doc: Mapping[str, Any]) -> dict[str, str]:
    if doc.get("kind") == "Pod":
        labels = (doc.get("metadata") or {}).get("labels") or {}
    else:
        spec = doc.get("spec") or {}
        if doc.get("kind") == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def parse_env_lines(lines: Sequence[str], source: str) -> dict[str, str]:
    """`NAME=VALUE` lines (an env file: `#` comments and blank lines skipped, `export ` allowed,
    one pair of surrounding quotes removed)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name or not (name.replace("_", "").isalnum() and not name[0].isdigit()):
            raise ValueError(f"{source}:{number}: not NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out
