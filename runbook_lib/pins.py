"""What a finished job left behind, pinned when it finished and checked before verification believes it.

The generated manifest and the completion report live in the report bucket, which anyone who may
write that bucket can edit: drop the rows of failed tasks, fix the MD5s in the index, and the
versions those rows named would vanish from the proof. Two things an editor of the bucket cannot
change stand against that:

- the job's own counters (DescribeJob's ProgressSummary) and the ETag S3 recorded for the
  generated manifest (GeneratedManifestDescriptor), both held by S3 Batch Operations;
- the ETags of every manifest and report object as the run saw them the moment the job finished
  (`pin_job_outputs`, kept in the run state).

A job given its manifest (a sample drill's, or a retry round's CSV) is checked the same way: the
manifest object must still have the ETag the job was given, which S3 keeps in DescribeJob.

`check_job_outputs` compares all of them with what verification is about to read; each
disagreement is a finding, and any finding fails the verdict.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import reports
from runbook_lib.accounts import error_code
from runbook_lib.aws_facts import split_s3_object_arn
from runbook_lib.context import RunContext

__all__ = ["check_job_outputs", "pin_job_outputs", "pinned"]

_MISSING = ("NoSuchKey", "404", "NotFound")


def pinned(ctx: RunContext, job_id: str) -> dict[str, Any] | None:
    """Return the pin recorded for a job, or None when the run never pinned it."""
    record = ctx.ledger.state.job(job_id)
    return record.pin if record is not None else None


def pin_job_outputs(ctx: RunContext, job: dict[str, Any]) -> dict[str, Any]:
    """Return and record a finished job's counters and the ETag of every manifest and report object."""
    pin: dict[str, Any] = {
        "job_id": job["JobId"],
        "status": job["Status"],
        **_counters(job),
        "pinned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generated_manifest": None,
        "supplied_manifest": None,
        "report": None,
    }
    given = job.get("Manifest", {}).get("Location", {})
    if given.get("ObjectArn"):
        bucket, key = split_s3_object_arn(given["ObjectArn"])
        pin["supplied_manifest"] = {"bucket": bucket, "key": key, "etag_given_to_s3": _bare(given.get("ETag")),
                                    "etag": _etag(ctx.vault("s3"), bucket, key), "file_etags": {}}
    location = job.get("GeneratedManifestDescriptor", {}).get("Location", {})
    if location.get("ObjectArn"):
        bucket, key = split_s3_object_arn(location["ObjectArn"])
        pin["generated_manifest"] = {
            "bucket": bucket, "key": key, "etag_recorded_by_s3": _bare(location.get("ETag")),
            **_index_and_files(ctx.vault("s3"), bucket, key, "files", "key"),
        }
    report = job.get("Report", {})
    if report.get("Enabled") and report.get("Bucket"):
        bucket = report["Bucket"].split(":::", 1)[-1]
        key = reports.completion_report_manifest_key(report.get("Prefix"), job["JobId"])
        s3 = ctx.vault("s3")
        if _etag(s3, bucket, key) is not None:
            pin["report"] = {"bucket": bucket, "key": key, **_index_and_files(s3, bucket, key, "Results", "Key")}
    record = ctx.ledger.state.job(str(job["JobId"]))
    if record is None:
        raise ValueError(f"job {job['JobId']} is not a job of this run; only the run's own jobs are pinned")
    record.pin = pin
    ctx.ledger.save_job(record)
    return pin


