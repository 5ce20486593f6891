"""Read Istio YAML from files and directory trees (a GitOps repository) into a `MeshView`.

    view = read_files(["deploy/"], namespace="payments")

Directories are walked recursively for `*.yaml` / `*.yml` (hidden directories skipped); every
file may hold many documents and `kind: List`s. Kept: the egress kinds `istio.objects` models,
Gateways, the mesh config (an `IstioOperator`'s `spec.meshConfig`, or a ConfigMap `istio` /
`istio-<revision>` with key `mesh`) and the labels of the pod's Namespace (ambient mode). Other
kinds are skipped. Go/Helm templates (`{{ … }}`) cannot be read as YAML and are skipped with a
warning. Anything else that is not valid YAML, or an Istio object of the wrong shape, raises
`FilesError` with one line naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from egress_doctor.istio.authz_objects import AUTHORIZATION_POLICY, SECURITY_GROUP
from egress_doctor.istio.objects import GROUP, KINDS, KUBE_SERVICE, IstioObject, IstioParseError, MeshConfig
from egress_doctor.istio.parse import parse_object
from egress_doctor.istio.yaml_load import MAX_FILE_BYTES, YamlLimitError, load_all
from egress_doctor.sources.kube_facts import parse_mesh_config
from egress_doctor.sources.view import GatewayInfo, MeshView, gateway_info
from egress_doctor.sources.workloads import WORKLOAD_KINDS

SUFFIXES = (".yaml", ".yml")


class FilesError(ValueError):
    """Input that cannot be analysed: unreadable, not YAML, or an Istio object of the wrong shape."""


@dataclass
class FileRead:
    objects: list[IstioObject] = field(default_factory=list)
    manifests: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by Meta.ref
    gateways: list[GatewayInfo] = field(default_factory=list)
    mesh: MeshConfig | None = None
    mesh_source: str | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    files: int = 0
    skipped: list[str] = field(default_factory=list)  # warnings: templates, unknown kinds summary
    workloads: list[Mapping[str, Any]] = field(default_factory=list)  # Pods, Deployments, … (their env)


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _stat(path: Path) -> os.stat_result:
    """os.stat, with the reason in one line: no such file, a symbolic link loop, no permission."""
    try:
        return path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FilesError(f"{path}: a loop of symbolic links") from None
        if exc.errno == errno.ENOENT:
            what = "a symbolic link to nothing" if path.is_symlink() else "no such file or directory"
            raise FilesError(f"{path}: {what}") from None
        raise FilesError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def _regular(path: Path) -> Path:
    mode = _stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise FilesError(f"{path}: {_kind_of(mode)}, not a file (only regular files are read)")
    return path


def expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if stat.S_ISDIR(_stat(path).st_mode):
            for found in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
                if found.suffix in SUFFIXES and not hidden and not found.is_dir():
                    yield _regular(found)
        else:
            yield _regular(path)


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A regular file's text, UTF-8, at most `limit` bytes (FilesError beyond, or when unreadable)."""
    try:
        with _regular(path).open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise FilesError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FilesError(f"{path}: larger than {limit >> 20} MiB; split it or analyze the objects that matter")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FilesError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _documents(path: Path, read: FileRead) -> list[Any]:
    text = read_text(path)
    try:
        docs = [d for d in load_all(text) if d is not None]
    except YamlLimitError as exc:
        raise FilesError(f"{path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        if "{{" in text:
            read.skipped.append(f"{path}: a template ({{{{ … }}}}), not YAML; skipped")
            return []
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FilesError(f"{path}:{where}: not valid YAML: {problem}") from None
    return docs


def _mesh_config(doc: Mapping[str, Any], source: str) -> MeshConfig | None:
    kind = doc.get("kind")
    if kind == "IstioOperator" and isinstance((doc.get("spec") or {}).get("meshConfig"), dict):
        return parse_mesh_config(yaml.safe_dump(doc["spec"]["meshConfig"]), source)[0]
    name = str((doc.get("metadata") or {}).get("name", ""))
    data = doc.get("data") or {}
    if kind == "ConfigMap" and (name == "istio" or name.startswith("istio-")) and isinstance(data.get("mesh"), str):
        return parse_mesh_config(data["mesh"], source)[0]
    return None


def _take(doc: Any, namespace: str, source: str, read: FileRead) -> None:
    if not isinstance(doc, dict):
        raise FilesError(f"{source}: a document must be a mapping")
    kind, api = str(doc.get("kind", "")), str(doc.get("apiVersion", ""))
    if ((api.startswith(GROUP + "/") and kind in KINDS) or (api == "v1" and kind == KUBE_SERVICE)
            or (api.startswith(SECURITY_GROUP + "/") and kind == AUTHORIZATION_POLICY)):
        obj = parse_object(doc, namespace, source)
        if not isinstance(obj, IstioObject):
            return
        read.objects.append(obj)
        read.manifests[obj.meta.ref] = doc
        if (gateway := gateway_info(doc, namespace)) is not None:
            read.gateways.append(gateway)
    elif (mesh := _mesh_config(doc, source)) is not None:
        read.mesh, read.mesh_source = mesh, f"{kind} {source}"
    elif kind in WORKLOAD_KINDS:
        read.workloads.append(doc)
    elif kind == "Namespace" and (doc.get("metadata") or {}).get("name") == namespace:
        labels = (doc.get("metadata") or {}).get("labels") or {}
        read.namespace_labels = {str(k): str(v) for k, v in labels.items()}


def read_files(paths: Iterable[str | Path], namespace: str) -> FileRead:
    """Everything egress-relevant in the files; objects without a namespace land in `namespace`."""
    read = FileRead()
    for path in expand(paths):
        read.files += 1
        _take_all(_documents(path, read), namespace, str(path), read)
    return read


def read_yaml(text: str, namespace: str, source: str = "<yaml>") -> FileRead:
    """`read_files` for YAML text (multi-document)."""
    read = FileRead(files=1)
    try:
        docs = [d for d in load_all(text) if d is not None]
    except YamlLimitError as exc:
        raise FilesError(f"{source}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise FilesError(f"{source}: not valid YAML: {exc}") from None
    _take_all(docs, namespace, source, read)
    return read


def _flatten(docs: Iterable[Any]) -> Iterator[Any]:
    """`kind: List` documents stand for their items."""
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def _take_all(docs: Iterable[Any], namespace: str, source: str, read: FileRead) -> None:
    for index, doc in enumerate(_flatten(docs)):
        try:
            _take(doc, namespace, f"{source}#{index}", read)
        except IstioParseError as exc:
            raise FilesError(str(exc)) from None


def to_view(read: FileRead, namespace: str, mesh: MeshConfig, pod_labels: Mapping[str, str] | None) -> MeshView:
    return MeshView(sidecar=None, objects=read.objects, mesh=mesh, pod_namespace=namespace,
                    namespace_labels=read.namespace_labels, pod_labels=pod_labels, source="files",
                    manifests=read.manifests, gateways=read.gateways)
