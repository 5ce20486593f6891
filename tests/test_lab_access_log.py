"""The lab's sidecar logs access the way istiod configures it: a file access log on /dev/stdout (the
container log) in Istio's default text or JSON format, on every HCM and tcp_proxy; a Telemetry turns
it on and off; the pod's view of that log puts back the addresses iptables would have captured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from egress_doctor.istio.objects import MeshConfig, Mode
from egress_doctor.istio.parse import load_files
from egress_doctor.istio.scope import Proxy, proxy_scope
from egress_doctor.lab.pod_log import pod_addresses, pod_log
from egress_doctor.lab.telemetry import access_log_after
from egress_doctor.lab.translate import LabPorts, translate
from egress_doctor.lab.upstreams import Endpoint, Upstreams

SCENARIOS = Path(__file__).parent.parent / "egress_doctor" / "lab" / "scenarios"
PORTS = LabPorts(http=20080, tls=20443, catch_all=20001, admin=20000)
UPSTREAMS = Upstreams(aws=Endpoint("127.0.0.1", 21443), imds=Endpoint("127.0.0.1", 21080))
ISTIO_TEXT_FORMAT = (  # pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat, verbatim
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% "
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" "
    "%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% "
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)


def filters(access_log: str | None) -> list[dict[str, Any]]:
    objects, _ = load_files([SCENARIOS / "correct"], "app")
    view = proxy_scope(objects, Proxy("app"), MeshConfig(outbound_traffic_policy=Mode.REGISTRY_ONLY))
    resources = translate(view, PORTS, UPSTREAMS, access_log=access_log)
    out = []
    for listener in resources.listeners:
        chains = [*listener.get("filter_chains", []), listener.get("default_filter_chain", {"filters": []})]
        out += [f["typed_config"] for chain in chains for f in chain["filters"]]
    return out


def test_every_hcm_and_tcp_proxy_logs_istios_text_format_to_the_containers_stdout() -> None:
    configs = filters("TEXT")
    assert configs
    for config in configs:
        (log,) = config["access_log"]
        assert log["name"] == "envoy.access_loggers.file"
        assert log["typed_config"]["path"] == "/dev/stdout"
        assert log["typed_config"]["log_format"]["text_format_source"]["inline_string"] == ISTIO_TEXT_FORMAT


def test_json_encoding_logs_the_keys_of_istios_json_format() -> None:
    keys = {"start_time", "route_name", "method", "path", "protocol", "response_code", "response_flags",
            "response_code_details", "connection_termination_details", "bytes_received", "bytes_sent", "duration",
            "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority", "upstream_host",
            "upstream_cluster", "upstream_local_address", "downstream_local_address", "downstream_remote_address",
            "requested_server_name", "upstream_transport_failure_reason"}  # EnvoyJSONLogFormatIstio
    for config in filters("JSON"):
        assert set(config["access_log"][0]["typed_config"]["log_format"]["json_format"]) == keys


def test_logging_off_leaves_no_access_log_anywhere() -> None:
    assert all("access_log" not in config for config in filters(None))


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="TEXT"):
        filters("CSV")


def telemetry(**logging: Any) -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "t"},
            "spec": {"accessLogging": [logging]}}


@pytest.mark.parametrize(
    ("items", "before", "after"),
    [
        ([telemetry(providers=[{"name": "envoy"}])], None, "TEXT"),
        ([telemetry(providers=[{"name": "envoy"}])], "JSON", "JSON"),
        ([telemetry()], None, "TEXT"),
        ([telemetry(disabled=True)], "TEXT", None),
        ([telemetry(providers=[{"name": "otel"}])], None, None),
        ([{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry"}], None, None),
    ],
    ids=["envoy-on", "keeps-json", "default-provider", "disabled", "other-provider", "not-telemetry"],
)
def test_a_telemetry_applied_to_the_lab_turns_the_envoy_access_log_on_or_off(items, before, after) -> None:
    rest, encoding = access_log_after(items, before)
    assert encoding == after
    assert rest == [i for i in items if i.get("kind") != "Telemetry"]


def test_the_pod_log_puts_back_the_captured_ports_and_the_link_local_addresses() -> None:
    line = (b'[t] "PUT /latest/api/token HTTP/1.1" 502 - direct_response - "-" 0 0 0 - "-" "ua" "id" '
            b'"127.169.254.254:20080" "-" - - 127.169.254.254:20080 127.0.0.1:55240 - block_all\n'
            b'[t] "- - -" 0 UH - - "-" 0 0 1 - "-" "-" "-" "-" "-" BlackHoleCluster - 127.0.0.1:20443 '
            b"127.0.0.1:59596 sts.us-east-1.amazonaws.com -\n")
    assert pod_addresses(line, PORTS) == line.replace(b"127.169.254.254:20080", b"169.254.169.254:80").replace(
        b"127.0.0.1:20443", b"127.0.0.1:443")


def test_the_pod_log_leaves_other_ports_that_merely_start_alike_alone(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    log.write_bytes(b"127.0.0.1:204430 127.0.0.1:20443 1127.0.0.1:20443\n")
    assert pod_log(log, PORTS) == b"127.0.0.1:204430 127.0.0.1:443 1127.0.0.1:20443\n"
    assert pod_log(tmp_path / "missing.log", PORTS) == b""
