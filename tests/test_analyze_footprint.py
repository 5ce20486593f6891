"""`analyze -f` with the app's whole AWS footprint (`--service`, `--bucket`, `--queue`, …, or
`--config`): every call `check` would make is predicted by botocore itself (no network), at the
host the SDK really uses, and the printed fix, applied, makes the same analysis pass."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from egress_doctor.cli import main
from egress_doctor.context import Environment

STS_ONLY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: aws-sts, namespace: payments}
spec:
  hosts: [sts.us-east-1.amazonaws.com, sts.eu-west-1.amazonaws.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""
WIDE = ("--table", "invoices", "--bucket", "invoice-archive", "--queue", "billing-events", "--secret", "billing/db",
        "--key", "alias/billing", "--service", "ssm")


def analyze(tmp_path: Path, *args: str, region: str = "us-east-1", mesh: str = STS_ONLY,
            extra: str = "") -> tuple[int, dict[str, Any], list[dict[str, Any]], str]:
    directory = tmp_path / "mesh"
    directory.mkdir(exist_ok=True)
    (directory / "mesh.yaml").write_text(mesh)
    if extra:
        (directory / "fix.yaml").write_text(extra)
    base = ["analyze", "-f", str(directory), "-n", "payments", "--mode", "REGISTRY_ONLY", "--region", region,
            "--account", "111122223333", *args]
    out, err = io.StringIO(), io.StringIO()
    code = main([*base, "-o", "json"], Environment(environ={}, stdout=out, stderr=err))
    if code == 2:
        return code, {}, [], err.getvalue()
    fixes = io.StringIO()
    main([*base, "--fix-only"], Environment(environ={}, stdout=fixes, stderr=io.StringIO()))
    fix = [d for d in yaml.safe_load_all(fixes.getvalue()) if d]
    return int(code), json.loads(out.getvalue()), fix, fixes.getvalue()


def targets(report: dict[str, Any]) -> dict[str, str]:
    return {f"{c['target']['host']}:{c['target']['port']}": c["status"] for c in report["checks"]}


def test_a_wide_footprint_is_predicted_at_the_hosts_boto3_uses_and_its_fix_closes_it(tmp_path: Path) -> None:
    code, report, fix, text = analyze(tmp_path, *WIDE)
    assert code == 1
    assert targets(report) == {
        "sts.us-east-1.amazonaws.com:443": "pass",
        "dynamodb.us-east-1.amazonaws.com:443": "fail",
        "111122223333.ddb.us-east-1.amazonaws.com:443": "fail",
        "invoice-archive.s3.amazonaws.com:443": "fail",  # us-east-1: global virtual-hosted
        "sqs.us-east-1.amazonaws.com:443": "fail",  # SQS's JSON protocol host
        "secretsmanager.us-east-1.amazonaws.com:443": "fail",
        "kms.us-east-1.amazonaws.com:443": "fail",
        "ssm.us-east-1.amazonaws.com:443": "fail",
    }, targets(report)
    hosts = {h for d in fix if d["kind"] == "ServiceEntry" for h in d["spec"]["hosts"]}
    assert {"invoice-archive.s3.amazonaws.com", "sqs.us-east-1.amazonaws.com", "kms.us-east-1.amazonaws.com"} <= hosts
    code, report, fix, _ = analyze(tmp_path, *WIDE, extra=text)
    assert code == 0 and fix == [], targets(report)


def test_outside_us_east_1_a_bucket_is_called_at_its_regional_host(tmp_path: Path) -> None:
    _, report, _, _ = analyze(tmp_path, "--bucket", "invoice-archive", region="eu-west-1")
    assert "invoice-archive.s3.eu-west-1.amazonaws.com:443" in targets(report), targets(report)
    assert "dynamodb.eu-west-1.amazonaws.com:443" not in targets(report)  # not in the footprint


def test_arns_and_queue_urls_in_another_region_are_predicted_in_that_region(tmp_path: Path) -> None:
    _, report, _, _ = analyze(
        tmp_path, "--queue", "https://sqs.eu-west-1.amazonaws.com/111122223333/billing-events",
        "--bucket", "arn:aws:s3:eu-west-1:111122223333:accesspoint/reports",
        "--secret", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:billing/db-AbCdEf")
    assert {"sqs.eu-west-1.amazonaws.com:443", "reports-111122223333.s3-accesspoint.eu-west-1.amazonaws.com:443",
            "secretsmanager.eu-west-1.amazonaws.com:443"} <= set(targets(report)), targets(report)


def test_the_apps_endpoint_url_for_sqs_moves_the_prediction_to_its_vpc_endpoint(tmp_path: Path) -> None:
    vpce = "vpce-0abc-123.sqs.us-east-1.vpce.amazonaws.com"
    _, report, _, _ = analyze(tmp_path, "--queue", "billing-events", "--env", f"AWS_ENDPOINT_URL_SQS=https://{vpce}")
    assert f"{vpce}:443" in targets(report) and "sqs.us-east-1.amazonaws.com:443" not in targets(report)


def test_a_footprint_file_gives_analyze_the_same_calls_as_the_options(tmp_path: Path) -> None:
    config = tmp_path / "footprint.yaml"
    config.write_text("region: eu-west-1\nservices: [kms]\nbuckets: [invoice-archive]\n")
    _, report, _, _ = analyze(tmp_path, "--config", str(config), region="eu-west-1")
    assert {"kms.eu-west-1.amazonaws.com:443", "invoice-archive.s3.eu-west-1.amazonaws.com:443"} <= set(
        targets(report)), targets(report)


def test_an_unknown_service_or_a_bad_bucket_name_is_a_usage_error(tmp_path: Path) -> None:
    code, _, _, err = analyze(tmp_path, "--service", "dynamo")
    assert code == 2 and "dynamodb" in err, err
    code, _, _, err = analyze(tmp_path, "--bucket", "Bad_Bucket")
    assert code == 2 and "Bad_Bucket" in err, err
