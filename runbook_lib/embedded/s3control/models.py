"""S3 Batch Operations jobs in the embedded backend: the job store and each job's state (no HTTP here).

A `JobStore` keeps the jobs of every account and Region in memory and answers the job API
(create, describe, list, update status and priority, tags); each job it creates is driven through
AWS's lifecycle by a `runner.JobRunner` in its own thread. Every change to a job happens while
holding the store's `changed` condition, which is notified after it, so a watcher (`wait_for`, or
a runner waiting for its turn or its confirmation) wakes on the change.

Choices we made where AWS's behaviour is not documented (UNCONFIRMED) or where we simplify:

| topic | what the emulator does |
|---|---|
| ConfirmationRequired omitted | treated as true: the job waits in Suspended (as the CLI documentation says and SDK users observed) |
| SuspendedCause | the literal `AwaitingConfirmation` |
| scheduling | at most one Active job per account and Region; Ready jobs start highest Priority first, then oldest |
| UpdateJobStatus Ready | accepted from Suspended only; otherwise JobStatusException (400) |
| UpdateJobStatus Cancelled | accepted before Completing (Cancelling answers it again); otherwise JobStatusException (400) |
| UpdateJobPriority | accepted in every status |
| ClientRequestToken reuse | same token and same request: the same JobId; different request: IdempotencyException (400) |
| validation errors | code `InvalidRequest`, HTTP 400, a message naming the member and what is expected |
| unknown job id | code `NotFoundException`, HTTP 404 |
| job retention | jobs stay in memory for the life of the backend (AWS deletes them 90 days after they end) |
| Manifest / GeneratedManifestDescriptor in DescribeJob | Manifest only for a job created with one; GeneratedManifestDescriptor once a generated manifest was saved (EnableManifestOutput) |
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded import job_events
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.s3control.exceptions import (
    IdempotencyException,
    InvalidNextToken,
    InvalidRequest,
    JobStatusException,
    NotFound,
)
from runbook_lib.embedded.s3control.runner import (
    WAIT_SLICE,
    JobRunner,
    TaskFunctions,
    TaskOutcome,
    replication_task_functions,
)
from runbook_lib.embedded.s3control.validation import validate_job_request
from runbook_lib.embedded.utc import utc_now
from runbook_lib.errors import BackendError

__all__ = [
    "CANCELLABLE_STATUSES",
    "SUSPENDED_CAUSE",
    "Job",
    "JobStore",
]

CANCELLABLE_STATUSES = frozenset({"New", "Preparing", "Suspended", "Ready", "Active", "Pausing", "Paused"})
SUSPENDED_CAUSE = "AwaitingConfirmation"
_MAX_PRIORITY = 2_147_483_647
_DEFAULT_PAGE_SIZE = 1000


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
        return aws_facts.batch_job_arn(self.region, self.account, self.job_id)

    @property
    def role_arn(self) -> str:
        """Return the role the job runs as."""
        return str(self.request["RoleArn"])

    def enter(self, status: str) -> None:
        """Move to `status`, stamping what that status records (its dates, the Active timer)."""
        if self.status == "Active" and self.active_since is not None:
            self.active_elapsed += time.monotonic() - self.active_since
            self.active_since = None
        self.status = status
        if status == "Active":
            self.active_since = time.monotonic()
        if status == "Suspended":
            self.suspended_date = utc_now()
            self.suspended_cause = SUSPENDED_CAUSE
        if status in aws_facts.TERMINAL_JOB_STATUSES:
            self.termination_date = utc_now()

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
        operation = self.request.get("Operation") or {}
        entry = {
            "JobId": self.job_id,
            "Description": self.request.get("Description"),
            "Operation": next(iter(operation), None),
            "Priority": self.priority,
            "Status": self.status,
            "CreationTime": self.creation_time,
            "TerminationDate": self.termination_date,
            "ProgressSummary": self.progress_summary(),
        }
        return {name: value for name, value in entry.items() if value is not None}


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
        # Notified on every change of any job; held while a job changes.
        self.changed = threading.Condition()
        self._jobs: dict[tuple[str, str], dict[str, Job]] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._attempted: set[tuple[str, str, str]] = set()
        self._ordinal = 0

    # ------------------------------------------------------------------ configuration

    @property
    def task_functions(self) -> TaskFunctions:
        """Return the functions tasks run through, the replication emulation unless others were set."""
        if self._task_functions is None:
            self._task_functions = replication_task_functions()
        return self._task_functions

    @task_functions.setter
    def task_functions(self, functions: TaskFunctions | None) -> None:
        self._task_functions = functions

    def forget_all(self) -> None:
        """Forget every job, token and attempt, keeping the settings: a reset backend knows no jobs."""
        with self.changed:
            self._jobs.clear()
            self._tokens.clear()
            self._attempted.clear()
            self.changed.notify_all()

    # ------------------------------------------------------------------ the API

    def create_job(self, account: str, region: str, request: dict[str, Any]) -> str:
        """Return the id of a new job (or of the job an earlier request with this token created)."""
        validate_job_request(request)
        token = str(request["ClientRequestToken"])
        fingerprint = _fingerprint(request)
        with self.changed:
            known = self._tokens.get((account, region, token))
            if known is not None:
                if known[1] != fingerprint:
                    raise IdempotencyException(
                        f"ClientRequestToken {token!r} was already used for job {known[0]} with a different "
                        "request; use a new token for a new job."
                    )
                return known[0]
            self._ordinal += 1
            job = Job(
                job_id=str(uuid.uuid4()),
                account=account,
                region=region,
                request=request,
                ordinal=self._ordinal,
                creation_time=utc_now(),
                confirmation_required=request.get("ConfirmationRequired") is not False,
                priority=int(request["Priority"]),
                tags=list(request.get("Tags") or []),
            )
            self._jobs.setdefault((account, region), {})[job.job_id] = job
            self._tokens[(account, region, token)] = (job.job_id, fingerprint)
        job_events.announce(job, job_events.JOB_CREATED, "New")
        JobRunner(self, job).start()
        return job.job_id

    def job(self, account: str, region: str, job_id: str) -> Job:
        """Return one job of the account, or raise NotFound."""
        found = self._jobs.get((account, region), {}).get(job_id)
        if found is None:
            raise NotFound(f"Job {job_id} does not exist in account {account} ({region}).")
        return found

    def describe_job(self, account: str, region: str, job_id: str) -> dict[str, Any]:
        """Return DescribeJob's Job for one job of the account."""
        job = self.job(account, region, job_id)
        with self.changed:
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
        unknown = [s for s in statuses if s not in aws_facts.JOB_STATUSES]
        if unknown:
            raise InvalidRequest(
                f"jobStatuses {unknown} are not job statuses; use any of {', '.join(aws_facts.JOB_STATUSES)}.")
        with self.changed:
            jobs = sorted(self._jobs.get((account, region), {}).values(),
                          key=lambda j: (j.creation_time, j.ordinal), reverse=True)
            selected = [j for j in jobs if not statuses or j.status in statuses]
            start = _page_start(selected, next_token)
            size = max_results or _DEFAULT_PAGE_SIZE
            page = selected[start:start + size]
            more = start + size < len(selected)
            token = _encode_token(selected[start + size].job_id) if more else None
            return [j.list_entry() for j in page], token

    def update_job_status(
        self, account: str, region: str, job_id: str, requested: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Return UpdateJobStatus's answer after confirming (Ready) or cancelling (Cancelled) a job."""
        if requested not in ("Ready", "Cancelled"):
            raise InvalidRequest(f"requestedJobStatus {requested!r} is not allowed; use Ready or Cancelled.")
        job = self.job(account, region, job_id)
        with self.changed:
            new_status = _confirm(job, reason) if requested == "Ready" else _request_cancel(job, reason)
            changed = new_status != job.status
            if changed:
                self.set_status(job, new_status)
            answer = {"JobId": job.job_id, "Status": job.status, "StatusUpdateReason": job.status_update_reason}
        if changed:
            job_events.announce(job, job_events.JOB_STATUS_CHANGED, new_status, reasons=[reason] if reason else [])
        return {k: v for k, v in answer.items() if v is not None}

    def update_job_priority(self, account: str, region: str, job_id: str, priority: int) -> dict[str, Any]:
        """Return UpdateJobPriority's answer after changing a job's priority."""
        if not 0 <= priority <= _MAX_PRIORITY:
            raise InvalidRequest(f"priority {priority} is out of range; use 0 to {_MAX_PRIORITY}.")
        job = self.job(account, region, job_id)
        with self.changed:
            job.priority = priority
            self.changed.notify_all()
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
        with self.changed:
            while job.status not in wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendError(f"job {job_id} is still {job.status} after {timeout} s; expected {sorted(wanted)}")
                self.changed.wait(min(left, WAIT_SLICE))
        return job

    # ------------------------------------------------------------------ for the runner

    def set_status(self, job: Job, status: str) -> None:
        """Move a job to `status` and wake every waiter; the caller holds `changed`."""
        job.enter(status)
        self.changed.notify_all()

    def may_start(self, job: Job) -> bool:
        """Return True when a Ready job may become Active now (the caller holds `changed`).

        At most `max_active_per_account` jobs are Active per account and Region; among the Ready ones
        the highest priority starts first, then the oldest.
        """
        jobs = self._jobs.get((job.account, job.region), {}).values()
        if sum(1 for j in jobs if j.status == "Active") >= self.max_active_per_account:
            return False
        waiting = [j for j in jobs if j.status == "Ready" and not j.cancel_requested]
        if job not in waiting:
            return False
        first = min(waiting, key=lambda j: (-j.priority, j.creation_time, j.ordinal))
        return first is job

    def record_attempt(self, attempt: tuple[str, str, str]) -> bool:
        """Remember a task's (bucket, key, version id); return True when it is the first attempt in this store."""
        first = attempt not in self._attempted
        self._attempted.add(attempt)
        return first


def _confirm(job: Job, reason: str | None) -> str:
    if job.status != "Suspended":
        raise JobStatusException(f"Job {job.job_id} is {job.status}; only a Suspended job can be set to Ready.")
    job.status_update_reason = reason
    return "Ready"


def _request_cancel(job: Job, reason: str | None) -> str:
    if job.status == "Cancelling":
        return "Cancelling"
    if job.status not in CANCELLABLE_STATUSES:
        raise JobStatusException(f"Job {job.job_id} is {job.status} and can no longer be cancelled.")
    job.cancel_requested = True
    job.status_update_reason = reason
    return "Cancelling"


def _page_start(jobs: list[Job], next_token: str | None) -> int:
    if not next_token:
        return 0
    job_id = _decode_token(next_token)
    for index, job in enumerate(jobs):
        if job.job_id == job_id:
            return index
    raise InvalidNextToken()


def _encode_token(job_id: str) -> str:
    return base64.b64encode(json.dumps({"from": job_id}).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        decoded = json.loads(base64.b64decode(token.encode(), validate=True))
        return str(decoded["from"])
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise InvalidNextToken() from error
