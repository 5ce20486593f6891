"""What the rules read (one run's evidence, normalised) and what they return (a `Cause`).

Rules are pure functions. They never look at message text to decide a cause when a type, an
errno, a status or a header can decide it; the normalisation here happens once, so every rule
sees the same view:

* a metadata or agent target on a loopback address is the lab's stand-in for the link-local
  address the SDK uses by default, and is reported (and fixed) under the real address;
* on an https target, a reset before the handshake completed is the same event as a TLS EOF
  (Envoy closes with FIN or RST depending on timing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from egress_doctor.fixes.builders import (
    ECS_IPV4,
    IMDS_IPV4,
    IMDS_IPV6,
    METADATA_ENDPOINTS,
    POD_IDENTITY_IPV4,
    POD_IDENTITY_IPV6,
    EgressNeed,
)
from egress_doctor.model import (
    AwsEvidence,
    CheckResult,
    HttpEvidence,
    Identity,
    RunFacts,
    Status,
    Symptom,
    is_envoy_local_reply,
)

if TYPE_CHECKING:
    from egress_doctor.fixes.edits import Edit

PROXY_UID = 1337  # istio-proxy's uid and gid: iptables RETURNs their traffic (never redirected)
IMDS_ADDRESSES = (IMDS_IPV4, IMDS_IPV6)
AGENT_ADDRESSES = (POD_IDENTITY_IPV4, POD_IDENTITY_IPV6, ECS_IPV4)
FAILED = (Status.FAIL, Status.WARN)


@dataclass(frozen=True)
class Observation:
    """One check, as the rules see it: the real destination and the normalised symptom."""

    check: CheckResult
    index: int  # position in the run (rules keep run order)
    host: str | None  # the address or name the SDK uses (stand-ins mapped), None without a target
    port: int | None
    scheme: str
    symptom: Symptom | None
    standin: str | None = None  # the loopback address really dialled, when mapped

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def failed(self) -> bool:
        return self.check.status in FAILED

    @property
    def skipped(self) -> bool:
        return self.check.status is Status.SKIP

    @property
    def http(self) -> HttpEvidence | None:
        return self.check.evidence.http

    @property
    def aws(self) -> AwsEvidence | None:
        return self.check.evidence.aws

    @property
    def status_code(self) -> int | None:
        return self.http.status if self.http else None

    @property
    def is_metadata(self) -> bool:
        return self.host in METADATA_ENDPOINTS

    def error_types(self) -> list[str]:
        """Exception class names, outermost first, without module prefixes."""
        error = self.check.error
        if error is None:
            return []
        return [t.rsplit(".", 1)[-1] for t in [error.type, *(link.type for link in error.chain)]]

    def detail(self) -> str:
        """One line for a message: the check's reason, else the error."""
        if self.check.reason:
            return self.check.reason
        if self.check.error:
            return f"{self.check.error.type}: {self.check.error.message}"
        return str(self.symptom or self.check.status)


@dataclass(frozen=True)
class RunContext:
    identity: Identity
    facts: RunFacts
    observations: tuple[Observation, ...]

    @property
    def sidecar_in_path(self) -> bool:
        """False when the probes ran as the proxy's uid or gid: iptables never redirected them."""
        return PROXY_UID not in (self.facts.uid, self.facts.gid)

    def env(self, name: str) -> str:
        """Lower-case variables win over upper-case ones, as in urllib's getproxies()."""
        env = self.facts.env
        return env.get(name.lower()) or env.get(name.upper()) or ""

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy botocore sends this request to (urllib rules: no CIDR in NO_PROXY), or None."""
        proxy = self.env(f"{scheme}_proxy")
        if not proxy or bypasses_proxy(host, self.env("no_proxy")):
            return None
        return without_userinfo(proxy)


@dataclass(frozen=True)
class Cause:
    """A rule's verdict: a catalogue code, its arguments, and what it explains."""

    code: str
    args: Mapping[str, object]
    checks: tuple[Observation, ...] = ()
    hosts: tuple[str, ...] = ()
    need: EgressNeed | None = None  # the destination a ServiceEntry (or exclusion) would allow
    hold_proxy: bool = False  # fixed by starting the app after the sidecar
    consumes: frozenset[int] = field(default_factory=frozenset)  # observation indices explained
    edit: Edit | None = None  # an existing Istio object to change (rules.mesh), instead of a need

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", MappingProxyType(dict(self.args)))


