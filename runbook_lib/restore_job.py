"""The restore of archived golden copies before the replication job, for one vault bucket.

Versions in GLACIER or DEEP_ARCHIVE cannot be copied by Batch Replication until a restore has made
a readable copy of them. With `restore.archived: true`, phase 06 first restores every archived
version the scope would otherwise select:

1. `create_restore_job` lists the vault bucket's archived versions, keeps those in scope (one HEAD
   each, for the replication status), writes them as a CSV manifest (Bucket, Key, VersionId)
   into the report bucket (SSE-S3) and creates a Batch Operations job with the
   `S3InitiateRestoreObject` operation (`restore.tier`, `restore.expiration_days`), as the run's
   Batch Operations role, which then holds `s3:RestoreObject` on the vault bucket's objects.
   It waits for the same confirmation as the replication job (`confirm_job`, or the button).
2. `finish_restore` follows the job to its end (any failed task stops phase 06, with S3's error
   codes), then waits until every version's `x-amz-restore` header says the restore finished
   (`ongoing-request="false"`). Only then does phase 06 create the replication job, whose
   generated manifest now includes the restored versions.

Re-running phase 06 reuses the restore job and never asks S3 to restore a version twice: a new
attempt (after a job that failed, was cancelled or had failed tasks) lists only the versions
with no restore yet. Every function takes the vault bucket and the scope explicitly, so a run over
many vault buckets calls it once per bucket.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import aws_facts, batch_job, prices, reports, vault_inventory
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext
from runbook_lib.errors import JobEndedError, RestoreError
from runbook_lib.ledger import now
from runbook_lib.run_state import RestoreRecord, restore_purpose
from runbook_lib.scope import IN_SCOPE, JobScope, scope_from_params

__all__ = [
    "RESTORE_OPERATION",
    "archived_summary",
    "archived_versions",
    "create_restore_job",
    "create_restore_jobs",
    "current_restore_job_id",
    "describe",
    "estimate_restore",
    "estimate_restores",
    "estimate_rows",
    "finish_restore",
    "finish_restores",
    "restore_job_request",
    "restore_state",
    "run_archived_summary",
]

RESTORE_OPERATION = "S3InitiateRestoreObject"
_ONGOING = 'ongoing-request="true"'
_FINISHED = 'ongoing-request="false"'


# ------------------------------------------------------------------ which versions


def restore_state(header: str | None) -> str:
    """Return a version's restore in one word from its x-amz-restore header: none, ongoing or restored."""
    if not header:
        return "none"
    if _ONGOING in header:
        return "ongoing"
    return "restored" if _FINISHED in header else "none"


