"""Notebook-side helpers: open a phase, show outcomes and checks, the confirmation gate, progress display.

Everything here works both in JupyterLab (HTML tables, an ipywidgets button and progress bar) and
headless under papermill (plain text, log lines, a parameter instead of a button), so the phase
notebooks stay free of branching logic.
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from runbook_lib import (
    analyzer,
    batch_job,
    bucket_jobs,
    evidence,
    kernel_record,
    lab,
    plan,
    point_in_time,
    proof,
    restore_job,
    vault_inventory,
)
from runbook_lib.bucket_jobs import BucketJob
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import NOTEBOOKS_DIR, phase_names
from runbook_lib.errors import ConfirmationRequired, NotVerifiedError
from runbook_lib.evidence import RECOVERY_PHASES
from runbook_lib.ledger import starts_run
from runbook_lib.preflight import Check, raise_on_failures
from runbook_lib.provision import Outcome, raise_on_drift
from runbook_lib.run_lock import lock_for_phase, release_phase_lock
from runbook_lib.scope import scope_from_params

__all__ = [
    "HEADLESS_ENV",
    "confirmation_gate",
    "default_run_dir",
    "finish_phase",
    "progress_subscribers",
    "restore_gate",
    "show_checks",
    "show_findings",
    "show_json",
    "show_mismatches",
    "show_outcomes",
    "show_plan",
    "show_rows",
    "show_scope",
    "show_verdict",
    "start_phase",
]

# Set by `runbook run` and `runbook drill` in the kernel's environment: no one can press a button.
HEADLESS_ENV = "RUNBOOK_HEADLESS"

_STATUS_COLOURS = {"created": "#d4edda", "unchanged": "#e2e3e5", "updated": "#fff3cd", "drift": "#f8d7da",
                   "✔": "#d4edda", "✘": "#f8d7da"}


def _display(obj: Any) -> None:
    try:
        from IPython.display import display

        display(obj)
    except ImportError:  # pragma: no cover - IPython ships with the kernel
        print(obj)


def _display_raw(bundle: dict[str, str]) -> None:
    """Display a mime bundle as it is (one output, several renderings)."""
    from IPython.display import display

    display(bundle, raw=True)


def default_run_dir(phase_hint: str = "") -> str:
    """Return the run folder an interactive session uses when none is given: runs/interactive."""
    return str(Path("..") / "runs" / "interactive")


def start_phase(params_file: str, run_dir: str, phase: str) -> RunContext:
    """Return the run context for a phase after validating parameters and both identities.

    Only phase 00 may start a run in a folder without a ledger. The run folder's lock is taken for
    this process (unless `runbook run` holds it for this kernel) until `finish_phase`.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout, force=True)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pd.set_option("display.max_colwidth", None)  # advice and reasons in full, in plain-text tables too
    took_lock = lock_for_phase(run_dir)
    try:
        ctx = open_run(params_file, run_dir, create=starts_run(phase), phase=phase)
    except BaseException:
        if took_lock:
            release_phase_lock(run_dir)  # a phase that never started must not keep other kernels out
        raise
    if not _headless():
        # papermill writes the executed notebook of a headless run; in JupyterLab the kernel does.
        kernel_record.record_phase(ctx.ledger.run_dir, phase, NOTEBOOKS_DIR / f"{phase}.ipynb")
    ctx.ledger.start_phase(phase)
    verdict = ctx.ledger.state.verdict
    if phase[:2] in RECOVERY_PHASES and verdict is not None and verdict.verdict != "INCOMPLETE":
        # This phase may change what was recovered: the last verdict speaks of a world that may be gone.
        proof.withdraw_verdict(ctx, f"phase {phase} ran after the last verification; run phase 07 again")
    evidence.refresh_phases(ctx.ledger.run_dir)
    print(f"run {ctx.params.run_id}: vault {ctx.params.vault.account_id} ({ctx.sessions.vault_identity.arn}), "
          f"recovery {ctx.params.recovery.account_id} ({ctx.sessions.recovery_identity.arn})")
    return ctx


