"""S3 Batch Operations jobs in the embedded backend: their state, lifecycle and tasks (no HTTP here).

A `JobStore` keeps the jobs of every account and Region in memory and runs each job in its own
worker thread through AWS's status lifecycle:

    New -> Preparing -> Suspended -(UpdateJobStatus Ready)-> Ready -> Active -> Completing -> Complete
                     \\-> Ready (ConfirmationRequired false)
    any status before Completing -(UpdateJobStatus Cancelled)-> Cancelling -> Cancelled
    Preparing / Active / Completing -(the job cannot go on)-> Failing -> Failed

Preparing reads the supplied manifest or generates one from the source bucket's versions (and
saves it when asked); Active runs every task through an injectable `TaskFunctions.replicate`
(by default `replication.replicate_task`); the completion report and job status events are
written as AWS writes them. Transitional statuses last at least `min_state_seconds`, and
`tasks_per_second` paces the tasks, so a watcher sees a job move and its counters grow.

Choices we made where AWS's behaviour is not documented (UNCONFIRMED) or where we simplify:

| topic | what the emulator does |
|---|---|
| ConfirmationRequired omitted | treated as true: the job waits in Suspended (as the CLI documentation says and SDK users observed) |
| SuspendedCause | the literal `AwaitingConfirmation` |
| Completing | entered between Active and Complete while the completion report is written |
| Pausing / Paused | never entered: no job is pre-empted by a higher-priority one |
| scheduling | at most one Active job per account and Region; Ready jobs start highest Priority first, then oldest |
| UpdateJobStatus Ready | accepted from Suspended only; otherwise JobStatusException (400) |
| UpdateJobStatus Cancelled | accepted before Completing (Cancelling answers it again); otherwise JobStatusException (400) |
| UpdateJobPriority | accepted in every status |
| ClientRequestToken reuse | same token and same request: the same JobId; different request: IdempotencyException (400) |
| validation errors | code `InvalidRequest`, HTTP 400, a message naming the member and what is expected |
| unknown job id | code `NotFoundException`, HTTP 404 |
| AccountId other than the caller's account | code `AccessDenied`, HTTP 403 |
| empty generated manifest | FailureCode `InvalidManifestContent` (third-party claim), reason as AWS documents it |
| manifest not readable / missing / wrong ETag / bad row | FailureCode `AccessDenied` / `NoSuchKey` (or `NoSuchBucket`) / `InvalidManifestContent` / `InvalidManifestContent` |
| role missing or not trusting batchoperations.s3.amazonaws.com | job fails in Preparing, FailureCode `AccessDenied` |
| generator role lacks s3:PutInventoryConfiguration | job fails in Preparing, FailureCode `AccessDenied` |
| report not writable | FailureCode `ReportWriteFailed`, reason as AWS documents it plus why; the job ends Failed |
| 1,000-task / 50 % rule | FailureCode `TaskFailureThresholdExceeded`; the report is still written |
| CreatedAfter / CreatedBefore | half-open interval: after inclusive, before exclusive, on the version's last-modified time |
| generated manifest layout | `<ManifestPrefix>/job-<id>/manifest.json` + `data/<uuid>.csv` (not gzipped), fileSchema `Bucket, Key, VersionId`, version `2021-11-30`, null version as an empty field |
| key encoding | manifests and reports write keys as `quote(key, safe="/")`; supplied manifests are decoded with `unquote_plus`; the report echoes the manifest's spelling |
| FailedTasksOnly with no failed task | the report index is written with an empty Results list |
| a task without a version id | failed, 400 `InvalidRequest`; an empty version field: failed, 500 `SrcObjectNotFound`, VersionId `\\N` |
| injected transient fault (`Faults.task_failure_rate`) | failed, 500 `InternalError` (S3's code for a retryable internal error; the replication failure codes AWS lists are all permanent), no replica, source marked FAILED through `replication.mark_source_failed`; drawn from a generator seeded by `Faults.seed` and the job's creation order, and only a version's first attempt in this store can fault, so a retry job succeeds |
| FailureReasons on a job that failed | kept when it fails; a Complete job never has any |
| job events | JobCreated at creation, JobStatusChanged on every later transition; statusChangeReason holds the UpdateJobStatus reason when there is one |
| job retention | jobs stay in memory for the life of the backend (AWS deletes them 90 days after they end) |
| S3JobManifestGenerator.ExpectedBucketOwner | compared with the source bucket's owner (the model's text names the manifest bucket; callers set the source owner) |
| role permissions the job itself uses | checked with `iam_eval` against the role's identity policies and the bucket policy: s3:PutObject (saved manifest, report), s3:GetObject / s3:GetObjectVersion (supplied manifest), s3:PutInventoryConfiguration (generator); KMS grants for an SSE-KMS saved manifest are not checked |
| Manifest / GeneratedManifestDescriptor in DescribeJob | Manifest only for a job created with one; GeneratedManifestDescriptor once a generated manifest was saved (EnableManifestOutput) |
| Suspended for more than 30 days | not modelled: the job waits for as long as the backend runs |
| objects the job writes | written with S3 event notifications on, as any object S3 writes for you |
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from runbook_lib.embedded import job_events, manifest_gen
from runbook_lib.embedded.manifest_gen import JobFailure, ManifestEntry, ReportRow
from runbook_lib.embedded.server import Faults
from runbook_lib.errors import BackendError

__all__ = [
    "ACTIVE_STATUSES",
    "CANCELLABLE_STATUSES",
    "JOB_STATUSES",
    "SUSPENDED_CAUSE",
    "TERMINAL_STATUSES",
    "THRESHOLD_MIN_TASKS",
    "Job",
    "JobFailure",
    "JobStore",
    "S3ControlError",
    "TaskFunctions",
    "TaskOutcome",
    "replication_task_functions",
    "validate_job_request",
]

log = logging.getLogger(__name__)

JOB_STATUSES = (
    "Active", "Cancelled", "Cancelling", "Complete", "Completing", "Failed", "Failing",
    "New", "Paused", "Pausing", "Preparing", "Ready", "Suspended",
)
TERMINAL_STATUSES = frozenset({"Complete", "Failed", "Cancelled"})
CANCELLABLE_STATUSES = frozenset({"New", "Preparing", "Suspended", "Ready", "Active", "Pausing", "Paused"})
ACTIVE_STATUSES = frozenset({"Active"})
SUSPENDED_CAUSE = "AwaitingConfirmation"
THRESHOLD_MIN_TASKS = 1000
SUPPORTED_OPERATION = "S3ReplicateObject"
_TRANSIENT_FAULT = ("InternalError", "Replication of this version was interrupted by an internal error; run the task again.")
_WAIT_SLICE = 0.5


class S3ControlError(BackendError):
    """An S3 Control API error: the code, message and HTTP status the caller receives."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")


