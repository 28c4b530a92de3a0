"""Phase 07's steps: load what the jobs say they did, read what the buckets hold, compare, retry, conclude.

Each function is one guided step of the verify notebook; state between them lives in the run
state (job attempts, pins, retry rounds) and in the DataFrames the notebook passes along.

The previous verdict is withdrawn before anything else (`begin_verification`): from then on the
run folder says INCOMPLETE until this verification concludes, so no PASS outlives the check that
contradicts it. A retry round that waits for confirmation writes an INCOMPLETE verdict with the
comparison so far and what waits, then stops.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from runbook_lib import (
    batch_job,
    current_view,
    evidence,
    history,
    inventory_proof,
    inventory_reports,
    pins,
    reconciliation,
    reports,
    restore_job,
    run_kind,
    sampling,
    snapshot,
    throughput,
    verify,
)
from runbook_lib.aws_facts import split_s3_object_arn
from runbook_lib.context import RunContext
from runbook_lib.errors import ConfirmationRequired, HistoryError, JobEndedError, ReportError
from runbook_lib.ledger import now
from runbook_lib.run_state import RetryRoundRecord, Verdict, VerdictRecord
from runbook_lib.scope import JobScope, scope_from_params

T = TypeVar("T")

__all__ = [
    "RetryRound",
    "begin_verification",
    "check_job_outputs",
    "compare_buckets",
    "conclude",
    "job_ids",
    "job_scope",
    "keep_verdict_record",
    "load_job_manifest",
    "load_job_reports",
    "progress_history",
    "report_overview",
    "retry_failures",
    "run_record",
    "sample_record",
    "snapshot_overview",
    "snapshot_recovery",
    "snapshot_vault",
    "with_current_view",
    "withdraw_verdict",
]

# One follow-up job over the versions that were not recovered (its record in the run state).
RetryRound = RetryRoundRecord

log = logging.getLogger("runbook.proof")


def job_scope(ctx: RunContext) -> JobScope:
    """Return the job's scope: what the recovery copies, and so what verification expects."""
    return scope_from_params(ctx.params)


def begin_verification(ctx: RunContext) -> str | None:
    """Withdraw the run's previous verdict before verifying again, and return it (None when there was none)."""
    return withdraw_verdict(ctx, "verification started and has not concluded")


def _waiting_for_inventory(ctx: RunContext, waiting: inventory_reports.InventoryNotReady) -> None:
    """Leave the verdict INCOMPLETE, saying which inventory report phase 07 waits for, and how to go on."""
    ctx.ledger.ensure_current()
    reason = str(waiting).split(":", 1)[0]
    evidence.withdraw_verdict(ctx.ledger.run_dir, None, job_scope(ctx).as_record(), reason, run=run_record(ctx),
                              waiting={"what": f"the inventory report of bucket {waiting.bucket}",
                                       "why": str(waiting),
                                       "how": "re-run phase 07 once it is delivered (runbook run --from 07)"})
    _record_verdict(ctx, "INCOMPLETE", reason)


def _by_inventory(ctx: RunContext, read: Callable[[], T]) -> T:
    """Return what an inventory step reads; when a report is not there yet, record the wait and re-raise."""
    try:
        return read()
    except inventory_reports.InventoryNotReady as waiting:
        _waiting_for_inventory(ctx, waiting)
        raise


def withdraw_verdict(ctx: RunContext, reason: str) -> str | None:
    """Mark the run's verdict INCOMPLETE (summary.json first, then the run state) and return the verdict withdrawn.

    Phase 07 calls it before it reads anything, and every phase that changes what was recovered
    calls it when it starts, so no verdict outlives a change or a check that could contradict it.
    """
    ctx.ledger.ensure_current()
    previous = ctx.ledger.state.verdict.verdict if ctx.ledger.state.verdict else None
    evidence.withdraw_verdict(ctx.ledger.run_dir, previous, job_scope(ctx).as_record(), reason, run=run_record(ctx),
                              as_of=job_scope(ctx).as_record()["as_of"])
    _record_verdict(ctx, "INCOMPLETE", reason)
    return previous


