"""The hosts the AWS SDK will contact, computed offline by botocore itself.

    sdk_endpoints(EndpointOptions(region="us-east-1", credentials="irsa", account="111122223333"))

Real botocore clients are created and called; a `before-send` handler records the URL of each
request and stops it by raising, so **no network call is made** (no DNS either: botocore
resolves nothing before sending). The session is isolated from the machine running this: no
config or credentials file, no environment-provided endpoint URLs, every setting that changes a
host (region, FIPS, dual-stack, account-ID endpoint mode, STS regional endpoints) set explicitly.

Credential modes and what they add:

* `irsa`: STS AssumeRoleWithWebIdentity (regional); the role ARN carries the account, so DynamoDB
  uses `<account>.ddb.<region>.amazonaws.com`;
* `pod-identity`: the EKS Pod Identity agent `169.254.170.23:80`; its answer carries the account;
* `imds`: IMDS `169.254.169.254:80` (token, role, credentials); IMDS credentials carry no account;
* `env`: nothing; an account only when AWS_ACCOUNT_ID is set (`account`).

DynamoDB's regional host is always listed too (SDKs without account endpoints, and
`AWS_ACCOUNT_ID_ENDPOINT_MODE=disabled`, use it); a table ARN adds its own account's host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from egress_doctor.aws.predict import capture_before_send, url_of

CREDENTIAL_MODES = ("irsa", "pod-identity", "imds", "env")
SERVICES = ("sts", "dynamodb")
ACCOUNT_MODES = ("preferred", "required", "disabled")
IMDS_HOST = "169.254.169.254"
POD_IDENTITY_HOST = "169.254.170.23"
_ACCOUNT = re.compile(r"^\d{12}$")
_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):table/.+$")
_PLACEHOLDER_ACCOUNT = "000000000000"  # stands for "an account the SDK will learn at run time"
_ACCOUNTS_CARRIED = {"irsa": True, "pod-identity": True, "imds": False, "env": False}


@dataclass(frozen=True)
class SdkEndpoint:
    """One destination the SDK will dial, and why."""

    host: str  # a name, a link-local address, or `*.ddb.<region>…` when the account is unknown
    port: int
    scheme: str  # https | http
    service: str  # imds | pod-identity | sts | dynamodb
    purpose: str  # "STS AssumeRoleWithWebIdentity (IRSA)"
    url: str = ""


@dataclass(frozen=True)
class FootprintCall:
    service: str
    operation: str  # botocore's name: HeadBucket
    params: Mapping[str, Any]
    purpose: str  # "S3 HeadBucket invoice-archive"
    region: str | None = None


@dataclass(frozen=True)
class EndpointOptions:
    region: str
    credentials: str = "irsa"
    account: str | None = None
    tables: tuple[str, ...] = ()  # names or ARNs
    services: tuple[str, ...] = SERVICES
    fips: bool | None = False  # None: as the environment says (AWS_USE_FIPS_ENDPOINT)
    dualstack: bool | None = False  # None: as the environment says (AWS_USE_DUALSTACK_ENDPOINT)
    account_endpoint_mode: str | None = "preferred"  # AWS_ACCOUNT_ID_ENDPOINT_MODE; None: the environment's
    # The app's environment (AWS_* variables), read by botocore itself: AWS_STS_REGIONAL_ENDPOINTS,
    # AWS_ENDPOINT_URL_*, AWS_S3_US_EAST_1_REGIONAL_ENDPOINT, … None: an isolated default SDK.
    environ: Mapping[str, str] | None = None
    # More calls of the app's footprint (`check`'s plan: --service, --bucket, --queue, …), each
    # predicted in its own region (an ARN's or a queue URL's), else `region`.
    calls: tuple[FootprintCall, ...] = ()

    def __post_init__(self) -> None:
        if self.credentials not in CREDENTIAL_MODES:
            raise ValueError(f"credentials must be one of {', '.join(CREDENTIAL_MODES)}")
        if self.account is not None and not _ACCOUNT.match(self.account):
            raise ValueError(f"account must be 12 digits, not {self.account!r}")
        if self.account_endpoint_mode is not None and self.account_endpoint_mode not in ACCOUNT_MODES:
            raise ValueError(f"account endpoint mode must be one of {', '.join(ACCOUNT_MODES)}")
        unknown = set(self.services) - set(SERVICES) - {c.service for c in self.calls}
        if unknown:
            raise ValueError(f"unknown service {sorted(unknown)[0]!r} (known: {', '.join(SERVICES)})")


def _session(options: EndpointOptions) -> Any:
    import botocore.session

    session = botocore.session.Session()
    settings: list[tuple[str, object]] = [
        ("config_file", "/nonexistent/egress-doctor/config"),
        ("credentials_file", "/nonexistent/egress-doctor/credentials"),
        ("region", options.region),
    ]
    if options.environ is None:  # isolated: every setting that changes a host is fixed
        settings += [("sts_regional_endpoints", "regional"), ("ignore_configured_endpoint_urls", True)]
    for name, value in (("use_fips_endpoint", options.fips), ("use_dualstack_endpoint", options.dualstack),
                        ("account_id_endpoint_mode", options.account_endpoint_mode)):
        if value is not None:
            settings.append((name, value))
    for name, value in settings:
        session.set_config_variable(name, value)
    session.register("before-send", capture_before_send)
    return session


def _client(session: Any, service: str, options: EndpointOptions, account: str | None) -> Any:
    from botocore.config import Config

    kwargs: dict[str, Any] = {"aws_access_key_id": "AKIDEGRESSDOCTOR", "aws_secret_access_key": "offline"}
    if account:
        kwargs["aws_account_id"] = account
    config = Config(retries={"total_max_attempts": 1})
    return session.create_client(service, region_name=options.region, config=config, **kwargs)


def _endpoint(url: str, service: str, purpose: str) -> SdkEndpoint:
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    return SdkEndpoint(parts.hostname or "", parts.port or (443 if scheme == "https" else 80), scheme,
                       service, purpose, url)


def _credential_endpoints(options: EndpointOptions, session: Any) -> list[SdkEndpoint]:
    if options.credentials == "imds":
        url = f"http://{IMDS_HOST}/latest/api/token"
        return [_endpoint(url, "imds", "IMDS token, role name and credentials (instance profile)")]
    if options.credentials == "pod-identity":
        url = f"http://{POD_IDENTITY_HOST}/v1/credentials"
        return [_endpoint(url, "pod-identity", "EKS Pod Identity agent (AWS_CONTAINER_CREDENTIALS_FULL_URI)")]
    if options.credentials == "irsa":
        sts = _client(session, "sts", options, None)
        url = url_of(sts, "assume_role_with_web_identity", {
            "RoleArn": f"arn:aws:iam::{options.account or _PLACEHOLDER_ACCOUNT}:role/app",
            "RoleSessionName": "egress-doctor", "WebIdentityToken": "offline-token"})
        return [_endpoint(url, "sts", "STS AssumeRoleWithWebIdentity (IRSA credentials)")]
    return []


def _account_of_run(options: EndpointOptions) -> str | None:
    """The account the SDK's credentials will carry; the placeholder when known only at run time."""
    if options.account_endpoint_mode == "disabled" or (
            options.account_endpoint_mode is None and (options.environ or {}).get(
                "AWS_ACCOUNT_ID_ENDPOINT_MODE", "").lower() == "disabled"):
        return None
    if _ACCOUNTS_CARRIED[options.credentials]:
        return options.account or _PLACEHOLDER_ACCOUNT
    # env: AWS_ACCOUNT_ID (given as `account`) rides with the keys; IMDS credentials never carry one.
    return options.account if options.credentials == "env" else None


