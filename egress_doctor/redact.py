"""The one redactor: every output path (table, JSON, YAML, `-v` transcript, logs, HTTP) goes through it.

Two layers, applied to whole texts (a multi-line log record is one text):

* **Known values**: exact strings seen at run time (the secret key from the environment, the token
  file's contents, credentials a probe received), registered with `Redactor.add_secret`. They are
  replaced wherever they appear, also URL-encoded, JSON-escaped, repr-escaped and XML-escaped,
  longest first. Values shorter than `MIN_SECRET_LEN` are ignored: too likely to hit ordinary text.
* **Patterns**: the shapes in which botocore, urllib3 and our own probes print secrets
  (docs/redaction.md lists each rule with the botocore record it was written for).

Everything secret becomes `<redacted>`; an access key id keeps its 4-letter prefix
(`ASIA<redacted>`: ASIA means temporary credentials, AKIA long-term). `redact` is pure and
idempotent. A `Redactor` is created per run by the caller and is safe to share between threads.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

MARK = "<redacted>"
MIN_SECRET_LEN = 8
_KEY_ID_PREFIXES = ("AKIA", "ASIA")

# Field names whose value is a secret wherever they are quoted keys ('Token': ..., "Token": ...).
# Matched case-insensitively and whole (the closing quote is part of the match).
_QUOTED_FIELDS = (
    "authorization|proxy-authorization|x-amz-security-token|x-aws-ec2-metadata-token|x-amz-signature"
    "|secretaccesskey|sessiontoken|token|accesskeyid|webidentitytoken|securitytoken"
    "|secret_key|secret_access_key|aws_secret_access_key|session_token|aws_session_token"
    "|security_token|aws_security_token|access_key|access_key_id|aws_access_key_id"
    "|aws_container_authorization_token|password|passwd|client_secret"
)
# Names whose unquoted `name=value` / `name: value` form carries a secret: form bodies, query
# strings, env dumps, `Signature:\n<hex>` (botocore.auth).
_ASSIGNED_FIELDS = (
    "webidentitytoken|x-amz-security-token|x-amz-signature|signature|secretaccesskey|sessiontoken"
    "|token|accesskeyid|password|aws_secret_access_key|aws_session_token|aws_security_token"
    "|aws_access_key_id|aws_container_authorization_token"
)
# HTTP headers whose whole value is a secret, as `Name: value` lines (CanonicalRequest included).
_SECRET_HEADERS = (
    "authorization|proxy-authorization|x-amz-security-token|x-aws-ec2-metadata-token|x-amz-signature"
)

# Normalised (lower case, no '-', '_' or spaces) key names that hold secrets, for `redact_obj`.
_SECRET_KEYS = frozenset(
    {
        "authorization", "proxyauthorization", "xamzsecuritytoken", "xawsec2metadatatoken",
        "xamzsignature", "signature", "secretaccesskey", "sessiontoken", "securitytoken", "token",
        "webidentitytoken", "accesskeyid", "accesskey", "awsaccesskeyid", "secretkey", "password",
        "passwd", "clientsecret", "awssecretaccesskey", "awssessiontoken", "awssecuritytoken",
        "awscontainerauthorizationtoken", "cookie", "setcookie", "privatekey", "apikey",
    }
)  # fmt: skip
_SECRET_KEY_SUFFIXES = ("token", "secret", "password", "secretkey", "secretaccesskey")
_KEY_ID_KEYS = frozenset({"accesskeyid", "accesskey", "awsaccesskeyid"})

# A quoted value: it opens with an optionally backslash-escaped quote (escaped JSON inside a
# repr) and ends at the same quote token, at the end of the line, or at the end of the text (a
# truncated record). Backslash pairs inside are part of the value (`\/`, `\"` in plain JSON),
# and so is a lone backslash at the end of a line (a record cut after an escape).
_QUOTED_VALUE = r"(?P<open>\\*(?P<q>['\"]))(?P<val>(?:\\[^\n]?|[^\\\n])*?)(?=(?P=open)|\n|\Z)"

_QUOTED_FIELD_RE = re.compile(
    # A value may sit in a list (`"X-Amz-Security-Token": ["…"]`, as an echoing proxy prints headers).
    r"(?P<head>(?P<kq>\\*['\"])(?P<key>(?i:" + _QUOTED_FIELDS + r"))(?P=kq)\s*[:=]\s*(?:\[\s*)?b?)" + _QUOTED_VALUE
)
_XML_FIELD_RE = re.compile(
    r"<(?P<key>SecretAccessKey|SessionToken|Token|AccessKeyId|WebIdentityToken|SecurityToken)>"
    r"(?P<val>[^<]*)</(?P=key)>"
)
# At the start of a line the value runs to the end of the line; after a quote or a space
# (`-H 'Authorization: …'`) it stops at a quote.
_HEADER_LINE_RE = re.compile(
    r"(?P<head>^[ \t]*(?i:" + _SECRET_HEADERS + r")[ \t]*:[ \t]*)(?P<val>[^\r\n]+)"
    r"|(?P<head2>(?<=[\s'\"])(?i:" + _SECRET_HEADERS + r")[ \t]*:[ \t]*)(?P<val2>[^\r\n'\"]+)",
    re.MULTILINE,
)
# The value is either quoted (up to the same quote, or the end of the line) or bare (up to a
# delimiter; possessive, and not followed by '<', so `ASIA<redacted>` is never re-matched).
_ASSIGNMENT_RE = re.compile(
    r"(?<![\w-])(?P<key>(?i:" + _ASSIGNED_FIELDS + r"))(?P<sep>[ \t]*[:=][ \t]*\n?[ \t]*)"
    r"(?:(?P<q>['\"])(?P<qval>(?:(?!(?P=q))[^\n])*+)|(?P<val>[^\s'\"&,;<>]++)(?!<))"
)
# The scheme is bounded and the parts possessive: an unbounded scheme makes this quadratic on
# long dotted tokens.
_URL_USERINFO_RE = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,15}+://[^/\s:@'\"]++:)(?P<val>[^@\s/'\"]++)(?=@)"
)
_JWT_RE = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_ACCESS_KEY_ID_RE = re.compile(r"\b(?P<prefix>AKIA|ASIA)[A-Z0-9]{16}\b")
_PERCENT_ESCAPE_RE = re.compile(r"%[0-9A-Fa-f]{2}")


def mask(value: str, *, key_id: bool = False) -> str:
    """The replacement for one secret value: `<redacted>`, or `ASIA<redacted>` for a key id."""
    if not value:
        return value
    if key_id and value[:4] in _KEY_ID_PREFIXES:
        return value[:4] + MARK
    return MARK


def _normalise_key(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).lower()


def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (SecretAccessKey, Token, Authorization, password...)."""
    norm = _normalise_key(name)
    return norm in _SECRET_KEYS or norm.endswith(_SECRET_KEY_SUFFIXES)


