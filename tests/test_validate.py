"""User input is checked once, with one line per mistake (exit 2)."""

from __future__ import annotations

import pytest

from egress_doctor import validate
from egress_doctor.validate import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), ("90s", 90.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0)],
)
def test_durations_read_like_kubectl_and_go(text, seconds):
    assert validate.duration("--interval", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "-5", "abc", "5 minutes", "1x", "inf", "nan"])
def test_a_duration_that_is_not_positive_or_not_a_duration_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--interval"):
        validate.duration("--interval", text)


def test_a_duration_above_its_maximum_is_refused_with_the_limit_in_the_message():
    with pytest.raises(UsageError, match="at most 3600 s"):
        validate.duration("--wait-for-sidecar", "2h", maximum=3600)


@pytest.mark.parametrize("name", ["orders", "my_table.v2", "a-b"])
def test_valid_table_names_pass(name):
    assert validate.table(name) == name


@pytest.mark.parametrize("name", ["ab", "orders!", "x" * 256, "arn:aws:dynamodb:us-east-1:123:table/orders"])
def test_invalid_table_names_and_arns_are_usage_errors(name):
    with pytest.raises(UsageError):
        validate.table(name)