def archived_versions(ctx: RunContext, vault_bucket: str, scope: JobScope) -> pd.DataFrame:
    """Return the vault bucket's archived versions that the scope selects once they are restored.

    Columns: key, version_id, storage_class, size, last_modified, replication_status, restore
    (none, ongoing or restored). The listing tells storage class, key and time; one HEAD per
    archived candidate tells its replication status and its restore.
    """
    s3 = ctx.vault("s3")
    wanted = replace(scope, include_archived=True)
    candidates = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=vault_bucket):
        for listed in page.get("Versions", []):
            storage = str(listed.get("StorageClass") or aws_facts.DEFAULT_STORAGE_CLASS).upper()
            if storage in aws_facts.ARCHIVED_STORAGE_CLASSES and wanted.listed_in_scope(
                    listed["Key"], listed.get("LastModified"), storage):
                candidates.append({"key": listed["Key"], "version_id": str(listed["VersionId"]),
                                   "storage_class": storage, "size": int(listed.get("Size") or 0),
                                   "last_modified": listed.get("LastModified"), "is_delete_marker": False})

    def head(row: dict[str, Any]) -> dict[str, Any]:
        answer = s3.head_object(Bucket=vault_bucket, Key=row["key"], VersionId=row["version_id"])
        return {**row, "replication_status": answer.get("ReplicationStatus"),
                "restore": restore_state(answer.get("Restore"))}

    with ThreadPoolExecutor(max_workers=ctx.params.verification.head_workers) as pool:
        rows = list(pool.map(head, candidates))
    columns = ["key", "version_id", "storage_class", "size", "last_modified", "is_delete_marker",
               "replication_status", "restore"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame.drop(columns=["is_delete_marker"])
    frame["last_modified"] = pd.to_datetime(frame["last_modified"], utc=True)
    inside = wanted.reasons(frame) == IN_SCOPE
    return frame[inside.to_numpy(bool)].drop(columns=["is_delete_marker"]).reset_index(drop=True)


def archived_in_scope(versions: pd.DataFrame, scope: JobScope) -> pd.DataFrame:
    """Return the archived versions of a bucket's rows (an inventory's) that the scope selects once restored.

    The columns `archived_versions` gives but `restore`, which only a HEAD tells (and the estimate
    does not need).
    """
    wanted = replace(scope, include_archived=True)
    archived = JobScope.archived(versions) & (wanted.reasons(versions) == IN_SCOPE).to_numpy(bool)
    columns = ["key", "version_id", "storage_class", "size", "last_modified", "replication_status"]
    chosen = versions.loc[archived, columns].reset_index(drop=True)
    chosen["storage_class"] = chosen["storage_class"].astype("string").str.upper()
    chosen["size"] = chosen["size"].astype("Int64").fillna(0).astype("int64")
    return chosen


# ------------------------------------------------------------------ the job


def _manifest_key(ctx: RunContext, vault_bucket: str, attempt: int) -> str:
    """Return the report bucket key of one attempt's restore manifest."""
    return f"{ctx.params.job.manifest_prefix}/restores/{ctx.params.run_id}-{vault_bucket}-{attempt}.csv"


def restore_job_request(
    ctx: RunContext, vault_bucket: str, manifest_key: str, manifest_etag: str, versions: int, attempt: int,
) -> dict[str, Any]:
    """Return the CreateJob request of the restore job over a CSV manifest of archived versions."""
    params = ctx.params
    suffix = "" if attempt == 1 else f", attempt {attempt}"
    return {
        "AccountId": params.vault.account_id,
        "ConfirmationRequired": bool(params.job.confirmation_required),
        "Operation": {RESTORE_OPERATION: {"ExpirationInDays": int(params.restore.expiration_days),
                                          "GlacierJobTier": params.restore.tier}},
        "Report": {
            "Bucket": params.report_bucket_arn,
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": params.job.report_prefix,
            "ReportScope": "AllTasks",
            "ExpectedBucketOwner": params.vault.account_id,
        },
        "ClientRequestToken": batch_job.client_request_token(params.run_id, restore_purpose(vault_bucket, attempt)),
        "Priority": int(params.job.priority),
        "RoleArn": params.batch_role_arn,
        "Description": f"Restore {versions} archived versions of {vault_bucket} ({params.run_id}{suffix})"[:256],
        "Manifest": {
            "Spec": {"Format": reports.RETRY_MANIFEST_FORMAT, "Fields": ["Bucket", "Key", "VersionId"]},
            "Location": {"ObjectArn": aws_facts.object_arn(params.report_bucket, manifest_key, params.partition),
                         "ETag": manifest_etag},
        },
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(ctx.tags.items())],
    }


def _record(ctx: RunContext, vault_bucket: str) -> RestoreRecord | None:
    """Return the run's restore record of a vault bucket (None before its restore step ran)."""
    return ctx.ledger.state.restores.get(vault_bucket)


def _save(ctx: RunContext, record: RestoreRecord) -> None:
    ctx.ledger.state.restores[record.vault_bucket] = record
    ctx.ledger.save()


def current_restore_job_id(ctx: RunContext, vault_bucket: str) -> str | None:
    """Return the latest restore job of a vault bucket, or None when the run has none."""
    record = _record(ctx, vault_bucket)
    return record.job_ids[-1] if record is not None and record.job_ids else None


def _needs_new_attempt(ctx: RunContext, job_id: str) -> bool:
    """Return whether the restore job ended without restoring everything: Failed, Cancelled, gone, or failed tasks."""
    try:
        job = batch_job.describe_job(ctx, job_id)
    except ClientError as error:
        if error_code(error) in ("NotFoundException", "NoSuchJob"):
            return True
        raise
    status = str(job["Status"])
    if status in aws_facts.UNSUCCESSFUL_END_STATUSES:
        return True
    failed = int(job.get("ProgressSummary", {}).get("NumberOfTasksFailed", 0))
    return status == "Complete" and failed > 0


