"""What the notebooks show an analyst: full advice where action is needed, tables that wrap, a verdict
that stands out, the confirmation gate that stops Run All without a traceback, and a finished phase
that the run folder's summary no longer calls running."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from jupyter_client.manager import start_new_kernel

from runbook_lib import batch_job, evidence, guide
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.errors import ConfirmationRequired, NotVerifiedError, PreflightError
from runbook_lib.ledger import open_ledger
from runbook_lib.params import load_params
from runbook_lib.preflight import Check

LONG_ADVICE = ("turn on versioning for the vault bucket, then enable Object Lock on it with the retention the vault's "
               "policy names; a bucket without both cannot be a vault")


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Collect what guide displays, as JupyterLab would receive it (rich output on)."""
    displayed: list[Any] = []
    monkeypatch.setattr(guide, "_display", displayed.append)
    monkeypatch.setattr(guide, "_display_raw", displayed.append)
    monkeypatch.setattr(guide, "_rich_output", lambda: True)
    return displayed


def _html(styled: Any) -> str:
    return str(styled.to_html())


def test_checks_give_advice_in_full_and_only_where_something_must_be_done(shown: list[Any]) -> None:
    checks = [Check("vault bucket exists", True, "vault-golden-copies", "name the vault bucket in vault.bucket"),
              Check("vault bucket versioning", False, "Suspended", LONG_ADVICE)]

    with pytest.raises(PreflightError, match="versioning"):
        guide.show_checks(checks)

    (table,) = shown
    rows = table.data.to_dict("records")
    assert [row["what to do"] for row in rows] == ["", LONG_ADVICE]
    html = _html(table)
    assert LONG_ADVICE in html and "name the vault bucket" not in html
    assert "white-space: pre-wrap" in html  # wrapped in its cell, not cut and not widening the table


def test_checks_that_all_hold_show_no_advice_column(shown: list[Any]) -> None:
    guide.show_checks([Check("accounts differ", True, "111111111111 vs 222222222222", "use a clean account")])

    assert list(shown[0].data.columns) == ["check", "result", "found"]


def test_a_wide_single_row_stands_upright_and_every_value_is_shown_whole(shown: list[Any]) -> None:
    arn = "arn:aws:s3:::vault-batch-reports/batch-replication-manifests/job-0123456789abcdef/manifest.json"
    guide.show_rows([{"job_id": "j-1", "status": "Complete", "total_tasks": 19, "succeeded_tasks": 19,
                      "failed_tasks": 0, "generated_manifest": arn}])

    (table,) = shown
    assert list(table.data.columns) == ["field", "value"]
    assert dict(zip(table.data["field"], table.data["value"], strict=True))["generated_manifest"] == arn
    assert arn in _html(table)


