"""Istio's access log, as the `istio-proxy` container writes it: one line in, one record out. Pure.

    parse_line('[2026-12-02T14:01:53.177Z] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" '
               'BlackHoleCluster - 52.94.0.10:443 10.1.2.3:45662 sqs.us-east-1.amazonaws.com -')
    # AccessEntry(cluster="BlackHoleCluster", sni="sqs.us-east-1.amazonaws.com", local="52.94.0.10:443", ...)

Both encodings of Istio's default format (pilot/pkg/model/telemetry_logging.go):

* TEXT (`EnvoyTextLogFormat`, the default): `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%
  %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% … "%REQ(:AUTHORITY)%"
  "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%
  %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%`. The line is read from both
  ends: its head up to the response flags, its tail from the authority on; the middle (user agent,
  request id, forwarded-for) is skipped, so quotes in a user agent do not matter, and the formats of
  Istio before 1.9 (no response code details) parse too.
* JSON (`accessLogEncoding: JSON`, or the Telemetry API's `envoy` provider with JSON): the keys of
  `EnvoyJSONLogFormatIstio`; Envoy writes empty values as null and numbers as numbers.

Everything else the container writes is told apart: Envoy's own messages (`[2026-12-02 14:01:53.048][8249]
[warning][misc] …`) and pilot-agent's (`2026-12-02T14:01:53.048Z\tinfo\t…`, or JSON with `level`
and `msg`) are proxy lines, not problems; anything else is unparsed, and its preview (`preview`)
masks whatever could be a credential. The request path is never kept: it may carry a presigned
URL's signature or a token in its query.
"""

from __future__ import annotations

import enum
import json
import re
from typing import NamedTuple

MAX_LINE = 64 * 1024  # bytes; a longer line is skipped as too long (a log is not a data dump)
PREVIEW_CHARS = 160


class LineKind(enum.Enum):
    ACCESS = "access"  # an access-log record (parsed)
    PROXY = "proxy"  # Envoy's or pilot-agent's own message
    EMPTY = "empty"
    UNPARSED = "unparsed"  # garbage, a truncated record, another access-log format


class AccessEntry(NamedTuple):
    """The fields of one access-log record that say where a connection went and what became of it.

    Empty strings stand for Envoy's `-` (text) and null (JSON). A tuple: one is made per line.
    """

    start: str  # %START_TIME%, as logged (ISO 8601, UTC, milliseconds in Istio's format)
    method: str  # "" for TCP
    protocol: str  # HTTP/1.1, HTTP/2; "" for TCP
    code: int  # %RESPONSE_CODE%; 0 for TCP
    flags: str  # %RESPONSE_FLAGS%: UH, NR, DPE, …
    details: str  # %RESPONSE_CODE_DETAILS%: direct_response, route_not_found, …
    authority: str  # the Host header (HTTP)
    upstream_host: str  # the endpoint Envoy dialled, ip:port
    cluster: str  # BlackHoleCluster, PassthroughCluster, outbound|443||host
    local: str  # %DOWNSTREAM_LOCAL_ADDRESS%: the destination the app dialled (the original destination)
    sni: str  # %REQUESTED_SERVER_NAME%
    route: str  # %ROUTE_NAME%: block_all, allow_any, default, …
    termination: str = ""  # %CONNECTION_TERMINATION_DETAILS%: rbac_access_denied_matched_policy[…]


_ENVOY_MESSAGE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\]\[\d+\]\[\w+\]")
_AGENT_MESSAGE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\t\w+\t")
_JSON_KEYS = ("start_time", "upstream_cluster", "downstream_local_address")


def _dash(value: str | None) -> str:
    return "" if value is None or value == "-" else value


def parse_line(line: str) -> AccessEntry | LineKind:
    """One line of the container log (without its newline): a record, or what else it is."""
    stripped = line.strip()
    if not stripped:
        return LineKind.EMPTY
    if stripped[0] == "{":
        return _parse_json(stripped)
    if stripped[0] == "[":
        entry = _parse_text(stripped)
        if entry is not None:
            return entry
        if _ENVOY_MESSAGE.match(stripped):
            return LineKind.PROXY
        return LineKind.UNPARSED
    if _AGENT_MESSAGE.match(stripped):
        return LineKind.PROXY
    return LineKind.UNPARSED


