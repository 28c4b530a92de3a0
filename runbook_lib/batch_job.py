"""The S3 Batch Replication job of seed step 7: create it, wait for it, confirm it, follow it, sum it up.

Progress is reported to subscribers (objects with any of `on_status`, `on_progress`, `on_done`), so
the same watcher drives a progress bar in Jupyter and log lines in a headless drill.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from botocore.exceptions import ClientError

from runbook_lib import aws_facts, pins, reports, sampling
from runbook_lib.accounts import error_code
from runbook_lib.aws_facts import AFTER_CONFIRMATION_JOB_STATUSES, TERMINAL_JOB_STATUSES, UNSUCCESSFUL_END_STATUSES
from runbook_lib.context import RunContext
from runbook_lib.errors import ConfirmationRequired, JobEndedError, JobError, RunStateError, ScopeError
from runbook_lib.ledger import now
from runbook_lib.planning import known_after
from runbook_lib.run_state import JobRecord, ProgressPoint, SampleRecord, recovery_purpose, retry_purpose
from runbook_lib.scope import scope_from_params

__all__ = [
    "TERMINAL",
    "LogProgress",
    "ProgressSubscriber",
    "client_request_token",
    "confirm_job",
    "create_job",
    "create_replication_job",
    "create_retry_job",
    "current_job_id",
    "describe_job",
    "follow_job",
    "recovery_attempt",
    "replication_job_request",
    "retry_job_request",
    "summarise_job",
    "wait_for_status",
]

log = logging.getLogger(__name__)

TERMINAL = TERMINAL_JOB_STATUSES
_AFTER_CONFIRMATION = AFTER_CONFIRMATION_JOB_STATUSES
# What S3 Control answers for a job it does not know (or no longer keeps).
_UNKNOWN_JOB = ("NotFoundException", "NoSuchJob")
_TOKEN_NAMESPACE = uuid.UUID("3f0e5c2a-8b7d-4c1e-9a6f-2d4b8e1c7a90")


class ProgressSubscriber(Protocol):
    """Receives the job's description each time the watcher polls it."""

    def on_progress(self, job: dict[str, Any]) -> None: ...


def _observe(job: dict[str, Any]) -> ProgressPoint:
    summary = job.get("ProgressSummary", {})
    return ProgressPoint(
        at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        status=job["Status"],
        total=int(summary.get("TotalNumberOfTasks", 0)),
        succeeded=int(summary.get("NumberOfTasksSucceeded", 0)),
        failed=int(summary.get("NumberOfTasksFailed", 0)),
        active_seconds=int(summary.get("Timers", {}).get("ElapsedTimeInActiveSeconds", 0)),
    )


@dataclass
class LogProgress:
    """Writes a log line when the status changes and at most every `every_seconds` otherwise."""

    every_seconds: float = 10.0
    _last_status: str = ""
    _last_line: float = field(default=0.0)

    def on_progress(self, job: dict[str, Any]) -> None:
        """Log the job's status and counters when worth a line."""
        seen = _observe(job)
        now = time.monotonic()
        if seen.status == self._last_status and now - self._last_line < self.every_seconds:
            return
        self._last_status, self._last_line = seen.status, now
        log.info("job %s: %s, %d of %d tasks done (%d failed)", job["JobId"], seen.status,
                 seen.succeeded + seen.failed, seen.total, seen.failed)


