"""The worker that drives one Batch Operations job through AWS's statuses and runs its tasks.

Each job created in the `models.JobStore` gets a `JobRunner` in its own daemon thread:

    New -> Preparing -> Suspended -(UpdateJobStatus Ready)-> Ready -> Active -> Completing -> Complete
                     \\-> Ready (ConfirmationRequired false)
    any status before Completing -(UpdateJobStatus Cancelled)-> Cancelling -> Cancelled
    Preparing / Active / Completing -(the job cannot go on)-> Failing -> Failed

Preparing reads the supplied manifest or generates one from the source bucket's versions (and
saves it when asked, see `manifest_gen`); Active runs every task through the store's
`TaskFunctions` (by default the replication emulation, `replication.replicate_task`), or for an
S3InitiateRestoreObject job through `restore.restore_task`; the
completion report and the job status events are written as AWS writes them. Transitional statuses
last at least the store's `min_state_seconds`, and its `tasks_per_second` paces the tasks, so a
watcher sees a job move and its counters grow. The runner changes a job only while holding the
store's `changed` condition, and notifies it after every change.

Choices we made where AWS's behaviour is not documented (UNCONFIRMED) or where we simplify:

| topic | what the emulator does |
|---|---|
| Completing | entered between Active and Complete while the completion report is written |
| Pausing / Paused | never entered: no job is pre-empted by a higher-priority one |
| empty generated manifest | FailureCode `InvalidManifestContent` (third-party claim), reason as AWS documents it |
| 1,000-task / 50 % rule | FailureCode `TaskFailureThresholdExceeded`; the report is still written |
| a task without a version id | failed, 400 `InvalidRequest`; an empty version field: failed, 500 `SrcObjectNotFound`, VersionId `\\N` |
| injected transient fault on a restore job | none: faults are injected into replication tasks only |
| injected transient fault (`Faults.task_failure_rate`) | failed, 500 `InternalError` (S3's code for a retryable internal error; the replication failure codes AWS lists are all permanent), no replica, source marked FAILED through `replication.mark_source_failed`; drawn from a generator seeded by `Faults.seed` and the job's creation order, and only a version's first attempt in this store can fault, so a retry job succeeds |
| a bucket that cannot be recovered (`Faults.fail_buckets`) | every task over a version of that vault bucket fails as an injected fault does, retries too |
| FailureReasons on a job that failed | kept when it fails; a Complete job never has any |
| job events | JobCreated at creation, JobStatusChanged on every later transition; statusChangeReason holds the UpdateJobStatus reason when there is one |
| Suspended for more than 30 days | not modelled: the job waits for as long as the backend runs |
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook_lib import aws_facts
from runbook_lib.embedded import heap, job_events, manifest_gen, moto_state, replication, replication_rules, restore
from runbook_lib.embedded.manifest_gen import ManifestEntry, ReportRow
from runbook_lib.embedded.s3control.exceptions import JobFailure
from runbook_lib.embedded.s3control.validation import RESTORE_OPERATION
from runbook_lib.embedded.utc import utc_now

if TYPE_CHECKING:  # the store starts runners, so the runner may know it only by name
    from runbook_lib.embedded.s3control.models import Job, JobStore

__all__ = [
    "PUBLISH_EVERY",
    "THRESHOLD_MIN_TASKS",
    "WAIT_SLICE",
    "JobRunner",
    "TaskFunctions",
    "TaskOutcome",
    "replication_task_functions",
]

log = logging.getLogger(__name__)

THRESHOLD_MIN_TASKS = 1000
# Tasks whose outcomes reach the job together when the store does not pace its tasks.
PUBLISH_EVERY = 256
_TRANSIENT_FAULT = ("InternalError", "Replication of this version was interrupted by an internal error; run the task again.")
# How long a waiting runner sleeps before it looks again, in case a notification was missed.
WAIT_SLICE = 0.5


def _mark_failed(version: Any) -> None:
    version.replication_status = aws_facts.REPLICATION_STATUS_FAILED


Replicate = Callable[[str, str, str, str, str], Any]


@dataclass(frozen=True)
class TaskFunctions:
    """What a job runs per version: replicate one task, test eligibility, mark a source FAILED.

    `for_job`, when given, returns the replicate function for one job's tasks, which may keep what
    its tasks read between them (see `replication.JobReplicator`); `replicate` serves otherwise.
    """

    replicate: Replicate
    eligibility: Callable[[str, str], Callable[[Any], bool]]
    mark_failed: Callable[[Any], None] = _mark_failed
    for_job: Callable[[], Replicate] | None = None


def replication_task_functions() -> TaskFunctions:
    """Return the backend's replication emulation as the task functions of a job."""
    return TaskFunctions(
        replication.replicate_task, replication_rules.eligibility, replication.mark_source_failed,
        replication.job_replicator,
    )


