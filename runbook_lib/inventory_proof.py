"""Phase 07 by inventory: the buckets' states from S3 Inventory reports, compared in SQL.

`verification.method` chooses how phase 07 reads the buckets: `head` lists and HEADs every
version (exact and immediate; about $0.40 per million versions on AWS and hours at 10^8), while
`inventory` reads the daily S3 Inventory reports of both buckets and compares them with one SQL
text on DuckDB or Athena (`verification.engine`); `auto` takes inventory from
`verification.auto_inventory_from` vault versions on (phase 00's count).

Inventory is a rolling, eventually consistent snapshot, so the proof it gives is held to rules:

- a report started before the jobs ended cannot show what they did: verification stops with
  InventoryNotReady (so, no verdict but FAIL/INCOMPLETE) until a newer report is delivered;
- a report that does not match its checksums, or lacks a field the comparison needs, is refused;
- every version the comparison finds wrong is read again with HEAD, and so is a random sample of
  `verification.head_sample` versions it found identical; any disagreement between HEAD and the
  inventory becomes a finding, which fails the verdict, and the evidence states the sample.

Content is compared as the HEAD method compares it (size, ETag as it is, multipart ETags
included), with one difference the evidence states: an inventory lists a version's checksum
algorithm (ChecksumAlgorithm) but not the checksum. The SQL therefore compares no additional
checksum; the HEAD re-check reads the checksums of the versions it reads on both sides and
compares those of one algorithm (a difference is a finding). A sample drill's comparison expects
only the drawn versions, as the HEAD method does.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import batch_job, inventory_compare, inventory_reports, inventory_setup, sampling, verify
from runbook_lib.context import RunContext
from runbook_lib.inventory_compare import AthenaSettings
from runbook_lib.inventory_reports import InventoryReport
from runbook_lib.scope import scope_from_params

__all__ = [
    "InventoryPair",
    "athena_settings",
    "compare",
    "content_note",
    "head_check",
    "jobs_ended",
    "locate_reports",
    "method",
    "plan_athena",
    "prepare",
    "snapshot",
    "snapshot_checksum",
    "verify_from_inventory",
    "wait_for_reports",
]


@dataclass(frozen=True)
class InventoryPair:
    """The two reports one comparison reads."""

    vault: InventoryReport
    recovery: InventoryReport

    def as_record(self) -> dict[str, Any]:
        """Return which reports were read, for the evidence."""
        return {side: {"manifest": f"s3://{r.bucket}/{r.manifest_key}", "created": r.created.isoformat(),
                       "files": len(r.files)} for side, r in (("vault", self.vault), ("recovery", self.recovery))}


def method(ctx: RunContext) -> str:
    """Return head or inventory: the parameter, or for auto the choice phase 00's version count makes."""
    chosen = str(ctx.params.verification.method)
    if chosen != "auto":
        return chosen
    versions = int((ctx.ledger.state.estimate or {}).get("versions", 0))
    return "inventory" if versions >= ctx.params.verification.auto_inventory_from else "head"


def prepare(ctx: RunContext) -> list[Any]:
    """Make sure both buckets report an inventory into the report bucket; return the outcomes."""
    return [inventory_setup.ensure_inventory_destination(ctx), *inventory_setup.ensure_inventory_configurations(ctx)]


def plan_athena(ctx: RunContext) -> list[Any]:
    """Return what the Athena engine would create in phase 07, recorded in the plan (a planning context only).

    The comparison makes them when it runs: the database, a table over each report's hive folder,
    and the manifest, report and sample rows staged as Parquet, with a table over each.
    """
    from runbook_lib.provision import Outcome

    assert ctx.plan is not None
    settings = athena_settings(ctx)
    names = [f"{settings.table_prefix}_{name}" for name in
             ("vault_inventory", "recovery_inventory", "manifest", "report", "sample")]
    ctx.plan.intend("vault", "athena", "StartQueryExecution", settings.database,
                    {"QueryString": f"CREATE DATABASE IF NOT EXISTS `{settings.database}`",
                     "WorkGroup": settings.workgroup, "OutputLocation": settings.output_location})
    for name in ("manifest", "report", "sample"):
        ctx.plan.intend("vault", "s3", "PutObject",
                        f"s3://{settings.staging_bucket}/{settings.staging_prefix}/{name}/rows.parquet",
                        {"ServerSideEncryption": "AES256"})
    for table in names:
        ctx.plan.intend("vault", "athena", "StartQueryExecution", f"{settings.database}.{table}",
                        {"QueryString": f"CREATE EXTERNAL TABLE `{settings.database}`.`{table}` (...)",
                         "WorkGroup": settings.workgroup})
    return [Outcome("Athena database and tables", f"{settings.database}: {', '.join(names)}", "created",
                    note=f"made when phase 07 compares, in work group {settings.workgroup}; "
                         f"results in {settings.output_location}")]


