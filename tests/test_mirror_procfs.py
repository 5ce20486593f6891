"""Which process `--mirror` picks, how it rewrites the app's file paths, and what it registers.

Two kinds of /proc: the real one, searched only among candidate PIDs the test hands over (child
processes it started), and a fake tree in a temp directory laid out like /proc (environ,
cmdline, comm, stat, ns/mnt, root/) for another container's process, which a test cannot
create without privileges.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_doctor.mirror import applied, choose, mirrored
from egress_doctor.procfs import UNREADABLE, ProcFs, choose_app_process, describe_read_error
from egress_doctor.redact import MARK, Redactor
from egress_doctor.validate import UsageError
from tests.procs import wait_for_exec

WAIT = 30.0
APP_PID, OUR_PID, SHELL_PID, PAUSE_PID = 4242, 100, 90, 1
OUR_MNT, APP_MNT = "mnt:[4026531840]", "mnt:[4026532999]"
TOKEN_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
AGENT_TOKEN_PATH = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
# Not JWT-shaped, so that only registration (not a pattern) can redact them.
PLANTED_TOKEN = "planted-web-identity-token-0d9c8b7a6f5e"
PLANTED_AGENT_TOKEN = "planted-agent-token-1a2b3c4d5e6f"
PLANTED_SECRET_KEY = "PlantedSecretKey/wJalrXUtnFEMI-K7MDENG"
PLANTED_PROXY_PASSWORD = "proxy-pass-PLANTED-77"


# -- real processes, candidates handed over ----------------------------------------------------


@pytest.fixture
def children() -> Iterator[dict[str, int]]:
    """An unrelated Python process, a shell and the app (AWS_* set), started in that order."""
    sleep = "import time; time.sleep(60)"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    started = {
        "unrelated": subprocess.Popen([sys.executable, "-c", sleep], env=base),
        "shell": subprocess.Popen(["sh", "-c", "sleep 60; :"], env=base),
        "app": subprocess.Popen(
            [sys.executable, "-c", sleep], env={**base, "AWS_ROLE_ARN": "arn:aws:iam::444455556666:role/app"}
        ),
    }
    for process in started.values():
        wait_for_exec(process.pid)
    yield {name: p.pid for name, p in started.items()}
    for process in started.values():
        process.kill()
        process.wait(WAIT)


def test_auto_detection_picks_the_process_with_aws_variables_over_unrelated_ones(children):
    candidates = [os.getpid(), *children.values()]
    chosen = choose_app_process(ProcFs(), candidates)
    assert chosen is not None and chosen.pid == children["app"]


def test_without_aws_variables_anywhere_the_lowest_pid_that_is_not_a_shell_is_the_app(children):
    candidates = [children["unrelated"], children["shell"]]
    chosen = choose_app_process(ProcFs(), candidates)
    assert chosen is not None and chosen.pid == children["unrelated"]
    assert choose_app_process(ProcFs(), [children["shell"]]) is None


def test_egress_doctor_itself_and_its_ancestors_are_never_the_app():
    assert choose_app_process(ProcFs(), [os.getpid(), os.getppid()]) is None


# -- a fake /proc with another container's process ---------------------------------------------


def fake_process(
    proc: Path, pid: int, *, comm: str, argv: list[str], environ: dict[str, str], mnt: str, ppid: int = 0
) -> Path:
    directory = proc / str(pid)
    (directory / "ns").mkdir(parents=True)
    (directory / "root").mkdir()
    (directory / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ.items()))
    (directory / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (directory / "comm").write_text(comm + "\n")
    (directory / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")
    os.symlink(mnt, directory / "ns" / "mnt")
    return directory


def put_file(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


@pytest.fixture
def pod(tmp_path) -> ProcFs:
    """Our debug container (pid 100, child of its shell 90) beside the app's container (4242, IRSA +
    Pod Identity token files only in its own filesystem) and pause (pid 1)."""
    proc = tmp_path / "proc"
    fake_process(proc, SHELL_PID, comm="bash", argv=["bash"], environ={}, mnt=OUR_MNT)
    fake_process(proc, OUR_PID, comm="egress-doctor", argv=["egress-doctor"], environ={}, mnt=OUR_MNT, ppid=SHELL_PID)
    fake_process(proc, PAUSE_PID, comm="pause", argv=["/pause"], environ={}, mnt="mnt:[4026532001]")
    app_root = fake_process(
        proc, APP_PID, comm="java", argv=["java", "-jar", "app.jar"], mnt=APP_MNT,
        environ={
            "HOME": "/home/app",
            "PATH": "/usr/bin",
            "AWS_ROLE_ARN": "arn:aws:iam::444455556666:role/app",
            "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN_PATH,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": AGENT_TOKEN_PATH,
            "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET_KEY,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "HTTPS_PROXY": f"http://user:{PLANTED_PROXY_PASSWORD}@proxy.internal:3128",
        },
    ) / "root"  # fmt: skip
    put_file(app_root, TOKEN_PATH, PLANTED_TOKEN + "\n")
    put_file(app_root, AGENT_TOKEN_PATH, PLANTED_AGENT_TOKEN)
    return ProcFs(root=str(proc), self_pid=OUR_PID)


IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "PATH": "/usr/bin"}


def test_inside_a_pod_the_other_containers_app_is_mirrored_by_default(pod):
    with mirrored(None, None, IN_A_POD, Redactor(), proc=pod) as (environ, warnings):
        assert environ["AWS_ROLE_ARN"] == "arn:aws:iam::444455556666:role/app"
        assert environ["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert f"process {APP_PID} (java)" in warnings[0]


def test_token_paths_only_in_the_apps_filesystem_are_read_through_proc_pid_root(pod):
    with mirrored(True, None, IN_A_POD, Redactor(), proc=pod) as (environ, _warnings):
        token_file = environ["AWS_WEB_IDENTITY_TOKEN_FILE"]
        assert token_file == pod.path(APP_PID, "root", TOKEN_PATH.lstrip("/"))
        assert Path(token_file).read_text().strip() == PLANTED_TOKEN
        assert environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == pod.path(
            APP_PID, "root", AGENT_TOKEN_PATH.lstrip("/")
        )


def test_the_apps_home_aws_files_replace_this_containers_own(pod):
    with mirrored(True, None, IN_A_POD, Redactor(), proc=pod) as (environ, _warnings):
        assert environ["AWS_CONFIG_FILE"] == pod.path(APP_PID, "root", "home/app/.aws/config")
        assert environ["AWS_SHARED_CREDENTIALS_FILE"] == pod.path(APP_PID, "root", "home/app/.aws/credentials")


def test_every_secret_read_is_registered_before_anything_is_printed_and_warnings_hold_none(pod):
    redactor = Redactor()
    with mirrored(None, None, IN_A_POD, redactor, proc=pod) as (_environ, warnings):
        text = f"{PLANTED_TOKEN} {PLANTED_AGENT_TOKEN} {PLANTED_SECRET_KEY} {PLANTED_PROXY_PASSWORD}"
        assert redactor.redact(text) == " ".join([MARK] * 4)
    said = " ".join(warnings)
    for secret in (PLANTED_TOKEN, PLANTED_AGENT_TOKEN, PLANTED_SECRET_KEY, PLANTED_PROXY_PASSWORD):
        assert secret not in said


def test_os_environ_holds_the_apps_aws_variables_during_the_run_and_its_own_after(pod, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with mirrored(None, None, IN_A_POD, Redactor(), proc=pod):
        assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
        assert "AWS_EC2_METADATA_SERVICE_ENDPOINT" not in os.environ
        assert os.environ["HTTPS_PROXY"].startswith("http://user:")
        assert "PATH" in os.environ
    assert os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == "http://127.0.0.1:9/"
    assert "AWS_DEFAULT_REGION" not in os.environ and "HTTPS_PROXY" not in os.environ


def test_os_environ_is_restored_even_when_the_run_raises(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "mine")
    with pytest.raises(RuntimeError), applied({"AWS_ROLE_ARN": "arn:aws:iam::1:role/x"}):
        raise RuntimeError("the run crashed")
    assert os.environ["AWS_PROFILE"] == "mine" and "AWS_ROLE_ARN" not in os.environ


def test_a_named_file_missing_from_the_apps_filesystem_is_a_warning_with_its_path_not_its_value(pod):
    os.remove(pod.path(APP_PID, "root", TOKEN_PATH.lstrip("/")))
    with mirrored(True, None, IN_A_POD, Redactor(), proc=pod) as (_environ, warnings):
        pass
    said = " ".join(warnings)
    assert f"AWS_WEB_IDENTITY_TOKEN_FILE ({TOKEN_PATH}) is not readable" in said


def test_outside_a_pod_nothing_is_mirrored_by_default_and_nothing_is_said(pod):
    choice = choose(None, None, pod, {"PATH": "/usr/bin"})
    assert choice.view is None and choice.warnings == []


def test_no_mirror_turns_it_off_even_inside_a_pod(pod):
    assert choose(False, None, pod, IN_A_POD).view is None


def test_inside_a_pod_without_credentials_and_without_a_visible_app_the_run_says_so(tmp_path):
    proc = tmp_path / "proc"
    fake_process(proc, OUR_PID, comm="egress-doctor", argv=["egress-doctor"], environ={}, mnt=OUR_MNT)
    choice = choose(None, None, ProcFs(root=str(proc), self_pid=OUR_PID), IN_A_POD)
    assert choice.view is None
    assert "--target=<app container>" in choice.warnings[0]


def test_mirror_pid_of_egress_doctors_own_shell_is_refused_with_a_warning(pod):
    choice = choose(None, SHELL_PID, pod, IN_A_POD)
    assert choice.view is None and "itself or its parent" in choice.warnings[0]


def test_a_pid_whose_environ_cannot_be_read_is_named_in_the_warning(pod):
    os.remove(pod.path(APP_PID, "environ"))
    os.mkdir(pod.path(APP_PID, "environ"))  # reading a directory fails like an unreadable file
    choice = choose(None, APP_PID, pod, IN_A_POD)
    assert choice.view is None
    assert f"cannot read the environment of process {APP_PID} (java)" in choice.warnings[0]


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (PermissionError(13, "Permission denied"), "permission denied"),
        (FileNotFoundError(2, "No such file or directory"), "kubectl debug --target"),
        (ProcessLookupError(3, "No such process"), "kubectl debug --target"),
        (IsADirectoryError(21, "Is a directory"), "IsADirectoryError: Is a directory"),
    ],
)
def test_each_read_error_says_what_went_wrong_and_what_to_do(error, says):
    assert says in describe_read_error(error)


class _AppUnreadable(ProcFs):
    """The fake pod as a debug container of another uid sees it: the app's ns link and environ
    are refused (EACCES), as the kernel refuses them without ptrace-read access."""

    def mount_namespace(self, pid):
        return UNREADABLE if int(pid) == APP_PID else super().mount_namespace(pid)

    def environ(self, pid):
        if pid == APP_PID:
            raise PermissionError(13, "Permission denied")
        return super().environ(pid)


def test_an_app_of_another_uid_is_still_found_and_the_warning_says_permission_denied(pod):
    proc = _AppUnreadable(root=pod.root, self_pid=OUR_PID)
    assert APP_PID in proc.other_containers()
    choice = choose(None, None, proc, IN_A_POD)
    assert choice.view is None
    assert f"process {APP_PID} (java): permission denied" in choice.warnings[0]
    assert "app's uid" in choice.warnings[0]


def test_the_sidecar_is_never_taken_for_the_app_when_the_pod_shares_its_process_namespace(tmp_path):
    proc = tmp_path / "proc"
    fake_process(proc, OUR_PID, comm="egress-doctor", argv=["egress-doctor"], environ={}, mnt=OUR_MNT)
    fake_process(proc, 7, comm="pilot-agent", argv=["/usr/local/bin/pilot-agent", "proxy"], environ={}, mnt="mnt:[7]")
    fake_process(proc, 20, comm="envoy", argv=["/usr/local/bin/envoy", "-c", "x"], environ={}, mnt="mnt:[7]")
    fake_process(proc, 30, comm="node", argv=["node", "server.js"], environ={"HOME": "/"}, mnt=APP_MNT)
    chosen = choose_app_process(ProcFs(root=str(proc), self_pid=OUR_PID), [7, 20, 30])
    assert chosen is not None and chosen.pid == 30


# -- several containers: never guess -------------------------------------------------------------


def test_two_app_containers_are_named_and_nothing_is_mirrored_automatically(pod):
    fake_process(Path(pod.root), 5150, comm="python", argv=["python", "worker.py"],
                 environ={"AWS_REGION": "us-west-2"}, mnt="mnt:[4026533111]")
    choice = choose(None, None, pod, IN_A_POD)
    assert choice.view is None
    [warning] = choice.warnings
    assert f"process {APP_PID} (java)" in warning and "process 5150 (python)" in warning
    assert "--mirror-pid" in warning


def test_mirror_asked_for_with_two_app_containers_is_a_usage_error_naming_them(pod):
    fake_process(Path(pod.root), 5150, comm="python", argv=["python", "worker.py"], environ={},
                 mnt="mnt:[4026533111]")
    with pytest.raises(UsageError, match=r"2 app containers are visible .*process 5150 \(python\)"):
        choose(True, None, pod, IN_A_POD)


def test_the_sidecar_container_and_pause_do_not_count_as_app_containers(pod):
    for pid, comm in ((7, "pilot-agent"), (20, "envoy")):
        fake_process(Path(pod.root), pid, comm=comm, argv=[f"/usr/local/bin/{comm}"], environ={},
                     mnt="mnt:[4026533222]")
    choice = choose(None, None, pod, IN_A_POD)
    assert choice.view is not None and choice.view.pid == APP_PID


def test_a_mirror_pid_in_one_of_several_app_containers_is_taken(pod):
    fake_process(Path(pod.root), 5150, comm="python", argv=["python", "worker.py"], environ={},
                 mnt="mnt:[4026533111]")
    choice = choose(None, 5150, pod, IN_A_POD)
    assert choice.view is not None and choice.view.pid == 5150
