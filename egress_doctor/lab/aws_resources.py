"""Create the app's AWS resources in the lab's moto: buckets, queues, topics, secrets, keys,
parameters, streams, functions and log groups, in each account a caller may be seen as.

    created = create_resources(aws.endpoint_url, ca_bundle, resources, "us-east-1", accounts)

The calls go to the fake AWS itself (`https://127.0.0.1:<port>`, the lab CA) through botocore,
with moto's `x-moto-account-id` header choosing the account: moto keeps state per account and
takes the caller's account from its access key, so a resource the app must find is created in
every account the app may sign as (moto's default one, the lab's, the ARN's). A secret's or a
parameter's value is random and never leaves this module. KMS key ids are chosen by KMS: only
aliases (`alias/NAME`) can be created by name. Tables are created by `MotoControl`.
"""

from __future__ import annotations

import io
import secrets
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

from egress_doctor.aws.resources import Resource

_LAB_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # moto accepts any key
LAMBDA_ROLE = "egress-doctor-lab-lambda"


def create_resources(
    endpoint_url: str, ca_bundle: str, resources: Iterable[Resource], region: str, accounts: Sequence[str]
) -> list[str]:
    """Create every resource (tables excepted) in moto; what was created, one line each."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    for name in ("config_file", "credentials_file"):
        session.set_config_variable(name, "/nonexistent/egress-doctor-lab")
    clients: dict[tuple[str, str, str], Any] = {}

    def client(service: str, where: str, account: str) -> Any:
        key = (service, where, account)
        if key not in clients:
            made = session.create_client(
                service, region_name=where, endpoint_url=endpoint_url, verify=ca_bundle,
                aws_access_key_id=_LAB_KEY[0], aws_secret_access_key=_LAB_KEY[1],
                config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
            made.meta.events.register("before-sign", _as_account(account))
            clients[key] = made
        return clients[key]

    created: list[str] = []
    for resource in resources:
        if resource.kind == "table":
            continue
        where = resource.region or region
        for account in dict.fromkeys([*accounts, *([resource.account] if resource.account else [])]):
            line = _create(lambda s, w=where, a=account: client(s, w, a), resource, where)
            if line:
                created.append(f"{line} (account {account})")
    return created


def _as_account(account: str) -> Any:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    return add_header


def _create(client: Any, r: Resource, region: str) -> str | None:
    kind, name = r.kind, r.name
    if kind == "bucket" and r.form == "name":
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        # Bucket names are global: the first account owns it; moto answers the others for it too.
        _tolerant(lambda: client("s3").create_bucket(Bucket=name, **config), "BucketAlreadyOwnedByYou",
                  "BucketAlreadyExists")
        return f"bucket {name} in {region}"
    if kind == "queue":
        client("sqs").create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if name.endswith(".fifo") else {})
        return f"queue {name} in {region}"
    if kind == "topic":
        client("sns").create_topic(Name=name)
        return f"topic {name} in {region}"
    if kind == "secret":
        _tolerant(lambda: client("secretsmanager").create_secret(Name=name, SecretString=secrets.token_urlsafe(24)),
                  "ResourceExistsException")
        return f"secret {name} in {region}"
    if kind == "key" and (r.form == "alias" or name.startswith("alias/")):
        kms = client("kms")
        key_id = kms.create_key(Description=f"egress-doctor lab key for {name}")["KeyMetadata"]["KeyId"]
        _tolerant(lambda: kms.create_alias(AliasName=name, TargetKeyId=key_id), "AlreadyExistsException")
        return f"key {name} in {region}"
    if kind == "parameter":
        client("ssm").put_parameter(Name=name, Value=secrets.token_urlsafe(24), Type="String", Overwrite=True)
        return f"parameter {name} in {region}"
    if kind == "stream":
        _tolerant(lambda: client("kinesis").create_stream(StreamName=name, ShardCount=1), "ResourceInUseException")
        return f"stream {name} in {region}"
    if kind == "function":
        _function(client, name)
        return f"function {name} in {region}"
    if kind == "log-group":
        _tolerant(lambda: client("logs").create_log_group(logGroupName=name), "ResourceAlreadyExistsException")
        return f"log group {name} in {region}"
    return None  # access points, KMS key ids: AWS chooses or needs more than a name


def _function(client: Any, name: str) -> None:
    iam = client("iam")
    policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},' \
             '"Action":"sts:AssumeRole"}]}'
    try:
        role = iam.create_role(RoleName=LAMBDA_ROLE, AssumeRolePolicyDocument=policy)["Role"]["Arn"]
    except Exception:  # already there (a second region or account run)
        role = iam.get_role(RoleName=LAMBDA_ROLE)["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    _tolerant(lambda: client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": code.getvalue()}), "ResourceConflictException")


def _tolerant(call: Any, *exists: str) -> None:
    """Run `call`; a resource that already exists (a second account or run) is fine."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in exists:
            raise