@dataclass(slots=True)
class TaskOutcome:
    """How one task ended, as its completion report row will say (a job keeps one per task: slots, not frozen)."""

    entry: ManifestEntry
    succeeded: bool
    http_status: int
    error_code: str
    message: str

    def report_row(self) -> ReportRow:
        """Return this outcome as a completion report row."""
        return ReportRow(self.entry, self.succeeded, self.http_status, self.error_code, self.message)


class JobRunner:
    """Drives one job from New to a terminal status, in a thread of its own."""

    def __init__(self, store: JobStore, job: Job) -> None:
        self.store = store
        self.job = job
        self._changed = store.changed

    def start(self) -> threading.Thread:
        """Return the started worker thread running this job."""
        worker = threading.Thread(target=self.run, name=f"batch-job-{self.job.job_id[:8]}", daemon=True)
        worker.start()
        return worker

    def run(self) -> None:
        """Drive the job to a terminal status; a failure ends the job, never the thread with an error."""
        job = self.job
        try:
            self._lifecycle()
        except JobFailure as failure:
            self._fail(failure)
        except Exception as error:  # a bug in the emulator must end the job, not hang a watcher
            log.exception("batch job %s stopped by an emulator error", job.job_id)
            self._fail(JobFailure("InternalError", f"The embedded backend failed while running the job: {error}"))
        finally:
            with self._changed:
                self._changed.notify_all()

    # ------------------------------------------------------------------ transitions

    def _advance(self, status: str) -> bool:
        """Move the job on unless a cancellation came first; return whether it moved."""
        with self._changed:
            if self.job.cancel_requested:
                return False
            self.store.set_status(self.job, status)
        job_events.announce(self.job, job_events.JOB_STATUS_CHANGED, status)
        return True

    def _finish(self, status: str, failure_codes: Sequence[str] = ()) -> None:
        """Move the job to a status nothing can interrupt (Failing, Failed, Cancelled, ...)."""
        with self._changed:
            self.store.set_status(self.job, status)
        job_events.announce(self.job, job_events.JOB_STATUS_CHANGED, status, failure_codes=failure_codes)

    def _dwell(self, cancellable: bool = True) -> None:
        """Stay in the current status for `min_state_seconds`, or less when a cancellation arrives."""
        deadline = time.monotonic() + self.store.min_state_seconds
        with self._changed:
            while not (cancellable and self.job.cancel_requested):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    # ------------------------------------------------------------------ the lifecycle

    def _lifecycle(self) -> None:
        job = self.job
        self._dwell()
        if not self._advance("Preparing"):
            self._cancel()
            return
        with heap.bulk_phase():
            entries = self._prepare()
        self._dwell()
        if not self._reach_ready():
            self._cancel()
            return
        self._dwell()
        if not self._await_turn():
            self._cancel()
            return
        job_events.announce(job, job_events.JOB_STATUS_CHANGED, "Active")
        with heap.bulk_phase():
            if not self._run_tasks(entries) or not self._advance("Completing"):
                self._cancel()
                return
            self._dwell(cancellable=False)
            self._write_report()
        self._finish("Complete")

    def _reach_ready(self) -> bool:
        """Bring the job to Ready, through Suspended and its confirmation when one is required."""
        if not self.job.confirmation_required:
            return self._advance("Ready")
        if not self._advance("Suspended"):
            return False
        self._await_confirmation()
        return not self.job.cancel_requested

    def _await_confirmation(self) -> None:
        with self._changed:
            while self.job.status == "Suspended" and not self.job.cancel_requested:
                self._changed.wait(WAIT_SLICE)

    def _await_turn(self) -> bool:
        """Wait until the job may start, then make it Active; False when it was cancelled first."""
        job = self.job
        with self._changed:
            while not job.cancel_requested and not self.store.may_start(job):
                self._changed.wait(WAIT_SLICE)
            if job.cancel_requested:
                return False
            self.store.set_status(job, "Active")
            return True

    # ------------------------------------------------------------------ Preparing

    def _prepare(self) -> list[ManifestEntry]:
        """Return the job's tasks, read from its manifest or generated; save a generated one if asked."""
        job = self.job
        manifest_gen.check_role_trust(job.role_arn, job.account)
        generator = (job.request.get("ManifestGenerator") or {}).get("S3JobManifestGenerator")
        if generator is None:
            entries = manifest_gen.read_manifest(job.request["Manifest"], job.role_arn)
        else:
            entries = self._generate(generator)
        with self._changed:
            job.total_tasks = len(entries)
        return entries

    def _generate(self, generator: dict[str, Any]) -> list[ManifestEntry]:
        job = self.job
        source = manifest_gen.check_source_bucket(generator, job.role_arn)
        entries = manifest_gen.generate_manifest(generator, self.store.task_functions.eligibility)
        if not entries:
            raise JobFailure("InvalidManifestContent", "Manifest generation found no keys matching the filter criteria.")
        if generator.get("EnableManifestOutput"):
            descriptor = manifest_gen.write_generated_manifest(
                job.job_id, source, entries, generator["ManifestOutputLocation"], job.role_arn, utc_now()
            )
            with self._changed:
                job.generated_manifest = descriptor
        return entries

    # ------------------------------------------------------------------ Active

    def _run_tasks(self, entries: Sequence[ManifestEntry]) -> bool:
        """Run every task; return False when a cancellation stopped it, raise at the failure threshold.

        Outcomes reach the job (its counters, what DescribeJob shows) in groups of `PUBLISH_EVERY`
        tasks, or one by one when the store paces its tasks, so the job's lock is not taken per task;
        the threshold and a cancellation are still looked at after every task.
        """
        job, store = self.job, self.store
        functions = store.task_functions
        replicate = functions.for_job() if functions.for_job is not None else functions.replicate
        draws = random.Random(store.faults.seed * 1_000_003 + job.ordinal)
        interval = 1.0 / store.tasks_per_second if store.tasks_per_second else 0.0
        publish_every = 1 if interval else PUBLISH_EVERY
        due = time.monotonic()
        pending: list[TaskOutcome] = []
        with self._changed:
            succeeded, failed = job.succeeded, job.failed
        try:
            for entry in entries:
                if job.cancel_requested:
                    return False
                faulted = draws.random() < store.faults.task_failure_rate
                outcome = self._run_task(entry, faulted, functions, replicate)
                pending.append(outcome)
                if outcome.succeeded:
                    succeeded += 1
                else:
                    failed += 1
                if len(pending) >= publish_every:
                    self._publish(pending)
                done = succeeded + failed
                if done >= THRESHOLD_MIN_TASKS and failed * 2 > done:
                    raise JobFailure(
                        "TaskFailureThresholdExceeded",
                        f"The job stopped: {failed} of the {done} tasks run so far failed, more than half "
                        f"after at least {THRESHOLD_MIN_TASKS} tasks. See the completion report for their errors.",
                    )
                if interval:
                    due += interval
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
        finally:
            self._publish(pending)
            with self._changed:
                self._changed.notify_all()
        return True

    def _publish(self, pending: list[TaskOutcome]) -> None:
        """Add the pending outcomes to the job and its counters, and empty the list."""
        if not pending:
            return
        job = self.job
        passed = sum(1 for outcome in pending if outcome.succeeded)
        with self._changed:
            job.outcomes.extend(pending)
            job.succeeded += passed
            job.failed += len(pending) - passed
        pending.clear()

    def _run_task(
        self, entry: ManifestEntry, faulted: bool, functions: TaskFunctions, replicate: Replicate
    ) -> TaskOutcome:
        """Return the outcome of one task: replicate (or restore) the version, or fail it as S3 would."""
        job = self.job
        if entry.version_id is None:
            return TaskOutcome(entry, False, 400, "InvalidRequest", "Task failed due to missing VersionId")
        if entry.version_id == "":
            return TaskOutcome(entry, False, 500, "SrcObjectNotFound", "Object versionID is invalid")
        restore_request = (job.request.get("Operation") or {}).get(RESTORE_OPERATION)
        if restore_request is not None:
            return self._restore_task(entry, restore_request)
        attempt = (entry.bucket, entry.key, entry.version_id)
        first_attempt = self.store.record_attempt(attempt)
        if (faulted and first_attempt) or entry.bucket in self.store.faults.fail_buckets:
            return self._transient_fault(entry, functions)
        account = moto_state.bucket_owner(entry.bucket) or job.account
        try:
            result = replicate(account, entry.bucket, entry.key, entry.version_id, job.role_arn)
        except Exception as error:  # the replication emulation must not take the whole job down
            log.exception("task %s of job %s raised", attempt, job.job_id)
            return TaskOutcome(entry, False, 500, "InternalError", f"The embedded backend failed on this task: {error}")
        return TaskOutcome(
            entry, bool(result.succeeded), int(result.http_status), str(result.error_code or ""), str(result.message)
        )

    def _restore_task(self, entry: ManifestEntry, operation: dict[str, Any]) -> TaskOutcome:
        """Return the outcome of one S3InitiateRestoreObject task (injected faults are for replication only)."""
        job = self.job
        account = moto_state.bucket_owner(entry.bucket) or job.account
        try:
            result = restore.restore_task(account, entry.bucket, entry.key, str(entry.version_id), job.role_arn,
                                          operation)
        except Exception as error:  # the restore emulation must not take the whole job down
            log.exception("restore task %s of job %s raised", entry, job.job_id)
            return TaskOutcome(entry, False, 500, "InternalError", f"The embedded backend failed on this task: {error}")
        return TaskOutcome(entry, result.succeeded, result.http_status, result.error_code, result.message)

    @staticmethod
    def _transient_fault(entry: ManifestEntry, functions: TaskFunctions) -> TaskOutcome:
        """Return a failed task that wrote nothing, its source marked FAILED as a real failure would."""
        bucket = moto_state.find_bucket(entry.bucket)
        version = moto_state.find_version(bucket, entry.key, str(entry.version_id))
        if version is not None:
            functions.mark_failed(version)
        code, message = _TRANSIENT_FAULT
        return TaskOutcome(entry, False, 500, code, message)

    # ------------------------------------------------------------------ the end

    def _write_report(self) -> None:
        """Write the completion report when one was asked for and at least one task ran."""
        job = self.job
        report = job.request.get("Report") or {}
        if not report.get("Enabled") or not job.outcomes:
            return
        rows = [outcome.report_row() for outcome in list(job.outcomes)]
        job.report_manifest_key = manifest_gen.write_completion_report(job.job_id, report, rows, job.role_arn)

    def _cancel(self) -> None:
        """End a job whose cancellation was requested: report what ran, then Cancelled."""
        self._dwell(cancellable=False)
        try:
            self._write_report()
        except JobFailure as failure:
            log.warning("job %s cancelled without a report: %s", self.job.job_id, failure)
        self._finish("Cancelled")

    def _fail(self, failure: JobFailure) -> None:
        """End a job that cannot go on: Failing, the report of what ran, then Failed."""
        job = self.job
        if job.cancel_requested and failure.failure_code != "ReportWriteFailed":
            self._cancel()
            return
        with self._changed:
            job.failure_reasons.append({"FailureCode": failure.failure_code, "FailureReason": failure.reason})
            writing_failed = failure.failure_code == "ReportWriteFailed"
        codes = [r["FailureCode"] for r in job.failure_reasons]
        self._finish("Failing", failure_codes=codes)
        self._dwell(cancellable=False)
        if not writing_failed:
            try:
                self._write_report()
            except JobFailure as report_failure:
                with self._changed:
                    job.failure_reasons.append(
                        {"FailureCode": report_failure.failure_code, "FailureReason": report_failure.reason}
                    )
                codes = [r["FailureCode"] for r in job.failure_reasons]
        self._finish("Failed", failure_codes=codes)
