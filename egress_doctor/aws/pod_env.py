"""Which AWS hosts a pod's SDK calls, from the environment in the pod's spec — offline.

    options = endpoint_options({"AWS_REGION": "us-east-1", "AWS_ROLE_ARN": "arn:aws:iam::1111…:role/app",
                                "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/…"})
    sdk_endpoints(options)   # aws.endpoints: botocore's own answer, no network call

The variables are the ones the EKS webhooks inject (IRSA: AWS_ROLE_ARN and
AWS_WEB_IDENTITY_TOKEN_FILE; Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI) and the ones that
change a host (region, FIPS, dual-stack, account-ID endpoint mode), read as literal values of the
spec. The credential source follows botocore's chain: static keys, then web identity, then the
container endpoint, then IMDS. Without a region there is no prediction (None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from egress_doctor.aws.endpoints import ACCOUNT_MODES, EndpointOptions

_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/")
_ACCOUNT = re.compile(r"^\d{12}$")


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def credential_source(env: Mapping[str, str]) -> str | None:
    """The credential mode botocore's chain lands on for this environment: static keys, then web
    identity (both variables), then the container endpoint (full or relative URI); None when the
    environment names no credentials (botocore then asks IMDS)."""
    if env.get("AWS_ACCESS_KEY_ID"):
        return "env"
    if env.get("AWS_ROLE_ARN") and env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "irsa"
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "pod-identity"
    return None


def account_of(env: Mapping[str, str], credentials: str) -> str | None:
    """The account the credentials will carry, when the environment names it: AWS_ACCOUNT_ID beside
    static keys, the role ARN's account for web identity; otherwise known only at run time."""
    if credentials == "env":
        candidate = env.get("AWS_ACCOUNT_ID", "").strip()
        return candidate if _ACCOUNT.match(candidate) else None
    if credentials == "irsa":
        match = _ROLE_ACCOUNT.match(env.get("AWS_ROLE_ARN", "").strip())
        return match["account"] if match else None
    return None


def endpoint_options(env: Mapping[str, str]) -> EndpointOptions | None:
    """The prediction's inputs for one pod's environment; None when it names no region. The rest of
    the environment goes to botocore as it is (AWS_STS_REGIONAL_ENDPOINTS, AWS_ENDPOINT_URL_*, …)."""
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    if not region:
        return None
    credentials = credential_source(env) or "imds"  # a running pod's spec: the webhooks' variables are in
    mode = env.get("AWS_ACCOUNT_ID_ENDPOINT_MODE", "preferred").strip().lower()
    try:
        return EndpointOptions(region=region, credentials=credentials, account=account_of(env, credentials),
                               fips=_flag(env, "AWS_USE_FIPS_ENDPOINT"),
                               dualstack=_flag(env, "AWS_USE_DUALSTACK_ENDPOINT"),
                               account_endpoint_mode=mode if mode in ACCOUNT_MODES else "preferred",
                               environ=dict(env))
    except ValueError:
        return None