def jobs_ended(ctx: RunContext) -> datetime | None:
    """Return when the last of the run's jobs (attempts and finished retry rounds) ended."""
    state = ctx.ledger.state
    job_ids = [job.job_id for job in state.recovery_jobs()]
    job_ids += [r.job_id for r in state.retry_rounds if r.job_id and r.finished]
    ended = []
    for job_id in job_ids:
        terminated = batch_job.describe_job(ctx, job_id).get("TerminationDate")
        if isinstance(terminated, datetime):
            ended.append(terminated)
    return max(ended) if ended else None


def locate_reports(ctx: RunContext) -> InventoryPair:
    """Return both buckets' newest reports, checked and started after the jobs ended (else InventoryNotReady)."""
    vault_at, recovery_at = inventory_setup.inventory_locations(ctx)
    s3 = ctx.vault("s3")
    ended = jobs_ended(ctx)
    found = []
    for location in (vault_at, recovery_at):
        report = inventory_reports.latest_report(s3, location.bucket, location.prefix, location.source_bucket,
                                                 location.config_id)
        inventory_reports.check_fresh(report, ended, "the run's last job")
        found.append(report)
    return InventoryPair(found[0], found[1])


def athena_settings(ctx: RunContext) -> AthenaSettings:
    """Return where the Athena engine works for this run (vault account, report bucket)."""
    params = ctx.params
    staging = f"{params.job.report_prefix}/verification/{params.run_id}"
    output = params.verification.athena_output_location or f"s3://{params.report_bucket}/{staging}/athena-results/"
    return AthenaSettings(
        athena=ctx.vault("athena"), s3=ctx.vault("s3"), workgroup=params.verification.athena_workgroup,
        output_location=output, database=params.verification.athena_database, staging_bucket=params.report_bucket,
        staging_prefix=staging, table_prefix=params.run_id.replace("-", "_"),
    )


def compare(
    ctx: RunContext, pair: InventoryPair, manifest: pd.DataFrame, report: pd.DataFrame, findings: list[str],
    engine: str | None = None,
) -> verify.Comparison:
    """Return the comparison of both buckets' inventories with the manifest and the latest task per version."""
    chosen = engine or str(ctx.params.verification.engine)
    latest = report.drop_duplicates(subset=["key", "version_id"], keep="last").reset_index(drop=True)
    return inventory_compare.compare_inventories(
        ctx.vault("s3"), pair.vault, pair.recovery, scope=scope_from_params(ctx.params), manifest=manifest,
        report=latest, findings=findings, engine=chosen,
        athena=athena_settings(ctx) if chosen == "athena" else None,
        sample=sampling.drawn_versions(ctx) if ctx.params.job.sample is not None else None,
    )


_HEAD_FIELDS = (("size", "ContentLength"), ("etag", "ETag"), ("object_lock_mode", "ObjectLockMode"),
                ("object_lock_retain_until_date", "ObjectLockRetainUntilDate"),
                ("object_lock_legal_hold_status", "ObjectLockLegalHoldStatus"))