def _is_key_id_key(name: str) -> bool:
    return _normalise_key(name) in _KEY_ID_KEYS


def _sub_quoted_field(m: re.Match[str]) -> str:
    key_id = _is_key_id_key(m["key"])
    return m["head"] + m["open"] + mask(m["val"], key_id=key_id)


def _sub_xml_field(m: re.Match[str]) -> str:
    key = m["key"]
    return f"<{key}>{mask(m['val'], key_id=key == 'AccessKeyId')}</{key}>"


def _sub_header_line(m: re.Match[str]) -> str:
    return (m["head"] if m["head"] is not None else m["head2"]) + MARK


def _sub_assignment(m: re.Match[str]) -> str:
    key_id = _is_key_id_key(m["key"])
    if m["q"] is not None:
        return m["key"] + m["sep"] + m["q"] + mask(m["qval"], key_id=key_id)
    return m["key"] + m["sep"] + mask(m["val"], key_id=key_id)


def _sub_url_userinfo(m: re.Match[str]) -> str:
    return m["head"] + MARK


def _sub_jwt(m: re.Match[str]) -> str:
    return MARK


def _sub_access_key_id(m: re.Match[str]) -> str:
    return m["prefix"] + MARK


@dataclass(frozen=True)
class Rule:
    """One pattern rule: a name for the docs and tests, a regex, and how a match is rewritten."""

    name: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]


# Applied in this order: structured forms first (they know where a value ends), then the
# free-standing shapes (JWTs, key ids) anywhere that is left.
RULES: tuple[Rule, ...] = (
    Rule("quoted-field", _QUOTED_FIELD_RE, _sub_quoted_field),
    Rule("xml-field", _XML_FIELD_RE, _sub_xml_field),
    Rule("header-line", _HEADER_LINE_RE, _sub_header_line),
    Rule("assignment", _ASSIGNMENT_RE, _sub_assignment),
    Rule("url-userinfo", _URL_USERINFO_RE, _sub_url_userinfo),
    Rule("jwt", _JWT_RE, _sub_jwt),
    Rule("access-key-id", _ACCESS_KEY_ID_RE, _sub_access_key_id),
)


def redact_patterns(text: str) -> str:
    """Apply the pattern rules only (no known values): for callers without a run's `Redactor`."""
    for rule in RULES:
        text = rule.pattern.sub(rule.replace, text)
    return text