def client_request_token(run_id: str, purpose: str = "recovery") -> str:
    """Return the job's idempotency token, derived from the run id so a re-run finds the same job."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{run_id}/{purpose}"))


def _report(ctx: RunContext, scope: str = "AllTasks") -> dict[str, Any]:
    params = ctx.params
    return {
        "Bucket": params.report_bucket_arn,
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "Prefix": params.job.report_prefix,
        "ReportScope": scope,
        "ExpectedBucketOwner": params.vault.account_id,
    }


def replication_job_request(ctx: RunContext, attempt: int | None = None) -> dict[str, Any]:
    """Return the CreateJob request of seed step 7: a manifest generated from the job's scope.

    For a sample drill (`job.sample`) the job reads the run's sample manifest instead, a CSV of
    Bucket, Key and VersionId that phase 00 drew and `create_replication_job` uploads.

    Each attempt has its own request token: a re-run finds the attempt's job, and a new attempt
    (after a job ended Failed or Cancelled) creates a new one. Without `attempt`, the attempt the
    next `create_replication_job` would use.
    """
    params = ctx.params
    job = params.job
    number = recovery_attempt(ctx) if attempt is None else attempt
    purpose = "recovery" if number == 1 else f"recovery-attempt-{number}"
    suffix = "" if number == 1 else f", attempt {number}"
    what = f"Recover {params.vault.bucket} into {params.recovery.bucket}"
    if job.sample is not None:
        drawn: object = (known_after("00") if ctx.plan is not None and ctx.ledger.state.sample is None
                         else _sample_record(ctx).drawn)
        what = f"Sample drill: {drawn} versions of {params.vault.bucket} into {params.recovery.bucket}"
    return {
        "AccountId": params.vault.account_id,
        "ConfirmationRequired": bool(job.confirmation_required),
        "Operation": {"S3ReplicateObject": {}},
        "Report": _report(ctx),
        "ClientRequestToken": client_request_token(params.run_id, purpose),
        "Priority": int(job.priority),
        "RoleArn": params.batch_role_arn,
        "Description": f"{what} ({params.run_id}{suffix})"[:256],
        **_object_list(ctx),
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(ctx.tags.items())],
    }


def _sample_record(ctx: RunContext) -> SampleRecord:
    """Return the run's sample, or explain that phase 00 draws it."""
    record = ctx.ledger.state.sample
    if record is None:
        raise RunStateError("job.sample is set but the run has drawn no sample yet; phase 00 draws it: run phase 00 "
                            "(or run it again after changing job.sample)", str(ctx.ledger.run_dir))
    return record


def _object_list(ctx: RunContext) -> dict[str, Any]:
    """Return the job's list of versions: S3's manifest generator on the scope, or the run's sample manifest."""
    params = ctx.params
    if params.job.sample is None:
        return {"ManifestGenerator": {
            "S3JobManifestGenerator": {
                "ExpectedBucketOwner": params.vault.account_id,
                "SourceBucket": params.vault_bucket_arn,
                "EnableManifestOutput": True,
                "ManifestOutputLocation": {
                    "ExpectedManifestBucketOwner": params.vault.account_id,
                    "Bucket": params.report_bucket_arn,
                    "ManifestPrefix": params.job.manifest_prefix,
                    "ManifestEncryption": {"SSES3": {}},
                    "ManifestFormat": "S3InventoryReport_CSV_20211130",
                },
                "Filter": scope_from_params(params.job).manifest_filter(),
            }
        }}
    if ctx.plan is not None and ctx.ledger.state.sample is None:
        # Phase 00 draws the sample; until it has, a plan can name neither the manifest's key nor its ETag.
        later = known_after("00")
        later_key = f"{params.job.manifest_prefix}/samples/{later}.csv"
        return {"Manifest": {
            "Spec": {"Format": reports.RETRY_MANIFEST_FORMAT, "Fields": list(sampling.MANIFEST_FIELDS)},
            "Location": {"ObjectArn": aws_facts.object_arn(params.report_bucket, later_key, params.partition),
                         "ETag": later},
        }}
    record = _sample_record(ctx)
    key = sampling.manifest_key(ctx, record.manifest_sha256)
    uploaded = record.uploaded if record.uploaded and record.uploaded.get("key") == key else None
    # Before the upload, the ETag S3 will give it: the MD5 of a single-part object stored with SSE-S3.
    etag = uploaded["etag"] if uploaded else record.manifest_md5
    return {"Manifest": {
        "Spec": {"Format": reports.RETRY_MANIFEST_FORMAT, "Fields": list(sampling.MANIFEST_FIELDS)},
        "Location": {"ObjectArn": aws_facts.object_arn(params.report_bucket, key, params.partition), "ETag": etag},
    }}


