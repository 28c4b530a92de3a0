"""Evidence: phase timings, summary.json, detail CSVs, plots and evidence.html."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd

from runbook_lib import evidence
from runbook_lib.ledger import LEDGER_FILE, Ledger, open_ledger
from runbook_lib.run_state import PhaseRecord


def _executed(folder: Path, phase: str, seconds: float, exception: bool = False, started: str = "00:00:00",
              ended: str = "00:00:10") -> None:
    """Leave what a headless phase leaves: its executed notebook, and its record in the run state."""
    ledger = open_ledger(folder) if (folder / LEDGER_FILE).exists() else Ledger(folder)
    ledger.state.phases[phase] = PhaseRecord(status="failed" if exception else "ok", seconds=seconds,
                                             started=f"2026-11-27T{started}+00:00", ended=f"2026-11-27T{ended}+00:00")
    ledger.save()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {phase} heading"), nbformat.v4.new_code_cell("print('hi')")]
    notebook.metadata["papermill"] = {
        "duration": seconds, "exception": exception,
        "start_time": "2026-11-27T00:00:00", "end_time": "2026-11-27T00:00:10",
    }
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / "notebooks" / f"{phase}.ipynb")


def test_timings_come_from_the_run_state_in_phase_order(tmp_path: Path) -> None:
    _executed(tmp_path, "06_batch_replication", 4.25)
    _executed(tmp_path, "00_preflight", 2.5)
    _executed(tmp_path, "07_verify", 1.0, exception=True)

    timings = evidence.phase_timings(tmp_path)

    assert [(t["phase"], t["status"], t["seconds"]) for t in timings] == [
        ("00_preflight", "ok", 2.5), ("06_batch_replication", "ok", 4.25), ("07_verify", "failed", 1.0)]


def test_timings_of_a_run_folder_of_the_previous_release_are_derived_from_start_and_end(tmp_path: Path) -> None:
    # Phases stepped through in JupyterLab by the previous release recorded no seconds.
    (tmp_path / "ledger.json").write_text(json.dumps({"phases": {
        "01_recovery_bucket": {
            "status": "ok", "started": "2026-11-27T00:00:00+00:00", "ended": "2026-11-27T00:00:07+00:00"},
        "00_preflight": {"status": "failed", "started": "2026-11-27T00:00:00+00:00", "seconds": 1.5},
    }}))

    timings = evidence.phase_timings(tmp_path)

    assert [(t["phase"], t["status"], t["seconds"]) for t in timings] == [
        ("00_preflight", "failed", 1.5), ("01_recovery_bucket", "ok", 7.0)]


def test_summary_counts_recovery_time_from_phases_00_to_06_plus_retries(tmp_path: Path) -> None:
    # The wall clock from 00's start to 06's end: the gaps between phases are part of a recovery.
    _executed(tmp_path, "00_preflight", 2.0, started="00:00:00", ended="00:00:02")
    _executed(tmp_path, "06_batch_replication", 5.0, started="00:00:04", ended="00:00:09")
    _executed(tmp_path, "07_verify", 100.0, started="00:00:10", ended="00:01:50")

    path = evidence.write_summary(tmp_path, "PASS", {"expected": 3, "recovered": 3},
                                  retry_rounds=[{"round": 1, "seconds": 1.5}])

    summary = json.loads(path.read_text())
    assert summary["verdict"] == "PASS" and summary["counts"] == {"expected": 3, "recovered": 3}
    assert summary["recovery_seconds"] == 9 + 1.5
    assert [p["phase"] for p in summary["phases"]] == ["00_preflight", "06_batch_replication", "07_verify"]
    assert summary["retry_rounds"] == [{"round": 1, "seconds": 1.5}]


def test_refresh_adds_phases_that_ran_after_the_summary(tmp_path: Path) -> None:
    _executed(tmp_path, "00_preflight", 2.0)
    evidence.write_summary(tmp_path, "PASS", {})
    _executed(tmp_path, "08_cleanup", 1.0)

    evidence.refresh_phases(tmp_path)

    phases = json.loads((tmp_path / "summary.json").read_text())["phases"]
    assert [p["phase"] for p in phases] == ["00_preflight", "08_cleanup"]


def test_evidence_html_holds_every_executed_notebook_in_order_and_the_verdict(tmp_path: Path) -> None:
    _executed(tmp_path, "01_recovery_bucket", 1.0)
    _executed(tmp_path, "00_preflight", 1.0)
    evidence.write_summary(tmp_path, "FAIL", {"missing": 2})

    html = evidence.export_html(tmp_path).read_text()

    assert "Verdict: FAIL" in html and "missing: 2" in html
    assert html.index("00_preflight heading") < html.index("01_recovery_bucket heading")


def test_details_are_written_as_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"key": ["a b"], "version_id": ["v1"]})

    (path,) = evidence.write_details(tmp_path, {"missing_in_recovery": frame})

    assert path.name == "missing_in_recovery.csv"
    assert pd.read_csv(path).to_dict("records") == [{"key": "a b", "version_id": "v1"}]


def test_plots_show_each_nonzero_category_and_the_progress() -> None:
    figure = evidence.plot_categories({"recovered_identical": 5, "missing_in_recovery": 2, "extra_in_recovery": 0})
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == ["recovered_identical", "missing_in_recovery"]

    history = [{"at": "2026-11-27T00:00:00+00:00", "succeeded": 0, "failed": 0},
               {"at": "2026-11-27T00:00:05+00:00", "succeeded": 8, "failed": 1}]
    progress = evidence.plot_progress(history)
    assert [line.get_label() for line in progress.axes[0].get_lines()] == ["succeeded", "failed"]


def test_a_verification_that_stopped_on_an_error_fails_whatever_the_summary_said(tmp_path: Path) -> None:
    # Phase 07 may stop before it could withdraw an earlier PASS (a profile gone, an account changed).
    evidence.write_summary(tmp_path, "PASS", {"expected": 3, "recovered": 3})

    assert evidence.settle_unfinished_verification(tmp_path, "ProfileNotFoundError: drill-vault") == "FAIL"

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "FAIL" and "ProfileNotFoundError" in summary["reason"]


def test_a_verification_waiting_for_confirmation_stays_incomplete(tmp_path: Path) -> None:
    evidence.write_summary(tmp_path, "INCOMPLETE", {}, waiting={"what": "retry round 1"})

    assert evidence.settle_unfinished_verification(tmp_path, "ConfirmationRequired") == "INCOMPLETE"


def test_withdrawing_writes_incomplete_before_removing_the_old_evidence(tmp_path: Path) -> None:
    evidence.write_summary(tmp_path, "PASS", {"expected": 1})
    (tmp_path / "evidence.html").write_text("Verdict: PASS")
    (tmp_path / "reconciliation.html").write_text("Reconciliation: PASS")
    (tmp_path / "details").mkdir()
    (tmp_path / "details" / "legal_hold_differs.csv").write_text("key\n")

    evidence.withdraw_verdict(tmp_path, "PASS", reason="phase 06 ran after the last verification")

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "INCOMPLETE" and "earlier verdict PASS is withdrawn" in summary["reason"]
    assert not (tmp_path / "evidence.html").exists() and not list((tmp_path / "details").glob("*.csv"))
    assert not (tmp_path / "reconciliation.html").exists()