def _mark_failed(version: Any) -> None:
    version.replication_status = "FAILED"


@dataclass(frozen=True)
class TaskFunctions:
    """What a job runs per version: replicate one task, test eligibility, mark a source FAILED."""

    replicate: Callable[[str, str, str, str, str], Any]
    eligible: Callable[[str, str, Any], bool]
    mark_failed: Callable[[Any], None] = _mark_failed


def replication_task_functions() -> TaskFunctions:
    """Return the backend's replication emulation as the task functions of a job."""
    from runbook_lib.embedded import replication

    return TaskFunctions(
        replication.replicate_task, replication.eligible_for_replication, replication.mark_source_failed
    )


@dataclass(frozen=True)
class TaskOutcome:
    """How one task ended, as its completion report row will say."""

    entry: ManifestEntry
    succeeded: bool
    http_status: int
    error_code: str
    message: str

    def report_row(self) -> ReportRow:
        """Return this outcome as a completion report row."""
        return ReportRow(self.entry, self.succeeded, self.http_status, self.error_code, self.message)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(eq=False)
class Job:
    """One Batch Operations job: its request, where it is in its lifecycle, and its counters."""

    job_id: str
    account: str
    region: str
    request: dict[str, Any]
    ordinal: int
    creation_time: datetime
    confirmation_required: bool
    priority: int
    status: str = "New"
    status_update_reason: str | None = None
    termination_date: datetime | None = None
    suspended_date: datetime | None = None
    suspended_cause: str | None = None
    failure_reasons: list[dict[str, str]] = field(default_factory=list)
    total_tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    active_elapsed: float = 0.0
    active_since: float | None = None
    generated_manifest: dict[str, Any] | None = None
    report_manifest_key: str | None = None
    cancel_requested: bool = False
    tags: list[dict[str, str]] = field(default_factory=list)
    outcomes: list[TaskOutcome] = field(default_factory=list)

    @property
    def arn(self) -> str:
        """Return the job's ARN."""
        return f"arn:aws:s3:{self.region}:{self.account}:job/{self.job_id}"

    @property
    def role_arn(self) -> str:
        """Return the role the job runs as."""
        return str(self.request["RoleArn"])

    def active_seconds(self) -> int:
        """Return the whole seconds the job has spent Active so far."""
        running = time.monotonic() - self.active_since if self.active_since is not None else 0.0
        return int(self.active_elapsed + running)

    def progress_summary(self) -> dict[str, Any]:
        """Return the job's ProgressSummary as DescribeJob and ListJobs show it."""
        return {
            "TotalNumberOfTasks": self.total_tasks,
            "NumberOfTasksSucceeded": self.succeeded,
            "NumberOfTasksFailed": self.failed,
            "Timers": {"ElapsedTimeInActiveSeconds": self.active_seconds()},
        }

    def descriptor(self) -> dict[str, Any]:
        """Return the job as DescribeJob's JobDescriptor (botocore's names, absent values left out)."""
        request = self.request
        described: dict[str, Any] = {
            "JobId": self.job_id,
            "ConfirmationRequired": self.confirmation_required,
            "Description": request.get("Description"),
            "JobArn": self.arn,
            "Status": self.status,
            "Manifest": request.get("Manifest"),
            "Operation": request.get("Operation"),
            "Priority": self.priority,
            "ProgressSummary": self.progress_summary(),
            "StatusUpdateReason": self.status_update_reason,
            "FailureReasons": list(self.failure_reasons),
            "Report": request.get("Report"),
            "CreationTime": self.creation_time,
            "TerminationDate": self.termination_date,
            "RoleArn": self.role_arn,
            "SuspendedDate": self.suspended_date,
            "SuspendedCause": self.suspended_cause,
            "ManifestGenerator": request.get("ManifestGenerator"),
            "GeneratedManifestDescriptor": self.generated_manifest,
        }
        return {name: value for name, value in described.items() if value is not None}

    def list_entry(self) -> dict[str, Any]:
        """Return the job as one ListJobs entry."""
        entry = {
            "JobId": self.job_id,
            "Description": self.request.get("Description"),
            "Operation": _operation_name(self.request),
            "Priority": self.priority,
            "Status": self.status,
            "CreationTime": self.creation_time,
            "TerminationDate": self.termination_date,
            "ProgressSummary": self.progress_summary(),
        }
        return {name: value for name, value in entry.items() if value is not None}


