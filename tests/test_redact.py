"""The redactor against every line shape botocore, urllib3 and our probes print secrets in.

Lines are built by botocore's own code (signer, serializer, AWSPreparedRequest repr) from fake
values, or formatted exactly as botocore's log calls format them (aws-sdk.md §6).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import botocore.session
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.serialize import create_serializer

from egress_doctor.redact import MARK, RULES, Redactor, encoded_forms, is_secret_key, redact_patterns

AKID = "ASIAFAKEACCESSKEY000"
LONG_TERM_AKID = "AKIAFAKELONGTERM0001"
SECRET = "fAkE/SeCrEt+KeY0123456789abcdefghijKLMNO"
SESSION_TOKEN = "FwoGZXIvYXdzEFAKE//session+token/value=="
RETURNED_AKID = "ASIARETURNEDKEY00001"
RETURNED_SECRET = "rEtUrNeD/secret+KEY9876543210zyxwvutsRQP"
RETURNED_TOKEN = "IQoJb3JpZ2luX2VjEFAKE/returned+session/token=="
IMDS_TOKEN = "AQAEAFAKEimdsTOKENvalue_0123456789-abcdef=="
ECS_TOKEN = "fakeEcsAuthorizationToken0123456789"
STS_URL = "https://sts.us-west-2.amazonaws.com/"


def _b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


JWT = ".".join(
    [
        _b64url({"alg": "RS256", "kid": "fake-key-id"}),
        _b64url({"sub": "system:serviceaccount:orders:api", "aud": ["sts.amazonaws.com"]}),
        base64.urlsafe_b64encode(b"fake-signature-bytes" * 4).decode().rstrip("="),
    ]
)
ALL_SECRETS = (SECRET, SESSION_TOKEN, RETURNED_SECRET, RETURNED_TOKEN, IMDS_TOKEN, ECS_TOKEN, JWT)


def spellings(value: str) -> set[str]:
    """How a leaked value could show up: raw and URL-encoded."""
    return {value, quote(value, safe=""), quote(value), quote_plus(value)}


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets or ALL_SECRETS:
        for form in spellings(secret):
            assert form not in text, f"{form!r} survived redaction in:\n{text}"


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture
def auth_records() -> Iterator[_ListHandler]:
    """botocore.auth's own DEBUG records while a test signs a request."""
    logger = logging.getLogger("botocore.auth")
    handler = _ListHandler()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _signed_sts_request() -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=STS_URL,
        data={"Action": "GetCallerIdentity", "Version": "2011-06-15"},
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(AKID, SECRET, SESSION_TOKEN), "sts", "us-west-2").add_auth(request)
    return request


def _sending_record() -> str:
    request = _signed_sts_request()
    for name, value in list(request.headers.items()):  # as Endpoint.prepare_request encodes them
        request.headers[name] = value.encode() if isinstance(value, str) else value
    return f"botocore.endpoint DEBUG Sending http request: {request.prepare()!r}"


def _params_record() -> str:
    model = botocore.session.get_session().get_service_model("sts")
    operation = model.operation_model("AssumeRoleWithWebIdentity")
    params = {
        "RoleArn": "arn:aws:iam::111122223333:role/orders",
        "RoleSessionName": "s1",
        "WebIdentityToken": JWT,
    }
    request_dict = create_serializer("query").serialize_to_request(params, operation)
    request_dict["url"] = STS_URL
    return f"botocore.endpoint DEBUG Making request for {operation} with params: {request_dict}"


STS_XML = (
    '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
    "  <AssumeRoleWithWebIdentityResult>\n    <Credentials>\n"
    f"      <AccessKeyId>{RETURNED_AKID}</AccessKeyId>\n"
    f"      <SecretAccessKey>{RETURNED_SECRET}</SecretAccessKey>\n"
    f"      <SessionToken>{RETURNED_TOKEN}</SessionToken>\n"
    "      <Expiration>2030-01-01T00:00:00Z</Expiration>\n    </Credentials>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>0f9c-fake</RequestId></ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n"
).encode()
CREDS_DOC = {
    "Code": "Success",
    "Type": "AWS-HMAC",
    "AccessKeyId": RETURNED_AKID,
    "SecretAccessKey": RETURNED_SECRET,
    "Token": RETURNED_TOKEN,
    "Expiration": "2030-01-01T00:00:00Z",
}