def _record_verdict(ctx: RunContext, verdict: Verdict, reason: str | None = None) -> None:
    """Record the run's verdict in the run state, with when and why."""
    ctx.ledger.state.verdict = VerdictRecord(verdict=verdict, at=now(), reason=reason)
    ctx.ledger.save()


def _recovery_job_ids(ctx: RunContext) -> list[str]:
    """Return the recovery job of every attempt, oldest first (the last is the current one)."""
    batch_job.current_job_id(ctx)  # explains that phase 06 must run first when there is no job
    return [job.job_id for job in ctx.ledger.state.recovery_jobs(ctx.bucket)]


def _rounds(ctx: RunContext) -> list[RetryRound]:
    """Return the retry rounds recorded in the run state, oldest first (copies: change them through _save_round)."""
    return [r.model_copy() for r in ctx.ledger.state.rounds_of(ctx.bucket)]


def job_ids(ctx: RunContext) -> list[str]:
    """Return the run's jobs whose outcome counts: each recovery attempt's, then each finished retry round's."""
    return [*_recovery_job_ids(ctx), *[r.job_id for r in _rounds(ctx) if r.job_id and r.finished]]


def load_job_manifest(ctx: RunContext) -> pd.DataFrame:
    """Return the manifests of the recovery job's attempts: every version the job was asked to copy.

    That is the manifest S3 generated from the scope, or for a sample drill the CSV manifest the
    job was given (the run's sample). Column `job_id` names the attempt's job. An attempt that
    ended before S3 generated its manifest contributes nothing; the current attempt must have one.
    """
    frames = []
    current = batch_job.current_job_id(ctx)
    for job_id in _recovery_job_ids(ctx):
        job = batch_job.describe_job(ctx, job_id)
        given = job.get("Manifest")
        if given is not None:
            bucket, key = split_s3_object_arn(given["Location"]["ObjectArn"])
            fields = given.get("Spec", {}).get("Fields") or ["Bucket", "Key"]
            frames.append(reports.load_csv_manifest(ctx.vault("s3"), bucket, key, fields).assign(job_id=job_id))
            continue
        location = job.get("GeneratedManifestDescriptor", {}).get("Location", {})
        if not location.get("ObjectArn"):
            if job_id != current:
                continue
            raise ReportError(
                f"job {job['JobId']} ({job['Status']}) has no generated manifest; it is written while the job "
                "prepares with EnableManifestOutput; if the job failed in Preparing, its FailureReasons say why"
            )
        bucket, key = split_s3_object_arn(location["ObjectArn"])
        frames.append(reports.load_generated_manifest(ctx.vault("s3"), bucket, key).assign(job_id=job_id))
    return pd.concat(frames, ignore_index=True)


def load_job_reports(ctx: RunContext) -> pd.DataFrame:
    """Return the completion reports of every job of the run as one frame (column `job_id`), oldest first."""
    frames = []
    for job_id in job_ids(ctx):
        job = batch_job.describe_job(ctx, job_id)
        if job["Status"] not in batch_job.TERMINAL:
            raise ReportError(f"job {job_id} is {job['Status']}; its completion report exists once it has finished")
        pin = pins.pinned(ctx, job_id)
        if pin is not None and pin.get("report") is None:
            continue  # the job ended without running a task: S3 writes no report then
        report = job.get("Report", {})
        bucket = report.get("Bucket", ctx.params.report_bucket_arn).split(":::", 1)[-1]
        key = reports.completion_report_manifest_key(report.get("Prefix"), job_id)
        frame = reports.load_completion_report(ctx.vault("s3"), bucket, key)
        frames.append(frame.assign(job_id=job_id))
    if not frames:
        raise ReportError("no job of this run left a completion report; re-run phase 06 and let its job complete")
    return pd.concat(frames, ignore_index=True)


def check_job_outputs(ctx: RunContext, manifest: pd.DataFrame | None, report: pd.DataFrame | None) -> list[str]:
    """Return every disagreement between the jobs' own counters and pins and the manifest and reports read."""
    findings: list[str] = []
    current = batch_job.current_job_id(ctx)
    retry_rows = {r.job_id: r.versions for r in _rounds(ctx)}
    for job_id in job_ids(ctx):
        job = batch_job.describe_job(ctx, job_id)
        if job_id in retry_rows:
            rows: int | None = retry_rows[job_id]
        elif manifest is not None and "job_id" in manifest.columns:
            listed = manifest["job_id"] == job_id
            rows = int(listed.sum()) if listed.any() or job_id == current else None
        else:
            rows = None
        findings += pins.check_job_outputs(ctx, job, manifest_rows=rows, report=report,
                                           must_be_complete=job_id == current)
    return findings


