"""`egress-doctor check`: plan the calls the app's SDK would make, run them, build the report."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from egress_doctor import __version__, validate
from egress_doctor.aws.identity import CredentialPlan, plan_credentials
from egress_doctor.aws.session import Limits, ProbeSession
from egress_doctor.aws.transcript import TranscriptCapture
from egress_doctor.aws.trust import botocore_trust
from egress_doctor.model import CheckResult, ErrorInfo, Layer, Report, RunFacts, Status, Symptom
from egress_doctor.net.connect_to import ConnectTo, ConnectToMap
from egress_doctor.net.dial import install
from egress_doctor.probes import api, credentials, registry
from egress_doctor.probes.plan import Footprint, PlannedCall, plan_calls
from egress_doctor.probes.predict import predicted_target
from egress_doctor.probes.progress import CheckProgress
from egress_doctor.probes.run import Run, run_in_thread
from egress_doctor.redact import Redactor
from egress_doctor.validate import UsageError

# Environment values that are secrets wherever they appear in output.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
SECRET_FILES_ENV = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
# How long checks get, once their sockets are shut at the deadline, to record their verdict;
# a check still running after it is reported from its progress (_deadline_result).
ABORT_GRACE_SECONDS = 0.2


@dataclass
class CheckOptions:
    region: str | None = None
    # What the app calls: services and resources (tables, buckets, queues …); empty: DynamoDB ListTables.
    footprint: Footprint = field(default_factory=Footprint)
    deadline: float = 8.0
    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    connect_to: list[ConnectTo] = field(default_factory=list)
    # Keep the boto3 debug transcript (for -v); without it botocore's debug logging costs nothing.
    transcript: bool = True
    # botocore's data loader, shared between runs by `serve`: service models and endpoint rules
    # are then read once per process instead of once per run (default: a new one per run).
    data_loader: Any = None
    # When the run's deadline expires (time.monotonic()), if it started before the probes (the
    # command's start); default: `deadline` seconds from the probes' start.
    deadline_at: float | None = None
    # A ProbeSession shared between runs by `serve` (probe_session()): its clients are kept while
    # the credentials stay the same, their connections closed after each run (default: a new one).
    session: Any = None


def seed_redactor(redactor: Redactor, environ: Mapping[str, str]) -> None:
    """Register every secret value the environment reveals before anything is captured."""
    for name in SECRET_ENV:
        if environ.get(name):
            redactor.add_secret(environ[name])
    for name in SECRET_FILES_ENV:
        path = environ.get(name)
        if not path:
            continue
        try:
            with open(path, "rb") as handle:  # bytes: a token that is not UTF-8 is still a secret
                redactor.add_secret(handle.read())
        except OSError:
            pass


def plan_or_refuse(session: Any, environ: Mapping[str, str], region: str | None) -> CredentialPlan:
    """`plan_credentials`, refusing (UsageError: exit 2, nothing probed) a configuration the
    app's SDK cannot start from either.

    botocore validates most settings when it builds its credential chain (an IMDS endpoint that
    is no URL, AWS_METADATA_SERVICE_TIMEOUT=abc, an unparsable config file, a missing profile,
    an access key id without its secret); a URL whose port is out of range fails only at the
    first request, so the URLs the plan will call are checked here.
    """
    from botocore.exceptions import BotoCoreError

    try:
        plan = plan_credentials(session, environ, region)
    except (BotoCoreError, ValueError) as exc:
        raise UsageError(
            "botocore cannot start from this configuration (AWS_* variables, config and credentials "
            f"files): {type(exc).__name__}: {exc}"
        ) from None
    if region is None:
        _refuse_bad_region(session, environ)
    called = (("container credentials URL", plan.container_url), ("IMDS endpoint", plan.imds_endpoint))
    for label, url in called:
        try:
            urlsplit(url or "").port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise UsageError(f"the {label} {url!r} is not a usable URL: {exc}") from None
    return plan


def _refuse_bad_region(session: Any, environ: Mapping[str, str]) -> None:
    """A region botocore would put into every host name unchecked (AWS_DEFAULT_REGION='' builds
    `sts..amazonaws.com`) or refuse at the first call: a usage error naming where it came from."""
    value = session.get_config_variable("region")
    if value is None:
        return
    if environ.get("AWS_DEFAULT_REGION") == value:
        source = "AWS_DEFAULT_REGION"
    else:
        source = f"region in the config file {environ.get('AWS_CONFIG_FILE') or '~/.aws/config'}"
    validate.region(str(value), source)


def probe_session(options: CheckOptions, environ: Mapping[str, str]) -> ProbeSession:
    """The bounded, observed botocore session of `options` (what a run makes when given none)."""
    limits = Limits(connect_timeout=options.connect_timeout, read_timeout=options.read_timeout)
    return ProbeSession(limits, ConnectToMap(options.connect_to), lambda s: botocore_trust(s, dict(environ)),
                        data_loader=options.data_loader)


def run_check(options: CheckOptions, environ: Mapping[str, str], facts: RunFacts, redactor: Redactor) -> Report:
    started = time.monotonic()
    started_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    deadline = started + options.deadline if options.deadline_at is None else options.deadline_at
    install()
    seed_redactor(redactor, environ)
    connect_to = ConnectToMap(options.connect_to)
    with TranscriptCapture(redactor, level=logging.DEBUG if options.transcript else logging.WARNING) as capture:
        session = options.session or probe_session(options, environ)
        plan = plan_or_refuse(session.session, environ, options.region)
        plan.identity.warnings += table_region_notes(options.footprint, plan.identity.region)
        # An unknown --service is a usage error here, before anything is sent.
        planned = plan_calls(options.footprint, session.session.get_component("data_loader"))
        run = Run(
            session=session,
            identity=plan.identity,
            environ=environ,
            redactor=redactor,
            capture=capture,
            connect_to=connect_to,
            deadline=deadline,
            per_check_seconds=2 * options.connect_timeout + 2 * options.read_timeout + 0.5,
        )
        # The API clients' models load while the credential step waits on the network (STS's own
        # model is the credential step's first need: it loads it itself).
        run_in_thread(lambda: session.preload([c.service for c in planned if c.service != "sts"]), "preload")
        worker = run.thread(lambda: _execute(run, plan, planned), "egress-doctor-run")
        worker.join(max(0.0, deadline - time.monotonic()))
        # The worker stops waiting for stage 2 at the deadline too: ask every check's thread.
        expired = bool(run.unfinished())
        if expired:
            run.abort_all()
            # Aborted checks finish at once with what they saw (the layer they were stuck in).
            run.join_all(ABORT_GRACE_SECONDS)
        session.close_connections()  # a kept session's next run dials anew, as a new one would
        if run.crashes:
            raise run.crashes[0]
        checks = _collect(run, planned, expired, capture)
    return Report(
        identity=plan.identity,
        checks=checks,
        facts=facts,
        started_at=started_at,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        deadline_ms=options.deadline * 1000,
        tool_version=__version__,
    )


def table_region_notes(footprint: Footprint, region: str | None) -> list[str]:
    """A table ARN of another region is still called at the client's regional endpoint (botocore
    takes the ARN as the TableName, not as an endpoint): say so, or the failure reads as the mesh's."""
    notes = []
    for table in footprint.resources:
        if table.kind == "table" and table.form == "arn" and region and table.region and table.region != region:
            notes.append(f"--table {table.text} is in {table.region}, but the SDK calls DynamoDB in the client's "
                         f"region {region} (as an app configured like this would): use --region {table.region} "
                         "to probe that region's endpoint")
    return notes