# --- each shape of aws-sdk.md §6, and the ones our own probes produce --------------------------


def test_prepared_request_repr_hides_token_and_authorization_but_keeps_url_and_date() -> None:
    out = Redactor().redact(_sending_record())
    assert_no_secrets(out, SESSION_TOKEN)
    assert AKID not in out
    assert "Signature=" not in out
    assert f"url={STS_URL}" in out
    assert "'X-Amz-Security-Token': b'<redacted>'" in out
    assert "'Authorization': b'<redacted>'" in out
    assert "'X-Amz-Date': b'" in out


def test_canonical_request_record_hides_session_token_but_keeps_signed_header_list(
    auth_records: _ListHandler,
) -> None:
    _signed_sts_request()
    (canonical,) = [line for line in auth_records.lines if "CanonicalRequest:" in line]
    assert SESSION_TOKEN in canonical  # the fixture really is the dangerous record
    out = Redactor().redact(canonical)
    assert_no_secrets(out, SESSION_TOKEN)
    assert "\nx-amz-security-token:<redacted>\n" in out
    assert "host:sts.us-west-2.amazonaws.com" in out
    assert "content-type;host;x-amz-date;x-amz-security-token" in out


def test_auth_signature_record_hides_the_hex_signature(auth_records: _ListHandler) -> None:
    request = _signed_sts_request()
    signature = str(request.headers["Authorization"]).rsplit("Signature=", 1)[1]
    (record,) = [line for line in auth_records.lines if line.startswith("botocore.auth DEBUG Signature:")]
    out = Redactor().redact(record)
    assert signature not in out
    assert out == "botocore.auth DEBUG Signature:\n<redacted>"


def test_string_to_sign_record_is_left_alone_it_holds_only_a_hash(auth_records: _ListHandler) -> None:
    _signed_sts_request()
    (record,) = [line for line in auth_records.lines if "StringToSign:" in line]
    assert Redactor().redact(record) == record


def test_assume_role_with_web_identity_params_record_hides_the_jwt() -> None:
    record = _params_record()
    out = Redactor().redact(record)
    assert_no_secrets(out, JWT)
    assert "'WebIdentityToken': '<redacted>'" in out
    assert "'RoleArn': 'arn:aws:iam::111122223333:role/orders'" in out
    assert "OperationModel(name=AssumeRoleWithWebIdentity)" in out


def test_sts_xml_response_body_hides_secret_key_and_session_token_and_keeps_expiration() -> None:
    record = f"botocore.parsers DEBUG Response body:\n{STS_XML!r}"
    out = Redactor().redact(record)
    assert_no_secrets(out, RETURNED_SECRET, RETURNED_TOKEN)
    assert RETURNED_AKID not in out
    assert "<AccessKeyId>ASIA<redacted></AccessKeyId>" in out
    assert "<SecretAccessKey><redacted></SecretAccessKey>" in out
    assert "<SessionToken><redacted></SessionToken>" in out
    assert "<Expiration>2030-01-01T00:00:00Z</Expiration>" in out


def test_imds_error_record_with_a_python_dict_repr_hides_all_credentials() -> None:
    document = {**CREDS_DOC, "Code": "AssumeRoleUnauthorizedAccess", "Message": "role not allowed"}
    del document["Expiration"]
    record = f"botocore.utils DEBUG Error response received when retrievingcredentials: {document}"
    out = Redactor().redact(record)
    assert_no_secrets(out, RETURNED_SECRET, RETURNED_TOKEN)
    assert RETURNED_AKID not in out
    assert "'AccessKeyId': 'ASIA<redacted>'" in out
    assert "'Message': 'role not allowed'" in out


def test_container_credentials_json_record_hides_all_credentials() -> None:
    text = json.dumps(CREDS_DOC) + "<html>garbage after the document"
    record = f"botocore.utils DEBUG Unable to parse JSON returned from container metadata services:{text}"
    out = Redactor().redact(record)
    assert_no_secrets(out, RETURNED_SECRET, RETURNED_TOKEN)
    assert '"Token": "<redacted>"' in out
    assert '"Expiration": "2030-01-01T00:00:00Z"' in out


