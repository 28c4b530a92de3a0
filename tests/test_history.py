"""The drill and recovery history, `runbook history`, and the auditor's reconciliation page."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from runbook_lib import cli, drill, evidence, history, proof, reconciliation
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.errors import HistoryError, ParameterError, PhaseError
from runbook_lib.ledger import Ledger
from runbook_lib.params import load_params, parse_params
from runbook_lib.run_state import PhaseRecord

COUNTS = {"source_versions": 130, "expected": 100, "recovered": 96, "missing": 1, "extra": 1,
          "content_mismatches": 1, "retention_mismatches": 0, "legal_hold_mismatches": 1, "failed_tasks": 1,
          "unknown": 0, "not_in_manifest": 0, "manifest_not_eligible": 0, "not_in_report": 0, "findings": 1,
          "not_sampled": 0}
CATEGORIES = {"task_failed": 1, "missing_in_recovery": 1, "extra_in_recovery": 1, "content_differs": 1,
              "legal_hold_differs": 1, "recovered_identical": 96, "not_sampled": 0, "not_expected": 29}


def _run_folder(parent: Path, name: str = "run") -> Path:
    """Return a run folder with a run state whose phases 00 and 06 finished, as the phases leave it."""
    folder = parent / name
    ledger = Ledger(folder)
    ledger.state.run_id, ledger.state.started = "drill", "2026-11-27T00:00:00+00:00"
    ledger.state.phases["00_preflight"] = PhaseRecord(status="ok", seconds=2.0, started="2026-11-27T00:00:00+00:00",
                                                      ended="2026-11-27T00:00:02+00:00")
    ledger.state.phases["06_batch_replication"] = PhaseRecord(
        status="ok", seconds=5.0, started="2026-11-27T00:00:05+00:00", ended="2026-11-27T00:00:10+00:00")
    ledger.save()
    return folder


def _summary(folder: Path, verdict: str = "FAIL", **extra: Any) -> tuple[Path, dict[str, Any]]:
    """Write a summary as phase 07 writes it (evidence.write_summary) and return its path and the run's identity."""
    identity = history.run_identity(load_params(DRILL_PARAMS), DRILL_PARAMS, folder)
    path = evidence.write_summary(
        folder, verdict, dict(COUNTS), categories=dict(CATEGORIES),
        findings=["the report's failed rows (2) differ from the job's counter (1)"],
        run={"purpose": "drill", "backend": "embedded", "scale": "full", "description": "a full drill"},
        identity=identity, bytes={"expected": 5000, "recovered": 4800}, **extra)
    return path, identity


def test_each_verdict_appends_one_record_that_pandas_reads(tmp_path: Path) -> None:
    first, second = _run_folder(tmp_path, "first"), _run_folder(tmp_path, "second")
    path, identity = _summary(first, "PASS")
    assert identity["history_file"] == str(tmp_path / "history.jsonl")  # next to the run folders

    history.record_verdict(path, identity)
    path, identity = _summary(second, "FAIL")
    history.record_verdict(path, identity)

    frame = pd.read_json(tmp_path / "history.jsonl", lines=True)
    assert list(frame["verdict"]) == ["PASS", "FAIL"]
    assert list(frame["run_folder"]) == [str(first.resolve()), str(second.resolve())]
    assert set(frame["schema"]) == {history.SCHEMA}
    flat = pd.json_normalize(frame.to_dict("records"))
    assert list(flat["versions.expected"]) == [100, 100] and list(flat["versions.recovered"]) == [96, 96]
    assert list(flat["accounts.vault"]) == ["111111111111"] * 2
    assert list(flat["phase_seconds.06_batch_replication"]) == [5.0, 5.0]
    assert list(flat["recovery_seconds"]) == [10.0, 10.0]  # 00's start to 06's end
    assert flat["libraries.boto3"].notna().all() and flat["libraries.moto"].notna().all()
    assert list(flat["bytes.recovered"]) == [4800, 4800]
    assert frame["buckets"][0] == [{"vault_bucket": "vault-golden-copies",
                                    "recovery_bucket": "recovery-golden-copies", "key_prefix": None}]


def test_a_summary_without_a_verdict_adds_no_record(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "INCOMPLETE", waiting={"what": "retry round 1"})

    assert history.record_verdict(path, identity) is None
    assert not (tmp_path / "history.jsonl").exists()


