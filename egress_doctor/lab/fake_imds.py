"""A fake EC2 instance metadata service (IMDS) on 127.0.0.1, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

It answers the requests botocore's `InstanceMetadataProvider` makes (token PUT, role list, role
credentials) plus region and identity document, and can misbehave the ways a pod sees IMDS
misbehave: a token PUT that never answers (hop limit 1), token errors, IMDSv2 required, no
instance profile, a credentials document whose Code is not Success.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .credentials import LabCredentials, iso8601
from .serving import LoopbackFake, LoopbackTCPServer, QuietHTTPHandler, RequestLog

TOKEN_PATH = "/latest/api/token"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600  # seconds; IMDS refuses longer (and zero) TTLs with 400

TokenBehaviour = Literal["ok", "hang"] | int  # an int answers the token PUT with that status
V1Mode = Literal["allowed", "required"]


@dataclass(frozen=True)
class ImdsBehaviour:
    """How the fake IMDS answers; every field can be changed while it runs (`FakeImds.configure`)."""

    token: TokenBehaviour = "ok"  # "hang": the PUT never gets an answer, the hop-limit-1 symptom
    v1: V1Mode = "allowed"  # "required" (HttpTokens=required): GETs without a valid token get 401
    role: str | None = "eks-node-role"  # None: no instance profile, the role list is 404
    credentials: LabCredentials = field(default_factory=LabCredentials.generate)
    credentials_code: str = "Success"  # anything else serves {"Code","Message"} without keys
    credentials_message: str = "EC2 cannot assume the role of this instance profile."
    region: str = "us-east-1"
    availability_zone: str = "us-east-1a"
    account_id: str = "111122223333"
    instance_id: str = "i-0123456789abcdef0"


@dataclass(frozen=True)
class ImdsRequest:
    """One request the fake IMDS received. Token values are never recorded, only their presence."""

    method: str
    path: str
    token_header: bool  # x-aws-ec2-metadata-token was sent
    ttl_header: bool  # x-aws-ec2-metadata-token-ttl-seconds was sent
    status: int | None  # None: the fake never answered (token="hang")


class FakeImds(LoopbackFake):
    """A fake EC2 instance metadata service on 127.0.0.1; `.url` goes into AWS_EC2_METADATA_SERVICE_ENDPOINT.

    Construct with `ImdsBehaviour` fields as keywords, e.g. `FakeImds(token="hang", v1="required")`.
    """

    thread_name = "lab-fake-imds"

    def __init__(self, **behaviour: Any) -> None:
        super().__init__()
        self._behaviour = ImdsBehaviour(**behaviour)
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._requests: RequestLog[ImdsRequest] = RequestLog()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>/`, the value for AWS_EC2_METADATA_SERVICE_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def behaviour(self) -> ImdsBehaviour:
        return self._behaviour

    @property
    def requests(self) -> list[ImdsRequest]:
        """Every request received so far, oldest first."""
        return self._requests.snapshot()

    def configure(self, **changes: Any) -> ImdsBehaviour:
        """Change behaviour fields at run time (e.g. `configure(token=403)`); returns the new behaviour."""
        with self._lock:
            self._behaviour = dataclasses.replace(self._behaviour, **changes)
            return self._behaviour

    def clear_requests(self) -> None:
        """Forget the requests recorded so far."""
        self._requests.clear()

    def _make_server(self) -> LoopbackTCPServer:
        return LoopbackTCPServer(_ImdsHandler, owner=self)

    # Called from handler threads.

    def issue_token(self, ttl_seconds: int) -> str:
        """A new session token valid for `ttl_seconds`."""
        token = secrets.token_urlsafe(42)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl_seconds
        return token

    def token_is_valid(self, token: str) -> bool:
        """Whether `token` was issued by this fake and has not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def record(self, request: ImdsRequest) -> None:
        self._requests.append(request)


def _parse_ttl(raw: str | None) -> int | None:
    """The requested token TTL, or None when missing or outside 1..21600 (IMDS answers 400)."""
    try:
        ttl = int(raw or "")
    except ValueError:
        return None
    return ttl if 0 < ttl <= MAX_TOKEN_TTL else None