def test_an_empty_table_is_left_out(shown: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    guide.show_rows([], title="0 retry round(s)")
    guide.show_rows(pd.DataFrame(columns=["round", "versions"]))

    assert shown == []
    assert capsys.readouterr().out == "0 retry round(s)\n"


@pytest.mark.parametrize(("verdict", "colour"), [("PASS", "#2e7d32"), ("FAIL", "#c62828"), ("INCOMPLETE", "#ef6c00")])
def test_the_verdict_stands_out_in_its_colour_with_the_counts_that_matter(
    shown: list[Any], verdict: str, colour: str,
) -> None:
    result = {"verdict": verdict, "summary_file": "/runs/r/summary.json", "source_versions": 24, "expected": 19,
              "recovered": 19 if verdict == "PASS" else 17, "missing": 0 if verdict == "PASS" else 2, "extra": 0,
              "findings": [] if verdict == "PASS" else ["job j-1 reports 18 tasks, its manifest lists 19"]}

    if verdict == "PASS":
        guide.show_verdict(result)
    else:
        with pytest.raises(NotVerifiedError):
            guide.show_verdict(result)

    (bundle,) = shown
    panel, text = bundle["text/html"], bundle["text/plain"]
    assert f'data-verdict="{verdict}"' in panel and f"border:3px solid {colour}" in panel
    assert re.search(r">19</div><div>expected<", panel)
    assert ("missing" in panel) is (verdict != "PASS")  # a zero count is not news
    assert ">extra<" not in panel
    assert text.splitlines()[0].endswith(f"{result['recovered']} of 19 expected versions recovered identical")
    for finding in result["findings"]:
        assert finding in panel and finding in text


def test_confirmation_required_shows_a_short_note_instead_of_a_traceback() -> None:
    messages: list[dict[str, Any]] = []
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        client.execute_interactive(
            "from runbook_lib.errors import ConfirmationRequired\n"
            "def gate():\n    raise ConfirmationRequired('job j-1 waits for your confirmation')\n"
            "gate()", output_hook=messages.append, timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    (error,) = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert error["ename"] == "ConfirmationRequired"  # what `runbook run` reads for exit code 3
    assert len(error["traceback"]) == 2 and "Traceback" not in "".join(error["traceback"])
    assert "confirmation gate" in error["traceback"][0] and "by design" in error["traceback"][0]
    assert error["traceback"][1] == "job j-1 waits for your confirmation"


def _gate_context(monkeypatch: pytest.MonkeyPatch, confirmed: list[str]) -> Any:
    """A phase context whose job waits for confirmation; confirming it is recorded, not sent."""
    monkeypatch.setattr(batch_job, "describe_job", lambda ctx, job_id: {
        "JobId": job_id, "Status": "Suspended", "ProgressSummary": {"TotalNumberOfTasks": 19}})
    monkeypatch.setattr(batch_job, "confirm_job", lambda ctx, job_id, reason: confirmed.append(reason))
    return SimpleNamespace(params=load_params(DRILL_PARAMS))


def test_the_gate_in_jupyterlab_shows_confirm_then_stops_run_all_with_one_next_step(
    monkeypatch: pytest.MonkeyPatch, shown: list[Any],
) -> None:
    confirmed: list[str] = []
    monkeypatch.setattr(guide, "_headless", lambda: False)

    with pytest.raises(ConfirmationRequired, match="Run Selected Cell and All Below") as stopped:
        guide.confirmation_gate(_gate_context(monkeypatch, confirmed), "j-1", confirm_job=False)

    (box,) = shown
    status, button = box.children
    assert button.description == "Confirm and run the job" and button.layout.width == "max-content"
    assert "19 object versions" in status.value and confirmed == []
    assert stopped.value._render_traceback_()[1] == str(stopped.value)
    button.click()
    assert confirmed == ["confirmed in JupyterLab"] and button.disabled
    assert "confirmed" in status.value and "Run Selected Cell and All Below" in status.value


def test_the_gate_headless_stops_with_how_to_confirm(monkeypatch: pytest.MonkeyPatch, shown: list[Any]) -> None:
    confirmed: list[str] = []
    monkeypatch.setattr(guide, "_headless", lambda: True)

    with pytest.raises(ConfirmationRequired, match="--confirm-job"):
        guide.confirmation_gate(_gate_context(monkeypatch, confirmed), "j-1", confirm_job=False)
    guide.confirmation_gate(_gate_context(monkeypatch, confirmed), "j-1", confirm_job=True)

    assert shown == [] and confirmed == ["confirmed by parameter confirm_job"]


def test_a_finished_phase_is_finished_in_summary_json_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.start_phase("07_verify")
    evidence.write_summary(tmp_path, "PASS", {"expected": 3, "recovered": 3})  # written before the phase ends
    assert json.loads((tmp_path / "summary.json").read_text())["phases"][0]["status"] == "running"
    monkeypatch.setattr(guide, "_headless", lambda: False)

    guide.finish_phase(SimpleNamespace(ledger=ledger, phase="07_verify"))  # type: ignore[arg-type]

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "PASS"
    assert [(p["phase"], p["status"]) for p in summary["phases"]] == [("07_verify", "ok")]
    out = capsys.readouterr().out
    assert "✔ phase 07_verify complete" in out and "Next: open 08_cleanup.ipynb." in out
    assert f"runbook evidence {tmp_path}" in out
    assert "kernel shuts down" not in out  # not a lab session
