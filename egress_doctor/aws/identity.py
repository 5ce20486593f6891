"""Which credential source the SDK's default chain picks — decided offline, before any probe.

botocore's chain is walked in its own order (`credential_provider.providers`), but only the
providers that are purely local are asked to load; for the others (container, IMDS, IRSA) the
decision is made from the environment exactly as botocore makes it, without network I/O.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from egress_doctor.model import Identity

# Providers whose load() never touches the network.
_LOCAL_PROVIDERS = {"env", "shared-credentials-file", "config-file", "ec2-credentials-file", "boto-config"}
# Allowed non-loopback FULL_URI hosts (botocore ContainerMetadataFetcher); any https URL is allowed.
_CONTAINER_HOSTS = {"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"}
POD_IDENTITY_HOSTS = {"169.254.170.23", "fd00:ec2::23"}
ECS_ADDRESS = "169.254.170.2"
IMDS_IPV4 = "http://169.254.169.254/"
IMDS_IPV6 = "http://[fd00:ec2::254]/"


class ConfigurationError(Exception):
    """A setting the SDK would refuse; reported as a failed `credentials.source` check."""


@dataclass
class CredentialPlan:
    """What stage 1 of a run must do to obtain credentials the way the SDK would."""

    identity: Identity
    static: Any = None  # botocore Credentials for local sources
    web_identity_token_file: str | None = None
    container_url: str | None = None
    container_token_file: str | None = None
    container_token_env: bool = False
    imds_endpoint: str | None = None
    imds_v1_disabled: bool = False
    error: str | None = None  # a configuration error found offline
    error_type: str | None = None
    notes: list[str] = field(default_factory=list)


def region_of(session: Any, environ: Mapping[str, str], override: str | None) -> tuple[str | None, str | None]:
    """The region botocore will use, and where it came from. botocore ignores AWS_REGION."""
    if override:
        return override, "--region"
    region = session.get_config_variable("region")
    if not region:
        return None, None
    if environ.get("AWS_DEFAULT_REGION") == region:
        return region, "AWS_DEFAULT_REGION"
    return region, "config file"


def container_host_allowed(url: str) -> bool:
    """botocore's rule for AWS_CONTAINER_CREDENTIALS_FULL_URI (host only; the port is never checked)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in _CONTAINER_HOSTS


def imds_endpoint(session: Any) -> str:
    configured = session.get_config_variable("ec2_metadata_service_endpoint")
    if configured:
        return str(configured)
    mode = (session.get_config_variable("ec2_metadata_service_endpoint_mode") or "ipv4").lower()
    return IMDS_IPV6 if mode == "ipv6" else IMDS_IPV4


def plan_credentials(session: Any, environ: Mapping[str, str], region_override: str | None) -> CredentialPlan:
    """Walk botocore's provider chain in order and decide, without network, which source wins."""
    region, region_source = region_of(session, environ, region_override)
    resolver = session.get_component("credential_provider")
    chain = [p.METHOD for p in resolver.providers]
    identity = Identity(source="none", region=region, region_source=region_source, chain=chain)
    plan = CredentialPlan(identity=identity)
    _region_warnings(identity, environ)
    for provider in resolver.providers:
        if _try_provider(plan, provider, session, environ):
            break
    _standin_warnings(plan)
    return plan


# The lab's loopback stand-ins for the link-local endpoints (egress_doctor/lab/upstreams.py).
_LAB_STANDINS = {"127.169.254.254": "169.254.169.254", "127.169.170.23": "169.254.170.23",
                 "127.169.170.2": "169.254.170.2"}


def _standin_warnings(plan: CredentialPlan) -> None:
    """A metadata endpoint configured on loopback is reported, and fixed, under the link-local
    address it stands in for (the lab's setup). Anything but the lab's own stand-ins is said so:
    a real local metadata proxy is not behind the sidecar, and the findings are not about it."""
    endpoints = (("AWS_EC2_METADATA_SERVICE_ENDPOINT", plan.imds_endpoint, "169.254.169.254:80"),
                 ("AWS_CONTAINER_CREDENTIALS_FULL_URI", plan.container_url, "the agent's link-local address"))
    for variable, url, real in endpoints:
        host = (urlsplit(url).hostname or "") if url else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback and host not in _LAB_STANDINS:
            plan.identity.warnings.append(
                f"{variable} is {url}, a loopback address: the checks went there, but findings and fixes "
                f"name {real}, taking it for a stand-in (as in the lab); about a real local proxy they say nothing")