def finish_phase(ctx: RunContext) -> None:
    """Mark the context's phase complete in the ledger and summary.json (with its seconds), and say what comes next.

    In a lab session the notebook's kernel then shuts down: the phase has nothing left to do, and
    its outputs stay on the page and in the run folder's notebooks/ (the kernel wrote them there).
    """
    phase = _phase_of(ctx)
    record = ctx.ledger.end_phase(phase, "ok")
    evidence.refresh_phases(ctx.ledger.run_dir)  # summary.json never shows a finished phase as running
    release_phase_lock(ctx.ledger.run_dir)
    print(f"✔ phase {phase} complete in {record.seconds or 0:.1f} s")
    if _headless():
        return
    later = [name for name in phase_names() if name > phase]
    if later:
        print(f"Next: open {later[0]}.ipynb.")
    if phase[:2] >= "07":
        print(f"evidence.html: run `runbook evidence {ctx.ledger.run_dir}` (runbook lab also builds it when it stops).")
    if lab.shut_down_own_kernel():
        print("This notebook's kernel shuts down now; its outputs stay here and in the run folder.")


def _phase_of(ctx: RunContext) -> str:
    """Return the phase the context was opened for; a context from open_run alone has none."""
    if ctx.phase is None:
        raise ValueError("this run context was not opened by guide.start_phase, so it knows no phase")
    return ctx.phase


def _rich_output() -> bool:
    """Return whether outputs are rendered as HTML (JupyterLab, and the executed notebooks of headless runs)."""
    return "ipykernel" in sys.modules


# Long text wraps inside its cell instead of widening the table; the index says nothing to an analyst.
_WRAPPING = [
    {"selector": "td", "props": [("white-space", "pre-wrap"), ("text-align", "left"), ("vertical-align", "top"),
                                 ("max-width", "40em"), ("overflow-wrap", "break-word")]},
    {"selector": "th", "props": [("text-align", "left"), ("vertical-align", "bottom")]},
]
# A one-row table wider than this is shown as field / value rows, so it never needs sideways scrolling.
_WIDE_ROW_COLUMNS = 5


def _table(frame: pd.DataFrame) -> Any:
    """Return a table for display: every cell's full text, wrapped, without the index; one wide row stands upright."""
    if len(frame) == 1 and len(frame.columns) > _WIDE_ROW_COLUMNS:
        frame = pd.DataFrame({"field": [str(c) for c in frame.columns],
                              "value": [str(v) for v in frame.iloc[0].tolist()]})
    if not _rich_output():
        return frame
    return frame.style.hide(axis="index").set_table_styles(_WRAPPING)


def _styled(frame: pd.DataFrame, column: str) -> Any:
    """Return a table for display with `column`'s statuses in their colours."""
    table = _table(frame)
    if not _rich_output() or column not in table.data.columns:
        return table
    return table.map(lambda v: f"background-color: {_STATUS_COLOURS.get(v, '')}", subset=[column])


def show_outcomes(ctx: RunContext, outcomes: Sequence[Outcome]) -> None:
    """Show what each ensure step did, record it under the context's phase, and stop on drift."""
    phase = _phase_of(ctx)
    rows = [o.as_row() for o in outcomes]
    frame = pd.DataFrame(rows, columns=["resource", "identifier", "status", "difference", "note"])
    recorded = ctx.ledger.state.outcomes.get(phase, [])
    shown = {(o.resource, o.identifier) for o in outcomes}
    keep = [r for r in recorded if (r["resource"], r["identifier"]) not in shown]
    ctx.ledger.record_outcomes(phase, keep + rows)
    _display(_styled(frame, "status"))
    raise_on_drift(list(outcomes))


def show_plan(ctx: RunContext) -> None:
    """Show what this phase would change, before it changes anything (phase 00: every phase of the run).

    The plan is made by the phase's own steps, writing nothing; IAM Access Analyzer checks every
    policy it would write, and an error, a security warning or new access for someone outside the
    two accounts stops the phase here (PolicyCheckError). Drift the plan foresees is shown, and
    stops the phase at the step that meets it.
    """
    phase = _phase_of(ctx)
    phases = phase_names() if starts_run(phase) else [phase]
    run_plan = plan.make_plan(ctx, phases)
    print(run_plan.render())
    analyzer.raise_on_blocking(run_plan.checks)