def _execute(run: Run, plan: Any, calls: list[PlannedCall]) -> None:
    if not credentials.source_check(run, plan):
        return
    creds = credentials.obtain(run, plan)
    if creds is None and plan.identity.source != "profile":
        return
    # Independent services run concurrently; each service's client is built once (Run.client).
    threads = [run.thread(lambda c=call: api.run_call(run, creds, c), call.id) for call in calls]
    for thread in threads:
        thread.join(max(0.0, run.deadline - time.monotonic()))


def _collect(run: Run, planned: list[PlannedCall], expired: bool, capture: TranscriptCapture) -> list[CheckResult]:
    results: list[CheckResult] = []
    seen: set[tuple[str, str | None]] = set()
    failed_credentials: str | None = None
    for progress in run.board.items():
        result = progress.result or _deadline_result(progress)
        result.evidence.transcript = capture.records(progress.key)
        results.append(result)
        seen.add((progress.id, progress.subject))
        if result.status is Status.FAIL and registry.stage_of(progress.id) is registry.Stage.CREDENTIALS:
            failed_credentials = failed_credentials or progress.id
    for call in planned:
        if call.key in seen:
            continue
        if failed_credentials:
            reason = f"skipped: {failed_credentials} failed (no credentials to sign with)"
        else:
            reason = "not started: the run's deadline expired first" if expired else "skipped"
        results.append(CheckResult(id=call.id, title=call.title, status=Status.SKIP, reason=reason,
                                   subject=call.subject, target=predicted_target(run, call)))
    return results


def _deadline_result(progress: CheckProgress) -> CheckResult:
    evidence = progress.evidence
    if evidence.tcp is None or not evidence.tcp.connected:
        layer = Layer.TCP
    elif progress.target and progress.target.scheme == "https" and evidence.tls is None:
        layer = Layer.TLS
    else:
        layer = Layer.HTTP
    return progress.finish(
        Status.FAIL,
        layer=layer,
        symptom=Symptom.DEADLINE,
        error=ErrorInfo(type="DeadlineExceeded", message="the run's --deadline expired during this check"),
        reason=f"still waiting at the {layer.value} layer when the deadline expired",
    )
