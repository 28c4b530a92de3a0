"""Find a bucket's latest S3 Inventory report, and believe it only after checking it.

S3 writes each report under `<prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/` as
`manifest.json` (the index: source bucket, creation time, format, schema, data files with size and
MD5) and `manifest.checksum` (the MD5 of manifest.json), with the data files under `data/` and a
`hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt` for Athena. Before a report is used:

- its manifest.json must match manifest.checksum, name the source bucket, be Parquet or ORC, and
  carry every column verification compares (a configuration without the Object Lock fields
  cannot prove a recovery): otherwise ReportError, and the verification fails;
- every data file must have the size and MD5 the manifest lists (from the ETag where S3 computed
  it from a single-part upload, else by reading the file): otherwise ReportError;
- it must have been started after the jobs it is to judge ended (`creationTimestamp`): an older
  report, or none at all, raises InventoryNotReady, and the verification cannot conclude. S3
  delivers daily or weekly, the first report up to 48 hours after the configuration is made.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib.errors import ReportError, RunbookError

__all__ = [
    "REQUIRED_COLUMNS",
    "InventoryNotReady",
    "InventoryReport",
    "check_fresh",
    "download_files",
    "latest_report",
    "read_versions",
    "report_base",
    "verify_files",
]

# The inventory columns the comparison reads; a report without any of them cannot prove a recovery.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "key", "version_id", "is_delete_marker", "size", "last_modified_date", "e_tag", "storage_class",
    "replication_status", "object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status",
)
_FOLDER = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/$")
_PARQUET_FIELD = re.compile(r"(?:required|optional|repeated)\s+\w+\s+(\w+)")


class InventoryNotReady(RunbookError):
    """No inventory report new enough to judge the recovery exists yet; verification cannot conclude."""

    def __init__(self, message: str, bucket: str = "") -> None:
        super().__init__(message)
        self.bucket = bucket


def _not_delivered(bucket: str) -> str:
    return (f"the inventory report for bucket {bucket} has not been delivered since the job ended; "
            "re-run phase 07 after it is")


@dataclass(frozen=True)
class InventoryReport:
    """One delivered inventory report, checked against its checksum: where it is and what it holds."""

    source_bucket: str
    bucket: str
    base: str
    manifest_key: str
    created: datetime
    file_format: str
    columns: tuple[str, ...]
    files: tuple[tuple[str, int, str], ...]  # key, size, MD5 hex

    @property
    def dt(self) -> str:
        """Return the report's hive partition value (`dt=` of its symlink.txt folder)."""
        return self.created.strftime("%Y-%m-%d-%H-%M")

    @property
    def hive_location(self) -> str:
        """Return the s3:// URL of the report's hive folder, the LOCATION of an Athena table over it."""
        return f"s3://{self.bucket}/{self.base}/hive/"


def report_base(prefix: str | None, source_bucket: str, config_id: str) -> str:
    """Return the key prefix under which S3 delivers this configuration's reports."""
    return f"{prefix}/{source_bucket}/{config_id}" if prefix else f"{source_bucket}/{config_id}"


def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _columns(schema: str, file_format: str) -> tuple[str, ...]:
    if file_format == "Parquet":
        return tuple(name.lower() for name in _PARQUET_FIELD.findall(schema))
    inner = schema[schema.find("<") + 1: schema.rfind(">")]
    return tuple(part.split(":", 1)[0].strip().lower() for part in inner.split(",") if part.strip())


def latest_report(s3: Any, bucket: str, prefix: str | None, source_bucket: str, config_id: str) -> InventoryReport:
    """Return the newest complete report of that configuration, its manifest checked; InventoryNotReady if none."""
    base = report_base(prefix, source_bucket, config_id)
    folders: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base + "/", Delimiter="/"):
        for entry in page.get("CommonPrefixes", []):
            matched = _FOLDER.search(entry["Prefix"])
            if matched:
                folders.append(matched.group(1))
    for folder in sorted(folders, reverse=True):
        manifest_key = f"{base}/{folder}/manifest.json"
        body = _get(s3, bucket, manifest_key)
        if body is None:
            continue  # S3 writes manifest.json last: this report is still being written
        return _checked(s3, bucket, base, manifest_key, body, source_bucket)
    raise InventoryNotReady(
        f"{_not_delivered(source_bucket)}: no inventory report of s3://{source_bucket} (configuration {config_id}) "
        f"is in s3://{bucket}/{base}/ yet; S3 delivers the first one up to 48 hours after the configuration is "
        "created. Re-run verification then.", source_bucket)


