"""Per-version proof of recovery: every vault state against every recovery outcome."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from runbook_lib.errors import InvalidArguments, ReportError
from runbook_lib.scope import JobScope
from runbook_lib.verify import (
    CATEGORIES,
    CONTENT_DIFFERS,
    COUNT_KEYS,
    ELIGIBLE_NOT_IN_MANIFEST,
    EXTRA_IN_RECOVERY,
    IN_MANIFEST_NOT_ELIGIBLE,
    LEGAL_HOLD_DIFFERS,
    LOCK_MODE_DIFFERS,
    MISSING_IN_RECOVERY,
    NOT_EXPECTED,
    NOT_IN_REPORT,
    NOT_SAMPLED,
    RECOVERED_IDENTICAL,
    RETAIN_UNTIL_DIFFERS,
    TASK_FAILED,
    UNKNOWN_UNREADABLE,
    Comparison,
    compare,
    describe_content_checks,
    retry_candidates,
)

RETAIN = pd.Timestamp("2027-03-01T12:00:00.250Z")
REPLICA = {"REPLICA"}
# The vault states a version can be in; the eligible ones are the replicas that are neither
# delete markers nor archived.
SOURCE_STATES: dict[str, dict[str, Any]] = {
    "replica_governance_hold_on": {"object_lock_mode": "GOVERNANCE", "object_lock_legal_hold_status": "ON"},
    "replica_governance_hold_off": {"object_lock_mode": "GOVERNANCE", "object_lock_legal_hold_status": "OFF"},
    "replica_compliance_hold_on": {"object_lock_mode": "COMPLIANCE", "object_lock_legal_hold_status": "ON"},
    "replica_compliance_no_hold": {"object_lock_mode": "COMPLIANCE", "object_lock_legal_hold_status": None},
    "replica_unlocked_hold_on": {
        "object_lock_mode": None, "object_lock_retain_until_date": None, "object_lock_legal_hold_status": "ON",
    },
    "replica_unlocked": {
        "object_lock_mode": None, "object_lock_retain_until_date": None, "object_lock_legal_hold_status": None,
    },
}
SKIPPED_STATES: dict[str, dict[str, Any]] = {
    "not_replica": {"replication_status": None},
    "source_completed": {"replication_status": "COMPLETED"},
    "delete_marker": {
        "is_delete_marker": True, "size": None, "etag": None, "object_lock_mode": None,
        "object_lock_retain_until_date": None, "object_lock_legal_hold_status": None,
    },
    "archived": {"storage_class": "DEEP_ARCHIVE"},
}


def version(key: str, version_id: str, **changes: Any) -> dict[str, Any]:
    """Return one snapshot row: a locked replica unless `changes` says otherwise."""
    row = {
        "key": key,
        "version_id": version_id,
        "is_latest": True,
        "is_delete_marker": False,
        "size": 1024,
        "etag": '"9b2cf535f27731c974343645a3985328"',
        "last_modified": pd.Timestamp("2026-01-02T03:04:05Z"),
        "storage_class": "STANDARD",
        "replication_status": "REPLICA",
        "encryption": "aws:kms",
        "kms_key": "arn:aws:kms:us-east-1:111111111111:key/vault",
        "object_lock_mode": "GOVERNANCE",
        "object_lock_retain_until_date": RETAIN,
        "object_lock_legal_hold_status": "OFF",
    }
    row.update(changes)
    return row


def snapshot(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return rows typed the way runbook_lib.snapshot types them."""
    frame = pd.DataFrame(rows, columns=list(version("k", "v")))
    typed = frame.astype({
        "key": "string", "version_id": "string", "is_latest": "bool", "is_delete_marker": "bool", "size": "Int64",
        "etag": "string", "storage_class": "string", "replication_status": "string", "encryption": "string",
        "kms_key": "string", "object_lock_mode": "string", "object_lock_legal_hold_status": "string",
    })
    typed["last_modified"] = pd.to_datetime(typed["last_modified"], utc=True)
    if typed["object_lock_retain_until_date"].astype(str).eq("unknown").any():
        typed["object_lock_retain_until_date"] = typed["object_lock_retain_until_date"].astype("string")
    else:
        typed["object_lock_retain_until_date"] = pd.to_datetime(typed["object_lock_retain_until_date"], utc=True)
    return typed


def replicated(row: dict[str, Any]) -> dict[str, Any]:
    """Return what replication makes of a vault row in the recovery bucket."""
    return {**row, "storage_class": "INTELLIGENT_TIERING", "encryption": "aws:kms", "kms_key": "recovery-key"}


ANCHOR = version("anchor.txt", "a1")  # an eligible version recovered identically in every scenario


def run(
    vault_rows: list[dict[str, Any]],
    recovery_rows: list[dict[str, Any]],
    *,
    statuses: set[str] = REPLICA,
    manifest: pd.DataFrame | None = None,
    report: pd.DataFrame | None = None,
) -> Comparison:
    """Compare vault and recovery rows, with the anchor version on both sides."""
    return compare(
        snapshot([ANCHOR, *vault_rows]),
        snapshot([replicated(ANCHOR), *recovery_rows]),
        manifest=manifest,
        report=report,
        expected_statuses=statuses,
    )