def show_checks(checks: Sequence[Check]) -> None:
    """Show each precondition with a ✔ or ✘ (advice only where something must be done), and stop if any fails."""
    rows = [c.as_row() for c in checks]
    for check, row in zip(checks, rows, strict=True):
        if check.ok:
            row["what to do"] = ""  # nothing to do about a check that holds
    frame = pd.DataFrame(rows)
    if "what to do" in frame.columns and not frame["what to do"].astype(bool).any():
        frame = frame.drop(columns="what to do")
    _display(_styled(frame, "result"))
    raise_on_failures(list(checks))


def show_scope(ctx: RunContext) -> None:
    """Show in words which vault versions this recovery copies and verification expects (per vault bucket of many)."""
    views = ctx.pair_contexts()
    if len(views) > 1:
        print(f"This recovery copies, and verification expects, exactly these versions of {len(views)} vault buckets:")
        for view in views:
            pair = view.params.pair
            print(f"  {pair.vault_bucket} -> {pair.recovery_bucket}: the vault's "
                  f"{scope_from_params(view.params).describe()} (job priority {pair.priority})")
        return
    described = scope_from_params(ctx.params).describe()
    sample = ctx.ledger.state.sample if ctx.params.job.sample is not None else None
    if sample is None:
        drawn_later = "; job.sample is set, so phase 00 draws a sample of them" if ctx.params.job.sample else ""
        print(f"This recovery copies, and verification expects, exactly the vault's {described}{drawn_later}.")
        return
    print(f"This sample drill copies, and verification expects, exactly the {sample.drawn:,} versions drawn at random "
          f"(seed {sample.seed}) from the vault's {described}; the others are not sampled.")


def show_point_in_time(ctx: RunContext) -> None:
    """Show what the point in time (recover_as_of) selects in the vault bucket, or that the latest state is copied."""
    if ctx.params.recover_as_of is None:
        print("No point in time (recover_as_of is null): the job copies the vault's versions as they are now.")
        return
    for view in ctx.pair_contexts():
        scope = scope_from_params(view.params)
        bucket = view.params.pair.vault_bucket
        read = vault_inventory.from_inventory(view)
        listed = read.versions if read is not None else point_in_time.list_versions(view.vault("s3"), bucket)
        selection = point_in_time.select_as_of(listed, scope)
        assert selection is not None
        print(f"{bucket}, recovered as of {selection.as_of}: versions created at or after it are never copied, "
              "never expected.")
        show_rows(selection.rows())


def show_current_view(comparison: Any, keys_shown: int = 20) -> None:
    """Show what applications will read: keys whose GET differs from the vault's, counted by reason, then the keys."""
    view = comparison.current_view
    if view is None:
        print("no current view was compared")
        return
    record = view.as_record()
    moment = f"as of {record['as_of']}" if record["as_of"] else "now"
    print(f"{record['keys']:,} keys: a GET without a version id returns the vault's version ({moment}) for "
          f"{record['same']:,}, another answer for {record['differing']:,}; {record['unexplained']:,} without a "
          f"documented reason; verification.current_view is {record['setting']}"
          + (": this fails the verdict" if record["fails_verdict"] else ""))
    show_rows(view.reason_table())
    differences = view.differences()
    if not differences.empty:
        print(f"the keys that differ (first {min(keys_shown, len(differences))} of {len(differences):,}; "
              "details/current_view.csv lists every key)")
        show_rows(differences.head(keys_shown))


def show_json(title: str, document: Any) -> None:
    """Show a JSON document (a policy, a request) under a title, never a secret."""
    text = json.dumps(document, indent=2, default=str)
    print(f"{title}:\n{text}")


def _headless() -> bool:
    return os.environ.get(HEADLESS_ENV) == "1" or "ipykernel" not in sys.modules