def head_check(ctx: RunContext, comparison: verify.Comparison, sample: int | None = None,
               seed: int = 0) -> tuple[verify.Comparison, dict[str, Any]]:
    """Return the comparison with a finding per version HEAD reads otherwise than the inventory, and what was read.

    Every version the comparison found wrong is read again, and `sample` (default
    `verification.head_sample`) randomly chosen versions it found recovered identical. HEAD asks for
    checksums too: where both sides show one of the same algorithm they are compared (the inventory
    lists no checksum), and `content_checks` counts them as compared.
    """
    size = ctx.params.verification.head_sample if sample is None else sample
    details = comparison.details
    wrong = details[~details["category"].isin(verify.NOT_PROBLEMS)]
    identical = details[details["category"] == verify.RECOVERED_IDENTICAL]
    chosen = sorted(random.Random(seed).sample(range(len(identical)), min(size, len(identical))))
    picked = pd.concat([wrong, identical.iloc[chosen]])
    findings = list(comparison.findings)
    reads = [(side, row) for row in picked.itertuples(index=False) for side in ("vault", "recovery")
             if getattr(row, f"in_{side}")]
    # The clients are made before the pool starts: boto3 clients are thread-safe, their creation is not.
    ctx.vault("s3"), ctx.recovery("s3")
    with ThreadPoolExecutor(max_workers=ctx.params.verification.head_workers) as pool:
        answers = list(pool.map(lambda read: _head_disagrees(ctx, read[0], str(read[1].key),
                                                             str(read[1].version_id), read[1]), reads))
    problems = [problem for problem, _ in answers if problem]
    checksums = {(str(row.key), str(row.version_id), side): checksum
                 for (side, row), (_, checksum) in zip(reads, answers, strict=True)}
    already = {(str(row.key), str(row.version_id)) for row in picked.itertuples(index=False)
               if bool(getattr(row, verify.CONTENT_DIFFERS))}
    compared, differing = _compare_checksums(checksums, already)
    problems += differing
    disagreements = len(problems)
    findings += problems
    record = {"mismatches_rechecked": len(wrong), "sampled_identical": len(chosen),
              "sample_size_asked": size, "disagreements": disagreements, "checksums_compared": compared,
              "checksums_differing": len(differing)}
    content_checks = dict(comparison.content_checks)
    if content_checks:
        moved = min(compared, content_checks.get("checksum_not_compared", 0))
        content_checks["checksum_compared"] = content_checks.get("checksum_compared", 0) + moved
        content_checks["checksum_not_compared"] = content_checks.get("checksum_not_compared", 0) - moved
    counts = dict(comparison.counts, findings=len(findings))
    checked = verify.Comparison(verify.verdict_of(counts), counts, details, tuple(findings), content_checks,
                                evidence=comparison.evidence)
    return checked, record


def _compare_checksums(
    read: dict[tuple[str, str, str], tuple[str, str] | None], already: set[tuple[str, str]]
) -> tuple[int, list[str]]:
    """Return for how many versions HEAD read one algorithm's checksum on both sides, and a finding per difference.

    A version whose content the inventory already found different is counted, but no finding repeats it.
    """
    compared, differing = 0, []
    for (key, version_id, side), vault_checksum in read.items():
        recovery_checksum = read.get((key, version_id, "recovery"))
        if side != "vault" or vault_checksum is None or recovery_checksum is None:
            continue
        if vault_checksum[0] != recovery_checksum[0]:
            continue  # different algorithms cannot be compared; the ETag decides
        compared += 1
        if vault_checksum[1] != recovery_checksum[1] and (key, version_id) not in already:
            differing.append(f"{key} version {version_id}: its {vault_checksum[0]} checksum differs between the "
                             "vault and the recovery bucket (read by HEAD): the content differs")
    return compared, differing