def retry_job_request(ctx: RunContext, manifest_key: str, manifest_etag: str, round_number: int) -> dict[str, Any]:
    """Return the CreateJob request of a follow-up job over a CSV manifest of versions to retry."""
    params = ctx.params
    return {
        "AccountId": params.vault.account_id,
        "ConfirmationRequired": bool(params.job.confirmation_required),
        "Operation": {"S3ReplicateObject": {}},
        "Report": _report(ctx),
        "ClientRequestToken": client_request_token(params.run_id, f"retry-{round_number}"),
        "Priority": int(params.job.priority),
        "RoleArn": params.batch_role_arn,
        "Description": f"Retry round {round_number} of {params.run_id}"[:256],
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
            "Location": {
                "ObjectArn": aws_facts.object_arn(params.report_bucket, manifest_key, params.partition),
                "ETag": manifest_etag,
            },
        },
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(ctx.tags.items())],
    }


def _known_job(ctx: RunContext, purpose: str) -> JobRecord | None:
    """Return the record of the job created for `purpose`, if S3 still knows it."""
    record = ctx.ledger.state.jobs.get(purpose)
    if record is None:
        return None
    try:
        describe_job(ctx, record.job_id)
    except ClientError as error:
        if error_code(error) not in _UNKNOWN_JOB:
            raise
        return None
    return record


def create_job(ctx: RunContext, request: dict[str, Any], purpose: str, attempt: int | None = None) -> tuple[str, bool]:
    """Return the job id for a request and whether it was created now (False: found from an earlier run).

    The job is recorded in the run state under `purpose` ("recovery-N", "retry-N") with its token.
    """
    known = _known_job(ctx, purpose)
    if known is not None:
        return known.job_id, False
    if ctx.plan is not None:
        # S3 chooses the job id; the plan shows the request the job is created with.
        job_id = f"{purpose} ({known_after(ctx.phase[:2] if ctx.phase else '06')})"
        ctx.plan.intend("vault", "s3control", "CreateJob", job_id, request, creates=True)
    else:
        job_id = str(ctx.vault("s3control").create_job(**request)["JobId"])
    ctx.ledger.save_job(JobRecord(purpose=purpose, job_id=job_id, token=request["ClientRequestToken"],
                                  attempt=attempt, created=now()))
    ctx.ledger.record_created("batch_job", job_id, account=request["AccountId"], token=request["ClientRequestToken"])
    return job_id, True


def _describe_if_known(ctx: RunContext, job_id: str) -> dict[str, Any] | None:
    """Return the job's description, or None when S3 no longer knows the job."""
    try:
        return describe_job(ctx, job_id)
    except ClientError as error:
        if error_code(error) not in _UNKNOWN_JOB:
            raise
        return None


def _ended_without_completing(job: dict[str, Any] | None) -> str | None:
    """Return how a job ended when it failed, was cancelled or is gone; None while it can still complete."""
    if job is None:
        return "gone"
    status = str(job["Status"])
    return status if status in UNSUCCESSFUL_END_STATUSES else None


def recovery_attempt(ctx: RunContext) -> int:
    """Return the attempt number the recovery job is at: a new one after a job that failed or was cancelled."""
    latest = ctx.ledger.state.current_recovery_job()
    if latest is None:
        return 1
    number = latest.attempt or 1
    return number + 1 if _ended_without_completing(_describe_if_known(ctx, latest.job_id)) else number


def create_replication_job(ctx: RunContext) -> tuple[str, bool]:
    """Return the recovery job's id and whether it was created now; re-runs find the same job.

    When the latest attempt's job ended Failed or Cancelled (or S3 no longer knows it), a new
    attempt with a new request token is created, and waits for confirmation like the first.
    """
    latest = ctx.ledger.state.current_recovery_job()
    job = _describe_if_known(ctx, latest.job_id) if latest is not None else None
    ended = _ended_without_completing(job) if latest is not None else None
    if latest is not None and job is not None and ended is None:
        _check_same_scope(ctx, job)
        return latest.job_id, False
    if latest is not None:
        latest.ended = ended
        ctx.ledger.save_job(latest)
        if job is not None and pins.pinned(ctx, latest.job_id) is None:
            # An attempt cancelled or failed where no phase followed it: pin what it left before moving on.
            pins.pin_job_outputs(ctx, job)
    number = (latest.attempt or 1) + 1 if latest is not None else 1
    if ctx.params.job.sample is not None and not (ctx.plan is not None and ctx.ledger.state.sample is None):
        sampling.upload_manifest(ctx)  # the job reads it while it prepares; its ETag goes into the request
    return create_job(ctx, replication_job_request(ctx, number), recovery_purpose(number), attempt=number)