@dataclass(frozen=True)
class HostGroup:
    """Every check that talked to one destination, and the first one that failed there."""

    host: str
    port: int
    scheme: str
    observations: tuple[Observation, ...]

    @property
    def failures(self) -> tuple[Observation, ...]:
        return tuple(o for o in self.observations if o.failed)

    @property
    def root(self) -> Observation:
        return self.failures[0]

    def by_id(self, check_id: str) -> Observation | None:
        return next((o for o in self.observations if o.id == check_id), None)


HostRule = Callable[[HostGroup, RunContext], "Cause | None"]
CheckRule = Callable[[Observation, RunContext], "Cause | None"]
RunRule = Callable[[RunContext], "list[Cause]"]


# --- helpers shared by the rules ----------------------------------------------------------------


def empty_body(http: HttpEvidence | None) -> bool:
    if http is None:
        return True
    if http.headers.get("content-length") == "0" or http.body_bytes == 0:
        return True
    return not (http.body_prefix or "").strip()


def body(http: HttpEvidence | None) -> str:
    return (http.body_prefix or "") if http else ""


def host_port(group: HostGroup) -> dict[str, object]:
    return {"host": group.host, "port": group.port}


def need(group: HostGroup, code: str, reason: str) -> EgressNeed:
    return EgressNeed(host=group.host, port=group.port, code=code, reason=reason, scheme=group.scheme)


def cause(code: str, group: HostGroup, args: Mapping[str, object], **kw: object) -> Cause:
    """A cause that explains every failure on the group's destination."""
    return Cause(code, args, checks=group.failures, hosts=(group.host,), **kw)  # type: ignore[arg-type]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """urllib's proxy_bypass_environment, which botocore uses: names and dot-suffixes, or '*'."""
    host = host.strip("[]").lower()
    for raw in no_proxy.replace(" ", "").split(","):
        name = raw.lstrip(".").lower()
        if not name:
            continue
        if name == "*" or host == name or host.endswith("." + name):
            return True
    return False


def without_userinfo(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


# --- normalisation --------------------------------------------------------------------------------


def _imds_address(facts: RunFacts) -> str:
    mode = facts.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").lower()
    ipv6 = mode == "ipv6" or facts.env.get("AWS_IMDS_USE_IPV6", "").lower() == "true"
    return IMDS_IPV6 if ipv6 else IMDS_IPV4


def _agent_address(identity: Identity, standin: str) -> str:
    if identity.source == "ecs":
        return ECS_IPV4
    v6 = ":" in standin
    return POD_IDENTITY_IPV6 if v6 else POD_IDENTITY_IPV4


def real_destination(
    check: CheckResult, identity: Identity, facts: RunFacts
) -> tuple[str, int, str, str | None]:
    """(host, port, scheme, stand-in) for a check with a target."""
    target = check.target
    assert target is not None
    host = target.host.strip("[]").lower()
    if is_loopback(host) and check.id.startswith("imds."):
        return _imds_address(facts), 80, "http", host
    if is_loopback(host) and check.id.startswith("container."):
        return _agent_address(identity, host), 80, "http", host
    return host, target.port, target.scheme, None


def normalised_symptom(check: CheckResult, scheme: str) -> Symptom | None:
    symptom = check.symptom
    tls = check.evidence.tls
    if scheme == "https" and symptom is Symptom.CONNECT_RESET:
        return Symptom.TLS_CLOSED  # RST instead of FIN before the handshake finished
    if scheme == "https" and symptom is Symptom.HTTP_CLOSED and tls is not None and not tls.ok:
        return Symptom.TLS_CLOSED
    if symptom is Symptom.AWS_ERROR and is_envoy_local_reply(check.evidence.http):
        return Symptom.HTTP_STATUS  # an Envoy reply is never an AWS answer
    return symptom


def observe(checks: list[CheckResult], identity: Identity, facts: RunFacts) -> tuple[Observation, ...]:
    observations = []
    for index, check in enumerate(checks):
        if check.target is None:
            observations.append(Observation(check, index, None, None, "", check.symptom))
            continue
        host, port, scheme, standin = real_destination(check, identity, facts)
        symptom = normalised_symptom(check, scheme)
        observations.append(Observation(check, index, host, port, scheme, symptom, standin))
    return tuple(observations)
