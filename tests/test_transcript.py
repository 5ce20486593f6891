"""The DEBUG transcript capture, driven by real boto3 clients answered in-process.

A `before-send` handler answers every request with an `AWSResponse`, so botocore signs, logs,
parses and logs again exactly as in production, and no packet is sent (conftest's network
guard would fail any non-loopback lookup or connect).
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from egress_doctor.aws.transcript import TranscriptCapture
from egress_doctor.redact import Redactor

AKID = "ASIAPLANTEDACCESS001"
SECRET = "pLaNtEd/SecretAccessKey+0123456789abcdef"
SESSION_TOKEN = "FwoGZXIvYXdzEPLANTED/session+token//value=="
RETURNED_AKID = "ASIARETURNEDPLANT001"
RETURNED_SECRET = "rEtUrNeD/planted+Secret0123456789abcdefgh"
RETURNED_TOKEN = "IQoJb3JpZ2luX2VjEPLANTED/returned+token=="
STS_URL = "https://sts.us-west-2.amazonaws.com/"
ROLE_ARN = "arn:aws:iam::111122223333:role/orders-api"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


JWT = ".".join(
    [
        _b64url(json.dumps({"alg": "RS256", "kid": "planted"}).encode()),
        _b64url(
            json.dumps({"sub": "system:serviceaccount:orders:api", "aud": ["sts.amazonaws.com"]}).encode()
        ),
        _b64url(b"planted-signature" * 8),
    ]
)
PLANTED = (SECRET, SESSION_TOKEN, JWT, RETURNED_SECRET, RETURNED_TOKEN)
KEY_IDS = (AKID, RETURNED_AKID)

CALLER_IDENTITY_XML = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    "<GetCallerIdentityResult><Arn>arn:aws:sts::111122223333:assumed-role/orders-api/s1</Arn>"
    "<UserId>AROAFAKEROLEID000000:s1</UserId><Account>111122223333</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>7f1c-planted</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
)
WEB_IDENTITY_XML = (
    '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
    "  <AssumeRoleWithWebIdentityResult>\n    <Credentials>\n"
    f"      <AccessKeyId>{RETURNED_AKID}</AccessKeyId>\n"
    f"      <SecretAccessKey>{RETURNED_SECRET}</SecretAccessKey>\n"
    f"      <SessionToken>{RETURNED_TOKEN}</SessionToken>\n"
    "      <Expiration>2030-01-01T00:00:00Z</Expiration>\n    </Credentials>\n"
    f"    <AssumedRoleUser><Arn>{ROLE_ARN}/s1</Arn></AssumedRoleUser>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>8e2d-planted</RequestId></ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n"
)


class _Body:
    """The `raw` of an AWSResponse: botocore only calls `stream()`."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class StsStub:
    """Answers STS requests in-process from `before-send`; optionally waits for N in flight."""

    def __init__(self, in_flight: int = 1) -> None:
        self.urls: list[str] = []
        self._barrier = threading.Barrier(in_flight) if in_flight > 1 else None

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.urls.append(request.url)
        if self._barrier is not None:
            self._barrier.wait(timeout=10)
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        xml = WEB_IDENTITY_XML if "Action=AssumeRoleWithWebIdentity" in body else CALLER_IDENTITY_XML
        headers = {"x-amzn-RequestId": "planted", "Content-Type": "text/xml"}
        return AWSResponse(request.url, 200, headers, _Body(xml.encode()))


@pytest.fixture(autouse=True)
def hermetic_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No AWS config or credentials from the machine, and no IMDS (conftest guards the sockets)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        aws_session_token=SESSION_TOKEN,
        region_name="us-west-2",
    )


def _sts(stub: StsStub, *, unsigned: bool = False) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    if unsigned:
        config = config.merge(Config(signature_version=UNSIGNED))
    client = _session().client("sts", config=config)
    client.meta.events.register("before-send", stub)
    return client