def check_job_outputs(
    ctx: RunContext, job: dict[str, Any], *, manifest_rows: int | None, report: pd.DataFrame | None,
    must_be_complete: bool = True,
) -> list[str]:
    """Return every way a job's outputs disagree with its pin and its own counters (empty: they agree).

    `job` is the job's current DescribeJob description.
    """
    job_id = str(job["JobId"])
    pin = pinned(ctx, job_id)
    if pin is None:
        return [f"job {job_id}: its manifest and report were not pinned when it finished, so an edit since "
                "cannot be ruled out; re-run the phase that followed it (06 for the recovery job) to pin them, "
                "then verify again"]
    findings: list[str] = []
    if must_be_complete and job["Status"] != "Complete":
        findings.append(f"job {job_id} is {job['Status']}, not Complete; its report cannot prove a recovery")
    now = _counters(job)
    for name in ("total", "succeeded", "failed"):
        if int(pin[name]) != now[name]:
            findings.append(f"job {job_id}: S3 now counts {now[name]} {name} tasks, {pin[name]} when it finished")
    s3 = ctx.vault("s3")
    manifest = pin.get("generated_manifest")
    if manifest:
        current = _etag(s3, manifest["bucket"], manifest["key"])
        # Asked of S3 now, not read from the pin: the run folder could have been edited too.
        recorded = _bare(job.get("GeneratedManifestDescriptor", {}).get("Location", {}).get("ETag")) or manifest.get(
            "etag_recorded_by_s3")
        if recorded and current != recorded:
            findings.append(f"job {job_id}: the generated manifest s3://{manifest['bucket']}/{manifest['key']} "
                            f"has ETag {current or '(missing)'}, but S3 recorded {recorded} when it wrote it")
        findings += _changed_since_pinned(s3, job_id, "generated manifest", manifest)
    supplied = pin.get("supplied_manifest")
    if supplied:
        current = _etag(s3, supplied["bucket"], supplied["key"])
        # Asked of S3 now: the ETag the job was created with, as DescribeJob tells it.
        given = _bare(job.get("Manifest", {}).get("Location", {}).get("ETag")) or supplied.get("etag_given_to_s3")
        if given and current != given:
            findings.append(f"job {job_id}: its manifest s3://{supplied['bucket']}/{supplied['key']} has ETag "
                            f"{current or '(missing)'}, but the job was created with ETag {given}")
        findings += _changed_since_pinned(s3, job_id, "manifest", supplied)
    if manifest_rows is not None and manifest_rows != int(pin["total"]):
        findings.append(f"job {job_id}: its manifest lists {manifest_rows} versions, but S3 counted "
                        f"{pin['total']} tasks")
    ran = int(pin["succeeded"]) + int(pin["failed"])
    if pin.get("report"):
        findings += _changed_since_pinned(s3, job_id, "completion report", pin["report"])
        if report is not None:
            findings += _report_counts(job_id, pin, report)
    elif ran:
        findings.append(f"job {job_id}: S3 counted {ran} tasks run, but the job left no completion report")
    return findings


def _counters(job: dict[str, Any]) -> dict[str, int]:
    """Return the job's task counters as S3 Batch Operations keeps them."""
    summary = job.get("ProgressSummary", {})
    return {
        "total": int(summary.get("TotalNumberOfTasks", 0)),
        "succeeded": int(summary.get("NumberOfTasksSucceeded", 0)),
        "failed": int(summary.get("NumberOfTasksFailed", 0)),
    }


def _report_counts(job_id: str, pin: dict[str, Any], report: pd.DataFrame) -> list[str]:
    """Return the ways the report's rows for one job disagree with the job's counters."""
    rows = report[report["job_id"] == job_id] if "job_id" in report.columns else report
    status = rows["task_status"].astype("string")
    counted = {
        "run": len(rows),
        "succeeded": int((status == "succeeded").sum()),
        "failed": int((status == "failed").sum()),
    }
    # A job cancelled part way ran fewer tasks than its manifest lists: the report holds those it ran.
    by_s3 = {"run": int(pin["succeeded"]) + int(pin["failed"]), "succeeded": int(pin["succeeded"]),
             "failed": int(pin["failed"])}
    return [
        f"job {job_id}: its completion report lists {counted[name]} {name} tasks, but S3 counted {by_s3[name]}"
        for name in ("run", "succeeded", "failed")
        if counted[name] != by_s3[name]
    ]


def _index_and_files(s3: Any, bucket: str, key: str, files_field: str, key_field: str) -> dict[str, Any]:
    """Return the ETag of an index object and of every file it lists."""
    etag = _etag(s3, bucket, key)
    files: dict[str, str | None] = {}
    if etag is not None:
        try:
            index = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, ValueError):
            index = {}
        listed = index.get(files_field) if isinstance(index, dict) else None
        for entry in listed if isinstance(listed, list) else []:
            name = entry.get(key_field) if isinstance(entry, dict) else None
            if isinstance(name, str):
                files[name] = _etag(s3, str(entry.get("Bucket") or bucket), name)
    return {"etag": etag, "file_etags": files}


def _changed_since_pinned(s3: Any, job_id: str, what: str, pin: dict[str, Any]) -> list[str]:
    """Return a finding for the index and for every listed file whose ETag is not the pinned one."""
    findings = []
    objects = {pin["key"]: pin.get("etag"), **pin.get("file_etags", {})}
    for key, pinned_etag in objects.items():
        current = _etag(s3, pin["bucket"], key)
        if current != pinned_etag:
            findings.append(
                f"job {job_id}: the {what} object s3://{pin['bucket']}/{key} changed since the job finished "
                f"(ETag {current or '(missing)'}, pinned {pinned_etag or '(missing)'})"
            )
    return findings


def _etag(s3: Any, bucket: str, key: str) -> str | None:
    """Return an object's ETag without quotes, or None when it does not exist."""
    try:
        return _bare(s3.head_object(Bucket=bucket, Key=key).get("ETag"))
    except ClientError as error:
        if error_code(error) in _MISSING:
            return None
        raise


def _bare(etag: object) -> str | None:
    """Return an ETag without the quotes S3 puts around it."""
    return str(etag).strip('"') if etag else None