def category_of(result: Comparison, key: str, version_id: str) -> str:
    """Return the primary category of one version."""
    row = result.details[(result.details["key"] == key) & (result.details["version_id"] == version_id)]
    assert len(row) == 1
    return str(row["category"].iloc[0])


# The recovery outcomes: how each one changes the replica (None: the replica is missing).
def _altered_retention_mode(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "object_lock_mode": "COMPLIANCE" if row["object_lock_mode"] == "GOVERNANCE" else "GOVERNANCE"}


def _altered_retain_until(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "object_lock_retain_until_date": pd.Timestamp("2026-06-01T00:00:00Z")}


def _altered_hold(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "object_lock_legal_hold_status": "OFF" if row["object_lock_legal_hold_status"] == "ON" else "ON"}


RECOVERY_OUTCOMES: dict[str, tuple[Any, str]] = {
    "identical": (lambda row: row, RECOVERED_IDENTICAL),
    "missing": (None, MISSING_IN_RECOVERY),
    "altered_size": (lambda row: {**row, "size": row["size"] + 1}, CONTENT_DIFFERS),
    "altered_etag": (lambda row: {**row, "etag": '"00000000000000000000000000000000"'}, CONTENT_DIFFERS),
    "altered_retention_mode": (_altered_retention_mode, LOCK_MODE_DIFFERS),
    "altered_retain_until": (_altered_retain_until, RETAIN_UNTIL_DIFFERS),
    "altered_hold": (_altered_hold, LEGAL_HOLD_DIFFERS),
}


@pytest.mark.parametrize("outcome", list(RECOVERY_OUTCOMES))
@pytest.mark.parametrize("state", list(SOURCE_STATES))
def test_eligible_version_against_each_recovery_outcome(state: str, outcome: str) -> None:
    source = version("data/object.bin", "v1", **SOURCE_STATES[state])
    change, expected_category = RECOVERY_OUTCOMES[outcome]
    if outcome == "altered_retain_until" and source["object_lock_mode"] is None:
        # Without retention there is no date to alter: setting one changes the mode as well.
        change, expected_category = (
            lambda row: {**row, "object_lock_mode": "GOVERNANCE", "object_lock_retain_until_date": RETAIN},
            LOCK_MODE_DIFFERS,
        )
    recovery = [] if change is None else [replicated(change(source))]

    result = run([source], recovery)

    assert category_of(result, "data/object.bin", "v1") == expected_category
    assert result.verdict == ("PASS" if expected_category == RECOVERED_IDENTICAL else "FAIL")
    assert result.counts["expected"] == 2
    assert result.counts["recovered"] == (2 if expected_category == RECOVERED_IDENTICAL else 1)


@pytest.mark.parametrize("copied", [False, True], ids=["skipped", "copied_anyway"])
@pytest.mark.parametrize("state", list(SKIPPED_STATES))
def test_version_outside_the_filter_must_not_be_recovered(state: str, copied: bool) -> None:
    source = version("data/skip.bin", "v1", **SKIPPED_STATES[state])

    result = run([source], [replicated(source)] if copied else [])

    assert category_of(result, "data/skip.bin", "v1") == (EXTRA_IN_RECOVERY if copied else NOT_EXPECTED)
    assert result.verdict == ("FAIL" if copied else "PASS")
    assert result.counts["expected"] == 1
    assert result.counts["source_versions"] == 2


def test_version_only_in_recovery_is_extra() -> None:
    stray = replicated(version("stray.txt", "zz"))

    result = run([], [stray])

    assert category_of(result, "stray.txt", "zz") == EXTRA_IN_RECOVERY
    assert result.counts["extra"] == 1
    assert result.verdict == "FAIL"


def test_several_versions_per_key_are_matched_by_version_id() -> None:
    versions = [
        version("doc.txt", "v1", is_latest=False, size=1),
        version("doc.txt", "v2", is_latest=False, size=2, object_lock_mode="COMPLIANCE"),
        version("doc.txt", "v3", size=3, object_lock_legal_hold_status="ON"),
        version("doc.txt", "dm", **SKIPPED_STATES["delete_marker"]),
    ]
    recovery = [replicated(versions[0]), replicated({**versions[2], "object_lock_legal_hold_status": "OFF"})]

    result = run(versions, recovery)

    assert [category_of(result, "doc.txt", v) for v in ("v1", "v2", "v3", "dm")] == [
        RECOVERED_IDENTICAL, MISSING_IN_RECOVERY, LEGAL_HOLD_DIFFERS, NOT_EXPECTED,
    ]
    assert result.counts == {
        "source_versions": 5, "expected": 4, "recovered": 2, "missing": 1, "extra": 0, "content_mismatches": 0,
        "retention_mismatches": 0, "legal_hold_mismatches": 1, "failed_tasks": 0, "unknown": 0,
        "not_in_manifest": 0, "manifest_not_eligible": 0, "not_in_report": 0, "findings": 0, "not_sampled": 0,
    }


