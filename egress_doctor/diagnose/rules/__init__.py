"""The rules, in the order they are tried. Explicit lists: nothing registers itself on import.

* RUN_RULES look at the whole run (who ran, sidecar lifecycle, environment traps); a cause may
  consume the checks it explains so that no host rule reports them again.
* CHECK_RULES judge one check on its own (AWS answers, credential-stage errors).
* HOST_RULES judge one destination: the first rule that returns a cause wins (one root cause
  per host). Specific before generic: Envoy's replies and the metadata endpoints' own behaviour
  come before the catch-all HTTP rules.
"""

from __future__ import annotations

from egress_doctor.diagnose.rules import aws, http, metadata, network, run, s3
from egress_doctor.diagnose.rules.base import CheckRule, HostRule, RunRule

RUN_RULES: tuple[RunRule, ...] = (
    run.ran_as_proxy_uid,
    run.sidecar_not_ready,
    run.region_ignored,
    run.metadata_via_proxy,
    run.aws_via_https_proxy,
    s3.bucket_elsewhere,
)

CHECK_RULES: tuple[CheckRule, ...] = (
    aws.credential_stage,
    aws.aws_answer,
)

HOST_RULES: tuple[HostRule, ...] = (
    network.dns,
    metadata.agent_unreachable,
    network.connect_refused,
    network.connect_timeout,
    network.connect_other,
    network.plain_http_closed,
    network.tls_closed,
    network.tls_timeout,
    network.tls_untrusted,
    network.tls_name_mismatch,
    network.tls_wrong_version,
    network.tls_other,
    http.block_all,
    http.upstream_connect_failure,
    http.no_healthy_upstream,
    http.upstream_timeout,
    http.no_route,
    http.rbac_denied,
    metadata.imds_hop_limit,
    metadata.imds_token_refused,
    metadata.imds_v2_required,
    metadata.imds_no_role,
    metadata.imds_error,
    metadata.agent_refused,
    http.not_aws,
    http.other_status,
    http.read_timeout,
    http.closed_after_request,
)