def _upload(ctx: RunContext, key: str, body: bytes, rows: int) -> str:
    """Put the restore manifest in the report bucket (SSE-S3) unless it is there already; return its ETag."""
    bucket = ctx.params.report_bucket
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if ctx.plan is not None:
        ctx.plan.intend("vault", "s3", "PutObject", aws_facts.object_arn(bucket, key, ctx.params.partition),
                        {"Bucket": bucket, "Key": key, "ServerSideEncryption": "AES256", "ContentType": "text/csv",
                         "ContentMD5": md5, "Rows": rows}, creates=True)
        return md5
    s3 = ctx.vault("s3")
    try:
        found = str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        found = None
    if found == md5:
        return md5
    answer = s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256", ContentType="text/csv")
    return str(answer["ETag"]).strip('"')


def create_restore_job(ctx: RunContext, vault_bucket: str, scope: JobScope) -> RestoreRecord | None:
    """Return the vault bucket's restore (its job created, or found from an earlier run); None when the step is off.

    A new attempt, after a job that ended Failed or Cancelled or had failed tasks, lists only the
    versions that no restore has reached yet. With nothing left to restore, no job is created.
    In a plan, the manifest upload and the job are shown and nothing is written.
    """
    if not ctx.params.restore.archived:
        return None
    record = _record(ctx, vault_bucket)
    latest = record.job_ids[-1] if record is not None and record.job_ids else None
    if latest is not None and not _needs_new_attempt(ctx, latest):
        return record
    versions = archived_versions(ctx, vault_bucket, scope)
    waiting = versions[versions["restore"] == "none"]
    attempt = len(record.job_ids) + 1 if record is not None else 1
    record = RestoreRecord(
        vault_bucket=vault_bucket, archived_in_scope=len(versions), requested=len(waiting),
        job_ids=list(record.job_ids) if record is not None else [], tier=ctx.params.restore.tier,
        expiration_days=ctx.params.restore.expiration_days,
        restored=int((versions["restore"] == "restored").sum()))
    if waiting.empty:
        _save(ctx, record)
        return record
    key = _manifest_key(ctx, vault_bucket, attempt)
    etag = _upload(ctx, key, reports.retry_manifest_csv(waiting, vault_bucket), len(waiting))
    request = restore_job_request(ctx, vault_bucket, key, etag, len(waiting), attempt)
    job_id, _ = batch_job.create_job(ctx, request, restore_purpose(vault_bucket, attempt), attempt=attempt)
    record.manifest_key, record.manifest_etag = key, etag
    record.job_ids.append(job_id)
    _save(ctx, record)
    return record


# ------------------------------------------------------------------ to the end


def _failed_tasks_message(ctx: RunContext, job: dict[str, Any]) -> str:
    """Return the failed tasks of a restore job in words: how many, and S3's error codes and messages."""
    summary = job.get("ProgressSummary", {})
    failed = int(summary.get("NumberOfTasksFailed", 0))
    report = job.get("Report", {})
    codes = ""
    try:
        rows = reports.load_completion_report(
            ctx.vault("s3"), ctx.params.report_bucket,
            reports.completion_report_manifest_key(report.get("Prefix"), str(job["JobId"])))
        failures = rows[rows["task_status"] == "failed"]
        counted = failures.groupby(["error_code", "result_message"], dropna=False).size()
        codes = "; ".join(f"{count} x {code}: {message}" for (code, message), count in counted.items())
    except Exception as error:  # the job's counters still tell the story; say why the report is not shown
        codes = f"the completion report could not be read ({error})"
    return f"{failed} of {summary.get('TotalNumberOfTasks', '?')} restore tasks failed ({codes})"