def snapshot_vault(ctx: RunContext, subscribers: list[Any] | None = None) -> pd.DataFrame:
    """Return the state of every version in the vault bucket (from its inventory with verification.method inventory)."""
    if inventory_proof.method(ctx) == "inventory":
        return _by_inventory(ctx, lambda: inventory_proof.snapshot(ctx, "vault"))
    return snapshot.snapshot_bucket(ctx.vault("s3"), ctx.params.pair.vault_bucket,
                                    workers=ctx.params.verification.head_workers,
                                    subscribers=subscribers or [snapshot.progress_printer("vault")])


def snapshot_recovery(ctx: RunContext, subscribers: list[Any] | None = None) -> pd.DataFrame:
    """Return the state of every version in the recovery bucket (from its inventory with method inventory)."""
    if inventory_proof.method(ctx) == "inventory":
        return _by_inventory(ctx, lambda: inventory_proof.snapshot(ctx, "recovery"))
    return snapshot.snapshot_bucket(ctx.recovery("s3"), ctx.params.pair.recovery_bucket,
                                    workers=ctx.params.verification.head_workers,
                                    subscribers=subscribers or [snapshot.progress_printer("recovery")])


def _latest_per_version(report: pd.DataFrame) -> pd.DataFrame:
    """Keep each version's most recent task (a retry supersedes the first job's failure)."""
    return report.drop_duplicates(subset=["key", "version_id"], keep="last").reset_index(drop=True)


def compare_buckets(
    ctx: RunContext, vault: pd.DataFrame, recovery: pd.DataFrame, manifest: pd.DataFrame | None,
    report: pd.DataFrame | None,
) -> verify.Comparison:
    """Return the per-version comparison of both buckets within the job's scope, with the jobs' findings.

    For a sample drill, only the run's sample (read back from the run folder) is expected; versions
    in scope but not drawn are "not sampled", and any of them in the recovery bucket is extra.
    With verification.method inventory the comparison runs in SQL on both buckets' inventory reports
    (`inventory_proof`), the same reports `vault` and `recovery` were read from.
    """
    if inventory_proof.method(ctx) == "inventory" and manifest is not None and report is not None:
        findings = check_job_outputs(ctx, manifest, report)
        comparison = _by_inventory(ctx, lambda: inventory_proof.verify_from_inventory(ctx, manifest, report, findings))
    else:
        comparison = verify.compare(
            vault, recovery, scope=job_scope(ctx), manifest=manifest,
            report=None if report is None else _latest_per_version(report),
            findings=check_job_outputs(ctx, manifest, report),
            sample=sampling.drawn_versions(ctx) if ctx.params.job.sample is not None else None,
        )
    return with_current_view(comparison, vault, recovery, job_scope(ctx), ctx.params.verification.current_view,
                             sampled=ctx.params.job.sample is not None)


def with_current_view(
    comparison: verify.Comparison, vault: pd.DataFrame, recovery: pd.DataFrame, scope: JobScope, setting: str,
    *, sampled: bool = False,
) -> verify.Comparison:
    """Return the comparison with what applications will read in one bucket pair; a failing view is a finding.

    Under `verification.current_view` (`setting`), a difference that fails the verdict becomes one
    finding naming the keys' reasons, so the verdict is FAIL as for any other finding.
    """
    details = comparison.details
    expected = details.loc[details["expected"].to_numpy(bool), ["key", "version_id"]]
    view = current_view.compare_current(vault, recovery, scope, expected, setting=setting, sampled=sampled)
    finding = view.finding()
    if finding is None:
        return dataclasses.replace(comparison, current_view=view)
    counts = {**comparison.counts, "findings": comparison.counts["findings"] + 1}
    return dataclasses.replace(comparison, verdict="FAIL", counts=counts, findings=(*comparison.findings, finding),
                               current_view=view)


