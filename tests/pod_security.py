"""The Pod Security Standards' restricted profile (which includes baseline) as a pure checker,
plus egress-doctor's own rules for its pods. Used by tests/test_manifests.py, which also tests it.

Rule by rule as in the Kubernetes documentation ("Pod Security Standards", the restricted
profile of the latest policy version). A pod is `{"metadata": ..., "spec": ...}`: a Pod object or
a workload's pod template. Each violation is one line starting with the rule's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Doc = dict[str, Any]


def containers(spec: Doc) -> Iterator[Doc]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


# --- the Pod Security Standards, restricted profile (which includes baseline) --------------------

BASELINE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
BASELINE_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_SOURCES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})


def _sc(item: Doc) -> Doc:
    return item.get("securityContext") or {}


def _host_process(spec: Doc) -> list[str]:
    items = [("pod", _sc(spec))] + [(c["name"], _sc(c)) for c in containers(spec)]
    return [f"hostProcess: {name}" for name, sc in items if (sc.get("windowsOptions") or {}).get("hostProcess")]


def _host_namespaces(spec: Doc) -> list[str]:
    return [f"host namespaces: {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]


def _privileged(spec: Doc) -> list[str]:
    return [f"privileged: {c['name']}" for c in containers(spec) if _sc(c).get("privileged")]


def _capabilities(spec: Doc) -> list[str]:
    out = []
    for c in containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"capabilities: {c['name']} does not drop ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            out.append(f"capabilities: {c['name']} adds {sorted(added)}")
    return out


def _volumes(spec: Doc) -> list[str]:
    out = []
    for volume in spec.get("volumes") or []:
        sources = set(volume) - {"name"}
        if "hostPath" in sources:
            out.append(f"hostPath volumes: {volume['name']}")
        elif not sources <= RESTRICTED_VOLUME_SOURCES:
            out.append(f"volume types: {volume['name']} is {sorted(sources)}")
    return out


def _host_ports(spec: Doc) -> list[str]:
    return [
        f"hostPorts: {c['name']}:{port.get('hostPort')}"
        for c in containers(spec)
        for port in c.get("ports") or []
        if port.get("hostPort")
    ]


def _apparmor(pod: Doc) -> list[str]:
    out = []
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            out.append(f"appArmor: {key}={value}")
    spec = pod["spec"]
    items = [("pod", _sc(spec))] + [(c["name"], _sc(c)) for c in containers(spec)]
    for name, sc in items:
        profile = sc.get("appArmorProfile")
        if profile and profile.get("type") not in SECCOMP_OK:
            out.append(f"appArmor: {name} {profile.get('type')}")
    return out


def _selinux(spec: Doc) -> list[str]:
    out = []
    items = [("pod", _sc(spec))] + [(c["name"], _sc(c)) for c in containers(spec)]
    for name, sc in items:
        options = sc.get("seLinuxOptions") or {}
        if options.get("type", "") not in BASELINE_SELINUX_TYPES or options.get("user") or options.get("role"):
            out.append(f"seLinux: {name} {options}")
    return out


def _proc_mount(spec: Doc) -> list[str]:
    return [
        f"procMount: {c['name']}" for c in containers(spec) if _sc(c).get("procMount", "Default") != "Default"
    ]


def _sysctls(spec: Doc) -> list[str]:
    names = [s["name"] for s in _sc(spec).get("sysctls") or []]
    return [f"sysctls: {name}" for name in names if name not in BASELINE_SYSCTLS]


def _privilege_escalation(spec: Doc) -> list[str]:
    return [
        f"allowPrivilegeEscalation: {c['name']} is not false"
        for c in containers(spec)
        if _sc(c).get("allowPrivilegeEscalation") is not False
    ]


def _run_as_non_root(spec: Doc) -> list[str]:
    pod_level = _sc(spec).get("runAsNonRoot")
    out = []
    for c in containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            out.append(f"runAsNonRoot: {c['name']}")
    return out


def _run_as_user(spec: Doc) -> list[str]:
    items = [("pod", _sc(spec))] + [(c["name"], _sc(c)) for c in containers(spec)]
    return [f"runAsUser: {name} is 0" for name, sc in items if sc.get("runAsUser") == 0]


def _seccomp(spec: Doc) -> list[str]:
    pod_type = (_sc(spec).get("seccompProfile") or {}).get("type")
    out = [f"seccomp: pod {pod_type}"] if pod_type is not None and pod_type not in SECCOMP_OK else []
    for c in containers(spec):
        own = (_sc(c).get("seccompProfile") or {}).get("type")
        if (own is None and pod_type not in SECCOMP_OK) or (own is not None and own not in SECCOMP_OK):
            out.append(f"seccomp: {c['name']} {own or 'unset'}")
    return out


def restricted_violations(pod: Doc) -> list[str]:
    """Every rule of the restricted profile a pod ({"metadata", "spec"}) breaks, one line each."""
    spec = pod["spec"]
    return [
        *_host_process(spec),
        *_host_namespaces(spec),
        *_privileged(spec),
        *_capabilities(spec),
        *_volumes(spec),
        *_host_ports(spec),
        *_apparmor(pod),
        *_selinux(spec),
        *_proc_mount(spec),
        *_sysctls(spec),
        *_privilege_escalation(spec),
        *_run_as_non_root(spec),
        *_run_as_user(spec),
        *_seccomp(spec),
    ]


# --- our own rules ---------------------------------------------------------------------------

SIDECAR_ID = 1337


def our_violations(pod: Doc) -> list[str]:
    """Explicit non-root uid and gid (never the sidecar's 1337), read-only root, requests and limits."""
    spec = pod["spec"]
    out = []
    for c in containers(spec):
        sc, name = _sc(c), c["name"]
        for key in ("runAsUser", "runAsGroup"):
            value = sc.get(key, _sc(spec).get(key))
            if not isinstance(value, int) or value <= 0 or value == SIDECAR_ID:
                out.append(f"{key}: {name} runs as {value!r} (need an explicit non-root id, never 1337)")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"readOnlyRootFilesystem: {name}")
        resources = c.get("resources") or {}
        for bound in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(bound) or {})
            if missing:
                out.append(f"resources: {name} has no {bound} for {sorted(missing)}")
    return out