def finish_restore(
    ctx: RunContext, vault_bucket: str, scope: JobScope, subscribers: Sequence[Any] = (), *,
    timeout_seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
) -> RestoreRecord | None:
    """Return the vault bucket's restore once its job is complete and every version's restore has finished.

    A job that ends Failed or Cancelled, or has failed tasks, stops phase 06 (RestoreError) with
    S3's reasons: nothing is replicated before every archived version in scope is readable.
    """
    record = _record(ctx, vault_bucket)
    if not ctx.params.restore.archived or record is None:
        return None
    if record.job_ids:
        job_id = record.job_ids[-1]
        try:
            job = batch_job.follow_job(ctx, job_id, subscribers)
        except JobEndedError as ended:
            raise RestoreError(
                f"the restore job of {vault_bucket} did not complete: {ended}. No archived version is replicated "
                "until it is restored. Fix the cause, then re-run phase 06: it starts a new restore attempt.") from None
        if int(job.get("ProgressSummary", {}).get("NumberOfTasksFailed", 0)):
            raise RestoreError(
                f"the restore job {job_id} of {vault_bucket} completed, but {_failed_tasks_message(ctx, job)}. "
                "Nothing was replicated yet. AccessDenied means the Batch Operations role may not s3:RestoreObject "
                "on the vault bucket (phase 02 grants it when restore.archived is true); fix the cause, then re-run "
                "phase 06: a new attempt restores only the versions not restored yet.")
    return _wait_until_restored(ctx, vault_bucket, scope, record, timeout_seconds, sleep)


def _wait_until_restored(
    ctx: RunContext, vault_bucket: str, scope: JobScope, record: RestoreRecord, timeout_seconds: float | None,
    sleep: Callable[[float], None],
) -> RestoreRecord:
    """Return the record once every archived version in scope shows a finished restore (x-amz-restore).

    The bucket is listed once; afterwards only the versions not restored yet are asked again.
    """
    limit = timeout_seconds if timeout_seconds is not None else ctx.params.job.timeout_minutes * 60
    deadline = time.monotonic() + limit
    versions = archived_versions(ctx, vault_bucket, scope)
    s3 = ctx.vault("s3")
    states = dict(zip(zip(versions["key"], versions["version_id"], strict=True), versions["restore"], strict=True))
    while True:
        left = [version for version, state in states.items() if state != "restored"]
        record.archived_in_scope, record.restored = len(states), len(states) - len(left)
        if not left:
            record.finished = now()
            _save(ctx, record)
            print(f"{vault_bucket}: all {record.restored} archived versions in scope are restored and readable")
            return record
        not_asked = [version for version in left if states[version] == "none"]
        if not_asked:
            _save(ctx, record)
            shown = ", ".join(f"{key} ({version_id})" for key, version_id in not_asked[:5])
            raise RestoreError(
                f"{len(not_asked)} archived version(s) of {vault_bucket} in scope have no restore (e.g. {shown}): "
                "the restore job did not cover them. Re-run phase 06: a new attempt restores them.")
        if time.monotonic() > deadline:
            _save(ctx, record)
            raise RestoreError(
                f"{len(left)} archived version(s) of {vault_bucket} are still being restored after {limit:.0f} s "
                f"({record.restored} of {len(states)} done). Restores take hours on AWS ({record.tier} tier); re-run "
                "phase 06 later to keep waiting (it asks for no restore again), or raise job.timeout_minutes.")
        print(f"{vault_bucket}: {record.restored} of {len(states)} archived versions restored; waiting")
        sleep(float(ctx.params.job.poll_seconds))
        for key, version_id in left:
            answer = s3.head_object(Bucket=vault_bucket, Key=key, VersionId=version_id)
            states[(key, version_id)] = restore_state(answer.get("Restore"))


# ------------------------------------------------------------------ what verification reports


