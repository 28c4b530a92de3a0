"""Phase 07's steps: load what the job says it did, read what the buckets hold, compare, retry, conclude.

Each function is one guided step of the verify notebook; state between them lives in the ledger
(job ids, retry rounds) and in the DataFrames the notebook passes along.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from runbook_lib import batch_job, evidence, reports, snapshot, verify
from runbook_lib.context import RunContext
from runbook_lib.errors import ConfirmationRequired, ReportError

__all__ = [
    "RetryRound",
    "compare_buckets",
    "conclude",
    "job_ids",
    "load_job_manifest",
    "load_job_reports",
    "progress_history",
    "report_overview",
    "retry_failures",
    "snapshot_overview",
    "snapshot_recovery",
    "snapshot_vault",
]


def job_ids(ctx: RunContext) -> list[str]:
    """Return the recovery job and every retry job of the run, oldest first."""
    first = ctx.ledger.require("job_id", "06_batch_replication")
    retries = [r["job_id"] for r in ctx.ledger.get("retry_rounds", [])]
    return [first, *retries]


def _split_arn(object_arn: str) -> tuple[str, str]:
    bucket_and_key = object_arn.split(":::", 1)[1]
    bucket, key = bucket_and_key.split("/", 1)
    return bucket, key


def load_job_manifest(ctx: RunContext) -> pd.DataFrame:
    """Return the manifest S3 generated for the recovery job: every version it was asked to replicate."""
    job = batch_job.describe_job(ctx, ctx.ledger.require("job_id", "06_batch_replication"))
    location = job.get("GeneratedManifestDescriptor", {}).get("Location", {})
    if not location.get("ObjectArn"):
        raise ReportError(
            f"job {job['JobId']} ({job['Status']}) has no generated manifest; it is written while the job prepares "
            "with EnableManifestOutput; if the job failed in Preparing, its FailureReasons say why"
        )
    bucket, key = _split_arn(location["ObjectArn"])
    return reports.load_generated_manifest(ctx.vault("s3"), bucket, key)


def load_job_reports(ctx: RunContext) -> pd.DataFrame:
    """Return the completion reports of the recovery job and its retries as one frame (column `job_id`)."""
    frames = []
    for job_id in job_ids(ctx):
        job = batch_job.describe_job(ctx, job_id)
        if job["Status"] not in batch_job.TERMINAL:
            raise ReportError(f"job {job_id} is {job['Status']}; its completion report exists once it has finished")
        report = job.get("Report", {})
        bucket = report.get("Bucket", ctx.params.report_bucket_arn).split(":::", 1)[-1]
        key = reports.completion_report_manifest_key(report.get("Prefix"), job_id)
        frame = reports.load_completion_report(ctx.vault("s3"), bucket, key)
        frames.append(frame.assign(job_id=job_id))
    return pd.concat(frames, ignore_index=True)


def snapshot_vault(ctx: RunContext, subscribers: list[Any] | None = None) -> pd.DataFrame:
    """Return the state of every version in the vault bucket."""
    return snapshot.snapshot_bucket(ctx.vault("s3"), ctx.params.vault.bucket,
                                    workers=ctx.params.verification.head_workers,
                                    subscribers=subscribers or [snapshot.progress_printer("vault")])


def snapshot_recovery(ctx: RunContext, subscribers: list[Any] | None = None) -> pd.DataFrame:
    """Return the state of every version in the recovery bucket."""
    return snapshot.snapshot_bucket(ctx.recovery("s3"), ctx.params.recovery.bucket,
                                    workers=ctx.params.verification.head_workers,
                                    subscribers=subscribers or [snapshot.progress_printer("recovery")])


def _latest_per_version(report: pd.DataFrame) -> pd.DataFrame:
    """Keep each version's most recent task (a retry supersedes the first job's failure)."""
    return report.drop_duplicates(subset=["key", "version_id"], keep="last").reset_index(drop=True)


def compare_buckets(
    ctx: RunContext, vault: pd.DataFrame, recovery: pd.DataFrame, manifest: pd.DataFrame | None,
    report: pd.DataFrame | None,
) -> verify.Comparison:
    """Return the per-version comparison of the vault and recovery buckets against manifest and report."""
    return verify.compare(
        vault, recovery, manifest=manifest,
        report=None if report is None else _latest_per_version(report),
        expected_statuses=set(ctx.params.job.replication_statuses),
    )


@dataclass
class RetryRound:
    """One follow-up job over the versions that were not recovered."""

    round: int
    versions: int
    job_id: str
    status: str
    succeeded: int
    failed: int
    seconds: float
    manifest_key: str
    failures_before: dict[str, int] = field(default_factory=dict)


def retry_failures(
    ctx: RunContext, comparison: verify.Comparison, vault: pd.DataFrame, manifest: pd.DataFrame | None,
    confirm_job: bool, subscribers: list[Any] | None = None,
) -> tuple[verify.Comparison, list[RetryRound]]:
    """Return the comparison after retrying failed or missing versions in follow-up jobs, round by round."""
    rounds = [RetryRound(**r) for r in ctx.ledger.get("retry_rounds", [])]
    limit = ctx.params.verification.max_retry_rounds
    while len(rounds) < limit:
        candidates = verify.retry_candidates(comparison)
        if candidates.empty:
            break
        number = len(rounds) + 1
        started = time.monotonic()
        key = f"{ctx.params.job.report_prefix}/retries/{ctx.params.run_id}-round-{number}.csv"
        body = reports.retry_manifest_csv(candidates.assign(bucket=ctx.params.vault.bucket))
        etag = ctx.vault("s3").put_object(Bucket=ctx.params.report_bucket, Key=key, Body=body,
                                          ServerSideEncryption="AES256")["ETag"].strip('"')
        job_id, _ = batch_job.create_retry_job(ctx, key, etag, number)
        batch_job.wait_for_status(ctx, job_id, {"Suspended", "Ready", "Active"}, subscribers or [])
        job = batch_job.describe_job(ctx, job_id)
        if job["Status"] == "Suspended":
            if not confirm_job:
                raise ConfirmationRequired(
                    f"retry round {number}: job {job_id} would replicate {len(candidates)} versions again and waits "
                    "for confirmation; re-run phase 07 with confirm_job=True (runbook run --from 07 --confirm-job)"
                )
            batch_job.confirm_job(ctx, job_id, f"retry round {number} confirmed by parameter confirm_job")
        final = batch_job.follow_job(ctx, job_id, subscribers or [])
        summary = batch_job.summarise_job(final)
        record = RetryRound(number, len(candidates), job_id, summary["status"], summary["succeeded_tasks"],
                            summary["failed_tasks"], round(time.monotonic() - started, 2), key,
                            {k: v for k, v in comparison.counts.items() if k in ("failed_tasks", "missing")})
        ctx.ledger.append("retry_rounds", record.__dict__)
        rounds.append(record)
        report = load_job_reports(ctx)
        comparison = compare_buckets(ctx, vault, snapshot_recovery(ctx), manifest, report)
    return comparison, rounds


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
             first_report: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write summary.json and the detail CSVs for the run, and return the verdict with its counts."""
    first_job = ctx.ledger.get(f"final_{ctx.ledger.get('job_id')}", {})
    failed_first: list[dict[str, Any]] = []
    if first_report is not None:
        first_id = ctx.ledger.get("job_id")
        failed = first_report[(first_report["task_status"] == "failed") & (first_report["job_id"] == first_id)]
        failed_first = failed[["key", "version_id", "error_code", "result_message"]].astype(str).to_dict("records")
    categories = comparison.counts_by_category()
    details = {name: comparison.category(name) for name, count in categories.items()
               if count and name not in (verify.RECOVERED_IDENTICAL, verify.NOT_EXPECTED)}
    details["all_versions"] = comparison.details
    evidence.write_details(ctx.ledger.run_dir, details)
    path = evidence.write_summary(
        ctx.ledger.run_dir, comparison.verdict, dict(comparison.counts),
        categories=categories, job=first_job, retry_rounds=[r.__dict__ for r in rounds],
        first_round_failed_tasks=failed_first,
    )
    ctx.ledger.set("verdict", comparison.verdict)
    return {"verdict": comparison.verdict, "summary_file": str(path), **comparison.counts}


def progress_history(ctx: RunContext) -> list[dict[str, Any]]:
    """Return the watcher's observations of the recovery job (status and task counters over time)."""
    history: list[dict[str, Any]] = ctx.ledger.get(f"progress_{ctx.ledger.get('job_id')}", [])
    return history