def _save_round(ctx: RunContext, record: RetryRound) -> None:
    """Record a round in the run state, replacing its earlier record."""
    record.bucket = ctx.bucket
    kept = [r for r in ctx.ledger.state.retry_rounds if (r.bucket, r.round) != (ctx.bucket, record.round)]
    ctx.ledger.state.retry_rounds = sorted([*kept, record], key=lambda r: (r.bucket or "", r.round))
    ctx.ledger.save()


def _start_round(
    ctx: RunContext, comparison: verify.Comparison, vault: pd.DataFrame, number: int,
) -> RetryRound | None:
    """Return a new round over the versions to copy again (None when there are none), its job created."""
    candidates = verify.retry_candidates(comparison)
    if candidates.empty:
        return None
    # A retry copies into the clean account: check its manifest against the scope before any job exists.
    job_scope(ctx).check_retry(candidates, vault)
    details = comparison.details.set_index(["key", "version_id"])
    chosen = details.loc[pd.MultiIndex.from_frame(candidates)]
    why = {"task failed": int(chosen[verify.TASK_FAILED].sum()),
           "missing": int((chosen[verify.MISSING_IN_RECOVERY] & ~chosen[verify.TASK_FAILED]).sum())}
    key = f"{ctx.params.job.report_prefix}/retries/{ctx.params.run_id}-round-{number}.csv"
    body = reports.retry_manifest_csv(candidates.assign(bucket=ctx.params.pair.vault_bucket))
    etag = ctx.vault("s3").put_object(Bucket=ctx.params.report_bucket, Key=key, Body=body,
                                      ServerSideEncryption="AES256")["ETag"].strip('"')
    job_id, _ = batch_job.create_retry_job(ctx, key, etag, number)
    before = {name: comparison.counts[name] for name in ("failed_tasks", "missing")}
    record = RetryRound(round=number, versions=len(candidates), job_id=job_id, status="created", manifest_key=key,
                        failures_before=before, why=why)
    _save_round(ctx, record)
    return record


def retry_failures(
    ctx: RunContext, comparison: verify.Comparison, vault: pd.DataFrame, manifest: pd.DataFrame | None,
    confirm_job: bool, subscribers: list[Any] | None = None,
) -> tuple[verify.Comparison, list[RetryRound]]:
    """Return the comparison after retrying failed or missing versions in follow-up jobs, round by round.

    Only versions inside the job's scope are ever retried. A round left unfinished by an earlier
    run of this phase (waiting for confirmation, say) is resumed, never forgotten.
    """
    limit = ctx.params.verification.max_retry_rounds
    while True:
        rounds = _rounds(ctx)
        pending = next((r for r in rounds if not r.finished), None)
        if pending is None:
            if len(rounds) >= limit:
                break
            pending = _start_round(ctx, comparison, vault, len(rounds) + 1)
            if pending is None:
                break
        started = time.monotonic()
        job = batch_job.wait_for_status(ctx, pending.job_id, {"Suspended", "Ready", "Active"}, subscribers or [])
        if job["Status"] == "Suspended":
            if not confirm_job:
                _write_verdict(ctx, "INCOMPLETE", comparison, _rounds(ctx), waiting={
                    "what": f"retry round {pending.round}", "job_id": pending.job_id, "versions": pending.versions,
                    "why": pending.why,
                    "how": "re-run phase 07 with confirm_job=True (runbook run --from 07 --confirm-job)"})
                raise ConfirmationRequired(
                    f"retry round {pending.round}: job {pending.job_id} would copy {pending.versions} version(s) "
                    f"again ({_why_text(pending.why)}), all inside the job's scope, and waits for confirmation; "
                    "the verdict stays INCOMPLETE until then. Re-run phase 07 with confirm_job=True "
                    "(runbook run --from 07 --confirm-job)."
                )
            batch_job.confirm_job(ctx, pending.job_id,
                                  f"retry round {pending.round} confirmed by parameter confirm_job")
        try:
            final = batch_job.follow_job(ctx, pending.job_id, subscribers or [])
        except JobEndedError as ended:
            final = batch_job.describe_job(ctx, ended.job_id)
        summary = batch_job.summarise_job(final)
        pending.status, pending.succeeded, pending.failed = summary["status"], summary["succeeded_tasks"], \
            summary["failed_tasks"]
        pending.seconds = round(pending.seconds + time.monotonic() - started, 2)
        _save_round(ctx, pending)
        report = load_job_reports(ctx)
        comparison = compare_buckets(ctx, vault, snapshot_recovery(ctx), manifest, report)
        if pending.status != "Complete":
            break  # a follow-up job that did not complete would fail the same way again
    return comparison, _rounds(ctx)