def _check_same_scope(ctx: RunContext, job: dict[str, Any]) -> None:
    """Raise ScopeError when the run's job was created with another filter or sample than the parameters now give."""
    _check_same_sample(ctx, job)
    created = job.get("ManifestGenerator", {}).get("S3JobManifestGenerator", {}).get("Filter")
    wanted = scope_from_params(ctx.params.job).manifest_filter()
    if created is not None and _canonical_filter(created) != _canonical_filter(wanted):
        raise ScopeError(
            f"the run's recovery job {job['JobId']} was created with the filter {_canonical_filter(created)}, but the "
            f"parameters now give {_canonical_filter(wanted)}. A run has one scope, and its evidence speaks of it: "
            "put the parameters back, or recover the new scope as a new run (a new run_id and run folder)."
        )


def _check_same_sample(ctx: RunContext, job: dict[str, Any]) -> None:
    """Raise ScopeError when the job was given another sample (or the whole scope) than the parameters now ask for."""
    given = job.get("Manifest", {}).get("Location")
    if ctx.params.job.sample is None:
        if given is not None:
            raise ScopeError(
                f"the run's recovery job {job['JobId']} copies a sample ({given.get('ObjectArn')}), but job.sample is "
                "now null (the whole scope). A run has one scope: put job.sample back, or recover the whole scope "
                "as a new run (a new run_id and run folder)."
            )
        return
    wanted = _object_list(ctx)["Manifest"]["Location"]
    if given is None or given.get("ObjectArn") != wanted["ObjectArn"]:
        raise ScopeError(
            f"the run's recovery job {job['JobId']} was created with "
            f"{'the manifest ' + str(given.get('ObjectArn')) if given else 'the whole scope'}, but the run's sample "
            f"is {wanted['ObjectArn']}. A run has one sample: put the parameters back, or draw the new sample as a "
            "new run (a new run_id and run folder)."
        )


def _canonical_filter(manifest_filter: dict[str, Any]) -> str:
    """Return a manifest filter as comparable text: times in UTC, status lists in order."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(value, dict):
            return {key: plain(item) for key, item in sorted(value.items())}
        if isinstance(value, list):
            return sorted(plain(item) for item in value)
        return value

    return json.dumps(plain(manifest_filter), sort_keys=True)


def current_job_id(ctx: RunContext) -> str:
    """Return the current recovery job's id, or explain that phase 06 must create it first."""
    latest = ctx.ledger.state.current_recovery_job()
    if latest is None:
        raise RunStateError("the run has no recovery job yet; run phase 06_batch_replication first",
                            str(ctx.ledger.run_dir))
    return latest.job_id


def create_retry_job(ctx: RunContext, manifest_key: str, manifest_etag: str, round_number: int) -> tuple[str, bool]:
    """Return the id of the follow-up job of a retry round and whether it was created now."""
    return create_job(ctx, retry_job_request(ctx, manifest_key, manifest_etag, round_number),
                      retry_purpose(round_number))


def describe_job(ctx: RunContext, job_id: str) -> dict[str, Any]:
    """Return DescribeJob's job description."""
    # Plain data from here on: the summary, the pins and the evidence read it as JSON.
    return dict(ctx.vault("s3control").describe_job(AccountId=ctx.params.vault.account_id, JobId=job_id)["Job"])