def _checked(s3: Any, bucket: str, base: str, manifest_key: str, body: bytes, source_bucket: str) -> InventoryReport:
    """Return the report a manifest.json describes, after checking it against its checksum and contents."""
    where = f"s3://{bucket}/{manifest_key}"
    checksum = _get(s3, bucket, manifest_key.rsplit("/", 1)[0] + "/manifest.checksum")
    if checksum is None:
        raise ReportError(f"the inventory manifest {where} has no manifest.checksum next to it; it cannot be trusted")
    if checksum.decode(errors="replace").strip().lower() != hashlib.md5(body).hexdigest():
        raise ReportError(f"the inventory manifest {where} does not match its manifest.checksum: it was changed "
                          "after S3 wrote it, or is incomplete; it cannot be trusted")
    try:
        index = json.loads(body)
        file_format = str(index["fileFormat"])
        schema = str(index["fileSchema"])
        created = datetime.fromtimestamp(int(index["creationTimestamp"]) / 1000, tz=timezone.utc)
        files = tuple((str(f["key"]), int(f["size"]), str(f["MD5checksum"]).lower()) for f in index["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise ReportError(f"the inventory manifest {where} is not an S3 Inventory manifest.json ({error})") from None
    if index.get("sourceBucket") != source_bucket:
        raise ReportError(f"the inventory manifest {where} lists bucket {index.get('sourceBucket')!r}, "
                          f"not {source_bucket!r}")
    if file_format not in ("Parquet", "ORC"):
        raise ReportError(f"the inventory {where} is {file_format}; verification reads Parquet or ORC inventories "
                          "(set the configuration's format to Parquet)")
    columns = _columns(schema, file_format)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ReportError(
            f"the inventory {where} lacks {', '.join(missing)}; add the fields ({', '.join(missing)}) and "
            "IncludedObjectVersions All to its configuration, and wait for the next report")
    return InventoryReport(source_bucket, bucket, base, manifest_key, created, file_format, columns, files)


def check_fresh(report: InventoryReport, not_before: datetime | None, what: str) -> None:
    """Raise InventoryNotReady when the report was started before `not_before` (the jobs' end)."""
    if not_before is not None and report.created < not_before:
        raise InventoryNotReady(
            f"{_not_delivered(report.source_bucket)}: the newest inventory report of s3://{report.source_bucket} "
            "was started at "
            f"{report.created:%Y-%m-%dT%H:%M:%SZ}, before {what} ended at {not_before:%Y-%m-%dT%H:%M:%SZ}: it cannot "
            "show what the job did. Wait for the next daily report and verify again.", report.source_bucket)


def verify_files(s3: Any, report: InventoryReport) -> None:
    """Check every data file's size and MD5 against the manifest without copying it where S3's ETag tells the MD5."""
    for key, size, md5 in report.files:
        where = f"s3://{report.bucket}/{key}"
        try:
            head = s3.head_object(Bucket=report.bucket, Key=key)
        except ClientError as error:
            raise ReportError(f"the inventory file {where} listed in {report.manifest_key} cannot be read "
                              f"({error.response.get('Error', {}).get('Code')})") from None
        if int(head["ContentLength"]) != size:
            raise ReportError(f"the inventory file {where} has {head['ContentLength']} bytes, not the {size} "
                              "its manifest lists")
        etag = str(head.get("ETag", "")).strip('"').lower()
        if "-" in etag:  # a multipart upload's ETag is not the MD5 of the file: read it
            _checked_body(s3, report.bucket, key, md5)
        elif etag != md5:
            raise ReportError(f"the inventory file {where} does not match the MD5 checksum its manifest lists")


def _checked_body(s3: Any, bucket: str, key: str, md5: str) -> bytes:
    body = bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if hashlib.md5(body).hexdigest() != md5:
        raise ReportError(f"the inventory file s3://{bucket}/{key} does not match the MD5 checksum its manifest lists")
    return body


def download_files(s3: Any, report: InventoryReport, folder: Path) -> list[Path]:
    """Copy every data file into `folder`, each checked against the manifest's MD5, and return the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for number, (key, _, md5) in enumerate(report.files):
        path = folder / f"part-{number:05d}.{report.file_format.lower()}"
        path.write_bytes(_checked_body(s3, report.bucket, key, md5))
        copies.append(path)
    return copies


def read_versions(s3: Any, report: InventoryReport) -> pd.DataFrame:
    """Return every version and delete marker a checked report lists, in `snapshot`'s columns, newest first per key.

    What an inventory cannot tell reads as missing: the KMS key, the checksum itself, and whether a
    version is the latest where the report has no IsLatest.
    """
    import tempfile

    import pyarrow as pa
    import pyarrow.orc as orc
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="inventory-") as folder:
        files = download_files(s3, report, Path(folder))
        reader = pq.read_table if report.file_format == "Parquet" else orc.read_table
        table = pa.concat_tables([reader(str(path)) for path in files], promote_options="default")
    wanted = [*REQUIRED_COLUMNS, *(name for name in ("is_latest",) if name in table.column_names)]
    rows = table.select(wanted).to_pandas()
    markers = rows["is_delete_marker"].fillna(False).astype(bool)
    latest = (pd.array(rows["is_latest"], dtype="boolean") if "is_latest" in rows
              else pd.array([pd.NA] * len(rows), dtype="boolean"))
    frame = pd.DataFrame({
        "key": rows["key"].astype("string"),
        "version_id": rows["version_id"].astype("string").fillna("null").replace("", "null"),
        "is_latest": latest,
        "is_delete_marker": markers.to_numpy(),
        "size": pd.array(rows["size"].where(~markers, 0), dtype="Int64"),
        "etag": rows["e_tag"].astype("string"),
        "last_modified": pd.to_datetime(rows["last_modified_date"], utc=True),
        "storage_class": rows["storage_class"].astype("string"),
        "replication_status": rows["replication_status"].astype("string").replace("", pd.NA),
        "encryption": pd.array([pd.NA] * len(rows), dtype="string"),
        "kms_key": pd.array([pd.NA] * len(rows), dtype="string"),
        "object_lock_mode": rows["object_lock_mode"].astype("string").str.upper(),
        "object_lock_retain_until_date": pd.to_datetime(rows["object_lock_retain_until_date"], utc=True),
        "object_lock_legal_hold_status": rows["object_lock_legal_hold_status"].astype("string").str.upper(),
    })
    return frame.sort_values(["key", "last_modified"], ascending=[True, False], kind="stable").reset_index(drop=True)
