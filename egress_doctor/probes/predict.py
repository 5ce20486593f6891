"""Where a call that did not run would have gone, from botocore's endpoint rules (nothing is sent).

So that the fix can cover a host now rather than after the next run: a skipped call (its
credentials never came) still names its host, and an S3 bucket in another region names the host
the SDK is sent to next.
"""

from __future__ import annotations

from typing import Any

from egress_doctor.aws.predict import predict_url
from egress_doctor.aws.session import target_of
from egress_doctor.model import Target
from egress_doctor.probes.plan import PlannedCall
from egress_doctor.probes.run import Run

# Services whose host carries the caller's account (`<account>.ddb.<region>…`): unknowable while
# the account is (EKS Pod Identity gives it only with the credentials).
_ACCOUNT_HOSTS = ("dynamodb",)


def predicted_url(run: Run, service: str, operation: str, params: dict[str, Any], region: str | None) -> str | None:
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", run.session.session.get_component("data_loader"))
    return predict_url(session, service, operation, params, region=region, account_id=run.identity.account_id)


def predicted_target(run: Run, call: PlannedCall) -> Target | None:
    if call.service in _ACCOUNT_HOSTS and run.identity.source == "pod-identity" and not run.identity.account_id:
        return None
    url = predicted_url(run, call.service, call.operation, call.params, call.region or run.region)
    return target_of(url, run.connect_to) if url else None