def _operation_name(request: dict[str, Any]) -> str | None:
    operation = request.get("Operation") or {}
    return next(iter(operation), None)


def _invalid(message: str) -> S3ControlError:
    return S3ControlError("InvalidRequest", message, 400)


def _is_bucket_arn(value: object) -> bool:
    text = str(value)
    if not text.startswith("arn:") or ":s3:::" not in text:
        return False
    name = text.split(":s3:::", 1)[1]
    return 3 <= len(name) <= 63 and "/" not in name and name == name.lower()


def validate_job_request(request: dict[str, Any]) -> None:
    """Raise S3ControlError when a CreateJob request breaks a rule the model alone cannot express."""
    operation = request.get("Operation") or {}
    if len(operation) != 1:
        raise _invalid("Operation must name exactly one operation, for Batch Replication {\"S3ReplicateObject\": {}}.")
    if SUPPORTED_OPERATION not in operation:
        raise _invalid(
            f"Operation {next(iter(operation))} is not supported: the embedded backend runs "
            f"S3ReplicateObject jobs only (Batch Replication)."
        )
    has_manifest, has_generator = "Manifest" in request, "ManifestGenerator" in request
    if has_manifest == has_generator:
        raise _invalid("Give exactly one of Manifest and ManifestGenerator: the job needs one list of objects.")
    if has_generator:
        _validate_generator(request["ManifestGenerator"])
    else:
        _validate_manifest(request["Manifest"])
    _validate_report(request["Report"])