def archived_summary(ctx: RunContext, details: pd.DataFrame, vault_bucket: str) -> dict[str, Any]:
    """Return summary.json's `archived` figures for one vault bucket from verification's detail rows.

    in_scope: archived versions the scope selects once restored (with the step off: those left
    archived); restored: those the restore step saw restored; recovered: those recovered
    identical; not_recovered: the rest; step: whether the restore step was on.
    """
    storage = details["vault_storage_class"].astype("string").str.upper()
    archived = storage.isin(list(aws_facts.ARCHIVED_STORAGE_CLASSES)).fillna(False).to_numpy(bool)
    category = details["category"].astype(str).to_numpy()
    step = bool(ctx.params.restore.archived)
    if step:
        in_scope = archived & details["expected"].to_numpy(bool)
    else:
        in_scope = archived & (category == "archived_not_recovered")
    recovered = int((in_scope & (category == "recovered_identical")).sum())
    record = _record(ctx, vault_bucket)
    return {
        "step": step,
        "in_scope": int(in_scope.sum()),
        "restored": (record.restored if record is not None else 0) if step else 0,
        "recovered": recovered,
        "not_recovered": int(in_scope.sum()) - recovered,
        "tier": ctx.params.restore.tier if step else None,
        "expiration_days": ctx.params.restore.expiration_days if step else None,
        "restore_jobs": list(record.job_ids) if step and record is not None else [],
    }


def describe(record: RestoreRecord | None, step_on: bool) -> str:
    """Return where one vault bucket's restore stands, in one sentence for phase 06."""
    if not step_on:
        return ("restore.archived is false: archived versions (GLACIER, DEEP_ARCHIVE) stay archived; verification "
                "reports those in scope as archived_not_recovered")
    if record is None:
        return "the restore step has not run for this bucket yet"
    jobs = ", ".join(record.job_ids) or "none needed"
    done = f"; all restored at {record.finished}" if record.finished else ""
    return (f"{record.vault_bucket}: {record.archived_in_scope} archived versions in scope, {record.restored} "
            f"restored, {record.requested} asked in the latest attempt (restore jobs: {jobs}; {record.tier} tier, "
            f"{record.expiration_days} days){done}")


# ------------------------------------------------------------------ phase 00's estimate


def estimate_restore(ctx: RunContext, vault_bucket: str, scope: JobScope) -> dict[str, Any]:
    """Return what restoring the vault bucket's archived versions in scope would cost and take, per storage class.

    Counted exactly (a listing, then one HEAD per archived candidate), priced with `prices.RESTORE`
    at the tier `restore.tier` and, for comparison, the other tier; restored copies are stored at
    STANDARD's rate for `restore.expiration_days`. Shown whether the step is on or off, so the
    operator sees what leaving it off leaves out.
    """
    read = vault_inventory.from_inventory(ctx)
    versions = (archived_in_scope(read.versions, scope) if read is not None
                else archived_versions(ctx, vault_bucket, scope))
    days = int(ctx.params.restore.expiration_days)
    chosen = ctx.params.restore.tier
    rows = []
    totals: dict[str, dict[str, float]] = {tier: {"usd": 0.0, "hours": 0.0} for tier in aws_facts.BATCH_RESTORE_TIERS}
    for storage, group in versions.groupby("storage_class") if not versions.empty else []:
        count, size = len(group), int(group["size"].sum())
        gigabytes = size / prices.BYTES_PER_GB
        for tier in aws_facts.BATCH_RESTORE_TIERS:
            price = prices.RESTORE[(str(storage), tier)]
            usd = (gigabytes * price.usd_per_gb + count / 1000 * price.usd_per_thousand_requests
                   + gigabytes * prices.STORAGE["STANDARD"].usd_per_gb_month * days / prices.DAYS_PER_MONTH)
            totals[tier]["usd"] += usd
            totals[tier]["hours"] = max(totals[tier]["hours"], price.typical_hours)
            rows.append({"storage_class": str(storage), "tier": tier, "versions": count, "bytes": size,
                         "usd": round(usd, 2), "typical_hours": price.typical_hours,
                         "prices_confirmed": price.confirmed, "chosen": tier == chosen})
    job_usd = prices.PRICE_PER_BATCH_JOB + len(versions) / 1e6 * prices.PRICE_PER_MILLION_BATCH_OBJECTS
    estimate = {
        "vault_bucket": vault_bucket,
        "step": bool(ctx.params.restore.archived),
        "tier": chosen,
        "expiration_days": days,
        "versions": len(versions),
        "bytes": int(versions["size"].sum()) if not versions.empty else 0,
        "by_class": rows,
        "usd": round(totals[chosen]["usd"] + (job_usd if len(versions) else 0.0), 2),
        "typical_hours": totals[chosen]["hours"],
        "other_tier": {tier: {"usd": round(total["usd"] + (job_usd if len(versions) else 0.0), 2),
                              "typical_hours": total["hours"]}
                       for tier, total in totals.items() if tier != chosen},
        "prices": {"source": prices.SOURCE, "as_of": prices.AS_OF},
    }
    if ctx.ledger.state.estimate is not None:
        ctx.ledger.state.estimate.setdefault("restore", {})[vault_bucket] = estimate
        ctx.ledger.save()
    return estimate