def encoded_forms(value: str) -> set[str]:
    """The ways a secret can be spelled in output: raw, URL-, JSON-, repr- and XML-escaped."""
    json_escaped = json.dumps(value)[1:-1]
    forms = {
        value,
        quote(value, safe=""),
        quote(value),  # keeps '/', as in paths and botocore's canonical query strings
        quote_plus(value),
        quote(quote(value, safe=""), safe=""),  # double-encoded (a URL inside a query string)
        json_escaped,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json_escaped.replace("/", "\\/"),  # some JSON writers escape '/'
        json.dumps(json_escaped)[1:-1],  # JSON inside a JSON string
        repr(value)[1:-1],
        repr(json_escaped)[1:-1],  # escaped JSON inside a Python repr
        html.escape(value, quote=False),
        html.escape(value, quote=True),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def _literal_regex(form: str) -> str:
    """`re.escape(form)`, except that %XX escapes match in either case (%2F and %2f)."""
    parts: list[str] = []
    last = 0
    for m in _PERCENT_ESCAPE_RE.finditer(form):
        parts.append(re.escape(form[last : m.start()]))
        parts.append("%(?i:" + m.group()[1:] + ")")
        last = m.end()
    parts.append(re.escape(form[last:]))
    return "".join(parts)


def _compile_known(forms: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(forms), key=lambda f: (-len(f), f))  # longest first: it wins at a position
    if not ordered:
        return None
    return re.compile("|".join(_literal_regex(f) for f in ordered))


def _sub_known(m: re.Match[str]) -> str:
    text = m.group()
    return mask(text, key_id=bool(_ACCESS_KEY_ID_RE.fullmatch(text)))


def _acceptable_secret(value: str) -> bool:
    # A value that contains the marker or sits inside it would make redaction non-idempotent.
    return len(value) >= MIN_SECRET_LEN and MARK not in value and value not in MARK


class Redactor:
    """Removes secrets from text and from JSON-like objects. One per run; thread-safe."""

    # Known values are re-applied until none is left; more rounds would mean a pathological
    # secret that keeps re-forming around markers (then the output is still safe, just stable).
    _MAX_ROUNDS = 4

    def __init__(self, secrets: Iterable[str | bytes | None] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: frozenset[str] = frozenset()
        # The pattern of the known forms, compiled when first needed after a change: a run learns
        # several secrets (keys, a token, what STS hands back) before it prints anything, and a
        # pattern of long literals costs tens of milliseconds to compile.
        self._known: re.Pattern[str] | None = None
        self._stale = False
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str | bytes | None) -> None:
        """Register a value seen at run time; it is replaced everywhere from now on.

        Surrounding whitespace is ignored (token files end with a newline); None, and values
        shorter than 8 characters, are ignored.
        """
        if value is None:
            return
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        if not _acceptable_secret(text):
            return
        with self._lock:
            forms = self._forms | encoded_forms(text)
            if forms != self._forms:
                self._forms = frozenset(forms)
                self._stale = True

    def _pattern(self) -> re.Pattern[str] | None:
        """The pattern of every known form, compiled now if a secret was added since."""
        with self._lock:
            return self._pattern_locked()

    def _pattern_locked(self) -> re.Pattern[str] | None:
        if self._stale:
            self._known = _compile_known(self._forms)
            self._stale = False
        return self._known

    def fresh(self) -> Redactor:
        """A new redactor that knows what this one knows now, and learns on its own from here.

        For long-lived processes (`serve`): each run gets one, so credentials a run learns do not
        pile up in the process's redactor, while secrets known at start stay known."""
        copy = Redactor()
        with self._lock:
            copy._forms, copy._known = self._forms, self._pattern_locked()
        return copy

    @property
    def known_count(self) -> int:
        """How many spellings of known values are being replaced (for `-v` diagnostics)."""
        return len(self._forms)

    def redact(self, text: str) -> str:
        """Return `text` with known values and secret-looking patterns replaced. Pure, idempotent."""
        known = self._pattern()  # one consistent pattern: a concurrent add_secret cannot tear it
        out = redact_patterns(known.sub(_sub_known, text) if known else text)
        rounds = 1
        while known is not None and rounds < self._MAX_ROUNDS and known.search(out):
            out = redact_patterns(known.sub(_sub_known, out))
            rounds += 1
        return out

    def redact_obj(self, obj: Any) -> Any:
        """A redacted copy of a JSON-like object (dicts, lists, tuples, strings; others as is).

        Strings are redacted as text; values under secret-looking keys are masked whole (an
        access key id keeps its prefix). None and booleans stay: "no token" is a useful fact.
        """
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, bytes):
            return self.redact(obj.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        if isinstance(obj, Mapping):
            return {self._redact_key(k): self._redact_item(k, v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.redact_obj(v) for v in obj)
        return obj

    def _redact_key(self, key: Any) -> Any:
        return self.redact(key) if isinstance(key, str) else key

    def _redact_item(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and is_secret_key(key):
            return _mask_all(value, key_id=_is_key_id_key(key))
        return self.redact_obj(value)


def _mask_all(value: Any, *, key_id: bool) -> Any:
    """Mask every scalar under a secret key, keeping None, booleans and the container shape."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return {k: _mask_all(v, key_id=key_id) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_all(v, key_id=key_id) for v in value)
    if isinstance(value, str):
        return mask(value, key_id=key_id) if value else value
    return MARK