def _assume_role_with_web_identity(client: Any) -> Any:
    return client.assume_role_with_web_identity(RoleArn=ROLE_ARN, RoleSessionName="s1", WebIdentityToken=JWT)


def assert_no_planted_secrets(records: list[str]) -> None:
    text = "\n".join(records)
    for secret in PLANTED:
        for form in {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}:
            assert form not in text, f"planted secret {form!r} is in the transcript:\n{text}"
    for key_id in KEY_IDS:
        assert key_id not in text, f"full access key id {key_id} is in the transcript"
    assert not re.search(r"Signature=[0-9a-f]{64}|Signature:\s*[0-9a-f]{64}", text), (
        "a SigV4 signature leaked"
    )


def _redactor(register_known: bool) -> Redactor:
    redactor = Redactor()
    if register_known:
        for value in (*PLANTED, *KEY_IDS):
            redactor.add_secret(value)
    return redactor


# --- real botocore runs --------------------------------------------------------------------------


@pytest.mark.parametrize("register_known", [False, True], ids=["patterns-only", "known-values"])
def test_get_caller_identity_transcript_shows_the_request_and_no_planted_secret(register_known: bool) -> None:
    client = _sts(StsStub())
    with TranscriptCapture(_redactor(register_known)) as capture, capture.check("sts.get-caller-identity"):
        assert client.get_caller_identity()["Account"] == "111122223333"
    records = capture.records("sts.get-caller-identity")
    text = "\n".join(records)
    assert STS_URL in text
    assert any(
        r.startswith("botocore.endpoint DEBUG Sending http request: <AWSPreparedRequest") for r in records
    )
    assert "'X-Amz-Security-Token': b'<redacted>'" in text
    assert "Credential=" not in text  # the whole Authorization value is gone, not just the signature
    assert "<Account>111122223333</Account>" in text
    assert_no_planted_secrets(records)


@pytest.mark.parametrize("register_known", [False, True], ids=["patterns-only", "known-values"])
def test_assume_role_with_web_identity_transcript_hides_the_jwt_and_the_returned_credentials(
    register_known: bool,
) -> None:
    client = _sts(StsStub(), unsigned=True)
    with (
        TranscriptCapture(_redactor(register_known)) as capture,
        capture.check("sts.assume-role-web-identity"),
    ):
        assert _assume_role_with_web_identity(client)["Credentials"]["SecretAccessKey"] == RETURNED_SECRET
    records = capture.records("sts.assume-role-web-identity")
    text = "\n".join(records)
    assert "OperationModel(name=AssumeRoleWithWebIdentity)" in text
    assert "'WebIdentityToken': '<redacted>'" in text
    assert "<SecretAccessKey><redacted></SecretAccessKey>" in text
    assert "<AccessKeyId>ASIA<redacted></AccessKeyId>" in text
    assert "<Expiration>2030-01-01T00:00:00Z</Expiration>" in text
    assert f"<Arn>{ROLE_ARN}/s1</Arn>" in text
    assert_no_planted_secrets(records)


def test_multi_line_canonical_request_is_stored_as_one_record() -> None:
    client = _sts(StsStub())
    with TranscriptCapture(Redactor()) as capture, capture.check("sts"):
        client.get_caller_identity()
    (canonical,) = [
        r for r in capture.records("sts") if r.startswith("botocore.auth DEBUG CanonicalRequest:")
    ]
    assert canonical.startswith("botocore.auth DEBUG CanonicalRequest:\nPOST\n/\n")
    assert "\nhost:sts.us-west-2.amazonaws.com\n" in canonical
    assert "\nx-amz-security-token:<redacted>\n" in canonical