@pytest.mark.parametrize(
    ("recovered_date", "identical"),
    [
        (RETAIN.floor("s"), True),  # AWS sometimes drops the milliseconds
        (RETAIN + pd.Timedelta("500ms"), True),
        (RETAIN + pd.Timedelta("1s"), False),
        (RETAIN.tz_convert("Europe/Paris"), True),
    ],
)
def test_retain_until_is_compared_to_the_second(recovered_date: pd.Timestamp, identical: bool) -> None:
    source = version("k", "v1")

    result = run([source], [replicated({**source, "object_lock_retain_until_date": recovered_date})])

    assert category_of(result, "k", "v1") == (RECOVERED_IDENTICAL if identical else RETAIN_UNTIL_DIFFERS)


@pytest.mark.parametrize(
    "represent",
    [
        lambda column: column.astype("datetime64[ns, UTC]"),
        lambda column: column.dt.tz_localize(None),
        lambda column: column.astype(pd.ArrowDtype(pa.timestamp("ms", tz="UTC"))),
        lambda column: column.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype("string"),
    ],
    ids=["nanoseconds", "naive_utc", "arrow", "iso_text"],
)
def test_retain_until_may_come_in_any_datetime_form(represent: Any) -> None:
    vault = snapshot([version("k", "v1"), version("k", "v2")])
    recovery = snapshot([replicated(version("k", "v1")), replicated(version("k", "v2"))])
    recovery.loc[1, "object_lock_retain_until_date"] = pd.Timestamp("2030-01-01T00:00:00Z")
    recovery["object_lock_retain_until_date"] = represent(recovery["object_lock_retain_until_date"])

    result = compare(vault, recovery, expected_statuses=REPLICA)

    assert category_of(result, "k", "v1") == RECOVERED_IDENTICAL
    assert category_of(result, "k", "v2") == RETAIN_UNTIL_DIFFERS


@pytest.mark.parametrize(("vault_hold", "recovery_hold"), [(None, "OFF"), ("OFF", None), ("On", "ON"), (None, None)])
def test_no_hold_and_hold_off_mean_the_same(vault_hold: str | None, recovery_hold: str | None) -> None:
    source = version("k", "v1", object_lock_legal_hold_status=vault_hold)

    result = run([source], [replicated({**source, "object_lock_legal_hold_status": recovery_hold})])

    assert category_of(result, "k", "v1") == RECOVERED_IDENTICAL


def test_quoted_and_bare_etags_are_the_same() -> None:
    source = version("k", "v1", etag='"abc"')

    result = run([source], [replicated({**source, "etag": "abc"})])

    assert category_of(result, "k", "v1") == RECOVERED_IDENTICAL


@pytest.mark.parametrize("side", ["vault", "recovery"])
@pytest.mark.parametrize(
    "unreadable",
    [
        {"object_lock_mode": "unknown", "object_lock_retain_until_date": "unknown"},
        {"object_lock_legal_hold_status": "unknown"},
    ],
    ids=["retention", "legal_hold"],
)
def test_unreadable_lock_fields_are_unknown_not_a_match(side: str, unreadable: dict[str, Any]) -> None:
    source = version("k", "v1")
    vault_row = {**source, **unreadable} if side == "vault" else source
    recovery_row = replicated({**source, **unreadable} if side == "recovery" else source)

    result = run([vault_row], [recovery_row])

    assert category_of(result, "k", "v1") == UNKNOWN_UNREADABLE
    assert result.counts["unknown"] == 1
    assert result.counts["retention_mismatches"] == 0
    assert result.counts["legal_hold_mismatches"] == 0
    assert result.verdict == "FAIL"


def test_unknown_on_a_missing_version_counts_as_missing() -> None:
    source = version("k", "v1", object_lock_mode="unknown", object_lock_retain_until_date="unknown")

    result = run([source], [])

    assert category_of(result, "k", "v1") == MISSING_IN_RECOVERY
    assert result.counts["unknown"] == 0


def test_several_problems_take_the_first_category_and_keep_every_check() -> None:
    source = version("k", "v1", object_lock_legal_hold_status="ON")
    broken = replicated(
        {**source, "size": 1, "object_lock_mode": "COMPLIANCE", "object_lock_legal_hold_status": "OFF"}
    )

    result = run([source], [broken])

    row = result.details.set_index(["key", "version_id"]).loc[("k", "v1")]
    assert row["category"] == CONTENT_DIFFERS
    assert bool(row[CONTENT_DIFFERS]) and bool(row[LOCK_MODE_DIFFERS]) and bool(row[LEGAL_HOLD_DIFFERS])
    assert not bool(row[RETAIN_UNTIL_DIFFERS])
    assert result.counts["content_mismatches"] == 1
    assert result.counts["retention_mismatches"] == 1
    assert result.counts["legal_hold_mismatches"] == 1


# --------------------------------------------------------------------------- report and manifest