def _dynamodb_endpoints(options: EndpointOptions, session: Any) -> list[SdkEndpoint]:
    out = [_endpoint(url_of(_client(session, "dynamodb", options, None), "list_tables", {"Limit": 1}),
                     "dynamodb", "DynamoDB regional endpoint (no account in the credentials, or mode disabled)")]
    account = _account_of_run(options)
    if account is None:
        return out
    client = _client(session, "dynamodb", options, account)
    out.append(_endpoint(url_of(client, "list_tables", {"Limit": 1}), "dynamodb",
                         f"DynamoDB account endpoint ({options.credentials} credentials carry the account)"))
    for table in options.tables:
        arn = _TABLE_ARN.match(table)
        if arn is None:
            continue
        url = url_of(client, "describe_table", {"TableName": table})
        out.append(_endpoint(url, "dynamodb", f"DynamoDB DescribeTable {table}"))
    return out


def _footprint_endpoints(options: EndpointOptions, session: Any) -> list[SdkEndpoint]:
    """Each footprint call's URL, from a client in the call's region (S3 addressing, SQS's JSON
    protocol host, access points, AWS_ENDPOINT_URL_<SERVICE>: botocore decides)."""
    from botocore import xform_name

    out = []
    account = _account_of_run(options)
    for call in options.calls:
        client = _client(session, call.service, replace(options, region=call.region or options.region), account)
        try:
            url = url_of(client, xform_name(call.operation), dict(call.params))
        except Exception as exc:
            raise ValueError(f"{call.purpose}: botocore cannot build the call ({exc})") from None
        out.append(_endpoint(url, call.service, call.purpose))
    return out