def test_two_concurrent_checks_in_two_threads_each_get_only_their_own_records() -> None:
    stub = StsStub(in_flight=2)  # both requests are in flight at once, or the test times out
    signed, unsigned = _sts(stub), _sts(stub, unsigned=True)
    errors: list[BaseException] = []

    def run(check_id: str, call: Callable[[], Any]) -> None:
        try:
            with capture.check(check_id):
                call()
        except BaseException as exc:  # surfaced below, with the thread's own traceback
            errors.append(exc)

    with TranscriptCapture(Redactor()) as capture:
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(run, "sts.get-caller-identity", signed.get_caller_identity),
            ),
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(run, "sts.assume-role-web-identity", lambda: _assume_role_with_web_identity(unsigned)),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    assert not errors, errors
    identity = "\n".join(capture.records("sts.get-caller-identity"))
    web_identity = "\n".join(capture.records("sts.assume-role-web-identity"))
    assert "OperationModel(name=GetCallerIdentity)" in identity
    assert "AssumeRoleWithWebIdentity" not in identity
    assert "OperationModel(name=AssumeRoleWithWebIdentity)" in web_identity
    assert "GetCallerIdentity" not in web_identity
    assert not any("OperationModel" in r for r in capture.run_records())
    assert_no_planted_secrets(
        capture.records("sts.get-caller-identity") + capture.records("sts.assume-role-web-identity")
    )
    assert set(capture.check_ids()) == {"sts.get-caller-identity", "sts.assume-role-web-identity"}


def test_exception_record_keeps_its_traceback_in_the_same_record_and_is_redacted() -> None:
    def failing_send(request: Any, **_: Any) -> None:
        raise ConnectionResetError(f"peer reset while sending token {SESSION_TOKEN}")

    client = _sts(StsStub())
    client.meta.events.register_first("before-send", failing_send)
    with (
        TranscriptCapture(_redactor(register_known=True)) as capture,
        capture.check("sts"),
        pytest.raises(ConnectionResetError),
    ):
        client.get_caller_identity()
    (record,) = [r for r in capture.records("sts") if "Exception received when sending HTTP request" in r]
    assert "Traceback (most recent call last):" in record
    assert "ConnectionResetError: peer reset while sending token <redacted>" in record
    assert_no_planted_secrets(capture.records("sts"))


# --- routing, bounds, and leaks --------------------------------------------------------------------


def test_record_from_a_thread_without_a_current_check_goes_to_the_run_level_buffer() -> None:
    with TranscriptCapture(Redactor()) as capture:
        with capture.check("imds.token"):
            logging.getLogger("botocore.utils").debug("inside the check")
        thread = threading.Thread(
            target=logging.getLogger("botocore.credentials").debug, args=("stray %s", "record")
        )
        thread.start()
        thread.join()
    assert capture.records("imds.token") == ["botocore.utils DEBUG inside the check"]
    assert capture.run_records() == ["botocore.credentials DEBUG stray record"]
    assert capture.records("never-ran") == []


def test_inner_check_wins_while_nested_and_outer_resumes_after() -> None:
    log = logging.getLogger("urllib3.connectionpool")
    with TranscriptCapture(Redactor()) as capture, capture.check("outer"):
        log.debug("one")
        with capture.check("inner"):
            log.debug("two")
        log.debug("three")
    assert capture.records("outer") == [
        "urllib3.connectionpool DEBUG one",
        "urllib3.connectionpool DEBUG three",
    ]
    assert capture.records("inner") == ["urllib3.connectionpool DEBUG two"]


