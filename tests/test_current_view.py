"""A point in time and what applications will read, on small in-process snapshots of one bucket pair."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pytest
import yaml

from runbook_lib import current_view, point_in_time, proof, verify
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.errors import ParameterError
from runbook_lib.params import parse_params
from runbook_lib.scope import JobScope

AS_OF = datetime(2025, 6, 1, tzinfo=timezone.utc)
BEFORE = "2025-03-01T00:00:00Z"
EARLIER = "2025-01-01T00:00:00Z"
LATER = "2025-09-01T00:00:00Z"


def row(key: str, version_id: str, created: str, **changes: Any) -> dict[str, Any]:
    """Return one snapshot row: a STANDARD replica, newest of its key unless `is_latest` says otherwise."""
    return {"key": key, "version_id": version_id, "is_latest": True, "is_delete_marker": False, "size": 10,
            "etag": '"e"', "last_modified": pd.Timestamp(created), "storage_class": "STANDARD",
            "replication_status": "REPLICA", "object_lock_mode": None, "object_lock_retain_until_date": None,
            "object_lock_legal_hold_status": None, **changes}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(row("k", "v", EARLIER)))


def older(key: str, version_id: str, created: str, **changes: Any) -> dict[str, Any]:
    return row(key, version_id, created, is_latest=False, **changes)


# One key per case. The vault's rows, and what the recovery bucket holds after an honest recovery as of AS_OF.
VAULT = frame([
    row("same", "s1", BEFORE),
    row("deleted", "d2", BEFORE, is_delete_marker=True, size=None, etag=None), older("deleted", "d1", EARLIER),
    row("archived", "a2", BEFORE, storage_class="GLACIER"), older("archived", "a1", EARLIER),
    row("not-replica", "n2", BEFORE, replication_status=None), older("not-replica", "n1", EARLIER),
    row("later", "l2", LATER), older("later", "l1", BEFORE),
    row("deleted-later", "x2", LATER, is_delete_marker=True, size=None, etag=None),
    older("deleted-later", "x1", BEFORE),
    row("born-later", "b1", LATER),
    row("deleted-then", "t2", BEFORE, is_delete_marker=True, size=None, etag=None),
    older("deleted-then", "t1", EARLIER, replication_status=None),
])
RECOVERED = frame([
    row("same", "s1", BEFORE), row("deleted", "d1", EARLIER), row("archived", "a1", EARLIER),
    row("not-replica", "n1", EARLIER), row("later", "l1", BEFORE), row("deleted-later", "x1", BEFORE),
])
SCOPE = JobScope(("REPLICA",), as_of=AS_OF)


def view(recovery: pd.DataFrame = RECOVERED, setting: str = "fail_unexplained", vault: pd.DataFrame = VAULT,
         scope: JobScope = SCOPE) -> current_view.CurrentView:
    expected = verify.compare(vault, recovery, scope=scope).details.query("expected")[["key", "version_id"]]
    return current_view.compare_current(vault, recovery, scope, expected, setting=setting)


def reasons(result: current_view.CurrentView) -> dict[str, str]:
    return dict(zip(result.rows["key"], result.rows["reason"], strict=True))


def test_every_key_is_read_as_of_the_point_in_time_and_each_difference_has_its_reason() -> None:
    result = view()

    assert reasons(result) == {
        "archived": "archived", "born-later": "", "deleted": "delete_marker_not_replicated",
        "deleted-later": "", "deleted-then": "", "later": "", "not-replica": "outside_scope", "same": "",
    }
    rows = result.rows.set_index("key")
    # As of the time, the vault served l1 (l2 came later) and nothing for a key created later.
    assert rows.loc["later", "vault_version_id"] == "l1" and rows.loc["later", "recovery_version_id"] == "l1"
    assert rows.loc["born-later", "vault_reads"] == rows.loc["born-later", "recovery_reads"] == current_view.NO_VERSION
    assert rows.loc["deleted-then", "vault_reads"] == current_view.DELETE_MARKER  # 404 on both sides
    assert result.counts_by_reason() == {**dict.fromkeys(current_view.REASONS, 0),
                                         "delete_marker_not_replicated": 1, "archived": 1, "outside_scope": 1}
    assert result.as_record()["as_of"] == "2025-06-01T00:00:00Z" and result.as_record()["same"] == 5


def test_without_a_point_in_time_the_vaults_current_version_is_compared() -> None:
    result = view(scope=JobScope(("REPLICA",)))
    # l2 is in scope now and was not recovered: an expected version missing, which is not explained.
    assert reasons(result)["later"] == "missing" and reasons(result)["deleted-later"] == "delete_marker_not_replicated"
    assert reasons(result)["born-later"] == "missing"


def test_a_recovery_serving_an_older_version_of_a_recovered_key_is_ordering_and_fails_by_default() -> None:
    vault = frame([row("k", "v2", BEFORE), older("k", "v1", EARLIER)])
    # Both versions arrived, yet the recovery bucket serves v1: written last, and current by write order.
    recovery = frame([row("k", "v1", EARLIER), older("k", "v2", BEFORE)])

    result = view(recovery, vault=vault)

    assert reasons(result) == {"k": "ordering"} and result.unexplained() == 1 and result.fails()
    assert "ordering 1" in (result.finding() or "")


def test_a_version_the_vault_did_not_serve_then_is_extra() -> None:
    recovery = pd.concat([RECOVERED, frame([row("born-later", "b1", LATER)])], ignore_index=True)
    result = view(recovery)
    assert reasons(result)["born-later"] == "extra" and result.fails()


@pytest.mark.parametrize(("setting", "explained_only", "with_unexplained"), [
    ("report", False, False),
    ("fail_unexplained", False, True),
    ("fail_any", True, True),
])
def test_each_setting_decides_as_documented(setting: str, explained_only: bool, with_unexplained: bool) -> None:
    missing = RECOVERED[RECOVERED["key"] != "same"].reset_index(drop=True)

    assert view(setting=setting).fails() is explained_only
    assert view(missing, setting=setting).fails() is with_unexplained
    assert reasons(view(missing, setting=setting))["same"] == "missing"


def test_a_failing_view_is_a_finding_that_fails_the_verdict_and_a_passing_one_changes_nothing() -> None:
    passed = verify.compare(VAULT, RECOVERED, scope=SCOPE)
    assert passed.verdict == "PASS"

    kept = proof.with_current_view(passed, VAULT, RECOVERED, SCOPE, "fail_unexplained")
    failed = proof.with_current_view(passed, VAULT, RECOVERED, SCOPE, "fail_any")

    assert kept.verdict == "PASS" and kept.findings == () and kept.current_view is not None
    assert failed.verdict == "FAIL" and failed.counts["findings"] == 1
    assert failed.findings[0].startswith("current view: 3 key(s)") and "fail_any" in failed.findings[0]


def test_a_sample_drill_names_an_undrawn_current_version_not_sampled() -> None:
    expected = pd.DataFrame({"key": ["later"], "version_id": ["l1"]})
    result = current_view.compare_current(VAULT, RECOVERED[RECOVERED["key"] == "later"], SCOPE, expected,
                                          sampled=True)
    assert reasons(result)["same"] == "not_sampled" and not result.fails()


def test_versions_after_the_point_in_time_are_after_as_of_never_expected_and_extra_when_recovered() -> None:
    result = verify.compare(VAULT, RECOVERED, scope=SCOPE)
    details = result.details.set_index(["key", "version_id"])["category"]
    categories = {pair: str(category) for pair, category in details.items()}

    assert result.verdict == "PASS" and result.counts["after_as_of"] == 2  # l2 and b1; x2 is a delete marker
    assert categories[("later", "l2")] == categories[("born-later", "b1")] == verify.AFTER_AS_OF
    copied = pd.concat([RECOVERED, frame([row("later", "l2", LATER)])], ignore_index=True)
    assert verify.compare(VAULT, copied, scope=SCOPE).counts["extra"] == 1


def test_the_point_in_time_is_the_scopes_created_before_and_is_said_so() -> None:
    scope = JobScope(("REPLICA",), as_of=AS_OF)
    assert scope.created_before == AS_OF
    assert scope.manifest_filter()["CreatedBefore"] == AS_OF
    assert "created before the point in time 2025-06-01T00:00:00Z" in scope.describe()
    assert scope.as_record()["as_of"] == "2025-06-01T00:00:00Z"
    with pytest.raises(ValueError, match="created_before must be None or equal to as_of"):
        JobScope(("REPLICA",), created_before=datetime(2025, 1, 1, tzinfo=timezone.utc), as_of=AS_OF)


def test_phase_00_counts_what_the_point_in_time_selects() -> None:
    listed = VAULT[["key", "version_id", "is_delete_marker", "size", "last_modified", "storage_class"]].copy()
    selection = point_in_time.select_as_of(listed, SCOPE)

    assert selection is not None and point_in_time.select_as_of(listed, JobScope(("REPLICA",))) is None
    # Before it and not archived: s1 d1 a1 n1 n2 l1 x1 t1 (a listing cannot tell n2's replication status).
    assert (selection.versions_before, selection.bytes_before) == (8, 80)
    assert (selection.versions_left_out, selection.delete_markers_before, selection.delete_markers_after) == (2, 2, 1)
    assert (selection.keys_with_later_latest, selection.keys_not_yet_created) == (2, 1)


def _params(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(DRILL_PARAMS.read_text())
    data.update(changes)
    return dict(data)


def test_recover_as_of_is_checked_with_the_job_window_before_anything_runs() -> None:
    params = parse_params(_params(recover_as_of="2025-06-01T00:00:00Z"))
    assert params.recover_as_of == AS_OF and params.verification.current_view == "fail_unexplained"

    with pytest.raises(ParameterError) as error:
        parse_params(_params(recover_as_of="2999-01-01T00:00:00Z",
                             job={"created_before": "2025-01-01T00:00:00Z", "created_after": "3000-01-01T00:00:00Z"},
                             verification={"current_view": "strict"}))
    text = str(error.value)
    assert "recover_as_of: got '2999-01-01T00:00:00+00:00'; expected a time that has passed" in text
    assert "job.created_before" in text and "drop job.created_before" in text
    assert "job.created_after" in text and "a time before recover_as_of" in text
    assert "verification.current_view: got 'strict'" in text