def restore_gate(ctx: RunContext, confirm_job: bool) -> None:
    """Confirm every vault bucket's restore job like the replication jobs (same parameter, one button for all)."""
    restore = ctx.params.restore
    if not restore.archived:
        print("no restore job: restore.archived is false, archived versions stay archived")
        return
    jobs = []
    for view in ctx.pair_contexts():
        bucket = view.params.pair.vault_bucket
        job_id = restore_job.current_restore_job_id(view, bucket)
        if job_id is None:
            print(f"{bucket}: no restore job, nothing archived in scope waits for a restore")
            continue
        batch_job.wait_for_status(view, job_id, {"Suspended", "Ready", "Active"})
        jobs.append((view, job_id))

    def described(job_ctx: RunContext, shown: object) -> str:
        return (f"{shown} archived versions of {job_ctx.params.pair.vault_bucket} ({restore.tier} tier, readable for "
                f"{restore.expiration_days} days)")

    confirmation_gate(ctx, jobs, confirm_job, describe=described, verb="restore")


def confirmation_gate(ctx: RunContext, jobs: str | Sequence[BucketJob] | Sequence[tuple[RunContext, str]],
                      confirm_job: bool, *, describe: Callable[[RunContext, object], str] | None = None,
                      verb: str = "replicate") -> None:
    """Confirm the run's jobs when `confirm_job` is set; otherwise show one Confirm button for all, or stop headless.

    `jobs` is one job id, the jobs of every vault bucket (`bucket_jobs.create_jobs`), or (context,
    job id) pairs. `describe` and `verb` say what a job does (the replication job unless given). In
    JupyterLab the cell shows the button and then stops Run All on purpose, with a short note
    instead of a traceback (ConfirmationRequired renders itself so), since following the jobs before
    anyone confirmed them would only wait.
    """
    listed = ([(ctx, jobs)] if isinstance(jobs, str) else
              [(job.ctx, job.job_id) if isinstance(job, BucketJob) else job for job in jobs])
    waiting = []
    for job_ctx, job_id in listed:
        job = batch_job.describe_job(job_ctx, job_id)
        if job["Status"] != "Suspended":
            print(f"job {job_id} is {job['Status']}; no confirmation needed")
            continue
        summary = job.get("ProgressSummary", {})
        waiting.append((job_ctx, job_id, int(summary.get("TotalNumberOfTasks", 0) or 0),
                        summary.get("TotalNumberOfTasks", "?")))
    if not waiting:
        return
    def replicates(job_ctx: RunContext, shown: object) -> str:
        pair = job_ctx.params.pair
        return (f"{shown} object versions from {pair.vault_bucket} to {pair.recovery_bucket} "
                f"(the vault's {scope_from_params(job_ctx.params).describe()})")

    texts = [(describe or replicates)(c, shown) for c, _, _, shown in waiting]
    ids = ", ".join(job_id for _, job_id, _, _ in waiting)
    if len(waiting) == 1:
        what, subject = texts[0], f"job {ids}"
    else:
        total = sum(count for _, _, count, _ in waiting)
        what = f"{total} object versions in {len(waiting)} jobs: " + "; ".join(texts)
        subject = f"jobs {ids}"

    def confirm_all(reason: str) -> None:
        for job_ctx, job_id, _, _ in waiting:
            batch_job.confirm_job(job_ctx, job_id, reason)

    if confirm_job:
        confirm_all("confirmed by parameter confirm_job")
        print(f"✔ {subject} confirmed by parameter confirm_job: {'it' if len(waiting) == 1 else 'they'} will "
              f"{verb} {what}")
        return
    being = "is" if len(waiting) == 1 else "are"
    if _headless():
        raise ConfirmationRequired(
            f"{subject} {being} ready to {verb} {what} and {'waits' if len(waiting) == 1 else 'wait'} for "
            f"confirmation. Review the {'job' if len(waiting) == 1 else 'plan'} above, then re-run with "
            "confirm_job=True (runbook run --params FILE "
            "--out DIR --from 06 --confirm-job, or papermill -p confirm_job True)."
        )
    import ipywidgets as widgets

    label = "Confirm and run the job" if len(waiting) == 1 else f"Confirm and run all {len(waiting)} jobs"
    button = widgets.Button(description=label, button_style="danger", icon="play",
                            layout=widgets.Layout(width="max-content"), tooltip=f"confirm {subject}")
    status = widgets.HTML(value=f"{html.escape(subject[0].upper() + subject[1:])} will {verb} {html.escape(what)}."
                          if len(waiting) > 1 else
                          f"Job <code>{html.escape(ids)}</code> will {verb} {html.escape(what)}.")

    def on_click(_: Any) -> None:
        confirm_all("confirmed in JupyterLab")
        button.disabled = True
        shown = f"Job <code>{html.escape(ids)}</code>" if len(waiting) == 1 else f"All {len(waiting)} jobs"
        status.value = (f"✔ {shown} confirmed. <b>Next: Run ▸ Run Selected Cell "
                        "and All Below</b> follows it to the end from this cell.")

    button.on_click(on_click)
    _display(widgets.VBox([status, button]))
    raise ConfirmationRequired(
        f"{subject} {'waits' if len(waiting) == 1 else 'wait'} for your confirmation. Review it above and press "
        "Confirm; then choose Run ▸ Run Selected Cell and All Below to follow it to the end."
    )