def test_botocore_records_never_reach_root_handlers_preexisting_stream_handlers_or_stderr(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root_stream = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(root_stream)
    boto3.set_stream_logger("botocore", logging.DEBUG)  # what a user's debugging snippet would do
    try:
        with TranscriptCapture(Redactor()) as capture, capture.check("sts"):
            _assume_role_with_web_identity(_sts(StsStub(), unsigned=True))
    finally:
        logging.getLogger().removeHandler(root_stream)
        botocore_logger = logging.getLogger("botocore")
        for handler in list(botocore_logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                botocore_logger.removeHandler(handler)
        botocore_logger.setLevel(logging.NOTSET)
    assert capture.records("sts")
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("botocore", "boto3", "urllib3")]


def test_logger_levels_handlers_and_propagation_are_restored_after_capture() -> None:
    class Counting(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def emit(self, record: logging.LogRecord) -> None:
            self.count += 1

    botocore_logger, child = logging.getLogger("botocore"), logging.getLogger("botocore.endpoint")
    own, child_own = Counting(), Counting()
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in (botocore_logger, child)]
    botocore_logger.addHandler(own)
    botocore_logger.setLevel(logging.WARNING)
    child.addHandler(child_own)
    child.setLevel(logging.ERROR)
    child.propagate = False
    try:
        before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in (botocore_logger, child)]
        with TranscriptCapture(Redactor()) as capture, capture.check("c"):
            child.debug("during")
        after = [(lg.level, lg.propagate, list(lg.handlers)) for lg in (botocore_logger, child)]
        assert after == before
        assert capture.records("c") == ["botocore.endpoint DEBUG during"]
        assert own.count == 0 and child_own.count == 0
    finally:
        for logger, level, propagate, handlers in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def test_a_second_capture_cannot_take_the_loggers_while_one_is_active() -> None:
    with TranscriptCapture(Redactor()) as first:
        with pytest.raises(RuntimeError, match="already owns"):
            TranscriptCapture(Redactor()).__enter__()
        assert first.active
        with pytest.raises(RuntimeError, match="already active"):
            first.__enter__()
    assert not first.active


def test_records_beyond_the_per_check_cap_are_dropped_with_a_note() -> None:
    log = logging.getLogger("botocore.hooks")
    with TranscriptCapture(Redactor(), max_records=5) as capture, capture.check("busy"):
        for i in range(8):
            log.debug("event %d", i)
    records = capture.records("busy")
    assert records[:5] == [f"botocore.hooks DEBUG event {i}" for i in range(5)]
    assert records[5] == "… [transcript truncated: 3 more records not kept (limit 5 per check)]"
    assert len(records) == 6


def test_long_record_is_redacted_whole_before_it_is_clipped_so_no_secret_prefix_survives() -> None:
    redactor = Redactor([SECRET])
    message = "x" * 90 + SECRET + "y" * 400  # the secret straddles the 100-character cut
    with TranscriptCapture(redactor, max_chars=100) as capture, capture.check("long"):
        logging.getLogger("botocore.parsers").debug(message)
    (record,) = capture.records("long")
    assert SECRET[:5] not in record
    assert record.endswith(
        f"… [record truncated: {len('botocore.parsers DEBUG ') + 90 + 10 + 400} chars, first 100 kept]"
    )


def test_record_that_cannot_be_formatted_is_noted_without_printing_its_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TranscriptCapture(Redactor()) as capture, capture.check("bad"):
        logging.getLogger("botocore.endpoint").debug("%s and %s", SESSION_TOKEN)  # one argument short
    assert capture.records("bad") == ["botocore.endpoint DEBUG [record could not be formatted: TypeError]"]
    assert capsys.readouterr().err == ""


def test_secret_registered_after_a_record_was_stored_is_hidden_when_records_are_read() -> None:
    redactor = Redactor()
    with TranscriptCapture(redactor) as capture, capture.check("imds.token"):
        logging.getLogger("urllib3.connectionpool").debug("token body opaque-imds-token-0001")
    redactor.add_secret("opaque-imds-token-0001")
    assert capture.records("imds.token") == ["urllib3.connectionpool DEBUG token body <redacted>"]


def test_record_is_dropped_with_a_note_when_redaction_itself_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class BrokenRedactor(Redactor):
        def redact(self, text: str) -> str:
            if "raw" in text:
                raise RecursionError("pathological record")
            return text

    with TranscriptCapture(BrokenRedactor()) as capture, capture.check("x"):
        logging.getLogger("botocore.parsers").debug("raw body %s", SESSION_TOKEN)
    assert capture.records("x") == [
        "botocore.parsers DEBUG [record dropped: redaction failed: RecursionError]"
    ]
    assert capsys.readouterr().err == ""
