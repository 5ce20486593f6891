"""The AWS environment a pod gets in each credential mode (EKS webhooks, the SDK docs), for the lab."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egress_doctor.lab.upstreams import LINK_LOCAL_STANDINS

if TYPE_CHECKING:
    from egress_doctor.lab.runner import LabConfig

DEFAULT_ACCOUNT = "111122223333"  # used for role ARNs and the agents when --account-id is absent
ROLE_NAME = "egress-doctor-lab"


def credential_environment(cfg: LabConfig, directory: Path, http_port: int, agent: Any) -> dict[str, str]:
    """Exactly the AWS variables a pod gets in each credential mode (EKS webhooks / the SDK docs)."""
    account = cfg.account_id or DEFAULT_ACCOUNT
    if cfg.credentials == "env":
        from egress_doctor.lab.fakes import LabCredentials

        creds = LabCredentials.generate()
        env = {"AWS_ACCESS_KEY_ID": creds.access_key_id, "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
               "AWS_SESSION_TOKEN": creds.token}
        if cfg.account_id:
            env["AWS_ACCOUNT_ID"] = cfg.account_id
        return env
    if cfg.credentials == "irsa":
        token = directory / "eks.amazonaws.com" / "serviceaccount" / "token"
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text(_jwt(cfg.region, cfg.namespace), encoding="utf-8")
        return {"AWS_ROLE_ARN": f"arn:aws:iam::{account}:role/{ROLE_NAME}",
                "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)}
    if cfg.credentials == "pod-identity":
        token = directory / "pods.eks.amazonaws.com" / "serviceaccount" / "eks-pod-identity-token"
        token.parent.mkdir(parents=True, exist_ok=True)
        agent.write_token_file(token)
        standin = LINK_LOCAL_STANDINS["169.254.170.23"]
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{standin}:{http_port}/v1/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token),
                "AWS_STS_REGIONAL_ENDPOINTS": "regional"}
    return {}  # imds: the SDK finds the instance role itself


def _jwt(region: str, namespace: str) -> str:
    """A JWT-shaped projected service-account token (unsigned; moto does not verify it)."""
    def part(body: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"aud": ["sts.amazonaws.com"], "exp": now + 86400, "iat": now,
              "iss": f"https://oidc.eks.{region}.amazonaws.com/id/EGRESSDOCTORLAB",
              "sub": f"system:serviceaccount:{namespace}:default"}
    return f"{part({'alg': 'RS256', 'kid': 'lab'})}.{part(claims)}.{part({'sig': 'lab'})}"
