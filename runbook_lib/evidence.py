"""The evidence a recovery leaves behind: summary.json, detail CSVs, plots, and evidence.html.

Phase timings come from the run state, where each phase records when it started and ended, so the
recovery time in the summary is what the run actually took, not what anyone remembers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from runbook_lib import call_log, csv_writer, current_view, history, plan, prices, reconciliation, vault_inventory
from runbook_lib.errors import RunLockedError, RunStateError
from runbook_lib.ledger import LEDGER_FILE, open_ledger
from runbook_lib.run_lock import lock_for_phase, release_phase_lock

__all__ = [
    "RECOVERY_PHASES",
    "VERDICTS",
    "archived_text",
    "build_evidence",
    "export_html",
    "phase_timings",
    "plot_categories",
    "plot_progress",
    "refresh_phases",
    "settle_unfinished_verification",
    "withdraw_verdict",
    "write_details",
    "write_summary",
]

# PASS: verified complete; FAIL: a check contradicts the recovery; INCOMPLETE: verification has not
# concluded (running, stopped, or waiting for a confirmation).
VERDICTS = ("PASS", "FAIL", "INCOMPLETE")
_SUMMARY = "summary.json"
_HTML = "evidence.html"

# The phases whose time counts as recovery time (provisioning and replication, not verification).
RECOVERY_PHASES = ("00", "01", "02", "03", "04", "05", "06")


def phase_timings(run_dir: str | Path) -> list[dict[str, Any]]:
    """Return each phase's status and seconds from the run state, the one timing record of a run.

    Headless and interactive runs write it alike: `guide.start_phase` and `finish_phase` in the
    phase's kernel, and `runbook run` for a phase that stopped on an error.
    """
    folder = Path(run_dir)
    if not (folder / LEDGER_FILE).exists():
        return []
    phases = open_ledger(folder).state.phases
    return [
        {"phase": name, "status": record.status, "seconds": round(float(record.seconds or 0.0), 2),
         "started": record.started, "ended": record.ended}
        for name, record in sorted(phases.items())
    ]


def withdraw_verdict(
    run_dir: str | Path, previous: str | None, scope: dict[str, Any] | None = None,
    reason: str = "verification started and has not concluded", *, run: dict[str, Any] | None = None,
    as_of: str | None = None,
    waiting: dict[str, Any] | None = None,
) -> Path:
    """Write summary.json saying INCOMPLETE, then remove the detail CSVs and evidence.html of any earlier verdict.

    Called when verification starts, and when a phase that changes the recovery runs after a
    verdict: until verification concludes again, nothing in the run folder may still show a
    verdict that a later check could contradict. The summary is written first (atomically), so an
    interruption at any point leaves INCOMPLETE, never the old verdict.
    """
    folder = Path(run_dir)
    if previous:
        reason += f"; the earlier verdict {previous} is withdrawn until verification concludes again"
    extra: dict[str, Any] = {"reason": reason}
    if scope is not None:
        extra["scope"] = scope
    if run is not None:
        extra["run"] = run
    # Present in every summary, so scripts can rely on them: the point in time, and no current view yet.
    extra.update(as_of=as_of, current_view=None)
    if waiting is not None:
        extra["waiting"] = waiting
    path = write_summary(folder, "INCOMPLETE", {}, **extra)
    (folder / _HTML).unlink(missing_ok=True)
    reconciliation.remove_reconciliation(folder)
    _clear_details(folder)
    return path


def _clear_details(folder: Path) -> None:
    """Remove the detail tables of an earlier verification, so none outlives the verdict it belonged to."""
    details = folder / "details"
    if details.is_dir():
        for table in details.glob("*.csv"):
            table.unlink()


def settle_unfinished_verification(run_dir: str | Path, error: str) -> str | None:
    """Turn the verdict into FAIL when verification stopped on an error, and return the verdict.

    Whatever the summary said before (an earlier PASS included, when the phase stopped before it
    could withdraw it): a verification that stopped on an error did not prove the recovery. Only
    one that waits (for a confirmation, or an inventory report not yet delivered) stays
    INCOMPLETE, saying what waits.
    """
    path = Path(run_dir) / _SUMMARY
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    verdict: str | None = document.get("verdict")
    if not (verdict == "INCOMPLETE" and document.get("waiting")):
        document.update(verdict="FAIL", reason=f"verification stopped on an error: {error}",
                        written=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _write_atomically(path, json.dumps(document, indent=2, default=str))
        verdict = "FAIL"
    return verdict


def _recovery_wall_time(phases: list[dict[str, Any]]) -> float:
    """Return the seconds from the first recovery phase's start to the last one's end, as a clock on the wall saw them.

    Starting kernels, and an analyst reading between two phases, are part of the time a recovery
    takes; a phase without both timestamps falls back to the sum of the phases' own seconds.
    """
    moments = [(p.get("started"), p.get("ended")) for p in phases]
    if not moments or any(start is None or end is None for start, end in moments):
        return float(sum(p["seconds"] for p in phases))
    first = min(datetime.fromisoformat(str(start)) for start, _ in moments)
    last = max(datetime.fromisoformat(str(end)) for _, end in moments)
    return (last - first).total_seconds()


def write_summary(run_dir: str | Path, verdict: str, counts: dict[str, int], **extra: Any) -> Path:
    """Write summary.json (verdict, counts, phase seconds, recovery time, plan reviewed, extras); return its path."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    folder = Path(run_dir)
    phases = phase_timings(folder)
    retry_seconds = sum(float(r.get("seconds", 0)) for r in extra.get("retry_rounds", []))
    recovery_seconds = _recovery_wall_time([p for p in phases if p["phase"][:2] in RECOVERY_PHASES]) + retry_seconds
    document = {
        "verdict": verdict,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "phases": phases,
        "recovery_seconds": round(recovery_seconds, 2),
        **extra,
    }
    document.setdefault("archived", None)  # always present, so scripts can rely on it
    reviewed = plan.reviewed_plan(folder)
    if reviewed is not None:
        document.setdefault("plan", reviewed)
    path = folder / _SUMMARY
    _write_atomically(path, json.dumps(document, indent=2, default=str))
    return path