def credentials_document(behaviour: ImdsBehaviour) -> dict[str, str]:
    """The JSON IMDS serves for the role: keys on Success, otherwise only Code and Message."""
    now = datetime.now(UTC)
    if behaviour.credentials_code != "Success":
        return {
            "Code": behaviour.credentials_code,
            "Message": behaviour.credentials_message,
            "LastUpdated": iso8601(now),
        }
    creds = behaviour.credentials
    return {
        "Code": "Success",
        "LastUpdated": iso8601(now),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": creds.expiration(now),
    }


def identity_document(behaviour: ImdsBehaviour) -> dict[str, str]:
    """The instance identity document (`/latest/dynamic/instance-identity/document`)."""
    return {
        "accountId": behaviour.account_id,
        "architecture": "x86_64",
        "availabilityZone": behaviour.availability_zone,
        "imageId": "ami-0123456789abcdef0",
        "instanceId": behaviour.instance_id,
        "instanceType": "m6i.large",
        "privateIp": "10.0.0.10",
        "region": behaviour.region,
        "version": "2017-09-30",
    }


def metadata_answer(behaviour: ImdsBehaviour, path: str) -> tuple[int, str, str]:
    """(status, content type, body) for a GET of `path` once the token check has passed."""
    simple = {
        "/latest/meta-data/placement/region": behaviour.region,
        "/latest/meta-data/placement/availability-zone": behaviour.availability_zone,
        "/latest/meta-data/instance-id": behaviour.instance_id,
        "/latest/meta-data/": "iam/\ninstance-id\nplacement/",
    }
    role = behaviour.role
    listing = path if path in simple else path.rstrip("/")  # botocore asks for ".../availability-zone/"
    if listing in simple:
        return 200, "text/plain", simple[listing]
    if path == "/latest/dynamic/instance-identity/document":
        return 200, "text/plain", json.dumps(identity_document(behaviour), indent=2)
    if path == CREDENTIALS_PATH and role is not None:
        return 200, "text/plain", role
    if role is not None and path.rstrip("/") == CREDENTIALS_PATH + role:
        return 200, "text/plain", json.dumps(credentials_document(behaviour), indent=2)
    return 404, "text/html", _NOT_FOUND


_NOT_FOUND = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found</title></head>'
    "<body><h1>404 - Not Found</h1></body></html>\n"
)


class _ImdsHandler(QuietHTTPHandler):
    """Answers IMDS requests according to the owning FakeImds's current behaviour."""

    def version_string(self) -> str:
        return "EC2ws"

    @property
    def fake(self) -> FakeImds:
        return self.server.owner  # type: ignore[no-any-return]

    def do_PUT(self) -> None:
        self.read_body()
        behaviour = self.fake.behaviour
        if self.path != TOKEN_PATH:
            self._answer(404, "text/html", _NOT_FOUND)
        elif behaviour.token == "hang":
            self._record(None)
            self.hang()
        elif isinstance(behaviour.token, int):
            self._answer(behaviour.token, "text/plain", "")
        else:
            self._issue_token()

    def do_GET(self) -> None:
        behaviour = self.fake.behaviour
        path = self.path.split("?", 1)[0]
        if path == TOKEN_PATH:
            self._answer(405, "text/plain", "")
        elif not self._token_accepted(behaviour):
            self._answer(401, "text/plain", "")
        else:
            self._answer(*metadata_answer(behaviour, path))

    def _issue_token(self) -> None:
        ttl = _parse_ttl(self.headers.get(TTL_HEADER))
        if ttl is None:
            self._answer(400, "text/plain", "")
            return
        token = self.fake.issue_token(ttl)
        self._answer(200, "text/plain", token, {TTL_HEADER: str(ttl)})

    def _token_accepted(self, behaviour: ImdsBehaviour) -> bool:
        """A sent token must be valid (in both modes); no token is fine only when v1 is allowed."""
        token = self.headers.get(TOKEN_HEADER)
        if token is not None:
            return self.fake.token_is_valid(token)
        return behaviour.v1 == "allowed"

    def _answer(
        self, status: int, content_type: str, body: str, headers: dict[str, str] | None = None
    ) -> None:
        self._record(status)
        self.send_body(status, body.encode(), content_type, headers)

    def _record(self, status: int | None) -> None:
        self.fake.record(
            ImdsRequest(
                method=self.command,
                path=self.path,
                token_header=TOKEN_HEADER in self.headers,
                ttl_header=TTL_HEADER in self.headers,
                status=status,
            )
        )