def test_imds_credentials_json_pretty_printed_as_imds_serves_it_hides_credentials() -> None:
    out = Redactor().redact(json.dumps(CREDS_DOC, indent=2))
    assert_no_secrets(out, RETURNED_SECRET, RETURNED_TOKEN)
    assert RETURNED_AKID not in out
    assert '"Code": "Success"' in out


def test_escaped_json_inside_a_python_repr_hides_values() -> None:
    nested = {"statusCode": 200, "body": json.dumps(CREDS_DOC)}
    for text in (json.dumps(nested), repr(json.dumps(nested)), repr(json.dumps(CREDS_DOC).encode())):
        out = Redactor().redact(text)
        assert_no_secrets(out, RETURNED_SECRET, RETURNED_TOKEN)
        assert RETURNED_AKID not in out


def test_json_escaped_slash_inside_a_secret_does_not_leak_the_tail() -> None:
    text = json.dumps(CREDS_DOC).replace("/", "\\/")
    out = Redactor().redact(text)
    assert "secret+KEY" not in out and "returned+session" not in out


def test_form_body_hides_web_identity_token() -> None:
    body = (
        AWSRequest(
            method="POST",
            url=STS_URL,
            data={"Action": "AssumeRoleWithWebIdentity", "RoleSessionName": "s1", "WebIdentityToken": JWT},
        )
        .prepare()
        .body
    )
    assert isinstance(body, str) and JWT in body
    out = Redactor().redact(f"body: {body}")
    assert_no_secrets(out, JWT)
    assert "Action=AssumeRoleWithWebIdentity&RoleSessionName=s1&WebIdentityToken=<redacted>" in out


def test_presigned_url_hides_security_token_and_signature_and_keeps_key_prefix() -> None:
    request = AWSRequest(method="GET", url=STS_URL + "?Action=GetCallerIdentity&Version=2011-06-15")
    SigV4QueryAuth(Credentials(AKID, SECRET, SESSION_TOKEN), "sts", "us-west-2").add_auth(request)
    out = Redactor().redact(f"GET {request.url}")
    assert_no_secrets(out, SESSION_TOKEN)
    assert AKID not in out
    assert "X-Amz-Security-Token=<redacted>" in out
    assert "X-Amz-Signature=<redacted>" in out
    assert "X-Amz-Credential=ASIA<redacted>%2F" in out
    assert "Action=GetCallerIdentity" in out


@pytest.mark.parametrize(
    "text",
    [
        f"{{'x-aws-ec2-metadata-token': '{IMDS_TOKEN}', 'x-aws-ec2-metadata-token-ttl-seconds': '21600'}}",
        f"x-aws-ec2-metadata-token: {IMDS_TOKEN}\nx-aws-ec2-metadata-token-ttl-seconds: 21600",
    ],
    ids=["dict-repr", "header-lines"],
)
def test_imds_token_header_value_hidden_but_ttl_header_number_kept(text: str) -> None:
    out = Redactor().redact(text)
    assert_no_secrets(out, IMDS_TOKEN)
    assert "21600" in out


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: {ECS_TOKEN}",
        f"GET /v1/credentials headers={{'Authorization': '{ECS_TOKEN}', 'Accept': 'application/json'}}",
        f"curl -H 'Authorization: {ECS_TOKEN}' http://127.0.0.1:8080/v1/credentials",
        f"AWS_CONTAINER_AUTHORIZATION_TOKEN={ECS_TOKEN}",
        f"Authorization: {JWT}",  # EKS Pod Identity tokens are JWTs
    ],
)
def test_container_authorization_token_hidden(text: str) -> None:
    out = Redactor().redact(text)
    assert_no_secrets(out, ECS_TOKEN, JWT)
    assert MARK in out


def test_any_jwt_is_hidden_wherever_it_appears() -> None:
    path = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    out = Redactor().redact(f"token file {path} holds {JWT}.")
    assert_no_secrets(out, JWT)
    assert out.endswith("holds <redacted>.")


@pytest.mark.parametrize(("akid", "prefix"), [(AKID, "ASIA"), (LONG_TERM_AKID, "AKIA")])
def test_access_key_ids_keep_only_their_prefix(akid: str, prefix: str) -> None:
    out = Redactor().redact(f"Credential={akid}/20261125/us-west-2/sts/aws4_request key {akid}")
    assert akid not in out
    assert out == f"Credential={prefix}<redacted>/20261125/us-west-2/sts/aws4_request key {prefix}<redacted>"