def _head_disagrees(ctx: RunContext, side: str, key: str, version_id: str,
                    row: Any) -> tuple[str, tuple[str, str] | None]:
    """Return why HEAD disagrees with the inventory about one version ("" when it agrees), and the checksum it read."""
    s3 = ctx.vault("s3") if side == "vault" else ctx.recovery("s3")
    bucket = ctx.params.pair.vault_bucket if side == "vault" else ctx.params.pair.recovery_bucket
    if bool(getattr(row, f"{side}_is_delete_marker")):
        return "", None  # a delete marker has no HEAD of its own; the listing is what the inventory reflects
    head: Any
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        if code in ("AccessDenied", "403"):
            # SSE-KMS objects need kms:Decrypt to show a checksum: ask again without one.
            try:
                head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
            except ClientError:
                head = None
        else:
            head = None
        if head is None:
            return (f"HEAD of s3://{bucket}/{key} version {version_id} answers {code}, but the {side} inventory "
                    "lists it"), None
    checksum = snapshot_checksum(head)
    differences = []
    for column, field in _HEAD_FIELDS:
        listed = getattr(row, f"{side}_{column}")
        read = head.get(field)
        if column == "etag":
            read, listed = str(read or "").strip('"'), str(listed or "").strip('"')
        elif column == "object_lock_retain_until_date":
            read = pd.Timestamp(read).floor("s") if read is not None else None
            listed = None if pd.isna(listed) else pd.Timestamp(listed).floor("s")
        elif column == "object_lock_legal_hold_status":
            read = str(read or "OFF").upper()
            listed = str(listed or "OFF").upper()
        elif column == "object_lock_mode":
            read = str(read).upper() if read else None
            listed = None if pd.isna(listed) else str(listed).upper()
        else:
            listed = None if pd.isna(listed) else int(listed)
        if read != listed:
            differences.append(f"{column} {listed!r} in the inventory, {read!r} by HEAD")
    if not differences:
        return "", checksum
    return (f"s3://{bucket}/{key} version {version_id} changed since its inventory: " + "; ".join(differences),
            checksum)


def snapshot_checksum(head: dict[str, Any]) -> tuple[str, str] | None:
    """Return the (algorithm, value) of the additional checksum a HEAD answer shows, None when it shows none."""
    found = sorted((name, value) for name, value in head.items()
                   if name.startswith("Checksum") and name not in ("ChecksumType", "ChecksumMode") and value)
    return (found[0][0].removeprefix("Checksum").upper(), str(found[0][1])) if found else None


# --------------------------------------------------------------------------- phase 07's steps


def wait_for_reports(ctx: RunContext, poll_seconds: float = 2.0) -> InventoryPair:
    """Return both buckets' fresh reports, waiting up to `verification.inventory_wait_minutes` for them.

    Looks again after a quarter of a second, then twice as long each time up to `poll_seconds`:
    a report being written now is found soon after it lands, a late one costs a listing every
    `poll_seconds`.
    """
    import time

    deadline = time.monotonic() + 60 * ctx.params.verification.inventory_wait_minutes
    pause = min(0.25, poll_seconds)
    while True:
        try:
            return locate_reports(ctx)
        except inventory_reports.InventoryNotReady:
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(poll_seconds, pause * 2)


def snapshot(ctx: RunContext, side: str) -> pd.DataFrame:
    """Return one bucket's versions as its fresh inventory lists them, in `snapshot`'s columns."""
    prepare(ctx)
    pair = wait_for_reports(ctx)
    return inventory_reports.read_versions(ctx.vault("s3"), pair.vault if side == "vault" else pair.recovery)


def content_note(content_checks: dict[str, int], record: dict[str, Any]) -> str:
    """Return, for the evidence, which content checks an inventory allowed and which the HEAD re-check added."""
    listed = content_checks.get("checksum_not_compared", 0) + content_checks.get("checksum_compared", 0)
    return (f"Read from S3 Inventory: sizes, ETags (multipart ones as they are) and delete markers were compared "
            f"for every version. An inventory lists each version's checksum algorithm but not the checksum, so "
            f"the additional checksums of the {listed:,} versions showing one were not compared in SQL; the HEAD "
            f"re-check read and compared those of {record.get('checksums_compared', 0):,} versions "
            f"({record.get('checksums_differing', 0):,} differing where the inventory showed the same content).")


def verify_from_inventory(
    ctx: RunContext, manifest: pd.DataFrame, report: pd.DataFrame, findings: list[str],
) -> verify.Comparison:
    """Return phase 07's comparison by inventory: SQL on the configured engine, then the HEAD re-check."""
    pair = wait_for_reports(ctx)
    compared = compare(ctx, pair, manifest, report, findings)
    checked, record = head_check(ctx, compared)
    evidence = {"method": "inventory", "engine": str(ctx.params.verification.engine),
                "reports": pair.as_record(), "head_check": record,
                "content_note": content_note(compared.content_checks, record)}
    return verify.Comparison(checked.verdict, checked.counts, checked.details, checked.findings,
                             checked.content_checks, evidence=evidence)