def _why_text(why: dict[str, int]) -> str:
    """Return a round's reasons as words: "3 task failed, 1 missing"."""
    return ", ".join(f"{count} {reason}" for reason, count in why.items() if count) or "no reason recorded"


def report_overview(report: pd.DataFrame) -> pd.DataFrame:
    """Return the number of tasks per job, status and error code in the completion reports."""
    return (report.groupby(["job_id", "task_status", "error_code"], dropna=False, observed=True)
            .size().reset_index(name="tasks"))


def snapshot_overview(vault: pd.DataFrame, recovery: pd.DataFrame) -> pd.DataFrame:
    """Return versions, delete markers and bytes per bucket side by side."""
    rows = []
    for side, frame in (("vault", vault), ("recovery", recovery)):
        markers = frame["is_delete_marker"].astype(bool)
        rows.append({"bucket": side, "object versions": int((~markers).sum()), "delete markers": int(markers.sum()),
                     "bytes": int(frame.loc[~markers, "size"].sum())})
    return pd.DataFrame(rows)


def conclude(ctx: RunContext, comparison: verify.Comparison, rounds: list[RetryRound],
             first_report: pd.DataFrame | None = None, buckets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write summary.json and the detail CSVs for the run, and return the verdict with its counts.

    `buckets` is each vault bucket's verdict and counts (`bucket_checks.bucket_rows`), kept in the
    summary as `buckets`.
    """
    path = _write_verdict(ctx, "PASS" if comparison.verdict == "PASS" else "FAIL", comparison, rounds, first_report,
                          buckets=buckets)
    return {"verdict": comparison.verdict, "summary_file": str(path), **comparison.counts,
            "findings": list(comparison.findings),
            "archived": restore_job.run_archived_summary(ctx, comparison.details)}


def _write_verdict(
    ctx: RunContext, verdict: Verdict, comparison: verify.Comparison, rounds: list[RetryRound],
    first_report: pd.DataFrame | None = None, waiting: dict[str, Any] | None = None,
    buckets: list[dict[str, Any]] | None = None,
) -> Any:
    """Write the detail CSVs and summary.json with `verdict`, record the verdict, and return the summary's path."""
    # A kernel whose run state was overtaken (a newer verification ran elsewhere) writes no evidence at all.
    ctx.ledger.ensure_current()
    current = ctx.ledger.state.current_recovery_job(ctx.bucket)
    first_id = current.job_id if current else None
    first_job = (current.final if current else None) or {}
    failed_first: list[dict[str, Any]] = []
    if first_report is not None:
        failed = first_report[(first_report["task_status"] == "failed") & (first_report["job_id"] == first_id)]
        failed_first = failed[["key", "version_id", "error_code", "result_message"]].astype(str).to_dict("records")
    categories = comparison.counts_by_category()
    details = {name: comparison.category(name) for name, count in categories.items()
               if count and (name not in verify.NOT_PROBLEMS or name == verify.ARCHIVED_NOT_RECOVERED)}
    details["all_versions"] = comparison.details
    view = comparison.current_view
    if view is not None:
        details["current_view"] = view.rows
    evidence.write_details(ctx.ledger.run_dir, details)
    identity = history.run_identity(ctx.params, ctx.ledger.state.params_file or "", ctx.ledger.run_dir)
    extra: dict[str, Any] = {"run": run_record(ctx), "commitment": ctx.ledger.state.commitment,
                             "identity": identity, "bytes": _bytes(comparison.details),
                             "buckets": buckets or [],
                             "as_of": job_scope(ctx).as_record()["as_of"],
                             "current_view": view.as_record() if view is not None else None,
                             "archived": restore_job.run_archived_summary(ctx, comparison.details),
                             "verification": comparison.evidence or {"method": "head"}}
    sample = sample_record(ctx)
    if sample is not None:
        extra["sample"] = sample
    if waiting is not None:
        extra["waiting"] = waiting
    path = evidence.write_summary(
        ctx.ledger.run_dir, verdict, dict(comparison.counts),
        categories=categories, findings=list(comparison.findings), scope=job_scope(ctx).as_record(),
        job=first_job, job_attempts=_attempt_summaries(ctx),
        retry_rounds=[r.model_dump() for r in rounds], first_round_failed_tasks=failed_first,
        content_checks=dict(comparison.content_checks),
        content_basis=_content_basis(comparison), **extra,
    )

    _record_verdict(ctx, verdict, "; ".join(comparison.findings) or None)
    if waiting is None:
        keep_verdict_record(ctx.ledger.run_dir, path, identity)
    return path


def keep_verdict_record(run_dir: Any, summary_path: Any, identity: dict[str, Any]) -> None:
    """Write the run's reconciliation page and append the verdict to the history.

    A history that cannot be written (a read-only folder, say) is reported, and changes no verdict:
    the verification's result stands in summary.json and the run folder either way.
    """
    reconciliation.write_reconciliation(run_dir, identity)
    try:
        appended = history.record_verdict(summary_path, identity)
    except HistoryError as error:
        log.warning("%s", error)
        print(f"warning: the verdict was not added to the history: {error}")
        return
    if appended is not None:
        print(f"history: one record appended to {appended}")


def _bytes(details: pd.DataFrame) -> dict[str, int]:
    """Return the bytes of the versions expected and of those recovered identical, as the vault has them."""
    if details.empty or "vault_size" not in details.columns:
        return {"expected": 0, "recovered": 0}
    sizes = pd.to_numeric(details["vault_size"], errors="coerce").fillna(0)
    expected = details["expected"].astype(bool)
    recovered = details["category"].astype(str).str.startswith("recovered")
    return {"expected": int(sizes[expected].sum()), "recovered": int(sizes[expected & recovered].sum())}
def _content_basis(comparison: verify.Comparison) -> str:
    """Return how content was compared, in words; by inventory, also what its reports could not show."""
    note = comparison.evidence.get("content_note")
    basis = verify.describe_content_checks(comparison.content_checks)
    return f"{basis} {note}" if note else basis


def run_record(ctx: RunContext) -> dict[str, Any]:
    """Return what kind of run this is (drill or recovery, embedded or real account, sample or full)."""
    recorded = ctx.ledger.state.kind
    return recorded.model_dump() if recorded is not None else run_kind.run_kind(ctx.params).as_record()


def sample_record(ctx: RunContext) -> dict[str, Any] | None:
    """Return a sample drill's draw with the recovery job's speed extrapolated to the whole scope (None when full)."""
    sample = sampling.sample_summary(ctx)
    if sample is None:
        return None
    current = ctx.ledger.state.current_recovery_job(ctx.bucket)
    sample["throughput"] = throughput.extrapolate(current, int(sample["population"])) if current else None
    return sample


def progress_history(ctx: RunContext) -> list[dict[str, Any]]:
    """Return the watcher's observations of the recovery job (status and task counters over time).

    The moment the job was confirmed is one of them (status "Confirmed", no task done yet), so a
    plot can start where replication could start, and not at the wait for an operator.
    """
    current = ctx.ledger.state.current_recovery_job(ctx.bucket)
    if current is None:
        return []
    points = [point.model_dump() for point in current.progress]
    if current.confirmed:
        total = max((p["total"] for p in points), default=0)
        points.append({"at": current.confirmed, "status": "Confirmed", "total": total, "succeeded": 0, "failed": 0,
                       "active_seconds": 0})
        points.sort(key=lambda p: datetime.fromisoformat(p["at"]))
    return points


def _attempt_summaries(ctx: RunContext) -> list[dict[str, Any]]:
    """Return each recovery attempt's job, token and how it ended (per vault bucket of many), for the summary."""
    views = ctx.pair_contexts() if ctx.bucket is None else [ctx]
    return [{**({"vault_bucket": view.bucket} if view.bucket else {}), "attempt": job.attempt, "job_id": job.job_id,
             "token": job.token, "created": job.created, "ended": job.ended}
            for view in views for job in ctx.ledger.state.recovery_jobs(view.bucket)]