def test_proxy_url_password_is_hidden_and_host_kept() -> None:
    out = Redactor().redact("HTTPS_PROXY=http://build:hunter2hunter2@proxy.corp:3128")
    assert "hunter2" not in out
    assert out == "HTTPS_PROXY=http://build:<redacted>@proxy.corp:3128"


@pytest.mark.parametrize(
    "line",
    [
        'urllib3.connectionpool DEBUG https://sts.us-west-2.amazonaws.com:443 "POST / HTTP/1.1" 200 441',
        'urllib3.connectionpool DEBUG http://127.0.0.1:8011 "PUT /latest/api/token HTTP/1.1" 200 56',
        "botocore.utils DEBUG Metadata service returned non-200 response with status code of 401 for url: "
        "http://127.0.0.1:8011/latest/meta-data/iam/security-credentials/, content body: b''",
        "botocore.regions DEBUG Endpoint provider result: https://sts.us-west-2.amazonaws.com",
        "botocore.credentials DEBUG Looking for credentials via: assume-role-with-web-identity",
        "<GetCallerIdentityResponse><Arn>arn:aws:sts::111122223333:assumed-role/orders/s1</Arn>"
        "<UserId>AROAFAKEROLEID000000:s1</UserId><Account>111122223333</Account></GetCallerIdentityResponse>",
        "AuthorizationPolicy default/deny-all denies the call: RBAC: access denied",
        "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    ],
)
def test_lines_without_secrets_pass_through_unchanged(line: str) -> None:
    assert Redactor().redact(line) == line


# --- known values ------------------------------------------------------------------------------


def test_known_value_is_replaced_in_plain_text() -> None:
    redactor = Redactor()
    redactor.add_secret(SECRET)
    assert redactor.redact(f"secret key is {SECRET} (from the environment)") == (
        "secret key is <redacted> (from the environment)"
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: quote(v, safe=""),
        lambda v: quote(v, safe="").lower(),  # lower-case %2f escapes
        quote,
        quote_plus,
        lambda v: quote(quote(v, safe=""), safe=""),
    ],
    ids=["percent-all", "percent-lowercase-hex", "percent-keep-slash", "form-plus", "double-encoded"],
)
def test_known_value_is_replaced_when_url_encoded(encode: object) -> None:
    assert callable(encode)
    secret = "s3cr3t value/with+plus&amp=="
    redactor = Redactor([secret])
    text = f"GET /x?q={encode(secret)}&next=1"
    out = redactor.redact(text)
    assert out == "GET /x?q=<redacted>&next=1"


@pytest.mark.parametrize(
    "render",
    [
        lambda v: json.dumps({"note": v}),
        lambda v: json.dumps({"note": v}).replace("/", "\\/"),
        lambda v: repr(json.dumps({"note": v})),
        lambda v: json.dumps({"body": json.dumps({"note": v})}),
        repr,
    ],
    ids=["json", "json-escaped-slash", "json-in-repr", "json-in-json", "repr"],
)
def test_known_value_is_replaced_when_json_or_repr_escaped(render: object) -> None:
    assert callable(render)
    secret = "pa\"ss\\word/with-quote's"
    out = Redactor([secret]).redact(render(secret))
    assert "word" not in out and "quote" not in out
    assert MARK in out


def test_known_values_shorter_than_eight_characters_are_ignored() -> None:
    redactor = Redactor(["short12", "", None, "   padded   "])
    assert redactor.redact("short12 and short123") == "short12 and short123"
    assert redactor.known_count == 0


def test_token_file_contents_match_without_their_trailing_newline() -> None:
    redactor = Redactor()
    redactor.add_secret((IMDS_TOKEN + "\n").encode())
    assert redactor.redact(f"token={IMDS_TOKEN}!") == "token=<redacted>!"
    assert redactor.redact(f"v {IMDS_TOKEN} v") == "v <redacted> v"


def test_longest_known_value_wins_so_no_tail_of_a_longer_secret_survives() -> None:
    redactor = Redactor(["abcdefgh12", "abcdefgh12345678"])
    assert redactor.redact("x abcdefgh12345678 y abcdefgh12 z") == "x <redacted> y <redacted> z"