def _parse_text(line: str) -> AccessEntry | None:
    """Split on the quotes: `[start] "method path protocol" code flags details … "authority"
    "upstream host" cluster ula dla dra sni route`. Read from both ends; None unless the line has
    that shape (the tail's six tokens, an address where the destination goes, a numeric code)."""
    parts = line.split('"')
    if len(parts) < 15 or len(parts) % 2 == 0 or not parts[0].endswith("] ") or parts[-3] != " ":
        return None
    tail = parts[-1].split()
    head = parts[2].split()
    request = parts[1].split()
    if len(tail) != 6 or len(head) < 2 or not head[0].isdigit() or len(head[0]) > 3 or len(request) < 2:
        return None
    cluster, _, local, _, sni, route = tail
    if local != "-" and not local.rpartition(":")[2].isdigit():  # the original destination, ip:port
        return None
    d = _dash
    return AccessEntry(parts[0][1:-2], d(request[0]), d(request[-1]), int(head[0]), d(head[1]),
                       d(head[2]) if len(head) > 2 else "", d(parts[-4]), d(parts[-2]), d(cluster), d(local),
                       d(sni), d(route), d(head[3]) if len(head) > 3 else "")


def _parse_json(text: str) -> AccessEntry | LineKind:
    try:
        record = json.loads(text)
    except ValueError:
        return LineKind.UNPARSED
    if not isinstance(record, dict):
        return LineKind.UNPARSED
    if not all(key in record for key in _JSON_KEYS):
        # pilot-agent with --log_as_json: {"level":"info","time":"…","scope":"…","msg":"…"}
        return LineKind.PROXY if "level" in record and "msg" in record else LineKind.UNPARSED

    def text(key: str) -> str:
        value = record.get(key)
        return _dash(value) if isinstance(value, str) else ("" if value is None else str(value))

    code = record.get("response_code")
    try:
        number = int(code) if code is not None else 0
    except (TypeError, ValueError):
        return LineKind.UNPARSED
    return AccessEntry(
        start=text("start_time"), method=text("method"), protocol=text("protocol"), code=number,
        flags=text("response_flags"), details=text("response_code_details"), authority=text("authority"),
        upstream_host=text("upstream_host"), cluster=text("upstream_cluster"),
        local=text("downstream_local_address"), sni=text("requested_server_name"), route=text("route_name"),
        termination=text("connection_termination_details"),
    )


# ---- previews of what could not be parsed --------------------------------------------------------

# Words after which the next token is a credential, in any case: `Bearer …`, `Basic …`, `token=…`.
_AFTER_KEYWORD = re.compile(
    r"(?i)(?P<head>\b(?:bearer|basic|digest|token|secret|password|passwd|signature|credential|authorization|"
    r"api[-_]?key|x-amz-security-token|x-amz-signature|session[-_]?token)\b[\"']?\s*[:=]?\s*[\"']?)"
    r"(?P<value>[^\s\"',;&]+)"
)
# Long runs of token characters (keys, JWTs, hex, base64): nothing in an access-log field needs them.
_TOKENISH = re.compile(r"[A-Za-z0-9+/_=.~-]{20,}")
_DIGITS_AND_LETTERS = re.compile(r"(?=.*\d)(?=.*[A-Za-z])")


def _mask_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if _DIGITS_AND_LETTERS.match(token) and not _looks_like_a_name(token):
        return "<masked>"
    return token


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z?")


def _looks_like_a_name(token: str) -> bool:
    """Host names, request ids and timestamps stay readable: short lower-case parts between dots or
    dashes (a JWT's parts are long and mixed-case)."""
    if _TIMESTAMP.fullmatch(token):
        return True
    parts = re.split(r"[.\-:]", token)
    return token == token.lower() and len(parts) > 2 and all(len(p) <= 20 for p in parts)


def preview(line: str, limit: int = PREVIEW_CHARS) -> str:
    """The start of a line that could not be parsed, with every credential-looking value masked.

    A custom format may log headers (`%REQ(AUTHORIZATION)%`) or query strings; this never shows
    the value after a credential keyword, nor any long token of letters and digits. The caller
    still sends the result through the redactor.
    """
    text = line[: limit * 2].replace("\t", " ")
    text = _AFTER_KEYWORD.sub(lambda m: m["head"] + "<masked>", text)
    text = _TOKENISH.sub(_mask_token, text)
    return text[:limit] + ("…" if len(line) > limit else "")