class _JobsWidget(bucket_jobs.JobsProgress):
    """One progress bar per vault bucket's job and one for all of them, fed by the jobs' follower."""

    def __init__(self, jobs: Sequence[BucketJob]) -> None:
        import ipywidgets as widgets

        self.bars = {job.job_id: (widgets.IntProgress(value=0, min=0, max=1, description=job.vault_bucket[:20]),
                                  widgets.Label(value="waiting", layout=widgets.Layout(width="auto")))
                     for job in jobs}
        self.total = (widgets.IntProgress(value=0, min=0, max=1, description="all jobs"),
                      widgets.Label(value="waiting", layout=widgets.Layout(width="auto")))
        rows = [widgets.HBox(list(pair)) for pair in self.bars.values()]
        if len(jobs) > 1:
            rows.append(widgets.HBox(list(self.total)))
        _display(widgets.VBox(rows))

    def on_jobs(self, jobs: Sequence[BucketJob], described: dict[str, dict[str, Any]]) -> None:
        total = done = failed = 0
        for job_id, (bar, label) in self.bars.items():
            job = described.get(job_id) or {}
            summary = job.get("ProgressSummary", {})
            tasks = int(summary.get("TotalNumberOfTasks", 0))
            finished = int(summary.get("NumberOfTasksSucceeded", 0)) + int(summary.get("NumberOfTasksFailed", 0))
            bar.max, bar.value = tasks or 1, finished
            bar.bar_style = {"Failed": "danger", "Complete": "success"}.get(str(job.get("Status")), "")
            failures = int(summary.get("NumberOfTasksFailed", 0))
            label.value = f"{job.get('Status', '?')}: {finished:,}/{tasks:,} ({failures:,} failed)"
            total, done, failed = total + tasks, done + finished, failed + failures
        self.total[0].max, self.total[0].value = total or 1, done
        self.total[1].value = f"{done:,}/{total:,} ({failed:,} failed)"


class _JobsLog(bucket_jobs.JobsProgress):
    """Log lines for headless runs: each job's status changes, and the total now and then."""

    def __init__(self, every_seconds: float) -> None:
        self.every_seconds = every_seconds
        self.lines: dict[str, batch_job.LogProgress] = {}

    def on_jobs(self, jobs: Sequence[BucketJob], described: dict[str, dict[str, Any]]) -> None:
        for job in jobs:
            if described.get(job.job_id):
                self.lines.setdefault(job.job_id, batch_job.LogProgress(self.every_seconds)).on_progress(
                    described[job.job_id])


def jobs_progress(jobs: Sequence[BucketJob]) -> list[bucket_jobs.JobsProgress]:
    """Return per-bucket progress bars and a total in Jupyter, and log lines when headless."""
    if _headless():
        return [_JobsLog(every_seconds=5.0)]
    return [_JobsWidget(jobs), _JobsLog(every_seconds=30.0)]