def test_known_access_key_id_keeps_its_prefix() -> None:
    assert Redactor([AKID]).redact(f"id={AKID}") == "id=ASIA<redacted>"


def test_secret_registered_later_applies_to_later_calls() -> None:
    redactor = Redactor()
    text = "opaque value zz9-plural-z-alpha"
    assert redactor.redact(text) == text
    redactor.add_secret("zz9-plural-z-alpha")
    assert redactor.redact(text) == "opaque value <redacted>"


def test_encoded_forms_include_url_and_json_spellings() -> None:
    forms = encoded_forms("a/b+c d\"e'f")
    assert {"a%2Fb%2Bc%20d%22e%27f", "a/b%2Bc%20d%22e%27f", "a%2Fb%2Bc+d%22e%27f", "a/b+c d\\\"e'f"} <= forms


def test_concurrent_add_secret_and_redact_never_produce_a_half_replaced_value() -> None:
    redactor = Redactor()
    secrets = [f"thread-secret-{i:04d}-value" for i in range(200)]
    text = " ".join(secrets[::20])
    errors: list[str] = []

    def writer() -> None:
        for secret in secrets:
            redactor.add_secret(secret)

    def reader() -> None:
        for _ in range(300):
            out = redactor.redact(text)
            errors.extend(word for word in out.split(" ") if word != MARK and word not in secrets)

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert redactor.redact(" ".join(secrets)) == " ".join([MARK] * len(secrets))


# --- idempotence -------------------------------------------------------------------------------


def _corpus() -> list[str]:
    return [
        _sending_record(),
        _params_record(),
        f"botocore.parsers DEBUG Response body:\n{STS_XML!r}",
        json.dumps(CREDS_DOC),
        repr(json.dumps({"body": json.dumps(CREDS_DOC)})),
        f"x-aws-ec2-metadata-token: {IMDS_TOKEN}",
        f"Authorization: {ECS_TOKEN}\nAccept: */*",
        f"Action=AssumeRoleWithWebIdentity&WebIdentityToken={JWT}&Version=2011-06-15",
        f"{AKID} {LONG_TERM_AKID} {JWT}",
        "http://u:p4ssw0rd!@proxy:3128",
        "botocore.auth DEBUG Signature:\n" + "ab" * 32,
    ]


@pytest.mark.parametrize(
    "known", [(), (SECRET, SESSION_TOKEN, JWT, AKID, RETURNED_TOKEN)], ids=["patterns-only", "known-values"]
)
def test_redaction_is_idempotent(known: tuple[str, ...]) -> None:
    redactor = Redactor(known)
    for text in _corpus():
        once = redactor.redact(text)
        assert redactor.redact(once) == once, text


@pytest.mark.parametrize("secret", ["dacted>tail-value", "head-value<reda", "<redacted>-inside", "redacted"])
def test_secrets_that_overlap_the_marker_keep_redaction_idempotent(secret: str) -> None:
    redactor = Redactor([secret, "abcdefghij"])
    for text in (f"abcdefghij{secret}", f"x {secret} y abcdefghij", f"<{secret}>"):
        once = redactor.redact(text)
        assert redactor.redact(once) == once


def test_every_rule_is_exercised_by_the_corpus() -> None:
    joined = "\n".join(_corpus())
    unused = [rule.name for rule in RULES if not rule.pattern.search(joined)]
    assert not unused


def test_patterns_alone_need_no_run_state() -> None:
    assert redact_patterns(f"'Token': '{RETURNED_TOKEN}'") == "'Token': '<redacted>'"


# --- redact_obj (JSON and YAML renderers) ------------------------------------------------------


