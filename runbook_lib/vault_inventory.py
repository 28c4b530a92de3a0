"""Phase 00's read of a vault bucket from an S3 Inventory report the vault already has.

Phase 00 shows figures of every vault version before anything is created: the estimate, the
point in time, the archived versions to restore, and the locked-copy commitment. Read by HEAD,
that is a HEAD (and sometimes a GetObjectLegalHold) per version: hours at 10^8 versions, and about
$0.40 per million on AWS. When `verification.method` is `inventory` or `auto`, phase 00 reads them
instead from the newest report of an inventory the vault bucket already has, and creates nothing:

- the configuration `verification.vault_inventory_id` names, else every configuration of the
  bucket (this run's own, made by an earlier attempt's phase 07, among them) that can stand for
  the whole bucket: enabled, every version (IncludedObjectVersions All), no filter, Parquet or
  ORC, with every field the comparison reads;
- of those, the newest report that passes `inventory_reports`' checks (manifest checksum, source
  bucket, schema, every data file's size and MD5).

The figures are then as of the report's creation, which phase 00 prints and the run state keeps
(`VaultRead.as_record`). Where no configuration qualifies, or none has delivered a report, or a
report fails its checks, phase 00 says why and reads by HEAD, as `verification.method: head` does.
Only the figures come from the report: phase 07's verdict reads reports made after the job ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import aws_facts, inventory_reports, inventory_setup, snapshot
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext
from runbook_lib.errors import ReportError
from runbook_lib.inventory_reports import InventoryNotReady, InventoryReport

__all__ = [
    "VaultRead",
    "configurations_of",
    "find_report",
    "from_inventory",
    "read_vault",
    "reads_inventory",
    "report_words",
    "usable_configuration",
]


@dataclass(frozen=True)
class VaultRead:
    """One vault bucket's versions as phase 00 read them, and from where."""

    bucket: str
    versions: pd.DataFrame
    report: InventoryReport | None = None  # None: listed and read with HEAD
    note: str = ""  # why no report was used, when none was

    @property
    def source(self) -> str:
        """Return how the versions were read: inventory or head."""
        return "inventory" if self.report is not None else "head"

    def describe(self) -> str:
        """Return in words where the figures come from, as phase 00 prints it."""
        if self.report is None:
            return f"{self.bucket}: every version listed and read with HEAD" + (f" ({self.note})" if self.note else "")
        return (f"{self.bucket}: read from the inventory report s3://{self.report.bucket}/{self.report.manifest_key}, "
                f"started {self.report.created:%Y-%m-%dT%H:%M:%SZ}; versions written since then are not counted")

    def as_record(self) -> dict[str, Any]:
        """Return where the versions were read from, for the run state and the evidence."""
        record: dict[str, Any] = {"bucket": self.bucket, "source": self.source, "versions": len(self.versions)}
        if self.report is not None:
            record.update(manifest=f"s3://{self.report.bucket}/{self.report.manifest_key}",
                          created=self.report.created.isoformat(), files=len(self.report.files))
        elif self.note:
            record["note"] = self.note
        return record


def report_words(record: dict[str, Any]) -> str:
    """Return the report an inventory read record (`VaultRead.as_record`) names, as every page words it."""
    return f"inventory report {record['manifest']} of {record['created'][:16]}Z"


def reads_inventory(ctx: RunContext) -> bool:
    """Return whether phase 00 looks for a vault inventory report (verification.method inventory or auto)."""
    return str(ctx.params.verification.method) in ("inventory", "auto")


def usable_configuration(config: dict[str, Any]) -> str:
    """Return why an inventory configuration cannot stand for the whole bucket ("" when it can)."""
    destination = config.get("Destination", {}).get("S3BucketDestination", {})
    fields = set(config.get("OptionalFields") or [])
    missing = [name for name in inventory_setup.INVENTORY_FIELDS if name not in fields]
    if not config.get("IsEnabled"):
        return "it is disabled"
    if config.get("IncludedObjectVersions") != "All":
        return "it lists current versions only (IncludedObjectVersions is not All)"
    if config.get("Filter"):
        return "it lists only part of the bucket (it has a Filter)"
    if destination.get("Format") not in ("Parquet", "ORC"):
        return f"its format is {destination.get('Format')}, not Parquet or ORC"
    if missing:
        return f"it lacks the fields {', '.join(missing)}"
    return ""