def _validate_generator(generator: dict[str, Any]) -> None:
    spec = generator.get("S3JobManifestGenerator")
    if spec is None:
        raise _invalid("ManifestGenerator must contain S3JobManifestGenerator.")
    if not _is_bucket_arn(spec.get("SourceBucket")):
        raise _invalid(
            f"ManifestGenerator.S3JobManifestGenerator.SourceBucket {spec.get('SourceBucket')!r} is not a bucket "
            "ARN; use arn:aws:s3:::<bucket-name>."
        )
    output = spec.get("ManifestOutputLocation")
    if spec.get("EnableManifestOutput") and output is None:
        raise _invalid("EnableManifestOutput is true, so ManifestOutputLocation must say where to save the manifest.")
    if output is not None:
        if not _is_bucket_arn(output.get("Bucket")):
            raise _invalid(
                f"ManifestOutputLocation.Bucket {output.get('Bucket')!r} is not a bucket ARN; use arn:aws:s3:::<bucket-name>."
            )
        encryption = output.get("ManifestEncryption")
        if encryption is not None and len(encryption) != 1:
            raise _invalid("ManifestOutputLocation.ManifestEncryption must hold exactly one of SSES3 and SSEKMS.")
    constraint = (spec.get("Filter") or {}).get("KeyNameConstraint") or {}
    for name, values in constraint.items():
        if len(values) > 1:
            raise _invalid(f"Filter.KeyNameConstraint.{name} accepts one value, got {len(values)}.")
    for choice in (spec.get("Filter") or {}).get("MatchAnyObjectEncryption") or []:
        if len(choice) != 1:
            raise _invalid("Each Filter.MatchAnyObjectEncryption entry must name exactly one encryption type.")


def _validate_manifest(manifest: dict[str, Any]) -> None:
    spec, location = manifest["Spec"], manifest["Location"]
    arn = str(location["ObjectArn"])
    if not arn.startswith("arn:aws:s3:::") or "/" not in arn[len("arn:aws:s3:::"):]:
        raise _invalid(f"Manifest.Location.ObjectArn {arn!r} is not an object ARN; use arn:aws:s3:::<bucket>/<key>.")
    fields = spec.get("Fields")
    if spec["Format"] == "S3BatchOperations_CSV_20180820":
        named = [f for f in fields or [] if f != "Ignore"]
        if named not in (["Bucket", "Key"], ["Bucket", "Key", "VersionId"]):
            raise _invalid(
                f"Manifest.Spec.Fields {fields!r} must list Bucket, Key and optionally VersionId, in that order "
                "(Ignore may stand for columns to skip)."
            )
    elif fields:
        raise _invalid("Manifest.Spec.Fields is only allowed with the S3BatchOperations_CSV_20180820 format.")


def _validate_report(report: dict[str, Any]) -> None:
    if not report.get("Enabled"):
        return
    if not _is_bucket_arn(report.get("Bucket")):
        raise _invalid(
            f"Report.Bucket {report.get('Bucket')!r} is not a bucket ARN; an enabled report needs "
            "arn:aws:s3:::<bucket-name>."
        )
    if report.get("Format") is None:
        raise _invalid("Report.Format is required when the report is enabled; use Report_CSV_20180820.")


def _fingerprint(request: dict[str, Any]) -> str:
    """Return a canonical text of the request without its token, to compare two uses of a token."""
    body = {k: v for k, v in request.items() if k not in ("ClientRequestToken", "AccountId")}
    return json.dumps(body, sort_keys=True, default=str)