def test_redact_obj_masks_values_under_secret_keys_and_redacts_other_strings() -> None:
    redactor = Redactor([SECRET])
    obj = {
        "identity": {"source": "env", "details": {"AccessKeyId": AKID, "SecretAccessKey": SECRET}},
        "env": {"AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_REGION": "us-west-2"},
        "http": {"headers": {"authorization": ECS_TOKEN, "server": "envoy"}},
        "notes": [f"used key {AKID}", f"secret {SECRET}", ("tuple", JWT)],
        "password": 123456,
        "token_present": True,
        "Token": None,
        "NextToken": "page-2-opaque",
        "status": 200,
    }
    out = redactor.redact_obj(obj)
    assert out == {
        "identity": {"source": "env", "details": {"AccessKeyId": "ASIA<redacted>", "SecretAccessKey": MARK}},
        "env": {"AWS_SESSION_TOKEN": MARK, "AWS_REGION": "us-west-2"},
        "http": {"headers": {"authorization": MARK, "server": "envoy"}},
        "notes": ["used key ASIA<redacted>", "secret <redacted>", ("tuple", MARK)],
        "password": MARK,
        "token_present": True,
        "Token": None,
        "NextToken": MARK,
        "status": 200,
    }
    assert obj["env"]["AWS_SESSION_TOKEN"] == SESSION_TOKEN  # type: ignore[index]  # input untouched


def test_redact_obj_masks_whole_containers_under_a_secret_key_keeping_their_shape() -> None:
    out = Redactor().redact_obj({"WebIdentityToken": {"value": JWT, "lines": ["a", "b"]}})
    assert out == {"WebIdentityToken": {"value": MARK, "lines": [MARK, MARK]}}


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("SecretAccessKey", True),
        ("x-amz-security-token", True),
        ("X-Aws-Ec2-Metadata-Token", True),
        ("web_identity_token", True),
        ("client_secret", True),
        ("Proxy-Authorization", True),
        ("x-aws-ec2-metadata-token-ttl-seconds", False),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", False),
        ("token_present", False),
        ("RoleArn", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redaction_stays_idempotent_on_random_splices_of_real_lines() -> None:
    """Seeded fuzz: fragments of the corpus glued with quotes, backslashes and markers."""
    rng = random.Random(20261125)
    pieces = [t[i : i + rng.randint(1, 40)] for t in _corpus() for i in range(0, len(t), 7)]
    pieces += [*"'\"\\<>=:&\n ,;/b", MARK, "ASIA", "Token", "Signature", "Authorization: ", "'Token': '"]
    pieces += [SECRET, SESSION_TOKEN, AKID, "http://u:", "@h", "dacted>tailvalue", "headvalue<reda"]
    known = Redactor((SECRET, SESSION_TOKEN, JWT, AKID, "dacted>tailvalue", "headvalue<reda"))
    for redactor in (Redactor(), known):
        for _ in range(1500):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
            once = redactor.redact(text)
            assert redactor.redact(once) == once, text
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        assert_no_secrets(known.redact(text), SECRET, SESSION_TOKEN, JWT)


@pytest.mark.parametrize(
    "text",
    ["eyJaaaaaaaa." * 40_000, "http://" * 60_000, '"Token": "' * 40_000, "a." * 200_000, '\\"' * 100_000],
    ids=["dotted-jwt-lookalikes", "schemes", "open-quoted-fields", "dotted-run", "escaped-quotes"],
)
def test_redaction_stays_fast_on_pathological_input(text: str) -> None:
    started = time.perf_counter()
    Redactor(["some-known-secret-1"]).redact(text)
    assert time.perf_counter() - started < 2.0


def test_header_line_value_with_a_quote_is_hidden_to_the_end_of_the_line() -> None:
    out = Redactor().redact('Authorization: Basic "quoted" tail-secret-part\nAccept: */*')
    assert out == "Authorization: <redacted>\nAccept: */*"


def test_a_secret_header_echoed_as_a_json_list_is_redacted():
    from egress_doctor.redact import redact_patterns

    text = '{"X-Amz-Security-Token": ["IQoJb3JpZ2luX2VjEJrPLANTEDtokenvalue"]}'
    out = redact_patterns(text)
    assert "PLANTEDtokenvalue" not in out
    assert out.startswith('{"X-Amz-Security-Token": ["')


def test_a_fresh_redactor_knows_what_was_known_and_learns_alone():
    from egress_doctor.redact import Redactor

    base = Redactor(["StartupSecretValue-0001"])
    run = base.fresh()
    run.add_secret("LearnedDuringTheRun-0002")
    assert "StartupSecretValue-0001" not in run.redact("x StartupSecretValue-0001 y")
    assert "LearnedDuringTheRun-0002" not in run.redact("LearnedDuringTheRun-0002")
    assert "LearnedDuringTheRun-0002" in base.redact("LearnedDuringTheRun-0002"), "the base must not grow"
