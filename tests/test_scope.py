"""The job's scope: one definition for the job request, verification, retries and the evidence."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pytest

from runbook_lib.errors import ScopeError
from runbook_lib.scope import IN_SCOPE, STATUS_UNREADABLE, JobScope

POINT = datetime(2026, 6, 1, tzinfo=timezone.utc)
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def versions(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {"key": "data/a.bin", "version_id": "v", "is_delete_marker": False, "storage_class": "STANDARD",
            "replication_status": "REPLICA", "last_modified": pd.Timestamp("2026-03-01T00:00:00Z")}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_the_manifest_filter_holds_every_part_of_the_scope_and_nothing_else() -> None:
    scope = JobScope(("REPLICA", "FAILED"), created_after=START, created_before=POINT, key_prefix="data/",
                     key_suffix=".bin", key_substring="a")

    assert scope.manifest_filter() == {
        "EligibleForReplication": True, "ObjectReplicationStatuses": ["REPLICA", "FAILED"],
        "CreatedAfter": START, "CreatedBefore": POINT,
        "KeyNameConstraint": {"MatchAnyPrefix": ["data/"], "MatchAnySuffix": [".bin"], "MatchAnySubstring": ["a"]},
    }
    assert JobScope(("REPLICA",)).manifest_filter() == {
        "EligibleForReplication": True, "ObjectReplicationStatuses": ["REPLICA"]}


def test_the_scope_reads_as_one_sentence() -> None:
    scope = JobScope(("REPLICA",), created_before=POINT, key_prefix="data/")

    assert scope.describe() == (
        "object versions (not delete markers, not archived in GLACIER or DEEP_ARCHIVE), created before "
        "2026-06-01T00:00:00Z, whose key starts with 'data/', with replication status REPLICA")
    assert scope.as_record()["created_before"] == "2026-06-01T00:00:00Z"


@pytest.mark.parametrize(("row", "reason"), [
    ({}, IN_SCOPE),
    ({"is_delete_marker": True}, "delete marker (not replicated)"),
    ({"storage_class": "DEEP_ARCHIVE"}, "archived (needs a restore first)"),
    ({"last_modified": pd.Timestamp("2026-06-01T00:00:00Z")}, "created at or after 2026-06-01T00:00:00Z"),
    ({"last_modified": pd.Timestamp("2024-12-31T23:59:59Z")}, "created before 2025-01-01T00:00:00Z"),
    ({"key": "logs/a.bin"}, "key does not start with 'data/'"),
    ({"replication_status": None}, "replication status not in REPLICA"),
    ({"replication_status": "unknown"}, STATUS_UNREADABLE),
])
def test_each_version_gets_the_reason_it_is_outside(row: dict[str, Any], reason: str) -> None:
    scope = JobScope(("REPLICA",), created_after=START, created_before=POINT, key_prefix="data/")

    assert scope.reasons(versions(row)).tolist() == [reason]


def test_a_listing_is_judged_on_what_it_can_tell() -> None:
    scope = JobScope(("REPLICA",), created_before=POINT, key_suffix=".bin")

    assert scope.listed_in_scope("x.bin", datetime(2026, 5, 31, tzinfo=timezone.utc), "STANDARD")
    assert not scope.listed_in_scope("x.bin", POINT, "STANDARD")
    assert not scope.listed_in_scope("x.txt", datetime(2026, 5, 31, tzinfo=timezone.utc), None)
    assert not scope.listed_in_scope("x.bin", datetime(2026, 5, 31, tzinfo=timezone.utc), "GLACIER")


def test_a_retry_may_only_copy_versions_inside_the_scope() -> None:
    scope = JobScope(("REPLICA",), created_before=POINT)
    vault = versions({"version_id": "in"}, {"version_id": "failed", "replication_status": "FAILED"},
                     {"version_id": "late", "last_modified": pd.Timestamp("2026-07-01T00:00:00Z")})

    scope.check_retry(pd.DataFrame({"key": ["data/a.bin"] * 2, "version_id": ["in", "failed"]}), vault)
    with pytest.raises(ScopeError, match=r"1 version\(s\) outside the job's scope.*late"):
        scope.check_retry(pd.DataFrame({"key": ["data/a.bin"], "version_id": ["late"]}), vault)


@pytest.mark.parametrize("statuses", [(), ("REPLICA", "PENDING")])
def test_statuses_must_be_filter_values(statuses: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="replication_statuses"):
        JobScope(statuses)


def test_times_must_carry_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        JobScope(("REPLICA",), created_before=datetime(2026, 6, 1))