def configurations_of(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Return every inventory configuration of the bucket (ListBucketInventoryConfigurations, page by page)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = s3.list_bucket_inventory_configurations(Bucket=bucket, **({"ContinuationToken": token} if token else {}))
        found += [dict(config) for config in page.get("InventoryConfigurationList", [])]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return found


def find_report(ctx: RunContext) -> tuple[InventoryReport | None, str]:
    """Return the vault bucket's newest checked report of a configuration that qualifies, or None and why not."""
    s3 = ctx.vault("s3")
    bucket = ctx.params.pair.vault_bucket
    try:
        configurations = configurations_of(s3, bucket)
    except ClientError as error:
        return None, f"its inventory configurations cannot be listed ({error_code(error)})"
    named = ctx.params.verification.vault_inventory_id
    if named:
        configurations = [config for config in configurations if config.get("Id") == named]
        if not configurations:
            return None, f"verification.vault_inventory_id names {named!r}, which the bucket does not have"
    reasons: list[str] = []
    reports: list[InventoryReport] = []
    for config in configurations:
        config_id = str(config.get("Id"))
        why = usable_configuration(config)
        if not why:
            destination = config["Destination"]["S3BucketDestination"]
            try:
                report = inventory_reports.latest_report(
                    s3, aws_facts.bucket_name_of_arn(str(destination["Bucket"])), destination.get("Prefix") or None,
                    bucket, config_id)
                inventory_reports.verify_files(s3, report)
                reports.append(report)
            except InventoryNotReady:
                why = "it has delivered no report yet"
            except ReportError as error:
                why = f"its newest report fails its checks: {error}"
            except ClientError as error:
                why = f"its reports cannot be read ({error_code(error)})"
        if why:
            reasons.append(f"configuration {config_id}: {why}")
    if reports:
        return max(reports, key=lambda report: report.created), ""
    if not configurations:
        return None, "the bucket has no inventory configuration"
    return None, "; ".join(reasons)


def from_inventory(ctx: RunContext) -> VaultRead | None:
    """Return the vault bucket's versions from its newest usable inventory report; None (said once) when none is usable.

    Looked up once per context, so every figure of phase 00 comes from the same report (a delivered
    report never changes; a newer one has another manifest).
    """
    if not reads_inventory(ctx):
        return None
    bucket = ctx.params.pair.vault_bucket
    cache_key = f"vault inventory of {bucket}"
    found = ctx.reads.get(cache_key)
    if found is None:
        report, note = find_report(ctx)
        if report is None:
            found = f"no usable inventory report: {note}"
            print(f"{bucket}: {found}; its versions are listed and read with HEAD instead")
        else:
            found = VaultRead(bucket, inventory_reports.read_versions(ctx.vault("s3"), report), report)
            print(f"{found.describe()} ({len(found.versions):,} rows)")
        ctx.reads[cache_key] = found
    return found if isinstance(found, VaultRead) else None


def read_vault(ctx: RunContext) -> VaultRead:
    """Return every version of the vault bucket for phase 00: from its inventory (`from_inventory`), else by HEAD."""
    found = from_inventory(ctx)
    if found is not None:
        return found
    bucket = ctx.params.pair.vault_bucket
    note = ctx.reads.get(f"vault inventory of {bucket}")
    versions = snapshot.snapshot_bucket(ctx.vault("s3"), bucket, workers=ctx.params.verification.head_workers,
                                        subscribers=[snapshot.progress_printer("vault")])
    return VaultRead(bucket, versions, None, note if isinstance(note, str) else "")