def _region_warnings(identity: Identity, environ: Mapping[str, str]) -> None:
    if environ.get("AWS_REGION") and not environ.get("AWS_DEFAULT_REGION") and identity.region_source is None:
        identity.warnings.append(
            "AWS_REGION is set but botocore ignores it (only AWS_DEFAULT_REGION counts): STS goes to the "
            "global sts.amazonaws.com and DynamoDB fails with NoRegionError"
        )


def _try_provider(plan: CredentialPlan, provider: Any, session: Any, environ: Mapping[str, str]) -> bool:
    method = provider.METHOD
    identity = plan.identity
    if method in _LOCAL_PROVIDERS:
        creds = provider.load()
        if creds is None:
            return False
        identity.source = "env" if method == "env" else "profile"
        identity.details["provider"] = method
        identity.account_id = getattr(creds, "account_id", None)
        plan.static = creds
        return True
    if method == "assume-role-with-web-identity":
        return _web_identity(plan, session, environ)
    if method == "container-role":
        return _container(plan, environ)
    if method == "iam-role":
        if str(environ.get("AWS_EC2_METADATA_DISABLED", "")).lower() == "true":
            identity.details["imds"] = "disabled by AWS_EC2_METADATA_DISABLED"
            return False
        identity.source = "imds"
        plan.imds_endpoint = imds_endpoint(session)
        plan.imds_v1_disabled = str(session.get_config_variable("ec2_metadata_v1_disabled")).lower() == "true"
        identity.details["endpoint"] = plan.imds_endpoint
        return True
    if method in {"assume-role", "sso", "custom-process", "login"}:
        return _profile_only(plan, session, method)
    return False


def _web_identity(plan: CredentialPlan, session: Any, environ: Mapping[str, str]) -> bool:
    scoped = session.get_scoped_config() or {}
    token_file = environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") or scoped.get("web_identity_token_file")
    role_arn = environ.get("AWS_ROLE_ARN") or scoped.get("role_arn")
    if not token_file:
        return False
    identity = plan.identity
    identity.source = "irsa"
    identity.role_arn = role_arn
    identity.details["token_file"] = token_file
    if role_arn:
        identity.account_id = _account_of_arn(role_arn)
    plan.web_identity_token_file = token_file
    if not role_arn:
        plan.error_type = "InvalidConfigError"
        plan.error = "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: botocore refuses to build a client"
    elif not os.path.isfile(token_file):
        plan.error_type = "FileNotFoundError"
        plan.error = f"web identity token file {token_file} does not exist (botocore raises at the first call)"
    return True


def _container(plan: CredentialPlan, environ: Mapping[str, str]) -> bool:
    relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    full = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if not relative and not full:
        return False
    identity = plan.identity
    token_file = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if relative:  # wins over FULL_URI when both are set
        url = f"http://{ECS_ADDRESS}{relative}"
        identity.source = "ecs"
    else:
        url = full or ""
        host = (urlsplit(url).hostname or "").lower()
        identity.source = "pod-identity" if (host in POD_IDENTITY_HOSTS or token_file) else "ecs"
        if not container_host_allowed(url):
            plan.error_type = "ValueError"
            plan.error = (
                f"Unsupported host {host!r} in AWS_CONTAINER_CREDENTIALS_FULL_URI: botocore only accepts "
                "https, a loopback address, 169.254.170.2, 169.254.170.23, fd00:ec2::23 or localhost"
            )
    plan.container_url = url
    identity.details["url"] = url
    if token_file:
        identity.details["token_file"] = token_file
        plan.container_token_file = token_file
        if not os.path.isfile(token_file):
            plan.error_type = "FileNotFoundError"
            plan.error = f"container authorization token file {token_file} does not exist"
    elif environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        plan.container_token_env = True
    return True


def _profile_only(plan: CredentialPlan, session: Any, method: str) -> bool:
    scoped = session.get_scoped_config() or {}
    keys = {
        "assume-role": "role_arn",
        "sso": "sso_start_url",
        "custom-process": "credential_process",
        "login": "login_session",
    }
    if not scoped.get(keys[method]) and not (method == "sso" and scoped.get("sso_session")):
        return False
    plan.identity.source = "profile"
    plan.identity.details["provider"] = method
    plan.notes.append(f"profile credentials ({method}) are resolved by botocore itself, not step by step")
    return True


def _account_of_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4].isdigit() else None