def _write_atomically(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new content, never half of it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_details(run_dir: str | Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each non-empty detail table as CSV under details/ and return the paths."""
    _clear_details(Path(run_dir))
    folder = Path(run_dir) / "details"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        path = folder / f"{name}.csv"
        csv_writer.write_csv(table, path)
        written.append(path)
    return written


def plot_categories(counts: dict[str, int], title: str = "Object versions by verification category") -> Any:
    """Return a horizontal bar chart of the verification categories (zero categories left out)."""
    import matplotlib.pyplot as plt

    shown = {k: v for k, v in counts.items() if v}
    figure, axes = plt.subplots(figsize=(8, 0.45 * max(3, len(shown)) + 1))
    names = list(shown)
    # Green: recovered; grey: correctly left out by the job's filter or the sample; red: everything that needs a look.
    left_out = ("not_expected", "not_sampled", "after_as_of")
    colours = ["#2e7d32" if n.startswith("recovered") else "#9e9e9e" if n in left_out else "#c62828" for n in names]
    axes.barh(names, [shown[n] for n in names], color=colours)
    for index, name in enumerate(names):
        axes.text(shown[name], index, f" {shown[name]:,}", va="center")
    axes.set_title(title)
    axes.set_xlabel("object versions")
    axes.invert_yaxis()
    figure.tight_layout()
    plt.close(figure)  # shown once, as the cell's value, not again by the inline backend
    return figure


# Statuses of a job that nobody has confirmed yet: waiting for an operator is not replication.
_BEFORE_CONFIRMATION = ("New", "Preparing", "Suspended")
# The unit of the progress plot's time axis, by how long the job ran: (longer than seconds, unit, seconds per unit).
_TIME_UNITS = ((3 * 3600, "hours", 3600), (600, "minutes", 60), (0, "seconds", 1))


def plot_progress(history: list[dict[str, Any]], title: str = "Batch Replication job progress") -> Any:
    """Return a plot of tasks succeeded and failed over time since the job's confirmation.

    Observations of the job before it was confirmed are left out: in a quick run the wait for the
    analyst's click would otherwise fill the plot, and replication show as a spike at its edge.
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    frame = pd.DataFrame(history)
    if "status" in frame.columns:
        frame = frame[~frame["status"].isin(_BEFORE_CONFIRMATION)]
    if not frame.empty:
        moments = pd.to_datetime(frame["at"], utc=True)
        elapsed = (moments - moments.min()).dt.total_seconds()
        unit, per_unit = next((name, size) for longer, name, size in _TIME_UNITS if elapsed.max() > longer
                              or longer == 0)
        axes.step(elapsed / per_unit, frame["succeeded"], where="post", label="succeeded", color="#2e7d32", marker="o")
        axes.step(elapsed / per_unit, frame["failed"], where="post", label="failed", color="#c62828", marker="o")
        axes.legend()
        axes.set_xlabel(f"{unit} since the job was confirmed ({moments.min():%Y-%m-%d %H:%M:%S} UTC)")
    else:
        axes.text(0.5, 0.5, "the job has not been confirmed", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(title)
    axes.set_ylabel("tasks")
    figure.tight_layout()
    plt.close(figure)
    return figure


def refresh_phases(run_dir: str | Path) -> Path | None:
    """Update summary.json's phase list from the executed notebooks (phases that ran after it was written)."""
    path = Path(run_dir) / _SUMMARY
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    document["phases"] = phase_timings(run_dir)
    _write_atomically(path, json.dumps(document, indent=2, default=str))
    return path


def _seconds_text(value: float | None) -> str:
    """Return a duration for the evidence: "12.3 s", "2 h 5 min", or "no bound"."""
    if value is None:
        return "no bound"
    if value < 120:
        return f"{value:,.1f} s"
    minutes = value / 60
    return f"{minutes:,.1f} min" if minutes < 120 else f"{int(minutes // 60)} h {int(minutes % 60)} min"


def _rate_text(value: float | None) -> str:
    return "no bound" if value is None else f"{value:,.2f}"


def _buckets_text(buckets: list[dict[str, Any]] | None) -> str:
    """Return the per-bucket table of a recovery over many vault buckets (nothing for one bucket)."""
    if not buckets or len(buckets) < 2:
        return ""
    lines = ["\n\n**Each vault bucket** (the recovery passes only when every bucket passes):\n",
             "| vault bucket | recovery bucket | verdict | expected | recovered | missing | extra | failed tasks "
             "| retry rounds | findings |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in buckets:
        findings = "; ".join(str(f) for f in row.get("findings") or []) or "none"
        lines.append(f"| `{row.get('vault_bucket')}` | `{row.get('recovery_bucket')}` | **{row.get('verdict')}** "
                     f"| {row.get('expected', 0):,} | {row.get('recovered', 0):,} | {row.get('missing', 0):,} "
                     f"| {row.get('extra', 0):,} | {row.get('failed_tasks', 0):,} | {row.get('retry_rounds', 0)} "
                     f"| {findings.replace('|', '/')} |")
    return "\n".join(lines)


def archived_text(archived: dict[str, Any] | None) -> str:
    """Return, in words, what became of the archived versions in scope (GLACIER, DEEP_ARCHIVE); "" when none."""
    if not archived or not archived.get("in_scope"):
        return ""
    if archived.get("step"):
        return (f"\n\n**Archived versions.** {archived['in_scope']:,} archived versions were in scope; the restore "
                f"step restored {archived['restored']:,} ({archived.get('tier')} tier, readable for "
                f"{archived.get('expiration_days')} days) and {archived['recovered']:,} were recovered identical"
                + (f"; {archived['not_recovered']:,} were not." if archived["not_recovered"] else ".") + "\n")
    return (f"\n\n**Archived, not recovered: {archived['not_recovered']:,} version(s).** They match the scope but "
            "are archived in GLACIER or DEEP_ARCHIVE, and the run did not restore them (restore.archived is false). "
            "They are not in the recovery bucket and are not counted as recovered; details/"
            "archived_not_recovered.csv lists them. Set restore.archived: true to recover them.\n")


def _sample_text(sample: dict[str, Any] | None) -> str:
    """Return the evidence's paragraph on a sample drill: what was drawn, how, and the extrapolated time."""
    if not sample:
        return ""
    size = f"count {sample['count']}" if sample.get("count") is not None else f"fraction {sample.get('fraction')}"
    text = (f"\n\n**This was a sample drill.** {sample['drawn']:,} of the {sample['population']:,} versions in "
            f"scope were drawn at random ({size}, seed {sample['seed']}), stratified by retention mode, legal hold "
            f"and size band, with every stratum and feature covered first ({sample['minimum']} draws), the rest in "
            "proportion to each stratum. Versions in scope that were not drawn are *not sampled*: not expected, "
            "not counted as recovered.\n\n| stratum | in scope | drawn |\n|---|---|---|\n")
    text += "".join(f"| {row['stratum']} | {row['in_scope']:,} | {row['drawn']:,} |\n" for row in sample["strata"])
    text += "\n| feature | in scope | drawn |\n|---|---|---|\n"
    text += "".join(f"| {row['feature']} | {row['in_scope']:,} | {row['drawn']:,} |\n" for row in sample["coverage"])
    speed = sample.get("throughput")
    if speed:
        rate, whole = speed["tasks_per_second"], speed["whole_scope"]
        text += (f"\n**Extrapolated to the whole scope** ({whole['versions']:,} versions): the job would run "
                 f"about {_seconds_text(whole['seconds']['estimate'])} "
                 f"(95 %: {_seconds_text(whole['seconds']['low'])} to {_seconds_text(whole['seconds']['high'])}), "
                 f"at {_rate_text(rate['estimate'])} tasks per second (95 %: {_rate_text(rate['low'])} to "
                 f"{_rate_text(rate['high'])}), measured on {speed['tasks']:,} tasks in "
                 f"{speed['active_seconds']['low']:,.2f} to {speed['active_seconds']['high']:,.2f} s active. "
                 f"Method: {speed['method']}\n")
    return text


def _commitment_text(commitment: dict[str, Any] | None) -> str:
    """Return the evidence's paragraph on the locked copies the run committed the recovery account to."""
    if not commitment:
        return ""
    copies = commitment.get("sample") or commitment["scope"]
    parts = []
    for mode in copies["modes"]:
        until = (mode["latest_retain_until"] or "")[:10] or "-"
        parts.append(f"{mode['mode']} {mode['versions']:,} copies ({mode['bytes']:,} bytes) until {until} at the "
                     f"latest, USD {prices.usd(mode['cost_usd'])}")
    holds = copies["legal_holds"]
    parts.append(f"legal hold ON {holds['versions']:,} copies ({holds['bytes']:,} bytes), no end date, "
                 f"USD {prices.usd(holds['usd_per_month'])} a month while held")
    reads = [f"{read['bucket']} from its {vault_inventory.report_words(read)}"
             for read in commitment.get("read_from") or [] if read.get("source") == "inventory"]
    source = f" Read {'; '.join(reads)}." if reads else ""
    return (f"\n\nLocked copies this run commits the recovery account to ({copies['label']}, "
            f"{commitment['storage_class']}, as of {commitment['as_of']}, {commitment['prices']['source']} "
            f"{commitment['prices']['as_of']}): " + "; ".join(parts) + "." + source)


def _auditor_cells(document: dict[str, Any]) -> list[Any]:
    """Return the evidence's reconciliation and the history's trend plot, for a summary that holds a verdict."""
    import base64
    import io

    import nbformat

    identity = document.get("identity")
    if document.get("verdict") not in ("PASS", "FAIL") or not isinstance(identity, dict):
        return []
    cells = [nbformat.v4.new_markdown_cell(reconciliation.markdown(document, identity))]
    if not identity.get("history_file"):
        return cells
    source = history.read_history(identity["history_file"])
    buffer = io.BytesIO()
    history.plot_trend(source.records).savefig(buffer, format="png", dpi=90)
    lines = history.trend_lines(source)
    text = (f"## The trend over runs\n\nEvery verdict recorded in `{source.path}` ({len(source.records)} "
            "record(s)), oldest first: recovery time (phases 00-06 and retries) and verdict.\n\n"
            "![Recovery time and verdict of each run in the history](attachment:trend.png)\n\n")
    text += "```text\n" + "\n".join(lines[:1] + lines[-30:] if len(lines) > 31 else lines) + "\n```"
    if source.problems:
        text += "\n\nLines of the history that could not be read: " + "; ".join(source.problems[:5])
    cell = nbformat.v4.new_markdown_cell(text)
    cell["attachments"] = {"trend.png": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii")}}
    return [*cells, cell]


def export_html(run_dir: str | Path, title: str = "S3 vault recovery evidence") -> Path:
    """Write evidence.html: every executed phase notebook of the run, in order, as one document."""
    import nbformat
    from nbconvert import HTMLExporter

    folder = Path(run_dir)
    combined = nbformat.v4.new_notebook()
    combined.metadata["title"] = title
    summary = folder / _SUMMARY
    document: dict[str, Any] = {}
    intro = f"# {title}\n\nRun folder: `{folder.name}`. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}."
    if summary.exists():
        document = json.loads(summary.read_text(encoding="utf-8"))
        counts = ", ".join(f"{k}: {v}" for k, v in document.get("counts", {}).items())
        intro += f"\n\n**Verdict: {document.get('verdict')}**. {counts}."
        if document.get("run"):
            intro += f"\n\nThis run is {document['run'].get('description')}."
        if document.get("scope"):
            intro += f"\n\nScope: {document['scope'].get('description')}."
        if document.get("as_of"):
            intro += (f"\n\nPoint in time: {document['as_of']}. Versions created at or after it are out of "
                      "scope (`after_as_of`): never expected, never recovered.")
        if document.get("current_view"):
            intro += f"\n\n{current_view.describe(document['current_view'])}"
        if document.get("content_basis"):
            intro += f"\n\n{document['content_basis']}"
        intro += _buckets_text(document.get("buckets"))
        intro += archived_text(document.get("archived"))
        intro += _sample_text(document.get("sample"))
        intro += _commitment_text(document.get("commitment"))
        for finding in document.get("findings") or []:
            intro += f"\n\n- Finding: {finding}"
        if document.get("reason"):
            intro += f"\n\n{document['reason']}."
        if document.get("waiting"):
            waiting = document["waiting"]
            intro += (f"\n\nWaiting for confirmation: {waiting.get('what')} (job {waiting.get('job_id')}); "
                      f"{waiting.get('how')}.")
    intro += f"\n\n{plan.describe(folder)}"
    intro += f"\n\n{call_log.describe(folder)}"
    combined.cells.append(nbformat.v4.new_markdown_cell(intro))
    combined.cells.extend(_auditor_cells(document))
    plan_text = folder / plan.PLAN_TEXT
    if plan_text.exists():
        # The plan as reviewed, before the notebooks that carried it out.
        combined.cells.append(nbformat.v4.new_markdown_cell(
            f"## The plan reviewed before the changes\n\n```text\n{plan_text.read_text(encoding='utf-8')}```"))
    for path in sorted((folder / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        combined.cells.append(nbformat.v4.new_markdown_cell(f"---\n\n*Executed notebook `{path.name}`*"))
        combined.cells.extend(notebook.cells)
    for index, cell in enumerate(combined.cells):
        cell["id"] = f"evidence-{index}"
    exporter = HTMLExporter()
    # nbconvert fills in a placeholder alt text for each chart and warns; we replace it with a real one.
    quiet = logging.getLogger("runbook.evidence.nbconvert")
    quiet.setLevel(logging.ERROR)
    exporter.log = quiet
    body, _ = exporter.from_notebook_node(combined)
    body = body.replace('alt="No description has been provided for this image"',
                        'alt="Chart from the executed phase notebook; its title names what it shows"')
    target = folder / _HTML
    _write_atomically(target, body)
    return target


def _summary_text(folder: Path) -> str | None:
    path = folder / _SUMMARY
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _refresh_phases_unless_running(folder: Path) -> None:
    """Bring summary.json's phase timings up to date, unless a phase runs in another process right now.

    That phase's kernel updates them itself when it finishes; writing the summary beside it could
    put back a verdict it has just withdrawn.
    """
    try:
        took = lock_for_phase(folder)
    except RunLockedError:
        return
    try:
        refresh_phases(folder)
    finally:
        if took:
            release_phase_lock(folder)


def build_evidence(run_dir: str | Path, attempts: int = 3) -> Path:
    """Write evidence.html from the run folder as it is now, and return its path; safe while a phase runs.

    If summary.json changes while the document is built (phase 07 withdrawing a verdict, say), it
    is built again, so evidence.html is never headed by a verdict the summary no longer gives.
    """
    folder = Path(run_dir)
    if not (folder / LEDGER_FILE).exists():
        raise RunStateError(
            f"{folder} has no {LEDGER_FILE}: it is not the folder of a started run, so there is no evidence to build",
            str(folder))
    _refresh_phases_unless_running(folder)
    for _ in range(attempts):
        before = _summary_text(folder)
        target = export_html(folder)
        if _summary_text(folder) == before:
            break
    return target