def test_keys_other_releases_add_to_the_summary_are_recorded_when_present(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    buckets = [{"vault_bucket": f"vault-{n}", "recovery_bucket": f"vault-{n}-recovered", "verdict": "PASS"}
               for n in range(3)]
    path, identity = _summary(folder, "PASS", buckets=buckets, as_of="2026-11-01T00:00:00+00:00",
                              current_view={"counts": {"delete_marker_not_replicated": 6, "archived": 1}},
                              archived={"restored": 0, "not_recovered": 2})

    record = json.loads(history.record_verdict(path, identity).read_text())  # type: ignore[union-attr]

    assert record["buckets"] == buckets and record["as_of"] == "2026-11-01T00:00:00+00:00"
    assert record["current_view"]["counts"]["delete_marker_not_replicated"] == 6
    assert record["archived"]["not_recovered"] == 2
    page = reconciliation.markdown(json.loads(path.read_text()), identity)
    assert "2026-11-01T00:00:00+00:00" in page and "| delete_marker_not_replicated | 6 |" in page


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    target = tmp_path / "history.jsonl"
    record = {"schema": 1, "padding": "x" * 20_000}

    def append(worker: int) -> None:
        for number in range(25):
            history.append_record(target, {**record, "worker": worker, "number": number})

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = target.read_text().splitlines()
    assert len(lines) == 200
    assert sorted((r["worker"], r["number"]) for r in map(json.loads, lines)) == [
        (w, n) for w in range(8) for n in range(25)]


def test_a_record_appended_after_a_line_cut_short_stays_a_line_of_its_own(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "PASS")
    history.record_verdict(path, identity)
    target = Path(identity["history_file"])
    target.write_bytes(target.read_bytes()[:-40])  # the end of the last record lost

    history.record_verdict(path, identity)

    read = history.read_history(target)
    assert len(read.records) == 1 and read.lines == [2]
    assert read.problems == [f"{target}, line 1: " + read.problems[0].split(": ", 1)[1]]
    assert "not valid JSON" in read.problems[0]


def test_runbook_history_prints_one_line_per_record_and_marks_a_reverification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _run_folder(tmp_path, "first"), _run_folder(tmp_path, "second")
    for folder, verdict in ((first, "PASS"), (first, "FAIL"), (second, "PASS")):
        path, identity = _summary(folder, verdict)
        history.record_verdict(path, identity)

    status = cli.main(["history", "--file", str(tmp_path / "history.jsonl")])

    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[0] == f"history: {tmp_path / 'history.jsonl'} (3 record(s))"
    header, lines = out[1], out[2:]
    assert header.split()[:4] == ["time", "(UTC)", "run", "purpose"]
    assert [line.split()[4] for line in lines] == ["PASS", "FAIL", "PASS"]
    assert all("drill/embedded" in line and "96/100" in line and "10.0 s" in line for line in lines)
    # Differing: the versions in a category of difference, the extra one included (1 + 1 + 1 + 1 + 1).
    assert [line.split()[6] for line in lines] == ["5", "5", "5"]
    assert "re-verification of the run of line 1" in lines[1] and "re-verification" not in lines[2]


def test_runbook_history_without_a_history_says_so_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert cli.main(["history"]) == 0

    assert f"no history yet: {tmp_path / 'runs' / 'history.jsonl'} does not exist" in capsys.readouterr().out


def test_bad_records_are_named_by_file_and_line_and_the_good_ones_still_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "PASS")
    good = json.dumps(history.build_record(json.loads(path.read_text()), identity))
    wrong_type = json.dumps({**json.loads(good), "recovery_seconds": "fast"})
    newer = json.dumps({**json.loads(good), "schema": 2})
    target = tmp_path / "history.jsonl"
    target.write_text("\n".join([good, good[:70], wrong_type, newer, "[1, 2]", good]) + "\n")

    status = cli.main(["history", "--file", str(target)])

    captured = capsys.readouterr()
    assert status == 2  # bad input, as for any file the command cannot read as it should
    assert "(2 record(s))" in captured.out and len(captured.out.splitlines()) == 4
    problems = [line.strip() for line in captured.err.splitlines()[1:]]
    assert [p.split(": ")[0] for p in problems] == [f"{target}, line {n}" for n in (2, 3, 4, 5)]
    assert "not valid JSON" in problems[0]
    assert "'recovery_seconds' should be int or float or null" in problems[1]
    assert "unknown schema 2" in problems[2] and "expected a JSON object" in problems[3]