class _WidgetProgress:
    """An ipywidgets progress bar fed by the job watcher."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="tasks")
        self.label = widgets.Label(value="waiting for the job", layout=widgets.Layout(width="auto"))
        _display(widgets.HBox([self.bar, self.label]))

    def on_progress(self, job: dict[str, Any]) -> None:
        summary = job.get("ProgressSummary", {})
        total = int(summary.get("TotalNumberOfTasks", 0)) or 1
        done = int(summary.get("NumberOfTasksSucceeded", 0)) + int(summary.get("NumberOfTasksFailed", 0))
        self.bar.max, self.bar.value = total, done
        self.bar.bar_style = {"Failed": "danger", "Complete": "success"}.get(job["Status"], "")
        failed = int(summary.get("NumberOfTasksFailed", 0))
        self.label.value = f"{job['Status']}: {done:,}/{total:,} ({failed:,} failed)"


def progress_subscribers() -> list[batch_job.ProgressSubscriber]:
    """Return a progress bar in Jupyter, and periodic log lines when headless."""
    if _headless():
        return [batch_job.LogProgress(every_seconds=5.0)]
    return [_WidgetProgress(), batch_job.LogProgress(every_seconds=30.0)]


def show_rows(rows: Any, title: str = "") -> None:
    """Show a table: a DataFrame, dict rows, or objects with `as_row()` / dataclasses (outcomes, actions, rounds).

    An empty table is left out: the title (when there is one) says there is nothing to show.
    """
    if title:
        print(title)
    if isinstance(rows, pd.DataFrame):
        if not rows.empty:
            _display(_table(rows))
        return
    plain = []
    for row in rows:
        if hasattr(row, "as_row"):
            row = row.as_row()
        elif hasattr(row, "model_dump"):
            row = row.model_dump()
        elif hasattr(row, "__dataclass_fields__"):
            row = dict(row.__dict__)
        plain.append(row)
    if plain:
        _display(_table(pd.DataFrame(plain)))
    elif not title:
        print("nothing to show")


def show_findings(findings: Sequence[str]) -> None:
    """Show each disagreement of the jobs' counters and pinned objects with what was read, or that there is none."""
    if not findings:
        print("✔ manifests and reports agree with the jobs' own counters and with what was pinned when they finished")
        return
    print(f"✘ {len(findings)} finding(s); each fails the verdict:")
    for finding in findings:
        print(f"  - {finding}")


def show_mismatches(comparison: Any, rows_per_category: int = 10) -> None:
    """Show the first rows of every category other than recovered-identical, highlighted."""
    from runbook_lib import verify

    shown = False
    for name, count in comparison.counts_by_category().items():
        if not count or name in verify.NOT_PROBLEMS:
            continue
        shown = True
        print(f"{name}: {count:,} version(s)")
        table = comparison.category(name).head(rows_per_category)
        if _rich_output():
            _display(_table(table).set_properties(**{"background-color": "#f8d7da"}))
        else:
            _display(table)
    if not shown:
        print("✔ no mismatches: every expected version is in the recovery bucket, identical")
    archived = comparison.counts_by_category().get(verify.ARCHIVED_NOT_RECOVERED, 0)
    if archived:
        # Not a mismatch (the restore step was off), but never left unsaid.
        print(f"{verify.ARCHIVED_NOT_RECOVERED}: {archived:,} archived version(s) in scope left archived "
              "(restore.archived is false), not in the recovery bucket and not counted as recovered")
        table = comparison.category(verify.ARCHIVED_NOT_RECOVERED).head(rows_per_category)
        if _rich_output():
            _display(_table(table).set_properties(**{"background-color": "#fff3cd"}))
        else:
            _display(table)


# Border and background of the verdict panel: PASS green, FAIL red, INCOMPLETE amber.
_VERDICT_COLOURS = {"PASS": ("#2e7d32", "#e8f5e9"), "FAIL": ("#c62828", "#ffebee"),
                    "INCOMPLETE": ("#ef6c00", "#fff8e1")}
