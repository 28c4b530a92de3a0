"""The recovery jobs of a run: one Batch Replication job per vault bucket, confirmed together, followed together.

S3's manifest generator reads one source bucket, so a run over many vault buckets creates one
job per bucket (each with its bucket's priority), shows the plan of every job, asks one
confirmation for all of them, and follows them concurrently: one loop looks at every unfinished
job in turn, so the run state has one writer. A one-bucket run is the same with one job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_lib import batch_job
from runbook_lib.context import RunContext
from runbook_lib.errors import ConfirmationRequired, JobEndedError, JobError
from runbook_lib.run_state import ProgressPoint
from runbook_lib.scope import scope_from_params

__all__ = ["BucketJob", "JobsProgress", "create_jobs", "follow_jobs", "job_requests", "plan_rows", "summary_rows",
           "wait_until_prepared"]


@dataclass
class BucketJob:
    """The recovery job of one vault bucket: the bucket pair's context, the job's id, and whether it is new."""

    ctx: RunContext
    job_id: str
    created: bool

    @property
    def vault_bucket(self) -> str:
        """The vault bucket the job recovers."""
        return self.ctx.params.pair.vault_bucket

    @property
    def recovery_bucket(self) -> str:
        """The recovery bucket the job writes into."""
        return self.ctx.params.pair.recovery_bucket


class JobsProgress:
    """Receives every job's description each time the follower looks at it (per-bucket bars and a total)."""

    def on_jobs(self, jobs: Sequence[BucketJob], described: dict[str, dict[str, Any]]) -> None:
        """Show the jobs' progress; `described` maps job ids to their latest description."""


def job_requests(ctx: RunContext) -> Any:
    """Return the CreateJob request of the run's job, or of each vault bucket's job (by vault bucket)."""
    views = ctx.pair_contexts()
    if len(views) == 1:
        return batch_job.replication_job_request(views[0])
    return {view.params.pair.vault_bucket: batch_job.replication_job_request(view) for view in views}


def create_jobs(ctx: RunContext) -> list[BucketJob]:
    """Return the recovery job of every vault bucket, creating those that do not exist, highest priority first.

    Each job is `batch_job.create_replication_job` of its bucket pair: re-runs find the same
    jobs, and a bucket whose job failed or was cancelled gets a new attempt.
    """
    views = sorted(ctx.pair_contexts(), key=lambda view: -view.params.job.priority)
    jobs = []
    for view in views:
        job_id, created = batch_job.create_replication_job(view)
        jobs.append(BucketJob(view, job_id, created))
    return jobs


def wait_until_prepared(jobs: Sequence[BucketJob], subscribers: Sequence[Any] = ()) -> dict[str, dict[str, Any]]:
    """Return each job's description once S3 has prepared it (it awaits confirmation, is ready, or runs)."""
    return {job.job_id: batch_job.wait_for_status(job.ctx, job.job_id, {"Suspended", "Ready", "Active"}, subscribers)
            for job in jobs}


def plan_rows(jobs: Sequence[BucketJob], described: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the plan of every job, one row per vault bucket: where it copies, how many versions, its priority."""
    rows = []
    for job in jobs:
        summary = described[job.job_id].get("ProgressSummary", {})
        rows.append({"vault bucket": job.vault_bucket, "recovery bucket": job.recovery_bucket,
                     "job": job.job_id, "status": described[job.job_id]["Status"],
                     "versions": int(summary.get("TotalNumberOfTasks", 0)),
                     "priority": int(job.ctx.params.job.priority),
                     "scope": scope_from_params(job.ctx.params).describe()})
    return rows


@dataclass
class _Followed:
    """One job being followed: its observations so far, and its latest description."""

    job: BucketJob
    history: list[ProgressPoint] = field(default_factory=list)
    latest: dict[str, Any] = field(default_factory=dict)


def follow_jobs(
    jobs: Sequence[BucketJob], progress: Sequence[JobsProgress] = (), sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Return every job's final description after following all of them, concurrently, to their end.

    Each job's end is recorded and its outputs pinned the moment the follower sees it (as
    `batch_job.follow_job` does for one). A job awaiting confirmation stops the follower; once all
    have ended, any that did not complete raises JobEndedError naming its vault bucket.
    """
    for job in jobs:
        if batch_job.describe_job(job.ctx, job.job_id)["Status"] == "Suspended":
            raise ConfirmationRequired(
                f"job {job.job_id} ({job.vault_bucket}) awaits confirmation and will not replicate anything until "
                "it is confirmed. In JupyterLab press the Confirm button above; headless, re-run with "
                "confirm_job=True (runbook run ... --from 06 --confirm-job).")
    followed = [_Followed(job, list(_recorded_progress(job))) for job in jobs]
    poll = min(float(job.ctx.params.job.poll_seconds) for job in jobs) if jobs else 0.0
    limit = max(job.ctx.params.job.timeout_minutes for job in jobs) * 60 if jobs else 0
    deadline = time.monotonic() + limit
    pending = list(followed)
    while pending:
        for one in list(pending):
            one.latest = batch_job.describe_job(one.job.ctx, one.job.job_id)
            batch_job.observe(one.latest, one.history)
            if one.latest["Status"] in batch_job.TERMINAL:
                batch_job.finish_job(one.job.ctx, one.latest, one.history)
                pending.remove(one)
        for subscriber in progress:
            subscriber.on_jobs(jobs, {one.job.job_id: one.latest for one in followed})
        if not pending:
            break
        if time.monotonic() > deadline:
            for one in pending:  # what was seen so far stays in the run state, as for one job
                record = one.job.ctx.ledger.state.job(one.job.job_id)
                if record is not None:
                    record.progress = list(one.history)
                    one.job.ctx.ledger.save_job(record)
            waiting = ", ".join(f"{one.job.vault_bucket} ({one.latest['Status']})" for one in pending)
            raise JobError(f"jobs still running after {limit:.0f} s: {waiting}; re-run this cell to keep following "
                           "them, or raise job.timeout_minutes")
        sleep(poll)
    ended = [one for one in followed if one.latest["Status"] != "Complete"]
    if len(followed) == 1 and ended:
        raise JobEndedError(batch_job.ended_message(ended[0].latest), ended[0].job.job_id,
                            str(ended[0].latest["Status"]))
    if ended:
        first = ended[0]
        buckets = ", ".join(one.job.vault_bucket for one in ended)
        raise JobEndedError(f"the job of vault bucket(s) {buckets} did not complete: "
                            + " ".join(batch_job.ended_message(one.latest) for one in ended),
                            first.job.job_id, str(first.latest["Status"]))
    return [one.latest for one in followed]


def _recorded_progress(job: BucketJob) -> list[ProgressPoint]:
    """Return the observations the run state holds of a job (empty for one it does not record)."""
    record = job.ctx.ledger.state.job(job.job_id)
    return list(record.progress) if record is not None else []


def summary_rows(jobs: Sequence[BucketJob], described: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return each job's summary (status, counters, timings), with its vault bucket first."""
    return [{"vault bucket": job.vault_bucket, **batch_job.summarise_job(description)}
            for job, description in zip(jobs, described, strict=True)]