def test_history_file_is_taken_from_the_parameter_files_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(DRILL_PARAMS.read_text())
    data["history"] = {"file": "records/drills.jsonl"}
    (tmp_path / "config").mkdir()
    params_file = tmp_path / "config" / "recovery.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params = load_params(params_file)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert history.history_file(params, params_file, tmp_path / "runs" / "r1") == \
        tmp_path / "config" / "records" / "drills.jsonl"
    assert cli.main(["history", "--params", str(params_file)]) == 0
    assert str(tmp_path / "config" / "records" / "drills.jsonl") in capsys.readouterr().out
    with pytest.raises(ParameterError, match=r"history\.file: got 'drills\.csv'; expected a file path ending in "):
        parse_params({**data, "history": {"file": "drills.csv"}}, "bad.yaml")


def test_the_reconciliation_figures_equal_the_summary_counts(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "FAIL")
    summary = json.loads(path.read_text())

    figures = reconciliation.figures(summary)
    page = reconciliation.write_reconciliation(folder, identity).read_text()

    assert (figures.source_versions, figures.expected, figures.recovered) == (130, 100, 96)
    assert figures.not_recovered == COUNTS["expected"] - COUNTS["recovered"]
    assert {name: count for name, count, _ in figures.differing} == {
        name: count for name, count in CATEGORIES.items()
        if count and name not in ("recovered_identical", "not_expected", "not_sampled")}
    assert [(name, count) for name, count, _ in figures.left_out] == [("not_expected", 29)]
    assert figures.findings == summary["findings"]
    assert (figures.bytes_expected, figures.bytes_recovered) == (5000, 4800)
    # The page gives the same figures with the run's identity.
    for text in ("<td>expected (in scope)</td><td>100</td><td>5,000</td>",
                 "<td>recovered identical</td><td>96</td><td>4,800</td>",
                 "<td>expected, not recovered identical</td><td>4</td>",
                 "<td>legal_hold_differs</td><td>1</td>", "111111111111", "222222222222",
                 "vault-golden-copies -&gt; recovery-golden-copies", identity["parameters_digest"],
                 f"s3-vault-recovery-runbook {identity['tool_version']}"):
        assert text in page


def test_the_evidence_holds_the_reconciliation_and_the_trend(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "PASS")
    history.record_verdict(path, identity)

    html = evidence.export_html(folder).read_text()

    assert "Reconciliation: PASS" in html and "The trend over runs" in html
    assert 'alt="Recovery time and verdict of each run in the history" src="data:image/png;base64,' in html
    figure = history.plot_trend(history.read_history(identity["history_file"]).records)
    assert [len(c.get_offsets()) for c in figure.axes[0].collections] == [1]


def test_a_verification_stopped_on_an_error_is_recorded_as_fail_once(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    params_file = tmp_path / "parameters.yaml"
    shutil.copy(DRILL_PARAMS, params_file)
    evidence.withdraw_verdict(folder, None)  # phase 07 started, then stopped
    stopped = PhaseError("07_verify", "SnapshotError", "the vault could not be listed")

    drill._settle_verification(folder, stopped, params_file)
    drill._settle_verification(folder, stopped, params_file)  # settled already: no second record

    records = history.read_history(tmp_path / "history.jsonl").records
    assert [r["verdict"] for r in records] == ["FAIL"]
    assert "SnapshotError" in records[0]["reason"]
    assert "Reconciliation of the recovery: <span" in (folder / "reconciliation.html").read_text()


def test_a_history_that_cannot_be_written_is_reported_and_changes_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _run_folder(tmp_path)
    path, identity = _summary(folder, "PASS")
    (tmp_path / "taken").write_text("a file, not a folder")
    identity = {**identity, "history_file": str(tmp_path / "taken" / "history.jsonl")}

    with pytest.raises(HistoryError, match=r"cannot append to the history .*taken/history\.jsonl"):
        history.record_verdict(path, identity)
    proof.keep_verdict_record(folder, path, identity)

    assert "warning: the verdict was not added to the history" in capsys.readouterr().out
    assert json.loads(path.read_text())["verdict"] == "PASS"
    assert (folder / "reconciliation.html").exists()


def test_a_drill_keeps_a_relative_history_file_where_the_original_parameter_file_names_it(tmp_path: Path) -> None:
    data = yaml.safe_load(DRILL_PARAMS.read_text())
    data["history"] = {"file": "drills.jsonl"}
    (tmp_path / "config").mkdir()
    original = tmp_path / "config" / "drill.yaml"
    original.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    out.mkdir()

    copy = drill._drill_parameters(original, None, 1, out)

    params = load_params(copy)
    assert history.history_file(params, copy, out) == tmp_path / "config" / "drills.jsonl"
