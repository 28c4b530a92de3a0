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

from runbook_lib import call_log, plan
from runbook_lib.ledger import LEDGER_FILE, open_ledger

__all__ = [
    "RECOVERY_PHASES",
    "VERDICTS",
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
    reason: str = "verification started and has not concluded",
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
    path = write_summary(folder, "INCOMPLETE", {}, **extra)
    (folder / _HTML).unlink(missing_ok=True)
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
    one that waits for a confirmation stays INCOMPLETE, saying what waits.
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
        table.to_csv(path, index=False)
        written.append(path)
    return written


def plot_categories(counts: dict[str, int], title: str = "Object versions by verification category") -> Any:
    """Return a horizontal bar chart of the verification categories (zero categories left out)."""
    import matplotlib.pyplot as plt

    shown = {k: v for k, v in counts.items() if v}
    figure, axes = plt.subplots(figsize=(8, 0.45 * max(3, len(shown)) + 1))
    names = list(shown)
    # Green: recovered; grey: correctly left out by the job's filter; red: everything that needs a look.
    colours = ["#2e7d32" if n.startswith("recovered") else "#9e9e9e" if n == "not_expected" else "#c62828"
               for n in names]
    axes.barh(names, [shown[n] for n in names], color=colours)
    for index, name in enumerate(names):
        axes.text(shown[name], index, f" {shown[name]:,}", va="center")
    axes.set_title(title)
    axes.set_xlabel("object versions")
    axes.invert_yaxis()
    figure.tight_layout()
    plt.close(figure)  # shown once, as the cell's value, not again by the inline backend
    return figure


def plot_progress(history: list[dict[str, Any]], title: str = "Batch Replication job progress") -> Any:
    """Return a plot of tasks succeeded and failed over time, from the watcher's observations."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    if history:
        frame = pd.DataFrame(history)
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        axes.step(frame["at"], frame["succeeded"], where="post", label="succeeded", color="#2e7d32")
        axes.step(frame["at"], frame["failed"], where="post", label="failed", color="#c62828")
        axes.legend()
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes.set_title(title)
    axes.set_ylabel("tasks")
    figure.autofmt_xdate()
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


def export_html(run_dir: str | Path, title: str = "S3 vault recovery evidence") -> Path:
    """Write evidence.html: every executed phase notebook of the run, in order, as one document."""
    import nbformat
    from nbconvert import HTMLExporter

    folder = Path(run_dir)
    combined = nbformat.v4.new_notebook()
    combined.metadata["title"] = title
    summary = folder / _SUMMARY
    intro = f"# {title}\n\nRun folder: `{folder.name}`. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}."
    if summary.exists():
        document = json.loads(summary.read_text(encoding="utf-8"))
        counts = ", ".join(f"{k}: {v}" for k, v in document.get("counts", {}).items())
        intro += f"\n\n**Verdict: {document.get('verdict')}**. {counts}."
        if document.get("scope"):
            intro += f"\n\nScope: {document['scope'].get('description')}."
        if document.get("content_basis"):
            intro += f"\n\n{document['content_basis']}"
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
    target = folder / "evidence.html"
    target.write_text(body, encoding="utf-8")
    return target
