"""End-to-end drills: the whole runbook on the embedded backend, as `runbook drill` runs it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from runbook_lib import cli
from runbook_lib.drill import DRILL_PARAMS, phase_names, run_phases
from runbook_lib.embedded.seed import RECOVER, seed_vault
from runbook_lib.embedded.server import start_backend
from runbook_lib.errors import PhaseError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drill")]

RECOVERY_BUCKET = "recovery-golden-copies"


@pytest.fixture(autouse=True)
def _restore_environ() -> Any:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def test_drill_passes_and_its_counts_equal_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A relative run folder, as `make drill` passes it: the kernels run elsewhere and must still find it.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "drill"

    status = cli.main(["drill", "--objects", "150", "--out", "runs/drill"])

    assert status == 0
    # The terminal shows the phases and the verdict, not the kernels' start-up warnings.
    assert "WARNING" not in capfd.readouterr().err
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = _summary(out)
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["source_versions"] == truth["counts"]["source_versions"]
    assert summary["counts"]["expected"] == truth["counts"]["expected"]
    assert summary["counts"]["recovered"] == truth["counts"]["expected"]
    assert summary["counts"]["missing"] == 0 and summary["counts"]["failed_tasks"] == 0
    assert [p["phase"] for p in summary["phases"]] == phase_names()
    assert all(p["status"] == "ok" and p["seconds"] > 0 for p in summary["phases"])
    assert summary["recovery_seconds"] > 0
    html = (out / "evidence.html").read_text()
    assert "Verdict: PASS" in html and "Phase 06" in html and "Phase 08" in html
    assert (out / "details" / "all_versions.csv").exists()


def test_drill_with_failed_tasks_passes_after_a_retry_round(tmp_path: Path) -> None:
    out = tmp_path / "faulty"

    status = cli.main(["drill", "--objects", "150", "--out", str(out), "--fail-tasks", "0.2", "--fault-seed", "5"])

    assert status == 0
    summary = _summary(out)
    truth = json.loads((out / "ground_truth.json").read_text())
    failed_first = summary["first_round_failed_tasks"]
    assert failed_first, "the faults should have failed some tasks of the first job"
    assert {f["error_code"] for f in failed_first} == {"InternalError"}
    rounds = summary["retry_rounds"]
    assert len(rounds) == 1 and rounds[0]["versions"] == len(failed_first) and rounds[0]["failed"] == 0
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["recovered"] == truth["counts"]["expected"]


def _client(service: str, profile: str) -> Any:
    return boto3.Session(profile_name=profile).client(service)


def test_damage_after_a_drill_fails_reverification_with_exactly_those_versions(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with start_backend(config_file=tmp_path / "aws-config") as backend:
        backend.reset()
        truth = seed_vault(backend.endpoint, 120, 2)
        phases = [p for p in phase_names() if p < "08"]
        run_phases(DRILL_PARAMS, run_dir, phases, confirm_job=True, extra_env=backend.environ())
        assert _summary(run_dir)["verdict"] == "PASS"

        recovered = [v for v in truth.versions if v.expected_outcome == RECOVER]
        removed = next(v for v in recovered if v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON")
        extended = next(v for v in recovered if v.object_lock_mode == "GOVERNANCE" and v is not removed)
        released = next(
            v for v in recovered if v.object_lock_legal_hold_status == "ON" and v not in (removed, extended))
        s3 = _client("s3", "drill-recovery")
        s3.delete_object(Bucket=RECOVERY_BUCKET, Key=removed.key, VersionId=removed.version_id)
        later = datetime.now(timezone.utc) + timedelta(days=4000)
        s3.put_object_retention(Bucket=RECOVERY_BUCKET, Key=extended.key, VersionId=extended.version_id,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
        s3.put_object_legal_hold(Bucket=RECOVERY_BUCKET, Key=released.key, VersionId=released.version_id,
                                 LegalHold={"Status": "OFF"})

        with pytest.raises(PhaseError) as stopped:
            run_phases(DRILL_PARAMS, run_dir, ["07_verify"], confirm_job=True, extra_env=backend.environ())
        assert (stopped.value.phase, stopped.value.error_name) == ("07_verify", "NotVerifiedError")
        assert "NOT verified" in stopped.value.error_value
        assert stopped.value.notebook_path == str(run_dir.resolve() / "notebooks" / "07_verify.ipynb")
        backend.reset()

    summary = _summary(run_dir)
    assert summary["verdict"] == "FAIL"
    details = pd.read_csv(run_dir / "details" / "all_versions.csv", keep_default_na=False)
    damaged = details[details["category"] != "recovered_identical"]
    damaged = damaged[damaged["category"] != "not_expected"]
    by_version = {(row.key, row.version_id): row for row in damaged.itertuples()}
    assert set(by_version) == {(v.key, v.version_id) for v in (removed, extended, released)}
    # The removed version was retried; Batch Replication refuses versions deleted at the destination.
    gone = by_version[(removed.key, removed.version_id)]
    assert bool(gone.missing_in_recovery)
    assert gone.category in ("missing_in_recovery", "task_failed")
    if gone.category == "task_failed":
        assert gone.error_code == "DstObjectHardDeleted"
    assert by_version[(extended.key, extended.version_id)].category == "retain_until_differs"
    assert by_version[(released.key, released.version_id)].category == "legal_hold_differs"
    assert summary["counts"]["retention_mismatches"] == 1
    assert summary["counts"]["legal_hold_mismatches"] == 1
    assert summary["counts"]["missing"] == 1


def test_drill_verified_from_inventory_on_athena_passes_with_the_same_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "inventory"

    status = cli.main(["drill", "--objects", "100", "--verify", "inventory", "--engine", "athena",
                       "--out", "runs/inventory"])

    assert status == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = _summary(out)
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["source_versions"] == truth["counts"]["source_versions"]
    assert summary["counts"]["recovered"] == summary["counts"]["expected"] == truth["counts"]["expected"]
    verification = summary["verification"]
    assert verification["method"] == "inventory" and verification["engine"] == "athena"
    assert verification["head_check"]["disagreements"] == 0 and verification["head_check"]["sampled_identical"] > 0
    assert verification["reports"]["vault"]["manifest"].endswith("/manifest.json")
    # Cleanup removed the inventory configurations the run made; the reports stay as evidence.
    ledger = json.loads((out / "ledger.json").read_text())
    removed = [r for r in ledger["cleanup"] if r["resource"] == "inventory configuration"]
    assert len(removed) == 2 and {r["action"] for r in removed} == {"removed"}
