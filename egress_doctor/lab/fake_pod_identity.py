"""A fake EKS Pod Identity agent (the container-credentials endpoint) on 127.0.0.1.

botocore's `ContainerProvider` sends one `GET <AWS_CONTAINER_CREDENTIALS_FULL_URI>` with
`Authorization: <contents of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE>` and expects AccessKeyId,
SecretAccessKey, Token, Expiration and, from Pod Identity, AccountId. botocore accepts any
loopback full URI, so `.full_uri` works without touching 169.254.170.23.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .credentials import LabCredentials
from .serving import LoopbackFake, LoopbackTCPServer, QuietHTTPHandler, RequestLog

CREDENTIALS_PATH = "/v1/credentials"
DEFAULT_TOKEN = "lab-pod-identity-token"

# "ok" serves credentials; an int answers with that status and a {"message": ...} body;
# "not-json" answers 200 with an HTML page; "hang" never answers.
AgentResponse = Literal["ok", "not-json", "hang"] | int


@dataclass(frozen=True)
class PodIdentityBehaviour:
    """How the fake agent answers; every field can be changed while it runs (`configure`)."""

    response: AgentResponse = "ok"
    token: str = DEFAULT_TOKEN  # the Authorization value it accepts; anything else gets 403
    account_id: str | None = "222233334444"  # None: omit AccountId, as ECS does today
    credentials: LabCredentials = field(default_factory=LabCredentials.generate)


@dataclass(frozen=True)
class AgentRequest:
    """One request the fake agent received. The Authorization value is never recorded."""

    method: str
    path: str
    authorization_present: bool
    authorized: bool  # the Authorization header matched the configured token
    status: int | None  # None: the fake never answered (response="hang")


class FakePodIdentityAgent(LoopbackFake):
    """A fake EKS Pod Identity agent on 127.0.0.1; `.full_uri` goes into AWS_CONTAINER_CREDENTIALS_FULL_URI.

    Construct with `PodIdentityBehaviour` fields as keywords, e.g. `FakePodIdentityAgent(response=500)`.
    """

    thread_name = "lab-fake-pod-identity"

    def __init__(self, **behaviour: Any) -> None:
        super().__init__()
        self._behaviour = PodIdentityBehaviour(**behaviour)
        self._lock = threading.Lock()
        self._requests: RequestLog[AgentRequest] = RequestLog()

    @property
    def full_uri(self) -> str:
        """`http://127.0.0.1:<port>/v1/credentials`, the value for AWS_CONTAINER_CREDENTIALS_FULL_URI."""
        return f"http://127.0.0.1:{self.port}{CREDENTIALS_PATH}"

    @property
    def behaviour(self) -> PodIdentityBehaviour:
        return self._behaviour

    @property
    def requests(self) -> list[AgentRequest]:
        """Every request received so far, oldest first."""
        return self._requests.snapshot()

    def configure(self, **changes: Any) -> PodIdentityBehaviour:
        """Change behaviour fields at run time (e.g. `configure(response=403)`); returns the new behaviour."""
        with self._lock:
            self._behaviour = dataclasses.replace(self._behaviour, **changes)
            return self._behaviour

    def clear_requests(self) -> None:
        """Forget the requests recorded so far."""
        self._requests.clear()

    def write_token_file(self, path: Path | str) -> Path:
        """Write the accepted token to `path`, for AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE."""
        target = Path(path)
        target.write_text(self._behaviour.token)
        return target

    def record(self, request: AgentRequest) -> None:
        self._requests.append(request)

    def _make_server(self) -> LoopbackTCPServer:
        return LoopbackTCPServer(_AgentHandler, owner=self)


def credentials_body(behaviour: PodIdentityBehaviour) -> dict[str, str]:
    """The JSON the agent serves on success (AccountId only when configured)."""
    creds = behaviour.credentials
    body = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": creds.expiration(),
    }
    if behaviour.account_id is not None:
        body["AccountId"] = behaviour.account_id
    return body


_ERROR_MESSAGES = {
    400: "Bad request",
    403: "Service account token cannot be empty or is not authorized",
    404: "Not found",
    500: "Internal error while fetching credentials",
}
_NOT_JSON = b"<html><body><h1>It works!</h1></body></html>\n"


def error_body(status: int, message: str | None = None) -> bytes:
    """A `{"message": ...}` body like the agent's own error replies."""
    text = message or _ERROR_MESSAGES.get(status, f"HTTP {status}")
    return json.dumps({"message": text}).encode()


class _AgentHandler(QuietHTTPHandler):
    """Answers credential requests according to the owning agent's current behaviour."""

    @property
    def fake(self) -> FakePodIdentityAgent:
        return self.server.owner  # type: ignore[no-any-return]

    def do_GET(self) -> None:
        behaviour = self.fake.behaviour
        authorized = self._authorized(behaviour)
        if self.path.split("?", 1)[0] != CREDENTIALS_PATH:
            self._answer(authorized, 404, error_body(404))
        elif not authorized:
            self._answer(authorized, 403, error_body(403))
        elif behaviour.response == "hang":
            self._record(authorized, None)
            self.hang()
        elif behaviour.response == "not-json":
            self._answer(authorized, 200, _NOT_JSON, "text/html")
        elif isinstance(behaviour.response, int):
            self._answer(authorized, behaviour.response, error_body(behaviour.response))
        else:
            self._answer(authorized, 200, json.dumps(credentials_body(behaviour)).encode())

    def _authorized(self, behaviour: PodIdentityBehaviour) -> bool:
        sent = self.headers.get("Authorization")
        return sent is not None and hmac.compare_digest(sent.encode(), behaviour.token.encode())

    def _answer(
        self, authorized: bool, status: int, body: bytes, content_type: str = "application/json"
    ) -> None:
        self._record(authorized, status)
        self.send_body(status, body, content_type)

    def _record(self, authorized: bool, status: int | None) -> None:
        self.fake.record(
            AgentRequest(
                method=self.command,
                path=self.path,
                authorization_present="Authorization" in self.headers,
                authorized=authorized,
                status=status,
            )
        )