def wait_for_status(
    ctx: RunContext,
    job_id: str,
    statuses: Iterable[str],
    subscribers: Sequence[ProgressSubscriber] = (),
    timeout_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Return the job's description once it reaches one of `statuses` (or a terminal status)."""
    wanted = set(statuses)
    poll = float(ctx.params.job.poll_seconds)
    limit = timeout_seconds if timeout_seconds is not None else ctx.params.job.timeout_minutes * 60
    deadline = time.monotonic() + limit
    record = ctx.ledger.state.job(job_id)  # None for a job this run did not create: watched, not recorded
    history = list(record.progress) if record is not None else []
    while True:
        job = describe_job(ctx, job_id)
        seen = _observe(job)
        if not history or (history[-1].status, history[-1].succeeded, history[-1].failed) != (
                seen.status, seen.succeeded, seen.failed):
            history.append(seen)
        for subscriber in subscribers:
            subscriber.on_progress(job)
        done = job["Status"] in wanted or job["Status"] in TERMINAL
        if record is not None and (done or time.monotonic() > deadline):
            record.progress = history
            ctx.ledger.save_job(record)
        if done:
            return job
        if time.monotonic() > deadline:
            raise JobError(
                f"job {job_id} is still {job['Status']} after {limit:.0f} s, waiting for {sorted(wanted)}; "
                "re-run this cell to keep waiting, or raise job.timeout_minutes"
            )
        sleep(poll)


def confirm_job(ctx: RunContext, job_id: str, reason: str = "confirmed by the recovery operator") -> dict[str, Any]:
    """Return the job after confirming it (Suspended -> Ready); a job already past that is left alone."""
    job = describe_job(ctx, job_id)
    if job["Status"] in _AFTER_CONFIRMATION:
        return job
    if job["Status"] != "Suspended":
        raise JobError(f"job {job_id} is {job['Status']}; it can be confirmed only once it awaits confirmation")
    ctx.vault("s3control").update_job_status(
        AccountId=ctx.params.vault.account_id, JobId=job_id,
        RequestedJobStatus="Ready", StatusUpdateReason=reason[:256],
    )
    record = ctx.ledger.state.job(job_id)
    if record is not None:
        record.confirmed = now()
        ctx.ledger.save_job(record)
    return describe_job(ctx, job_id)


def follow_job(
    ctx: RunContext, job_id: str, subscribers: Sequence[ProgressSubscriber] = ()
) -> dict[str, Any]:
    """Return the job's final description after following it to Complete; any other end is an error.

    The moment the job ends, its counters and the ETags of its manifest and report are pinned in
    the run state (see `pins`), so verification can tell whether anyone edited them since.
    """
    job = describe_job(ctx, job_id)
    if job["Status"] == "Suspended":
        raise ConfirmationRequired(
            f"job {job_id} awaits confirmation and will not replicate anything until it is confirmed. "
            "In JupyterLab press the Confirm button above; headless, re-run with confirm_job=True "
            "(runbook run ... --from 06 --confirm-job)."
        )
    job = wait_for_status(ctx, job_id, TERMINAL, subscribers)
    record = ctx.ledger.state.job(job_id)
    if record is not None:
        record.final = summarise_job(job)
        record.ended = str(job["Status"])
        ctx.ledger.save_job(record)
    if pins.pinned(ctx, job_id) is None:
        pins.pin_job_outputs(ctx, job)
    if job["Status"] != "Complete":
        raise JobEndedError(_ended_message(job), job_id, str(job["Status"]))
    return job


def _ended_message(job: dict[str, Any]) -> str:
    """Return what an operator needs to know about a job that ended without completing."""
    seen = _observe(job)
    reasons = "; ".join(f"{r.get('FailureCode', '?')}: {r.get('FailureReason', '')}"
                        for r in job.get("FailureReasons", [])) or "S3 gave no failure reason"
    return (
        f"job {job['JobId']} ended {seen.status}, not Complete ({seen.succeeded} of {seen.total} tasks succeeded, "
        f"{seen.failed} failed; {reasons}). Nothing it did counts as a recovery. Fix the cause, then re-run "
        "phase 06: it creates a new attempt with a new request token, which waits for confirmation again."
    )


def summarise_job(job: dict[str, Any]) -> dict[str, Any]:
    """Return the facts of a job worth keeping: status, counters, timings, failures, report location."""
    seen = _observe(job)
    descriptor = job.get("GeneratedManifestDescriptor", {}).get("Location", {})
    report = job.get("Report", {})
    return {
        "job_id": job["JobId"],
        "status": seen.status,
        "total_tasks": seen.total,
        "succeeded_tasks": seen.succeeded,
        "failed_tasks": seen.failed,
        "active_seconds": seen.active_seconds,
        "created": str(job.get("CreationTime", "")),
        "terminated": str(job.get("TerminationDate", "")),
        "failure_reasons": job.get("FailureReasons", []),
        "generated_manifest": descriptor.get("ObjectArn"),
        "report_bucket": report.get("Bucket"),
        "report_prefix": report.get("Prefix"),
    }
