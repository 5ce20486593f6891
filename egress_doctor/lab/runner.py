"""The lab as one object: fakes, ports, a real Envoy configured like the sidecar, the pod's env.

    with Lab(LabConfig(files=("scenarios/blog-2018",), mode=Mode.REGISTRY_ONLY)) as lab:
        subprocess.run(["egress-doctor", "check"], env=lab.command_env())
        lab.apply(fixed_objects)          # same ports, Envoy relaunched with the new config

Everything listens on 127.0.0.0/8. What a pod's iptables would capture is reached through
`lab.connect_to` (curl-style rules, also in `EGRESS_DOCTOR_CONNECT_TO`); IMDS and the Pod
Identity agent are reached at loopback stand-ins of their link-local addresses, on the port of
the `0.0.0.0_80` stand-in. Every process and the temporary directory are gone after close(),
whatever happened (exceptions, KeyboardInterrupt, SIGTERM turned into SystemExit by the CLI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from egress_doctor.aws.resources import Resource
from egress_doctor.istio.objects import IstioObject, MeshConfig, Mode
from egress_doctor.istio.parse import load_files, parse_documents
from egress_doctor.istio.scope import Proxy, Scope, proxy_scope
from egress_doctor.lab.envoy import EnvoyError, EnvoyProcess, static_bootstrap, validate, write_dynamic
from egress_doctor.lab.gateway import GatewayEnvoy, closed_port, sidecar_upstreams, with_gateway_service
from egress_doctor.lab.pod_env import DEFAULT_ACCOUNT, credential_environment
from egress_doctor.lab.ports import LOOPBACK, allocate_ports, connect_to_rules
from egress_doctor.lab.translate import ISTIO_VERSION, EnvoyResources, LabPorts, translate
from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS, Endpoint, Upstreams

CredentialMode = Literal["env", "irsa", "imds", "pod-identity"]
CREDENTIAL_MODES: tuple[CredentialMode, ...] = ("env", "irsa", "imds", "pod-identity")
ENV_ADMIN_URL = "EGRESS_DOCTOR_ADMIN_URL"  # where the lab's Envoy admin answers (15000 in a pod)


@dataclass(frozen=True)
class LabConfig:
    """What the lab models. `objects` may be parsed objects or raw manifests (dicts)."""

    files: tuple[str, ...] = ()
    objects: tuple[IstioObject | Mapping[str, Any], ...] = ()
    mode: Mode = Mode.REGISTRY_ONLY  # meshConfig.outboundTrafficPolicy (Istio's default is ALLOW_ANY)
    namespace: str = "default"  # the pod's; objects without metadata.namespace land here
    region: str = "us-east-1"
    account_id: str | None = None
    credentials: CredentialMode = "env"
    tables: tuple[str, ...] = ()  # DynamoDB tables that exist
    resources: tuple[Resource, ...] = ()  # the app's other resources that exist (buckets, queues, …)
    sidecar_ready: bool = True  # False: no Envoy at all, every captured port refuses
    istio_version: str = ISTIO_VERSION
    labels: Mapping[str, str] | None = None  # the pod's labels (Sidecar workloadSelector)
    assume_http_80: bool = True  # some HTTP service on :80 exists in the mesh (nearly always)
    mesh_config: MeshConfig | None = None  # the rest of meshConfig (exportTo defaults, root namespace)
    # IMDS moved (AWS_EC2_METADATA_SERVICE_ENDPOINT) to this address, port 80; the lab's connect-to
    # rules steer it to the port-80 stand-in, never onto the wire
    imds_address: str | None = None
    # meshConfig.accessLogEncoding with accessLogFile /dev/stdout: "TEXT", "JSON"; None: logging off
    access_log: str | None = "TEXT"
    # a second Envoy as istio-egressgateway (istio-system, `istio: egressgateway`); lab.gateway
    egress_gateway: bool = False
    enforce: bool = False  # only the gateway may leave: the sidecar's direct connections to AWS refused
    gateway_refused: bool = False  # the gateway's own connections to AWS refused (its egress is blocked)

    def mesh(self) -> MeshConfig:
        if self.mesh_config is None:
            return MeshConfig(outbound_traffic_policy=self.mode)
        return replace(self.mesh_config, outbound_traffic_policy=self.mode)

    def load(self) -> list[IstioObject]:
        objects, _ = load_files(self.files, self.namespace)
        raw = [o for o in self.objects if isinstance(o, Mapping)]
        parsed, _ = parse_documents(raw, self.namespace, "<objects>")
        return objects + [o for o in self.objects if not isinstance(o, Mapping)] + parsed


@dataclass
class _Fakes:
    aws: Any
    imds: Any
    pod_identity: Any
    ca_bundle: Path

    imds_address: str | None = None

    def upstreams(self) -> Upstreams:
        return Upstreams(aws=Endpoint(LOOPBACK, self.aws.port), imds=Endpoint(LOOPBACK, self.imds.port),
                         pod_identity=Endpoint(LOOPBACK, self.pod_identity.port),
                         ca_bundle=str(self.ca_bundle), imds_address=self.imds_address or "169.254.169.254")


@dataclass
class Lab:
    """A running lab; use as a context manager (or call start()/close())."""

    config: LabConfig
    env: dict[str, str] = field(default_factory=dict)  # the pod's AWS environment + connect-to
    connect_to: list[str] = field(default_factory=list)
    ports: LabPorts | None = None
    scope: Scope | None = None  # what the sidecar is configured with, and why
    resources: EnvoyResources | None = None
    directory: Path | None = None
    bringup_seconds: float = 0.0
    fakes: _Fakes | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _envoy: EnvoyProcess | None = None
    gateway: GatewayEnvoy | None = None
    _refused: int | None = None  # with `enforce`: the closed port the sidecar's direct AWS clusters get
    _objects: list[IstioObject] = field(default_factory=list)
    _generation: int = 0

    @property
    def admin_url(self) -> str | None:
        return f"http://{LOOPBACK}:{self.ports.admin}" if self.ports and self.config.sidecar_ready else None

    @property
    def envoy_pid(self) -> int | None:
        return self._envoy.pid if self._envoy else None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        started = time.monotonic()
        try:
            self._objects = self.config.load()
            self.directory = Path(tempfile.mkdtemp(prefix="egress-doctor-lab-"))
            self._stack.callback(shutil.rmtree, self.directory, True)
            self.fakes = self._start_fakes(self.directory)
            self.ports = allocate_ports()
            if self.config.egress_gateway:
                self.gateway = GatewayEnvoy(self.directory)
                self._stack.callback(self.gateway.close)
            if self.config.enforce or self.config.gateway_refused:
                self._refused, held = closed_port()
                self._stack.callback(held.close)
            if self.config.sidecar_ready:
                self._launch()
            else:
                self.scope = self._scope(self._objects)
            self.connect_to = connect_to_rules(self.ports)
            self.env = self._environment()
        except BaseException:
            self.close()
            raise
        self.bringup_seconds = time.monotonic() - started
        return self

    def close(self) -> None:
        """Stop Envoy, the fakes and remove the directory; safe to call twice."""
        try:
            if self._envoy is not None:
                self._envoy.stop()
                self._envoy = None
        finally:
            self._stack.close()

    # ---- configuration ---------------------------------------------------------------------------

    def reconfigure(self, objects: Iterable[IstioObject | Mapping[str, Any]] | None = None,
                    mode: Mode | None = None) -> None:
        """Replace the mesh objects (and/or mode) and relaunch Envoy on the same ports."""
        before = (self.config, self._objects)
        if mode is not None:
            self.config = replace(self.config, mode=mode)
        if objects is not None:
            self._objects = _parsed(objects, self.config.namespace)
        try:
            if self.config.sidecar_ready:
                self._launch()
            else:
                self.scope = self._scope(self._objects)
        except EnvoyError:
            if self._envoy is not None:  # refused before the running Envoy was touched
                self.config, self._objects = before
            raise

    def apply(self, objects: Iterable[IstioObject | Mapping[str, Any]]) -> None:
        """Like `kubectl apply`: add objects, replacing those of the same kind, namespace and name.
        A telemetry.istio.io Telemetry turns the sidecar's access log on or off (lab.telemetry)."""
        from egress_doctor.lab.telemetry import access_log_after

        items, access_log = access_log_after(list(objects), self.config.access_log)
        new = _parsed(items, self.config.namespace)
        keys = {_key(o) for o in new}
        previous, self.config = self.config, replace(self.config, access_log=access_log)
        try:
            self.reconfigure([o for o in self._objects if _key(o) not in keys] + new)
        except EnvoyError:
            self.config = previous
            raise

    @property
    def objects(self) -> list[IstioObject]:
        return list(self._objects)

    def _scope(self, objects: Sequence[IstioObject]) -> Scope:
        model = with_gateway_service(objects) if self.config.egress_gateway else list(objects)
        return proxy_scope(model, Proxy(self.config.namespace, self.config.labels), self.config.mesh())

    def _sidecar_upstreams(self) -> Upstreams:
        assert self.fakes
        upstreams, gateway = self.fakes.upstreams(), self.gateway
        if gateway is None and not self.config.enforce:
            return upstreams
        services = gateway.service_endpoints(with_gateway_service(self._objects)) if gateway else {}
        return sidecar_upstreams(upstreams, services, self._refused if self.config.enforce else None)

    def _launch(self) -> None:
        """Translate and (re)start Envoy. A running Envoy is only replaced by a config that
        `envoy --mode validate` accepts, so a bad reconfigure leaves the lab as it was."""
        assert self.directory and self.ports and self.fakes
        scope = self._scope(self._objects)
        resources = translate(scope, self.ports, self._sidecar_upstreams(), self.config.istio_version,
                              self.config.assume_http_80, self.config.access_log)
        self._generation += 1
        if self._envoy is not None:
            checked = validate(static_bootstrap(resources), self.directory)
            if not checked.ok:
                raise EnvoyError(f"Envoy refused the new configuration; the lab keeps the old one:\n"
                                 f"{checked.output}")
        bootstrap = write_dynamic(resources, self.directory / f"envoy-{self._generation}")
        if self.gateway is not None:
            upstreams = self.fakes.upstreams()
            if self.config.gateway_refused:
                upstreams = sidecar_upstreams(upstreams, {}, self._refused)
            self.gateway.launch(with_gateway_service(self._objects), self.config.mesh(), upstreams,
                                self.config.istio_version, self.config.access_log)
        if self._envoy is not None:
            self._envoy.stop()
            self._envoy = None
        self.scope, self.resources = scope, resources
        envoy = EnvoyProcess(bootstrap, f"http://{LOOPBACK}:{self.ports.admin}", self.directory / "envoy.log")
        self._envoy = envoy.start()

    @property
    def envoy_log_path(self) -> Path | None:
        """The istio-proxy container's log: Envoy's own lines and, on /dev/stdout, its access log."""
        return self.directory / "envoy.log" if self.directory else None

    def envoy_log(self) -> str:
        return self._envoy.log_tail(200) if self._envoy else ""

    # ---- fakes and environment -------------------------------------------------------------------

    def _start_fakes(self, directory: Path) -> _Fakes:
        from egress_doctor.lab.fakes import (
            MOTO_DEFAULT_ACCOUNT,
            FakeAws,
            FakeImds,
            FakePodIdentityAgent,
            LabPKI,
        )

        cfg = self.config
        account = cfg.account_id or DEFAULT_ACCOUNT
        pki = LabPKI(directory / "pki")
        regions = tuple(dict.fromkeys([cfg.region, *(r.region for r in cfg.resources if r.region)]))
        aws = self._stack.enter_context(FakeAws(pki, regions=regions))
        imds = self._stack.enter_context(FakeImds(region=cfg.region, availability_zone=f"{cfg.region}a",
                                                  account_id=account))
        agent = self._stack.enter_context(FakePodIdentityAgent(account_id=account))
        if cfg.tables:
            for owner in dict.fromkeys([MOTO_DEFAULT_ACCOUNT, account]):
                aws.create_tables(cfg.tables, region=cfg.region, account_id=owner)
        if cfg.resources:
            aws.create_resources(cfg.resources, cfg.region, tuple(dict.fromkeys([MOTO_DEFAULT_ACCOUNT, account])))
        return _Fakes(aws, imds, agent, pki.ca_bundle_path, cfg.imds_address)

    def _environment(self) -> dict[str, str]:
        assert self.ports and self.fakes and self.directory
        cfg = self.config
        http = self.ports.http
        env = {
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_REGION": cfg.region,
            "AWS_CA_BUNDLE": str(self.fakes.ca_bundle),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": (f"http://{cfg.imds_address}/" if cfg.imds_address
                                                  else f"http://{LINK_LOCAL_STANDINS['169.254.169.254']}:{http}/"),
            "EGRESS_DOCTOR_CONNECT_TO": ",".join(self.connect_to),
            "POD_NAMESPACE": cfg.namespace,
            # A pod has no ~/.aws: files that do not exist keep the developer's profiles out.
            "AWS_CONFIG_FILE": str(self.directory / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.directory / "no-aws-credentials"),
        }
        if self.admin_url:
            env[ENV_ADMIN_URL] = self.admin_url
        env.update(credential_environment(cfg, self.directory, http, self.fakes.pod_identity))
        return env

    def command_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) without inherited AWS_* or Kubernetes settings, plus the lab's env.

        Kubernetes settings go too: run inside a real pod, the lab's command must not read the
        real cluster (in-cluster config) nor mirror a real app's AWS environment."""
        base = os.environ if base is None else base
        out = {k: v for k, v in base.items() if not _outside_world(k) and k not in self.env}
        out.update(self.env)
        return out

    def run(self, argv: Sequence[str], base_env: Mapping[str, str] | None = None) -> int:
        """Run a command with the pod's environment; it is stopped by PID if we are interrupted."""
        proc = subprocess.Popen(list(argv), env=self.command_env(base_env))
        try:
            return proc.wait()
        finally:
            _stop(proc)


def _outside_world(name: str) -> bool:
    """Variables that would point a lab command at real AWS or a real cluster."""
    return name.startswith(("AWS_", "KUBERNETES_")) or name == "KUBECONFIG"


def _stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def _parsed(objects: Iterable[IstioObject | Mapping[str, Any]], namespace: str) -> list[IstioObject]:
    items = list(objects)
    raw = [o for o in items if isinstance(o, Mapping)]
    parsed, _ = parse_documents(raw, namespace, "<applied>")
    return [o for o in items if not isinstance(o, Mapping)] + parsed


def _key(obj: IstioObject) -> tuple[str, str, str]:
    return (obj.meta.kind, obj.meta.namespace, obj.meta.name)