def report_of(rows: list[tuple[str, str | None, str, str | None, str | None]]) -> pd.DataFrame:
    """Return a completion report frame like runbook_lib.reports builds it."""
    frame = pd.DataFrame(rows, columns=["key", "version_id", "task_status", "error_code", "result_message"])
    return pd.DataFrame({
        "bucket": pd.array(["vault"] * len(frame), dtype="string"),
        "key": frame["key"].astype("string"),
        "version_id": frame["version_id"].astype("string"),
        "task_status": pd.Categorical(frame["task_status"], categories=["succeeded", "failed"]),
        "http_status": pd.array([200 if s == "succeeded" else 500 for s in frame["task_status"]], dtype="Int16"),
        "error_code": frame["error_code"].astype("string"),
        "result_message": frame["result_message"].astype("string"),
    })


def manifest_of(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Return a manifest frame like runbook_lib.reports builds it."""
    return pd.DataFrame({
        "bucket": pd.array(["vault"] * len(pairs), dtype="string"),
        "key": pd.array([k for k, _ in pairs], dtype="string"),
        "version_id": pd.array([v for _, v in pairs], dtype="string"),
    })


def test_failed_task_carries_its_error_and_outranks_missing() -> None:
    source = version("k", "v1")
    report = report_of([
        ("anchor.txt", "a1", "succeeded", None, "success"),
        ("k", "v1", "failed", "DstPutObjectNotPermitted", "Access denied"),
    ])

    result = run([source], [], report=report)

    failed = result.category(TASK_FAILED)
    assert failed[["key", "version_id", "error_code", "result_message"]].values.tolist() == [
        ["k", "v1", "DstPutObjectNotPermitted", "Access denied"],
    ]
    assert bool(failed[MISSING_IN_RECOVERY].iloc[0])
    assert result.counts["failed_tasks"] == 1 and result.counts["missing"] == 1
    assert result.verdict == "FAIL"


def test_failed_task_whose_version_is_identical_anyway_is_recovered() -> None:
    source = version("k", "v1")
    report = report_of([("k", "v1", "failed", "SrcReplicationNotPending", "already replicated")])

    result = run([source], [replicated(source)], report=report)

    assert category_of(result, "k", "v1") == RECOVERED_IDENTICAL
    assert result.counts["failed_tasks"] == 0
    assert result.verdict == "PASS"


def test_last_report_row_for_a_version_wins() -> None:
    source = version("k", "v1")
    report = report_of([
        ("k", "v1", "failed", "DstPutObjectNotPermitted", "Access denied"),
        ("k", "v1", "succeeded", None, "success"),
    ])

    result = run([source], [], report=report)

    assert category_of(result, "k", "v1") == MISSING_IN_RECOVERY


def test_report_rows_without_version_ids_match_no_version() -> None:
    source = version("k", "v1")
    report = report_of([("k", None, "failed", "SrcObjectNotFound", "Object versionID is invalid")])

    result = run([source], [], report=report)

    assert category_of(result, "k", "v1") == MISSING_IN_RECOVERY
    assert len(result.details) == 2


def test_manifest_gaps_in_both_directions() -> None:
    in_both = version("listed.txt", "v1")
    unlisted = version("unlisted.txt", "v1")
    marker = version("gone.txt", "dm", **SKIPPED_STATES["delete_marker"])
    manifest = manifest_of([("anchor.txt", "a1"), ("listed.txt", "v1"), ("gone.txt", "dm"), ("vanished.txt", "v0")])

    result = run(
        [in_both, unlisted, marker], [replicated(in_both), replicated(unlisted)], manifest=manifest,
    )

    assert category_of(result, "unlisted.txt", "v1") == ELIGIBLE_NOT_IN_MANIFEST
    assert category_of(result, "gone.txt", "dm") == IN_MANIFEST_NOT_ELIGIBLE
    assert category_of(result, "vanished.txt", "v0") == IN_MANIFEST_NOT_ELIGIBLE
    assert result.counts["not_in_manifest"] == 1
    assert result.counts["manifest_not_eligible"] == 2
    # Every version expected is in the recovery bucket, yet the manifest disagrees with the vault:
    # an edited manifest must never pass, whichever way it was edited.
    assert result.counts["recovered"] == result.counts["expected"]
    assert result.verdict == "FAIL"


def test_eligible_version_missing_from_manifest_and_recovery_is_missing() -> None:
    source = version("k", "v1")

    result = run([source], [], manifest=manifest_of([("anchor.txt", "a1")]))

    row = result.details.set_index(["key", "version_id"]).loc[("k", "v1")]
    assert row["category"] == MISSING_IN_RECOVERY and bool(row[ELIGIBLE_NOT_IN_MANIFEST])


def test_retry_candidates_are_eligible_failures_and_missing_versions() -> None:
    failed = version("failed.txt", "v1")
    missing = version("missing.txt", "v1")
    archived = version("cold.txt", "v1", storage_class="GLACIER")
    altered = version("altered.txt", "v1")
    report = report_of([
        ("failed.txt", "v1", "failed", "DstPutObjectNotPermitted", "Access denied"),
        ("cold.txt", "v1", "failed", "SrcObjectNotEligible", "Object is not eligible for replication"),
    ])

    result = run([failed, missing, archived, altered], [replicated({**altered, "size": 1})], report=report)

    assert retry_candidates(result).values.tolist() == [["failed.txt", "v1"], ["missing.txt", "v1"]]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [({"REPLICA"}, 1), ({"NONE"}, 1), ({"NONE", "FAILED"}, 2), ({"REPLICA", "NONE", "FAILED", "COMPLETED"}, 3)],
)
def test_status_filter_decides_what_is_expected(statuses: set[str], expected: int) -> None:
    vault = [
        version("replica.txt", "v1"),
        version("never.txt", "v1", replication_status=None),
        version("failed.txt", "v1", replication_status="FAILED"),
    ]

    result = compare(snapshot(vault), snapshot([]), expected_statuses=statuses)

    assert result.counts["expected"] == expected
    assert result.counts["missing"] == expected


# --------------------------------------------------------------------------- verdict, summary, errors


def test_nothing_expected_is_not_a_pass() -> None:
    result = compare(snapshot([version("k", "v1", replication_status=None)]), snapshot([]), expected_statuses=REPLICA)

    assert result.counts["expected"] == 0
    assert result.verdict == "FAIL"


def test_summary_is_json_with_exact_count_keys() -> None:
    result = run([version("k", "v1")], [])

    summary = result.to_summary()

    assert json.loads(json.dumps(summary)) == summary
    assert summary["verdict"] == "FAIL"
    assert tuple(summary["counts"]) == COUNT_KEYS
    assert set(summary["categories"]) == set(CATEGORIES)
    assert summary["categories"][MISSING_IN_RECOVERY] == 1
    assert sum(summary["categories"].values()) == len(result.details)


def test_details_show_both_sides_and_use_no_object_columns() -> None:
    source = version("k", "v1")

    result = run([source], [replicated({**source, "size": 7})])

    row = result.details.set_index(["key", "version_id"]).loc[("k", "v1")]
    assert (row["vault_size"], row["recovery_size"]) == (1024, 7)
    assert row["recovery_storage_class"] == "INTELLIGENT_TIERING"
    assert not [name for name, dtype in result.details.dtypes.items() if pd.api.types.is_object_dtype(dtype)]


def test_category_lookup_names_the_allowed_categories() -> None:
    result = run([], [])

    assert len(result.category(RECOVERED_IDENTICAL)) == 1
    with pytest.raises(InvalidArguments) as raised:
        result.category("lost")
    assert isinstance(raised.value, ValueError)
    [problem] = raised.value.problems
    assert (problem.field, problem.value) == ("name", "lost")
    assert all(name in problem.expected for name in CATEGORIES)


@pytest.mark.parametrize("statuses", [set(), {"COMPLETE"}, {"replica"}])
def test_status_filter_must_use_s3_values(statuses: set[str]) -> None:
    with pytest.raises(InvalidArguments) as raised:
        compare(snapshot([]), snapshot([]), expected_statuses=statuses)
    assert [problem.field for problem in raised.value.problems] == ["expected_statuses"]


def test_duplicate_versions_in_a_snapshot_are_refused() -> None:
    with pytest.raises(ReportError, match="twice"):
        compare(snapshot([version("k", "v1"), version("k", "v1")]), snapshot([]), expected_statuses=REPLICA)


def test_snapshot_without_lock_columns_is_refused() -> None:
    with pytest.raises(ReportError, match="object_lock_mode"):
        compare(snapshot([]).drop(columns=["object_lock_mode"]), snapshot([]), expected_statuses=REPLICA)


def _in_chunks(frame: pd.DataFrame, pieces: int) -> pd.DataFrame:
    """Return the frame rebuilt from slices, so its text columns hold several arrow chunks."""
    bounds = [len(frame) * i // pieces for i in range(pieces + 1)]
    return pd.concat([frame.iloc[a:b] for a, b in pairwise(bounds)], ignore_index=True)


def test_chunked_and_shuffled_inputs_give_the_same_answer() -> None:
    vault_rows = [
        version(f"dir{i % 7}/object {i}.bin", f"v{i}", object_lock_legal_hold_status="ON" if i % 5 == 0 else "OFF")
        for i in range(300)
    ]
    vault_rows += [version(f"dir{i % 7}/object {i}.bin", "null", replication_status=None) for i in range(0, 300, 10)]
    recovery_rows = [replicated(row) for row in vault_rows[:300] if not row["key"].endswith("3.bin")]
    recovery_rows[10] = {**recovery_rows[10], "size": 1}
    recovery_rows.append(replicated(version("stray.bin", "s1")))
    failed = [(row["key"], row["version_id"], "failed", "DstPutObjectNotPermitted", "Access denied")
              for row in vault_rows[:300] if row["key"].endswith("3.bin")]
    report = report_of([("dir0/object 0.bin", "v0", "succeeded", None, "success"), *failed])
    manifest = manifest_of([(row["key"], row["version_id"]) for row in vault_rows[:300]])
    vault, recovery = snapshot(vault_rows), snapshot(recovery_rows)
    plain = compare(vault, recovery, manifest=manifest, report=report, expected_statuses=REPLICA)

    shuffled = recovery.sample(frac=1, random_state=3).reset_index(drop=True)
    chunked = compare(
        _in_chunks(vault, 4), _in_chunks(shuffled, 5), manifest=_in_chunks(manifest, 3),
        report=_in_chunks(report.iloc[::-1].reset_index(drop=True), 2), expected_statuses=REPLICA,
    )

    assert chunked.counts == plain.counts
    assert plain.counts["failed_tasks"] == len(failed) == plain.counts["missing"]
    assert plain.counts["content_mismatches"] == 1 and plain.counts["extra"] == 1
    columns = ["key", "version_id", "category", "recovery_size", "error_code", "result_message"]
    ordered = [frame.details[columns].sort_values(["key", "version_id"]).reset_index(drop=True)
               for frame in (plain, chunked)]
    pd.testing.assert_frame_equal(ordered[0], ordered[1])


def test_version_whose_failed_task_changed_its_status_stays_expected() -> None:
    # A failed replication task turns the source's REPLICA status into FAILED. The manifest and
    # the report still say the job had to recover it, so the proof must not drop it.
    source = version("k", "v1", replication_status="FAILED")
    manifest = manifest_of([("anchor.txt", "a1"), ("k", "v1")])
    report = report_of([
        ("anchor.txt", "a1", "succeeded", None, "success"),
        ("k", "v1", "failed", "InternalError", "interrupted"),
    ])

    result = run([source], [], manifest=manifest, report=report)

    assert category_of(result, "k", "v1") == TASK_FAILED
    assert result.counts["expected"] == 2 and result.counts["failed_tasks"] == 1
    assert result.verdict == "FAIL"
    assert retry_candidates(result)[["key", "version_id"]].values.tolist() == [["k", "v1"]]

    recovered = run([source], [replicated(source)], manifest=manifest, report=report)
    assert category_of(recovered, "k", "v1") == RECOVERED_IDENTICAL
    assert recovered.verdict == "PASS"


def test_vault_version_with_unreadable_replication_status_is_unknown_not_skipped() -> None:
    # Its HEAD failed: whether the filter selects it cannot be known, so it must not pass silently.
    source = version("k", "v1", replication_status="unknown")

    result = run([source], [])

    assert category_of(result, "k", "v1") == UNKNOWN_UNREADABLE
    assert result.counts["unknown"] == 1
    assert result.verdict == "FAIL"


# --------------------------------------------------------------------------- the vault decides what is expected


def test_a_listed_non_replica_is_never_excused() -> None:
    # Written straight into the vault (no replication status), then slipped into the manifest and
    # copied into the recovery bucket: the proof must refuse it on both counts.
    outsider = version("planted.txt", "p1", replication_status=None)
    manifest = manifest_of([("anchor.txt", "a1"), ("planted.txt", "p1")])
    report = report_of([("anchor.txt", "a1", "succeeded", None, "success"),
                        ("planted.txt", "p1", "succeeded", None, "success")])

    result = run([outsider], [replicated(outsider)], manifest=manifest, report=report)

    assert category_of(result, "planted.txt", "p1") == EXTRA_IN_RECOVERY
    assert bool(result.details.set_index("key").loc["planted.txt", IN_MANIFEST_NOT_ELIGIBLE])
    assert result.counts["extra"] == 1 and result.counts["manifest_not_eligible"] == 1
    assert result.verdict == "FAIL"


def test_a_failed_status_without_a_task_of_this_run_is_unknown() -> None:
    # REPLICA or not cannot be told once it reads FAILED; only this run's report can explain it.
    source = version("k", "v1", replication_status="FAILED")

    result = run([source], [], manifest=manifest_of([("anchor.txt", "a1")]),
                 report=report_of([("anchor.txt", "a1", "succeeded", None, "success")]))

    assert category_of(result, "k", "v1") == UNKNOWN_UNREADABLE
    assert result.verdict == "FAIL"
    assert retry_candidates(result).empty, "an unexplained version is never copied"


def test_an_expected_version_listed_but_absent_from_every_report_fails() -> None:
    source = version("k", "v1")
    manifest = manifest_of([("anchor.txt", "a1"), ("k", "v1")])

    result = run([source], [replicated(source)], manifest=manifest,
                 report=report_of([("anchor.txt", "a1", "succeeded", None, "success")]))

    assert category_of(result, "k", "v1") == NOT_IN_REPORT
    assert result.counts["not_in_report"] == 1 and result.verdict == "FAIL"


def test_a_job_finding_fails_even_an_identical_recovery() -> None:
    result = compare(snapshot([ANCHOR]), snapshot([replicated(ANCHOR)]), expected_statuses=REPLICA,
                     findings=["job j: its completion report lists 0 failed tasks, but S3 counted 3"])

    assert result.counts["recovered"] == result.counts["expected"] == 1
    assert result.counts["findings"] == 1 and result.verdict == "FAIL"
    assert result.to_summary()["findings"] == ["job j: its completion report lists 0 failed tasks, but S3 counted 3"]


@pytest.mark.parametrize("copied", [False, True])
def test_a_version_after_the_point_in_time_is_out_of_scope(copied: bool) -> None:
    later = version("k", "late", last_modified=pd.Timestamp("2026-07-01T00:00:00Z"))
    scope = JobScope(("REPLICA",), created_before=pd.Timestamp("2026-06-01T00:00:00Z").to_pydatetime())

    result = compare(snapshot([ANCHOR, later]), snapshot([replicated(ANCHOR), *([replicated(later)] * copied)]),
                     scope=scope)

    row = result.details.set_index("version_id").loc["late"]
    assert row["category"] == (EXTRA_IN_RECOVERY if copied else NOT_EXPECTED)
    assert row["scope"] == "created at or after 2026-06-01T00:00:00Z"
    assert result.counts["expected"] == 1
    assert result.verdict == ("FAIL" if copied else "PASS")
    assert retry_candidates(result).empty


def test_compare_takes_exactly_one_way_to_name_the_scope() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        compare(snapshot([ANCHOR]), snapshot([]), scope=JobScope(("REPLICA",)), expected_statuses=REPLICA)


# --- objects in parts, additional checksums ----------------------------------------------------

MULTIPART_ETAG = '"5f363e0e58a95f06cbe9bbc662c5dfb6-3"'
ONE_PART_CHANGED = '"c9a3c82e8cf8d8f4e1a6e1a0a2d5b7e4-3"'  # the MD5 of the parts' MD5s, one part different


def with_checksums(frame: pd.DataFrame, checksums: dict[str, tuple[str | None, str | None]]) -> pd.DataFrame:
    """Return a snapshot with the checksum columns runbook_lib.snapshot adds, per key (others have none)."""
    pairs = [checksums.get(key, (None, None)) for key in frame["key"]]
    return frame.assign(
        checksum_algorithm=pd.array([algorithm for algorithm, _ in pairs], dtype="string"),
        checksum=pd.array([value for _, value in pairs], dtype="string"),
    )


def compare_in_parts(vault_etag: str, recovery_etag: str, vault_checksum: tuple[str | None, str | None],
                     recovery_checksum: tuple[str | None, str | None]) -> Comparison:
    vault_row = version("large/ledger.parquet", "m1", etag=vault_etag, size=10_747_904)
    recovery_row = replicated({**vault_row, "etag": recovery_etag})
    return compare(
        with_checksums(snapshot([ANCHOR, vault_row]), {"large/ledger.parquet": vault_checksum}),
        with_checksums(snapshot([replicated(ANCHOR), recovery_row]), {"large/ledger.parquet": recovery_checksum}),
        expected_statuses=REPLICA,
    )


def _row(comparison: Comparison, key: str = "large/ledger.parquet") -> pd.Series:
    return comparison.details.set_index("key").loc[key]


def test_an_object_in_parts_whose_multipart_etag_and_checksum_match_is_recovered() -> None:
    checksum = ("SHA256", "q3lnMmCRSTNKiYSkWgNGB5mkQWYTyV8ya0PYZ6VMX3E=-3")

    comparison = compare_in_parts(MULTIPART_ETAG, MULTIPART_ETAG, checksum, checksum)

    assert comparison.verdict == "PASS"
    assert _row(comparison)["category"] == RECOVERED_IDENTICAL
    assert comparison.content_checks == {
        "content_compared": 2, "multipart_etag": 1, "checksum_compared": 1, "checksum_not_compared": 0}


def test_a_copy_with_different_bytes_in_one_part_differs_in_content() -> None:
    comparison = compare_in_parts(MULTIPART_ETAG, ONE_PART_CHANGED, (None, None), (None, None))

    assert comparison.verdict == "FAIL"
    row = _row(comparison)
    assert (row["category"], row["vault_etag"], row["recovery_etag"]) == (
        CONTENT_DIFFERS, MULTIPART_ETAG, ONE_PART_CHANGED)
    assert comparison.counts["content_mismatches"] == 1


def test_a_checksum_of_the_same_algorithm_that_differs_is_a_content_difference() -> None:
    comparison = compare_in_parts(MULTIPART_ETAG, MULTIPART_ETAG, ("SHA256", "AAAA-3"), ("SHA256", "BBBB-3"))

    assert comparison.verdict == "FAIL"
    assert _row(comparison)["category"] == CONTENT_DIFFERS
    assert comparison.content_checks["checksum_compared"] == 1


@pytest.mark.parametrize("recovery_checksum", [(None, None), ("unknown", "unknown"), ("CRC32", "3R8e4A==")],
                         ids=["missing", "unreadable", "other-algorithm"])
def test_a_checksum_that_cannot_be_compared_decides_nothing_and_is_counted(
    recovery_checksum: tuple[str | None, str | None]
) -> None:
    comparison = compare_in_parts(MULTIPART_ETAG, MULTIPART_ETAG, ("SHA256", "AAAA-3"), recovery_checksum)

    assert comparison.verdict == "PASS"
    assert _row(comparison)["category"] == RECOVERED_IDENTICAL
    assert (comparison.content_checks["checksum_compared"], comparison.content_checks["checksum_not_compared"]) == (
        0, 1)


def test_the_evidence_says_how_content_was_compared() -> None:
    checksum = ("SHA256", "AAAA-3")
    comparison = compare_in_parts(MULTIPART_ETAG, MULTIPART_ETAG, checksum, checksum)

    text = describe_content_checks(comparison.content_checks)

    assert "2 versions found in both buckets" in text and "1 of them were uploaded in parts" in text
    assert "compared as it is" in text and "1 also had an additional checksum" in text
    assert comparison.to_summary()["content_checks"] == comparison.content_checks


# --------------------------------------------------------------------------- a sample drill


def sample_of(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Return a sample drill's draw as `sampling.drawn_versions` reads it back."""
    return pd.DataFrame({"bucket": "vault", "key": [k for k, _ in pairs], "version_id": [v for _, v in pairs]})


def compare_sample(vault_rows: list[dict[str, Any]], recovery_rows: list[dict[str, Any]],
                   drawn: list[tuple[str, str]], listed: list[tuple[str, str]] | None = None) -> Comparison:
    """Compare as a sample drill does: the anchor and `drawn` were drawn, the job's manifest lists `listed`."""
    chosen = [("anchor.txt", "a1"), *drawn]
    manifest = manifest_of(chosen if listed is None else [("anchor.txt", "a1"), *listed])
    report = report_of([(k, v, "succeeded", None, "success") for k, v in chosen])
    return compare(snapshot([ANCHOR, *vault_rows]), snapshot([replicated(ANCHOR), *recovery_rows]),
                   scope=JobScope(("REPLICA",)), manifest=manifest, report=report, sample=sample_of(chosen))


def test_a_sample_drill_expects_its_sample_and_calls_the_rest_not_sampled() -> None:
    drawn, left = version("k", "drawn"), version("k", "left")

    result = compare_sample([drawn, left], [replicated(drawn)], [("k", "drawn")])

    assert result.verdict == "PASS"
    assert category_of(result, "k", "drawn") == RECOVERED_IDENTICAL
    assert category_of(result, "k", "left") == NOT_SAMPLED
    assert (result.counts["expected"], result.counts["recovered"], result.counts["not_sampled"]) == (2, 2, 1)
    assert result.counts["missing"] == 0
    assert result.details.set_index("version_id").loc["left", "in_sample"] == False  # noqa: E712
    assert retry_candidates(result).empty


def test_a_version_in_scope_but_not_drawn_found_in_the_recovery_bucket_is_extra() -> None:
    drawn, left = version("k", "drawn"), version("k", "left")

    result = compare_sample([drawn, left], [replicated(drawn), replicated(left)], [("k", "drawn")])

    assert category_of(result, "k", "left") == EXTRA_IN_RECOVERY
    assert result.counts["extra"] == 1 and result.counts["not_sampled"] == 0
    assert result.verdict == "FAIL"


def test_a_drawn_version_missing_or_damaged_fails_a_sample_drill_and_is_retried() -> None:
    lost, held = version("k", "lost"), version("k", "held", object_lock_legal_hold_status="ON")

    result = compare_sample([lost, held], [{**replicated(held), "object_lock_legal_hold_status": "OFF"}],
                            [("k", "lost"), ("k", "held")])

    assert category_of(result, "k", "lost") == MISSING_IN_RECOVERY
    assert category_of(result, "k", "held") == LEGAL_HOLD_DIFFERS
    assert result.verdict == "FAIL"
    assert retry_candidates(result)[["key", "version_id"]].values.tolist() == [["k", "lost"]]


def test_the_manifest_must_list_exactly_the_sample() -> None:
    drawn, left, other = version("k", "drawn"), version("k", "left"), version("k", "other")

    result = compare_sample([drawn, left, other], [replicated(drawn), replicated(other)],
                            [("k", "drawn"), ("k", "other")], listed=[("k", "drawn"), ("k", "left")])

    # Listed though not drawn: the manifest widened the sample. Drawn though not listed: it narrowed it.
    assert bool(result.details.set_index("version_id").loc["left", IN_MANIFEST_NOT_ELIGIBLE])
    assert category_of(result, "k", "other") == ELIGIBLE_NOT_IN_MANIFEST
    assert result.verdict == "FAIL"


def test_an_undrawn_version_whose_status_cannot_be_read_does_not_fail_the_sample() -> None:
    drawn, unreadable = version("k", "drawn"), version("k", "unreadable", replication_status="unknown")

    result = compare_sample([drawn, unreadable], [replicated(drawn)], [("k", "drawn")])
    drawn_unreadable = compare_sample([drawn, unreadable], [replicated(drawn)], [("k", "drawn"), ("k", "unreadable")])

    assert category_of(result, "k", "unreadable") == NOT_SAMPLED
    assert result.verdict == "PASS"
    assert category_of(drawn_unreadable, "k", "unreadable") == UNKNOWN_UNREADABLE
    assert drawn_unreadable.verdict == "FAIL"
