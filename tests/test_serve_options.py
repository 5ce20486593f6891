"""`serve` flags: --listen and --interval parsing, jitter bounds, and the options it shares with `check`."""

from __future__ import annotations

import io
import random
import socket
import time

import pytest

from egress_doctor.cli import build_parser, main
from egress_doctor.context import Environment
from egress_doctor.redact import Redactor
from egress_doctor.serve import ListenAddress, Scheduler, parse_duration, parse_listen
from egress_doctor.validate import UsageError


@pytest.mark.parametrize(
    ("spec", "host", "port", "family"),
    [
        (":8080", "", 8080, socket.AF_INET),
        ("127.0.0.1:0", "127.0.0.1", 0, socket.AF_INET),
        ("0.0.0.0:9090", "0.0.0.0", 9090, socket.AF_INET),
        ("[::1]:8080", "::1", 8080, socket.AF_INET6),
        ("[::]:8080", "::", 8080, socket.AF_INET6),
    ],
)
def test_listen_accepts_host_port_and_bare_port_for_every_interface(spec, host, port, family):
    listen = parse_listen(spec)
    assert listen == ListenAddress(host, port)
    assert listen.family == family


@pytest.mark.parametrize("spec", ["8080", "localhost:http", ":65536", ":-1", ""])
def test_listen_refuses_what_is_not_host_colon_port(spec):
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(spec)


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("1.5h", 5400.0), ("45", 45.0), (" 2S ", 2.0)],
)
def test_interval_reads_seconds_minutes_hours_and_milliseconds(spec, seconds):
    assert parse_duration("--interval", spec) == pytest.approx(seconds)


@pytest.mark.parametrize("spec", ["0s", "-5s", "soon", "s", "inf", "nan", "1d"])
def test_interval_refuses_zero_negative_and_unknown_units(spec):
    with pytest.raises(UsageError, match="--interval"):
        parse_duration("--interval", spec)


def test_the_next_run_is_one_interval_after_the_last_start_within_ten_percent_jitter():
    scheduler = Scheduler(lambda _redactor: None, interval=100.0, deadline=8, redactor=Redactor(), rng=random.Random(7))
    started = time.monotonic()
    delays = [scheduler.next_delay(started) for _ in range(200)]
    assert min(delays) >= 89.0 and max(delays) <= 110.0
    assert max(delays) - min(delays) > 10.0, "the jitter should spread runs, not be constant"


def test_livez_staleness_bound_is_3_intervals_or_longer_when_a_run_may_take_its_whole_deadline():
    assert Scheduler(lambda _redactor: None, interval=30, deadline=8, redactor=Redactor()).stale_after == 90
    assert Scheduler(lambda _redactor: None, interval=1, deadline=8, redactor=Redactor()).stale_after == 10


def test_serve_takes_the_probe_and_fix_options_of_check_but_not_its_output_options():
    args = build_parser().parse_args(
        ["serve", "--region", "eu-west-1", "--table", "orders", "--deadline", "5", "-n", "payments", "--wildcard"]
    )
    assert (args.region, args.table, args.deadline, args.namespace, args.wildcard) == (
        "eu-west-1", ["orders"], "5", "payments", True,
    )  # fmt: skip
    assert (args.listen, args.interval) == (":8080", "30s")
    with pytest.raises(UsageError):
        build_parser().parse_args(["serve", "-o", "json"])


def test_serve_takes_egress_via_so_a_readiness_check_fixes_the_way_the_mesh_leaves():
    args = build_parser().parse_args(["serve", "--egress-via", "istio-system/istio-egressgateway"])
    assert args.egress_via == "istio-system/istio-egressgateway"
    assert build_parser().parse_args(["serve", "--egress-via", "direct"]).egress_via == "direct"
    with pytest.raises(UsageError):
        build_parser().parse_args(["serve", "--egress-via", "no-slash"])


def test_serve_validates_check_options_like_check_does():
    err = io.StringIO()
    env = Environment(stderr=err, stdout=io.StringIO())
    code = main(["serve", "--deadline", "never", "--listen", "127.0.0.1:0"], env)
    assert code == 2
    assert "--deadline" in err.getvalue()
