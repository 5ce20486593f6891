"""The manifests in k8s/: valid Kubernetes objects, the Pod Security Standards' restricted profile,
our own rules (never uid/gid 1337, read-only root, resources), and args our CLI accepts.

The schema check is `kubernetes-validate` (offline: the package ships the schemas) in strict mode,
so an unknown or misspelt field fails. The restricted profile is a small pure checker
(tests/pod_security.py), itself tested here against pods that break one rule each.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from egress_doctor.cli import build_parser
from tests.pod_security import APPARMOR_ANNOTATION, containers, our_violations, restricted_violations

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
# Schemas of this Kubernetes release (sidecar containers went GA in 1.33).
KUBERNETES_VERSION = "1.33.0"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"REGISTRY/egress-doctor:{VERSION}"
# k8s/rbac.yaml is written by another engineer (ServiceAccount egress-doctor and its RBAC).
RBAC = "rbac.yaml"
STAND_IN_RBAC = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: egress-doctor\n"

Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_documents() -> list[tuple[str, Doc]]:
    return [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d) for p in manifest_files() for d in documents(p)]


def pod_template(doc: Doc) -> Doc | None:
    """{"metadata", "spec"} of the pod a workload object runs; None for objects that run none."""
    kind = doc["kind"]
    if kind == "Pod":
        return doc
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return doc["spec"]["template"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return None


def workloads() -> list[tuple[str, Doc]]:
    return [(name, pod) for name, doc in all_documents() if (pod := pod_template(doc)) is not None]


# --- the checkers catch what they should ---------------------------------------------------------


def compliant_pod() -> Doc:
    container_sc = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    resources = {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}
    return {
        "metadata": {"annotations": {}},
        "spec": {
            "securityContext": {},
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "i", "securityContext": container_sc, "resources": resources}],
        },
    }


def _container(pod: Doc) -> Doc:
    return pod["spec"]["containers"][0]


# A rule's report prefix -> how to break only that rule in a compliant pod.
BREAKS: dict[str, Any] = {
    "hostProcess": lambda p: _container(p)["securityContext"].update(windowsOptions={"hostProcess": True}),
    "host namespaces": lambda p: p["spec"].update(hostPID=True),
    "privileged": lambda p: _container(p)["securityContext"].update(privileged=True),
    "capabilities: c adds": lambda p: _container(p)["securityContext"]["capabilities"].update(add=["SYS_PTRACE"]),
    "capabilities: c does not drop ALL": lambda p: _container(p)["securityContext"]["capabilities"].update(
        drop=["NET_RAW"]
    ),
    "hostPath volumes": lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "volume types": lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
    "hostPorts": lambda p: _container(p).update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "appArmor": lambda p: p["metadata"]["annotations"].update({APPARMOR_ANNOTATION + "c": "unconfined"}),
    "seLinux": lambda p: _container(p)["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
    "procMount": lambda p: _container(p)["securityContext"].update(procMount="Unmasked"),
    "sysctls": lambda p: p["spec"]["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "allowPrivilegeEscalation": lambda p: _container(p)["securityContext"].pop("allowPrivilegeEscalation"),
    "runAsNonRoot": lambda p: _container(p)["securityContext"].update(runAsNonRoot=False),
    "runAsUser: c is 0": lambda p: _container(p)["securityContext"].update(runAsUser=0),
    "seccomp: c Unconfined": lambda p: _container(p)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "seccomp: c unset": lambda p: _container(p)["securityContext"].pop("seccompProfile"),
    "privileged: init": lambda p: _add_privileged_init_container(p),
    "capabilities: debug does not drop ALL": lambda p: p["spec"].update(
        ephemeralContainers=[{"name": "debug", "image": "i", "securityContext": {"allowPrivilegeEscalation": False}}]
    ),
}


def _add_privileged_init_container(pod: Doc) -> None:
    init = copy.deepcopy(_container(pod))
    init["name"] = "init"
    init["securityContext"]["privileged"] = True
    pod["spec"]["initContainers"] = [init]


def test_the_restricted_checker_passes_a_compliant_pod():
    assert restricted_violations(compliant_pod()) == []
    assert our_violations(compliant_pod()) == []


@pytest.mark.parametrize("rule", list(BREAKS))
def test_the_restricted_checker_catches_a_pod_that_breaks_one_rule(rule):
    pod = compliant_pod()
    BREAKS[rule](pod)
    found = restricted_violations(pod)
    assert any(line.startswith(rule) for line in found), f"{rule!r} not reported; found {found}"


def test_the_restricted_checker_allows_adding_only_net_bind_service():
    pod = compliant_pod()
    _container(pod)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_violations(pod) == []


def test_pod_level_seccomp_and_run_as_non_root_cover_containers_that_leave_them_unset():
    pod = compliant_pod()
    for key in ("seccompProfile", "runAsNonRoot"):
        _container(pod)["securityContext"].pop(key)
    pod["spec"]["securityContext"].update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert restricted_violations(pod) == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"runAsUser": 1337}, "runAsUser"),
        ({"runAsGroup": 1337}, "runAsGroup"),
        ({"readOnlyRootFilesystem": False}, "readOnlyRootFilesystem"),
    ],
)
def test_our_checker_refuses_the_sidecar_ids_and_a_writable_root(change, rule):
    pod = compliant_pod()
    _container(pod)["securityContext"].update(change)
    assert any(line.startswith(rule) for line in our_violations(pod))


def test_our_checker_wants_requests_and_limits():
    pod = compliant_pod()
    del _container(pod)["resources"]["limits"]
    assert our_violations(pod) == ["resources: c has no limits for ['cpu', 'memory']"]


# --- the manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), all_documents(), ids=[n for n, _ in all_documents()])
def test_every_manifest_is_a_valid_kubernetes_object(name, doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{name}: {exc.message} at {'.'.join(str(p) for p in exc.absolute_path)}")


@pytest.mark.parametrize(("name", "pod"), workloads(), ids=[n for n, _ in workloads()])
def test_every_pod_meets_the_restricted_pod_security_standard(name, pod):
    assert restricted_violations(pod) == [], name


@pytest.mark.parametrize(("name", "pod"), workloads(), ids=[n for n, _ in workloads()])
def test_every_container_runs_as_an_explicit_non_sidecar_id_with_a_read_only_root_and_resources(name, pod):
    assert our_violations(pod) == [], name


def egress_doctor_containers() -> list[tuple[str, Doc]]:
    return [
        (f"{name}:{c['name']}", c)
        for name, pod in workloads()
        for c in containers(pod["spec"])
        if c["image"].split(":")[0].endswith("/egress-doctor")
    ]


@pytest.mark.parametrize(
    ("name", "container"), egress_doctor_containers(), ids=[n for n, _ in egress_doctor_containers()]
)
def test_every_egress_doctor_container_runs_the_placeholder_image_of_this_version(name, container):
    assert container["image"] == IMAGE, f"{name}: the docs and README say {IMAGE}"
    assert container["securityContext"]["runAsUser"] == 10001, "the image's user (Dockerfile USER)"


def the(file: str, kind: str) -> Doc:
    [doc] = [d for d in documents(K8S / file) if d["kind"] == kind]
    return doc


def test_the_job_runs_once_is_cleaned_up_and_uses_the_egress_doctor_service_account():
    job = the("job.yaml", "Job")
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    pod = job["spec"]["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "egress-doctor"
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"


def test_the_job_args_are_a_check_our_cli_accepts_that_waits_quits_and_logs_json_with_a_summary():
    [container] = the("job.yaml", "Job")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "check"
    assert args.wait_for_sidecar and args.quit_sidecar == "http://127.0.0.1:15020"
    assert args.output == "json" and args.summary_to_stderr


def test_the_job_deadline_leaves_room_for_the_wait_the_run_and_the_quit():
    job = the("job.yaml", "Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    from egress_doctor.sidecar_lifecycle import QUIT_DEADLINE, parse_duration

    needed = parse_duration("--wait-for-sidecar", args.wait_for_sidecar) + float(args.deadline) + QUIT_DEADLINE
    assert job["spec"]["activeDeadlineSeconds"] >= needed + 60, "no time left to pull the image and start"


def test_the_debug_pod_waits_to_be_exec_d_into_and_ends_itself():
    pod = the("debug-pod.yaml", "Pod")
    assert pod["spec"]["containers"][0]["command"][0] == "sleep"
    assert pod["spec"]["activeDeadlineSeconds"] <= 3600
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"


def test_the_readiness_probe_asks_the_serve_command_on_its_listen_port():
    deployment = the("readiness.yaml", "Deployment")
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "egress-doctor"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    assert container["args"][:1] == ["serve"]
    listen = container["args"][container["args"].index("--listen") + 1]
    assert listen == f":{probe['port']}"
    probe_timing = container["readinessProbe"]
    assert probe_timing["timeoutSeconds"] < probe_timing["periodSeconds"]


def test_the_readiness_args_are_a_serve_our_cli_accepts():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    if "serve" not in commands.choices:  # type: ignore[operator]
        pytest.skip("the serve command is another engineer's, and not in the CLI yet")
    [container] = [
        c for c in the("readiness.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "egress-doctor"
    ]
    assert parser.parse_args(container["args"]).command == "serve"


# --- kustomize -------------------------------------------------------------------------------


def kustomization() -> Doc:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.mark.parametrize("entry", kustomization()["resources"])
def test_every_kustomization_resource_exists(entry):
    if entry == RBAC and not (K8S / RBAC).exists():
        pytest.skip("k8s/rbac.yaml is another engineer's and not written yet")
    assert (K8S / entry).is_file()


def test_every_manifest_in_k8s_is_in_the_kustomization():
    listed = set(kustomization()["resources"])
    assert {p.name for p in manifest_files()} <= listed


def test_the_kustomization_sets_the_image_placeholder_to_this_version():
    [image] = kustomization()["images"]
    assert (image["name"], image["newTag"]) == ("REGISTRY/egress-doctor", VERSION)


def kustomize_build(tmp_path: Path, *components: str) -> list[Doc]:
    """`kubectl kustomize` of a copy of k8s/ (a stand-in ServiceAccount while rbac.yaml is missing)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for its built-in kustomize) is not installed")
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    if not (tree / RBAC).exists():
        (tree / RBAC).write_text(STAND_IN_RBAC)
    if components:
        config = kustomization()
        config["components"] = list(components)
        (tree / "kustomization.yaml").write_text(yaml.safe_dump(config))
    built = subprocess.run(
        [kubectl, "kustomize", str(tree)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d is not None]


def test_kustomize_builds_every_manifest(tmp_path):
    built = kustomize_build(tmp_path)
    names = {(d["kind"], d["metadata"]["name"]) for d in built}
    expected = {(d["kind"], d["metadata"]["name"]) for _, d in all_documents()}
    assert expected <= names


def test_the_native_sidecar_component_annotates_the_job_and_drops_the_quit(tmp_path):
    [job] = [d for d in kustomize_build(tmp_path, "native-sidecar") if d["kind"] == "Job"]
    pod = job["spec"]["template"]
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    [container] = pod["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "check" and args.quit_sidecar is None
    assert args.output == "json" and args.summary_to_stderr
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert restricted_violations(pod) == [] and our_violations(pod) == []


def test_the_schema_check_is_strict_so_a_misspelt_field_fails():
    job = the("job.yaml", "Job")
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsNonroot"):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_example_footprint_is_one_our_parser_accepts_and_the_job_and_serve_read_it():
    from egress_doctor.commands.footprint import ENV_CONFIG, parse_footprint

    configmap = the("footprint.yaml", "ConfigMap")
    footprint = parse_footprint(configmap["data"]["footprint.yaml"])
    assert footprint.resources
    pods = [the("job.yaml", "Job")["spec"]["template"]["spec"],
            the("readiness.yaml", "Deployment")["spec"]["template"]["spec"]]
    for pod in pods:
        [volume] = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
        [container] = [c for c in pod["containers"] if c["name"] == "egress-doctor"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[ENV_CONFIG] == f"{mount['mountPath']}/footprint.yaml"