_VERDICT_MARKS = {"PASS": "✔ PASS", "FAIL": "✘ FAIL", "INCOMPLETE": "… INCOMPLETE"}
# Counts shown on the panel whatever their value; any other count is shown when it is not zero.
_KEY_COUNTS = ("source_versions", "expected", "recovered")
_NOT_COUNTS = ("verdict", "summary_file", "findings", "archived")


def _verdict_counts(verdict: dict[str, Any]) -> dict[str, int]:
    """Return the counts worth showing on the verdict panel: the key ones, then every problem that occurred."""
    counts = {k: int(v) for k, v in verdict.items() if k not in _NOT_COUNTS and isinstance(v, int)}
    return {k: v for k, v in counts.items() if k in _KEY_COUNTS or v}


def _archived_line(verdict: dict[str, Any]) -> str | None:
    """Return the verdict panel's plain sentence on archived versions left archived, or None when there are none."""
    archived = verdict.get("archived") or {}
    missing = int(archived.get("not_recovered") or 0)
    if not missing:
        return None
    if archived.get("step"):
        return f"{missing:,} archived version(s) in scope were restored but not recovered identical"
    return (f"{missing:,} archived version(s) in scope were NOT recovered: they are in GLACIER or DEEP_ARCHIVE and "
            "restore.archived is false (details/archived_not_recovered.csv); this is not counted as recovered")


def _verdict_panel(verdict: dict[str, Any], headline: str) -> str:
    """Return the verdict as an HTML panel that stands out, with its key counts and findings."""
    name = str(verdict["verdict"])
    border, background = _VERDICT_COLOURS.get(name, ("#616161", "#f5f5f5"))
    mark, summary = _VERDICT_MARKS.get(name, name), str(verdict.get("summary_file"))
    counts = "".join(
        f'<div style="margin-right:1.5em"><div style="font-size:1.4em;font-weight:bold">{value:,}</div>'
        f'<div>{html.escape(key.replace("_", " "))}</div></div>'
        for key, value in _verdict_counts(verdict).items())
    findings = "".join(f"<li>{html.escape(str(f))}</li>" for f in verdict.get("findings") or [])
    archived = _archived_line(verdict)
    if archived:
        findings += f'<li style="color:#8a6d00">⚠ {html.escape(archived)}</li>'
    return (
        f'<div class="runbook-verdict" data-verdict="{html.escape(name)}" style="border:3px solid {border};'
        f'background:{background};border-radius:6px;padding:0.8em 1.2em;margin:0.5em 0">'
        f'<div style="font-size:2em;font-weight:bold;color:{border}">{html.escape(mark)}</div>'
        f'<div style="font-size:1.1em;margin:0.3em 0 0.6em 0">{html.escape(headline)}</div>'
        f'<div style="display:flex;flex-wrap:wrap">{counts}</div>'
        + (f'<ul style="color:{border}">{findings}</ul>' if findings else "")
        + f'<div style="margin-top:0.6em;font-size:0.9em">summary: <code>{html.escape(summary)}</code></div>'
        "</div>"
    )


def show_verdict(verdict: dict[str, Any]) -> None:
    """Show the verdict in a panel with its key counts and findings, and stop the phase when it is not PASS."""
    name = str(verdict["verdict"])
    headline = (f"{verdict.get('recovered', 0):,} of {verdict.get('expected', 0):,} expected versions "
                "recovered identical")
    lines = [f"{_VERDICT_MARKS.get(name, name)}: {headline}"]
    lines += [f"  ✘ {finding}" for finding in verdict.get("findings") or []]
    lines.append("  " + ", ".join(f"{k} {v:,}" for k, v in _verdict_counts(verdict).items()))
    archived = _archived_line(verdict)
    if archived:
        lines.append(f"  ⚠ {archived}")
    lines.append(f"summary: {verdict.get('summary_file')}")
    if _rich_output():
        _display_raw({"text/html": _verdict_panel(verdict, headline), "text/plain": "\n".join(lines)})
    else:
        print("\n".join(lines))
    if name != "PASS":
        raise NotVerifiedError(
            "the recovery is NOT verified complete; the findings above, the mismatch tables and details/*.csv "
            "in the run folder list every version and every job fact that disagrees",
            name, verdict.get("summary_file"),
        )