def estimate_rows(estimate: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the restore estimate as a two-column table for phase 00, next to the replication estimate."""
    if not estimate["versions"]:
        return [{"quantity": "archived versions in scope (GLACIER, DEEP_ARCHIVE)", "value": "0: nothing to restore"}]
    other = ", ".join(f"{tier}: USD {figures['usd']:,.2f}, about {figures['typical_hours']:g} h"
                      for tier, figures in estimate["other_tier"].items())
    state = "on" if estimate["step"] else "OFF: they stay archived and are reported as archived, not recovered"
    unconfirmed = any(not row["prices_confirmed"] for row in estimate["by_class"] if row["chosen"])
    return [
        {"quantity": "archived versions in scope (GLACIER, DEEP_ARCHIVE)",
         "value": f"{estimate['versions']:,} ({estimate['bytes']:,} bytes)"},
        {"quantity": "restore step (restore.archived)", "value": state},
        {"quantity": f"restore cost at {estimate['tier']} (USD, list prices, copies kept "
                     f"{estimate['expiration_days']} days)",
         "value": f"{estimate['usd']:,.2f}" + (" (some rates UNCONFIRMED)" if unconfirmed else "")},
        {"quantity": "restore time (typical, before the replication job can start)",
         "value": f"about {estimate['typical_hours']:g} hours on AWS"},
        {"quantity": "the other tier", "value": other},
    ]


# ------------------------------------------------------------------ every vault bucket of the run


def _pairs(ctx: RunContext) -> list[tuple[RunContext, str, JobScope]]:
    """Return each bucket pair's context, vault bucket and scope (one for a one-bucket run)."""
    return [(view, view.params.pair.vault_bucket, scope_from_params(view.params)) for view in ctx.pair_contexts()]


def estimate_restores(ctx: RunContext) -> list[dict[str, Any]]:
    """Return phase 00's restore estimate of every vault bucket, one table with the bucket named on each row."""
    return [{"vault bucket": bucket, **row} for view, bucket, scope in _pairs(ctx)
            for row in estimate_rows(estimate_restore(view, bucket, scope))]


def create_restore_jobs(ctx: RunContext) -> list[str]:
    """Create (or find) each vault bucket's restore job and return where each stands, in words."""
    return [describe(create_restore_job(view, bucket, scope), ctx.params.restore.archived)
            for view, bucket, scope in _pairs(ctx)]


def finish_restores(ctx: RunContext, subscribers: Sequence[Any] = ()) -> list[str]:
    """Follow each vault bucket's restore to its end (every version readable) and return where each stands."""
    return [describe(finish_restore(view, bucket, scope, subscribers), ctx.params.restore.archived)
            for view, bucket, scope in _pairs(ctx)]


def run_archived_summary(ctx: RunContext, details: pd.DataFrame) -> dict[str, Any]:
    """Return summary.json's `archived` for the whole run: each vault bucket's figures added up, jobs listed."""
    views = ctx.pair_contexts()
    if len(views) == 1:
        return archived_summary(views[0], details, views[0].params.pair.vault_bucket)
    parts = [archived_summary(view, details[details["vault_bucket"] == view.params.pair.vault_bucket],
                              view.params.pair.vault_bucket) for view in views]
    total = dict(parts[0])
    for part in parts[1:]:
        for name in ("in_scope", "restored", "recovered", "not_recovered"):
            total[name] += part[name]
        total["restore_jobs"] = [*total["restore_jobs"], *part["restore_jobs"]]
    return total
