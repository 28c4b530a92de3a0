"""Restoring archived object versions inside the embedded backend: RestoreObject, x-amz-restore, restore tasks.

A version in GLACIER or DEEP_ARCHIVE cannot be read, nor copied by Batch Replication, until a
restore has made a temporary copy of it. S3 shows where a restore is with the `x-amz-restore`
header of HEAD and GET: `ongoing-request="true"` while it runs, then `ongoing-request="false",
expiry-date="<HTTP date>"` once the copy is readable. The copy expires at the expiry date (the
completion time plus the requested days, rounded up to the next midnight UTC, as the S3 User
Guide describes it); the version stays archived, its storage class unchanged.

Everything here keeps its state on moto's stored version (`RESTORE_ATTRIBUTE`), so a HEAD, a
GetObject, a Batch Replication task and a Batch Operations restore task all see the same restore.

Choices we made where AWS's behaviour is not documented (UNCONFIRMED) or where we simplify:

| topic | what the emulator does |
|---|---|
| how long a restore takes | `restore_seconds`, for every tier (a backend option, 1 s by default |
| | for drills); on AWS, minutes to hours by tier and class (docs/aws-facts.md) |
| restore asked while one runs | 409 `RestoreAlreadyInProgress` (a code the RestoreObject API lists) |
| restore of a restored copy | 200, the expiry moves to the new request's days |
| restore of a version not archived | 403 `InvalidObjectState` |
| restore task that succeeds | `succeeded,200,,Successful` (the message seen on restore job reports) |
| restore task refused | 403 `AccessDenied` when the job role may not s3:RestoreObject; |
| | otherwise RestoreObject's codes above |
| an expired restored copy | the header disappears and the version is unreadable again |
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded import moto_state
from runbook_lib.embedded.iam_eval import Request, is_allowed
from runbook_lib.embedded.moto_state import PARTITION
from runbook_lib.embedded.task_result import TaskResult
from runbook_lib.embedded.utc import utc_now

__all__ = [
    "RESTORE_ATTRIBUTE",
    "RestoreRefused",
    "RestoreState",
    "configure",
    "is_restored",
    "request_restore",
    "restore_header",
    "restore_seconds",
    "restore_task",
]

RESTORE_ATTRIBUTE = "runbook_restore"
SUCCESS_MESSAGE = "Successful"
_settings_lock = threading.Lock()
_settings = {"restore_seconds": 1.0}


def configure(restore_seconds: float) -> None:
    """Set how long a restore takes in this backend, in seconds (the same for every tier)."""
    if restore_seconds < 0:
        raise ValueError(f"restore_seconds must be >= 0, got {restore_seconds}")
    with _settings_lock:
        _settings["restore_seconds"] = float(restore_seconds)


def restore_seconds() -> float:
    """Return how long a restore takes in this backend, in seconds."""
    return _settings["restore_seconds"]


@dataclass
class RestoreState:
    """One version's restore: when it was asked for, when its copy is readable, for how many days, which tier."""

    requested: datetime
    ready: datetime
    days: int
    tier: str

    def ongoing(self, at: datetime) -> bool:
        """Return whether the restore is still running at `at`."""
        return at < self.ready

    def expiry(self) -> datetime:
        """Return when the restored copy expires: completion plus the days, rounded up to the next midnight UTC."""
        end = self.ready + timedelta(days=self.days)
        midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight if midnight == end else midnight + timedelta(days=1)


class RestoreRefused(Exception):
    """S3 refuses the restore: carries the HTTP status, error code and message it answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _state(version: Any) -> RestoreState | None:
    state = getattr(version, RESTORE_ATTRIBUTE, None)
    return state if isinstance(state, RestoreState) else None


def request_restore(version: Any, days: int, tier: str, at: datetime | None = None) -> int:
    """Start (or extend) the restore of one archived version; return 202 when started, 200 when extended.

    Raises RestoreRefused for a version that is not archived (403 InvalidObjectState) or whose
    restore still runs (409 RestoreAlreadyInProgress).
    """
    moment = at or utc_now()
    storage = (getattr(version, "storage_class", None) or aws_facts.DEFAULT_STORAGE_CLASS).upper()
    if storage not in aws_facts.ARCHIVED_STORAGE_CLASSES:
        raise RestoreRefused(403, "InvalidObjectState",
                             f"Restore is not allowed for the object's current storage class ({storage}).")
    if days < 1:
        raise RestoreRefused(400, "InvalidArgument", "Days must be 1 or greater to restore a GLACIER or "
                                                     "DEEP_ARCHIVE object.")
    state = _state(version)
    if state is not None and state.ongoing(moment):
        raise RestoreRefused(409, "RestoreAlreadyInProgress", "Object restore is already in progress")
    if state is not None and moment < state.expiry():
        state.days = days  # a restored copy's expiry moves; nothing is retrieved again
        return 200
    setattr(version, RESTORE_ATTRIBUTE,
            RestoreState(moment, moment + timedelta(seconds=restore_seconds()), days, tier))
    return 202


def restore_header(version: Any, at: datetime | None = None) -> str | None:
    """Return the version's x-amz-restore header as S3 sends it, or None when it has no restore (or it expired)."""
    state = _state(version)
    if state is None:
        return None
    moment = at or utc_now()
    if state.ongoing(moment):
        return 'ongoing-request="true"'
    expiry = state.expiry()
    if moment >= expiry:
        return None
    return f'ongoing-request="false", expiry-date="{expiry.astimezone(timezone.utc):%a, %d %b %Y %H:%M:%S GMT}"'


def is_restored(version: Any, at: datetime | None = None) -> bool:
    """Return whether an archived version has a readable restored copy now."""
    header = restore_header(version, at)
    return header is not None and 'ongoing-request="false"' in header


def restore_task(
    source_account: str, bucket_name: str, key: str, version_id: str, job_role_arn: str, operation: dict[str, Any]
) -> TaskResult:
    """Return the outcome of one S3InitiateRestoreObject task: the job role's permission, then RestoreObject."""
    bucket = moto_state.owned_bucket(source_account, bucket_name)
    if bucket is None:
        return TaskResult(False, 404, "NoSuchBucket", f"Bucket {bucket_name} does not exist.")
    role = moto_state.iam_role(job_role_arn)
    object_arn = aws_facts.object_arn(bucket_name, key, PARTITION)
    if role is None:
        return TaskResult(False, 403, "AccessDenied", f"Access Denied: the job role {job_role_arn} does not exist.")
    role_account = aws_facts.account_of_arn(job_role_arn) or ""
    decision = is_allowed(
        Request(principal_arn=job_role_arn, principal_account=role_account, action="s3:RestoreObject",
                resource=object_arn, resource_account=str(bucket.account_id),
                context={"aws:PrincipalArn": job_role_arn, "aws:PrincipalAccount": role_account}),
        identity_policies=moto_state.identity_policies(role),
        resource_policy=moto_state.policy_document(bucket.policy),
    )
    if not decision.allowed:
        return TaskResult(False, 403, "AccessDenied", f"Access Denied. {decision.reason}")
    version = moto_state.find_version(bucket, key, version_id)
    if version is None or moto_state.is_delete_marker(version):
        return TaskResult(False, 404, "NoSuchVersion", f"Version {version_id} of key {key!r} does not exist.")
    try:
        request_restore(version, int(operation.get("ExpirationInDays") or 0),
                        str(operation.get("GlacierJobTier") or "STANDARD"))
    except RestoreRefused as refused:
        return TaskResult(False, refused.status, refused.code, refused.message)
    return TaskResult(True, 200, "", SUCCESS_MESSAGE)