def _unknown_account(endpoint: SdkEndpoint) -> SdkEndpoint:
    if not endpoint.host.startswith(_PLACEHOLDER_ACCOUNT + "."):
        return endpoint
    host = "*" + endpoint.host[len(_PLACEHOLDER_ACCOUNT):]
    return SdkEndpoint(host, endpoint.port, endpoint.scheme, endpoint.service,
                       endpoint.purpose + "; account unknown (pass --account): any account's host",
                       endpoint.url.replace(_PLACEHOLDER_ACCOUNT, "<account>"))


def sdk_endpoints(options: EndpointOptions) -> list[SdkEndpoint]:
    """Every destination, deduplicated by (host, port), in the order the SDK reaches them. With
    `options.environ`, botocore reads the app's AWS_* variables itself (os.environ holds exactly
    those while the clients are built and called, as `check --mirror` does)."""
    if options.environ is None:
        return _endpoints(options)
    from egress_doctor.mirror import applied

    with applied({k: v for k, v in options.environ.items() if k.startswith("AWS_")}):
        return _endpoints(options)


def _endpoints(options: EndpointOptions) -> list[SdkEndpoint]:
    session = _session(options)
    found = _credential_endpoints(options, session)
    if "sts" in options.services:
        url = url_of(_client(session, "sts", options, None), "get_caller_identity", {})
        found.append(_endpoint(url, "sts", "STS GetCallerIdentity"))
    if "dynamodb" in options.services:
        found += _dynamodb_endpoints(options, session)
    found += _footprint_endpoints(options, session)
    unique: dict[tuple[str, int], SdkEndpoint] = {}
    for endpoint in (_unknown_account(e) for e in found):
        seen = unique.get((endpoint.host, endpoint.port))
        if seen is None:
            unique[(endpoint.host, endpoint.port)] = endpoint
        elif endpoint.purpose not in seen.purpose:
            unique[(endpoint.host, endpoint.port)] = replace(seen, purpose=f"{seen.purpose}; {endpoint.purpose}")
    return list(unique.values())


def table_accounts(tables: Sequence[str]) -> list[str]:
    """Accounts named by table ARNs, in order."""
    return list(dict.fromkeys(m["account"] for t in tables if (m := _TABLE_ARN.match(t))))