class JobStore:
    """Every account's Batch Operations jobs, each run in a worker thread through AWS's lifecycle."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        min_state_seconds: float = 0.3,
        tasks_per_second: float | None = None,
        task_functions: TaskFunctions | None = None,
        max_active_per_account: int = 1,
    ) -> None:
        self.faults = faults or Faults()
        self.min_state_seconds = min_state_seconds
        self.tasks_per_second = tasks_per_second
        self.max_active_per_account = max_active_per_account
        self._task_functions = task_functions
        self._changed = threading.Condition()
        self._jobs: dict[tuple[str, str], dict[str, Job]] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._attempted: set[tuple[str, str, str]] = set()
        self._ordinal = 0

    # ------------------------------------------------------------------ configuration

    @property
    def task_functions(self) -> TaskFunctions:
        """Return the functions tasks run through, loading the replication emulation on first use."""
        if self._task_functions is None:
            self._task_functions = replication_task_functions()
        return self._task_functions

    @task_functions.setter
    def task_functions(self, functions: TaskFunctions | None) -> None:
        self._task_functions = functions

    def forget_all(self) -> None:
        """Forget every job, token and attempt, keeping the settings: a reset backend knows no jobs."""
        with self._changed:
            self._jobs.clear()
            self._tokens.clear()
            self._attempted.clear()
            self._changed.notify_all()

    # ------------------------------------------------------------------ API

    def create_job(self, account: str, region: str, request: dict[str, Any]) -> str:
        """Return the id of a new job (or of the job an earlier request with this token created)."""
        validate_job_request(request)
        token = str(request["ClientRequestToken"])
        fingerprint = _fingerprint(request)
        with self._changed:
            known = self._tokens.get((account, region, token))
            if known is not None:
                if known[1] != fingerprint:
                    raise S3ControlError(
                        "IdempotencyException",
                        f"ClientRequestToken {token!r} was already used for job {known[0]} with a different "
                        "request; use a new token for a new job.",
                        400,
                    )
                return known[0]
            self._ordinal += 1
            job = Job(
                job_id=str(uuid.uuid4()),
                account=account,
                region=region,
                request=request,
                ordinal=self._ordinal,
                creation_time=_now(),
                confirmation_required=request.get("ConfirmationRequired") is not False,
                priority=int(request["Priority"]),
                tags=list(request.get("Tags") or []),
            )
            self._jobs.setdefault((account, region), {})[job.job_id] = job
            self._tokens[(account, region, token)] = (job.job_id, fingerprint)
        self._emit(job, job_events.JOB_CREATED, "New")
        worker = threading.Thread(target=self._run, args=(job,), name=f"batch-job-{job.job_id[:8]}", daemon=True)
        worker.start()
        return job.job_id

    def job(self, account: str, region: str, job_id: str) -> Job:
        """Return one job of the account, or raise NotFoundException."""
        found = self._jobs.get((account, region), {}).get(job_id)
        if found is None:
            raise S3ControlError("NotFoundException", f"Job {job_id} does not exist in account {account} ({region}).", 404)
        return found

    def describe_job(self, account: str, region: str, job_id: str) -> dict[str, Any]:
        """Return DescribeJob's Job for one job of the account."""
        job = self.job(account, region, job_id)
        with self._changed:
            return job.descriptor()

    def list_jobs(
        self,
        account: str,
        region: str,
        statuses: Sequence[str] = (),
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page of the account's jobs, newest first, and the token of the next page."""
        unknown = [s for s in statuses if s not in JOB_STATUSES]
        if unknown:
            raise _invalid(f"jobStatuses {unknown} are not job statuses; use any of {', '.join(JOB_STATUSES)}.")
        with self._changed:
            jobs = sorted(self._jobs.get((account, region), {}).values(),
                          key=lambda j: (j.creation_time, j.ordinal), reverse=True)
            selected = [j for j in jobs if not statuses or j.status in statuses]
            start = self._page_start(selected, next_token)
            size = max_results or 1000
            page = selected[start:start + size]
            more = start + size < len(selected)
            token = _encode_token(selected[start + size].job_id) if more else None
            return [j.list_entry() for j in page], token

    @staticmethod
    def _page_start(jobs: list[Job], next_token: str | None) -> int:
        if not next_token:
            return 0
        job_id = _decode_token(next_token)
        for index, job in enumerate(jobs):
            if job.job_id == job_id:
                return index
        raise S3ControlError(
            "InvalidNextTokenException", "The nextToken is not valid for this listing; start again without it.", 400
        )

    def update_job_status(
        self, account: str, region: str, job_id: str, requested: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Return UpdateJobStatus's answer after confirming (Ready) or cancelling (Cancelled) a job."""
        if requested not in ("Ready", "Cancelled"):
            raise _invalid(f"requestedJobStatus {requested!r} is not allowed; use Ready or Cancelled.")
        job = self.job(account, region, job_id)
        with self._changed:
            new_status = self._confirm(job, reason) if requested == "Ready" else self._request_cancel(job, reason)
            changed = new_status != job.status
            if changed:
                self._set_locked(job, new_status)
            answer = {"JobId": job.job_id, "Status": job.status, "StatusUpdateReason": job.status_update_reason}
        if changed:
            self._emit(job, job_events.JOB_STATUS_CHANGED, new_status, reasons=[reason] if reason else [])
        return {k: v for k, v in answer.items() if v is not None}

    def _confirm(self, job: Job, reason: str | None) -> str:
        if job.status != "Suspended":
            raise S3ControlError(
                "JobStatusException",
                f"Job {job.job_id} is {job.status}; only a Suspended job can be set to Ready.",
                400,
            )
        job.status_update_reason = reason
        return "Ready"

    def _request_cancel(self, job: Job, reason: str | None) -> str:
        if job.status == "Cancelling":
            return "Cancelling"
        if job.status not in CANCELLABLE_STATUSES:
            raise S3ControlError(
                "JobStatusException",
                f"Job {job.job_id} is {job.status} and can no longer be cancelled.",
                400,
            )
        job.cancel_requested = True
        job.status_update_reason = reason
        return "Cancelling"

    def update_job_priority(self, account: str, region: str, job_id: str, priority: int) -> dict[str, Any]:
        """Return UpdateJobPriority's answer after changing a job's priority."""
        if not 0 <= priority <= 2_147_483_647:
            raise _invalid(f"priority {priority} is out of range; use 0 to 2147483647.")
        job = self.job(account, region, job_id)
        with self._changed:
            job.priority = priority
            self._changed.notify_all()
        return {"JobId": job.job_id, "Priority": priority}

    def job_tagging(self, account: str, region: str, job_id: str) -> list[dict[str, str]]:
        """Return a job's tags."""
        return list(self.job(account, region, job_id).tags)

    def put_job_tagging(self, account: str, region: str, job_id: str, tags: Iterable[dict[str, str]]) -> None:
        """Replace a job's tags."""
        job = self.job(account, region, job_id)
        job.tags = list(tags)

    def wait_for(self, account: str, region: str, job_id: str, statuses: Iterable[str], timeout: float = 60.0) -> Job:
        """Return the job once its status is one of `statuses`; raise BackendError after `timeout` seconds."""
        wanted = set(statuses)
        job = self.job(account, region, job_id)
        deadline = time.monotonic() + timeout
        with self._changed:
            while job.status not in wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendError(f"job {job_id} is still {job.status} after {timeout} s; expected {sorted(wanted)}")
                self._changed.wait(min(left, _WAIT_SLICE))
        return job

    # ------------------------------------------------------------------ transitions

    def _set_locked(self, job: Job, status: str) -> None:
        """Move the job to `status` and stamp what that status records (caller holds the lock)."""
        if job.status == "Active" and job.active_since is not None:
            job.active_elapsed += time.monotonic() - job.active_since
            job.active_since = None
        job.status = status
        if status == "Active":
            job.active_since = time.monotonic()
        if status == "Suspended":
            job.suspended_date = _now()
            job.suspended_cause = SUSPENDED_CAUSE
        if status in TERMINAL_STATUSES:
            job.termination_date = _now()
        self._changed.notify_all()

    def _advance(self, job: Job, status: str) -> bool:
        """Move the job on unless a cancellation came first; return whether it moved."""
        with self._changed:
            if job.cancel_requested:
                return False
            self._set_locked(job, status)
        self._emit(job, job_events.JOB_STATUS_CHANGED, status)
        return True

    def _finish(self, job: Job, status: str, failure_codes: Sequence[str] = ()) -> None:
        """Move the job to a status nothing can interrupt (Failing, Failed, Cancelled, ...)."""
        with self._changed:
            self._set_locked(job, status)
        self._emit(job, job_events.JOB_STATUS_CHANGED, status, failure_codes=failure_codes)

    def _emit(
        self, job: Job, event_name: str, status: str, failure_codes: Sequence[str] = (), reasons: Sequence[str] = ()
    ) -> None:
        detail = job_events.job_event_detail(
            event_name=event_name, account=job.account, region=job.region, job_id=job.job_id,
            job_arn=job.arn, status=status, failure_codes=failure_codes, reasons=reasons,
        )
        job_events.publish_job_event(job.account, job.region, detail)

    def _dwell(self, job: Job, cancellable: bool = True) -> None:
        """Stay in the current status for `min_state_seconds`, or less when a cancellation arrives."""
        deadline = time.monotonic() + self.min_state_seconds
        with self._changed:
            while not (cancellable and job.cancel_requested):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    # ------------------------------------------------------------------ the worker

    def _run(self, job: Job) -> None:
        """Drive one job from New to a terminal status."""
        try:
            self._lifecycle(job)
        except JobFailure as failure:
            self._fail(job, failure)
        except Exception as error:  # a bug in the emulator must end the job, not hang a watcher
            log.exception("batch job %s stopped by an emulator error", job.job_id)
            self._fail(job, JobFailure("InternalError", f"The embedded backend failed while running the job: {error}"))
        finally:
            with self._changed:
                self._changed.notify_all()

    def _lifecycle(self, job: Job) -> None:
        self._dwell(job)
        if not self._advance(job, "Preparing"):
            self._cancel(job)
            return
        entries = self._prepare(job)
        self._dwell(job)
        if not self._reach_ready(job):
            self._cancel(job)
            return
        self._dwell(job)
        if not self._await_turn(job):
            self._cancel(job)
            return
        self._emit(job, job_events.JOB_STATUS_CHANGED, "Active")
        if not self._run_tasks(job, entries) or not self._advance(job, "Completing"):
            self._cancel(job)
            return
        self._dwell(job, cancellable=False)
        self._write_report(job)
        self._finish(job, "Complete")

    def _reach_ready(self, job: Job) -> bool:
        """Bring the job to Ready, through Suspended and its confirmation when one is required."""
        if not job.confirmation_required:
            return self._advance(job, "Ready")
        if not self._advance(job, "Suspended"):
            return False
        self._await_confirmation(job)
        return not job.cancel_requested

    def _await_confirmation(self, job: Job) -> None:
        with self._changed:
            while job.status == "Suspended" and not job.cancel_requested:
                self._changed.wait(_WAIT_SLICE)

    def _await_turn(self, job: Job) -> bool:
        """Wait until the job may start, then make it Active; False when it was cancelled first."""
        with self._changed:
            while not job.cancel_requested and not self._may_start(job):
                self._changed.wait(_WAIT_SLICE)
            if job.cancel_requested:
                return False
            self._set_locked(job, "Active")
            return True

    def _may_start(self, job: Job) -> bool:
        jobs = self._jobs.get((job.account, job.region), {}).values()
        if sum(1 for j in jobs if j.status == "Active") >= self.max_active_per_account:
            return False
        waiting = [j for j in jobs if j.status == "Ready" and not j.cancel_requested]
        if job not in waiting:
            return False
        first = min(waiting, key=lambda j: (-j.priority, j.creation_time, j.ordinal))
        return first is job

    def _prepare(self, job: Job) -> list[ManifestEntry]:
        """Return the job's tasks, read from its manifest or generated; save a generated one if asked."""
        manifest_gen.check_role_trust(job.role_arn, job.account, job.arn)
        generator = (job.request.get("ManifestGenerator") or {}).get("S3JobManifestGenerator")
        if generator is None:
            entries = manifest_gen.read_manifest(job.request["Manifest"], job.role_arn)
        else:
            entries = self._generate(job, generator)
        with self._changed:
            job.total_tasks = len(entries)
        return entries

    def _generate(self, job: Job, generator: dict[str, Any]) -> list[ManifestEntry]:
        source = manifest_gen.check_source_bucket(generator, job.role_arn)
        entries = manifest_gen.generate_manifest(generator, self.task_functions.eligible)
        if not entries:
            raise JobFailure("InvalidManifestContent", "Manifest generation found no keys matching the filter criteria.")
        if generator.get("EnableManifestOutput"):
            descriptor = manifest_gen.write_generated_manifest(
                job.job_id, source, entries, generator["ManifestOutputLocation"], job.role_arn, _now()
            )
            with self._changed:
                job.generated_manifest = descriptor
        return entries

    def _run_tasks(self, job: Job, entries: Sequence[ManifestEntry]) -> bool:
        """Run every task; return False when a cancellation stopped it, raise at the failure threshold."""
        functions = self.task_functions
        draws = random.Random(self.faults.seed * 1_000_003 + job.ordinal)
        interval = 1.0 / self.tasks_per_second if self.tasks_per_second else 0.0
        due = time.monotonic()
        try:
            for entry in entries:
                if job.cancel_requested:
                    return False
                faulted = draws.random() < self.faults.task_failure_rate
                outcome = self._run_task(job, entry, faulted, functions)
                with self._changed:
                    job.outcomes.append(outcome)
                    if outcome.succeeded:
                        job.succeeded += 1
                    else:
                        job.failed += 1
                    done, failed = job.succeeded + job.failed, job.failed
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
            with self._changed:
                self._changed.notify_all()
        return True

    def _run_task(self, job: Job, entry: ManifestEntry, faulted: bool, functions: TaskFunctions) -> TaskOutcome:
        """Return the outcome of one task: replicate the version, or fail it as S3 would."""
        if entry.version_id is None:
            return TaskOutcome(entry, False, 400, "InvalidRequest", "Task failed due to missing VersionId")
        if entry.version_id == "":
            return TaskOutcome(entry, False, 500, "SrcObjectNotFound", "Object versionID is invalid")
        attempt = (entry.bucket, entry.key, entry.version_id)
        first_attempt = attempt not in self._attempted
        self._attempted.add(attempt)
        if faulted and first_attempt:
            return self._transient_fault(entry, functions)
        account = manifest_gen.bucket_owner(entry.bucket) or job.account
        try:
            result = functions.replicate(account, entry.bucket, entry.key, entry.version_id, job.role_arn)
        except Exception as error:  # the replication emulation must not take the whole job down
            log.exception("task %s of job %s raised", attempt, job.job_id)
            return TaskOutcome(entry, False, 500, "InternalError", f"The embedded backend failed on this task: {error}")
        return TaskOutcome(
            entry, bool(result.succeeded), int(result.http_status), str(result.error_code or ""), str(result.message)
        )

    @staticmethod
    def _transient_fault(entry: ManifestEntry, functions: TaskFunctions) -> TaskOutcome:
        """Return a failed task that wrote nothing, its source marked FAILED as a real failure would."""
        version = manifest_gen.find_version(entry.bucket, entry.key, str(entry.version_id))
        if version is not None:
            functions.mark_failed(version)
        code, message = _TRANSIENT_FAULT
        return TaskOutcome(entry, False, 500, code, message)

    def _write_report(self, job: Job) -> None:
        """Write the completion report when one was asked for and at least one task ran."""
        report = job.request.get("Report") or {}
        if not report.get("Enabled") or not job.outcomes:
            return
        rows = [outcome.report_row() for outcome in list(job.outcomes)]
        job.report_manifest_key = manifest_gen.write_completion_report(job.job_id, report, rows, job.role_arn)

    def _cancel(self, job: Job) -> None:
        """End a job whose cancellation was requested: report what ran, then Cancelled."""
        self._dwell(job, cancellable=False)
        try:
            self._write_report(job)
        except JobFailure as failure:
            log.warning("job %s cancelled without a report: %s", job.job_id, failure)
        self._finish(job, "Cancelled")

    def _fail(self, job: Job, failure: JobFailure) -> None:
        """End a job that cannot go on: Failing, the report of what ran, then Failed."""
        if job.cancel_requested and failure.failure_code != "ReportWriteFailed":
            self._cancel(job)
            return
        with self._changed:
            job.failure_reasons.append({"FailureCode": failure.failure_code, "FailureReason": failure.reason})
            writing_failed = failure.failure_code == "ReportWriteFailed"
        codes = [r["FailureCode"] for r in job.failure_reasons]
        self._finish(job, "Failing", failure_codes=codes)
        self._dwell(job, cancellable=False)
        if not writing_failed:
            try:
                self._write_report(job)
            except JobFailure as report_failure:
                with self._changed:
                    job.failure_reasons.append(
                        {"FailureCode": report_failure.failure_code, "FailureReason": report_failure.reason}
                    )
                codes = [r["FailureCode"] for r in job.failure_reasons]
        self._finish(job, "Failed", failure_codes=codes)


def _encode_token(job_id: str) -> str:
    return base64.b64encode(json.dumps({"from": job_id}).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        decoded = json.loads(base64.b64decode(token.encode(), validate=True))
        return str(decoded["from"])
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise S3ControlError(
            "InvalidNextTokenException", "The nextToken is not valid for this listing; start again without it.", 400
        ) from error
