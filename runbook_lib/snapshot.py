"""The state of every object version of a bucket, as a DataFrame with Inventory-like columns.

Versions are listed page by page; each page's versions are HEADed in parallel through one shared
client (boto3 clients are thread-safe) while the next page is listed. HEAD carries the lock fields
only when the caller may read them (s3:GetObjectRetention, s3:GetObjectLegalHold) and silently omits
them otherwise, so before trusting an absent value the snapshot asks GetObjectRetention and
GetObjectLegalHold once: when those are denied, the field is "unknown" for the whole bucket, never
"none".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import pandas as pd
from botocore.exceptions import ClientError

__all__ = ["COLUMNS", "UNKNOWN", "SnapshotProgress", "snapshot_bucket"]

UNKNOWN = "unknown"
COLUMNS = [
    "key", "version_id", "is_latest", "is_delete_marker", "size", "etag", "last_modified",
    "storage_class", "replication_status", "encryption", "kms_key", "object_lock_mode",
    "object_lock_retain_until_date", "object_lock_legal_hold_status",
]
_DENIED = ("AccessDenied", "403", "Forbidden")


class SnapshotProgress(Protocol):
    """Receives (versions done, versions listed so far, listing finished)."""

    def on_progress(self, done: int, listed: int, listing_done: bool) -> None: ...


@dataclass
class _Readable:
    retention: bool = True
    legal_hold: bool = True


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _probe_lock_readability(s3: Any, bucket: str, key: str, version_id: str) -> _Readable:
    """Return whether this caller may read retention and legal holds, asked once per bucket."""
    readable = _Readable()
    for field, call in (("retention", s3.get_object_retention), ("legal_hold", s3.get_object_legal_hold)):
        try:
            call(Bucket=bucket, Key=key, VersionId=version_id)
        except ClientError as error:
            if _code(error) in _DENIED:
                setattr(readable, field, False)
    return readable


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return value


def _head(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    try:
        answer = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as error:
        return {"head_error": _code(error) or "HeadFailed"}
    return {
        "replication_status": answer.get("ReplicationStatus"),
        "encryption": answer.get("ServerSideEncryption"),
        "kms_key": answer.get("SSEKMSKeyId"),
        "object_lock_mode": answer.get("ObjectLockMode"),
        "object_lock_retain_until_date": _utc(answer.get("ObjectLockRetainUntilDate")),
        "object_lock_legal_hold_status": answer.get("ObjectLockLegalHoldStatus"),
    }


def snapshot_bucket(
    s3: Any,
    bucket: str,
    *,
    workers: int = 16,
    subscribers: Sequence[SnapshotProgress] = (),
    prefix: str = "",
    page_size: int = 1000,
) -> pd.DataFrame:
    """Return every version (and delete marker) of `bucket` with its lock, hold, replication and encryption state."""
    rows: list[dict[str, Any]] = []
    futures: list[tuple[int, Future[dict[str, Any]]]] = []
    readable: _Readable | None = None
    done = 0
    lock = threading.Lock()

    def report(listing_done: bool) -> None:
        for subscriber in subscribers:
            subscriber.on_progress(done, len(rows), listing_done)

    def finished(_: Future[dict[str, Any]]) -> None:
        nonlocal done
        with lock:
            done += 1

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot") as pool:
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
            for version in page.get("Versions", []):
                index = len(rows)
                rows.append({
                    "key": version["Key"], "version_id": version.get("VersionId", "null"),
                    "is_latest": bool(version.get("IsLatest")), "is_delete_marker": False,
                    "size": int(version.get("Size", 0)), "etag": str(version.get("ETag", "")).strip('"'),
                    "last_modified": _utc(version.get("LastModified")),
                    "storage_class": version.get("StorageClass", "STANDARD"),
                })
                if readable is None:
                    readable = _probe_lock_readability(s3, bucket, version["Key"], rows[index]["version_id"])
                future = pool.submit(_head, s3, bucket, version["Key"], rows[index]["version_id"])
                future.add_done_callback(finished)
                futures.append((index, future))
            for marker in page.get("DeleteMarkers", []):
                rows.append({
                    "key": marker["Key"], "version_id": marker.get("VersionId", "null"),
                    "is_latest": bool(marker.get("IsLatest")), "is_delete_marker": True, "size": 0,
                    "etag": None, "last_modified": _utc(marker.get("LastModified")), "storage_class": None,
                })
            report(False)
        for index, future in futures:
            rows[index].update(future.result())
    report(True)
    return _frame(rows, readable or _Readable())


def _frame(rows: list[dict[str, Any]], readable: _Readable) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "head_error"])
    frame["object_lock_retain_until_date"] = frame["object_lock_retain_until_date"].astype(object)
    objects = ~frame["is_delete_marker"].astype(bool)
    if not readable.retention:
        frame.loc[objects, "object_lock_mode"] = UNKNOWN
        frame.loc[objects, "object_lock_retain_until_date"] = UNKNOWN
    if not readable.legal_hold:
        frame.loc[objects, "object_lock_legal_hold_status"] = UNKNOWN
    failed_heads = frame["head_error"].notna()
    frame.loc[failed_heads, ["object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status"]] = UNKNOWN
    typed = frame.astype({
        "key": "string", "version_id": "string", "is_latest": "bool", "is_delete_marker": "bool",
        "size": "Int64", "etag": "string", "storage_class": "string", "replication_status": "string",
        "encryption": "string", "kms_key": "string", "object_lock_mode": "string",
        "object_lock_legal_hold_status": "string", "head_error": "string",
    })
    typed["last_modified"] = pd.to_datetime(typed["last_modified"], utc=True)
    retain = typed["object_lock_retain_until_date"]
    if not (retain == UNKNOWN).any():
        typed["object_lock_retain_until_date"] = pd.to_datetime(retain, utc=True)
    return typed


def progress_printer(label: str, every: int = 1000, emit: Callable[[str], None] = print) -> SnapshotProgress:
    """Return a subscriber that prints a line every `every` versions and when done."""

    class _Printer:
        last = 0

        def on_progress(self, done: int, listed: int, listing_done: bool) -> None:
            if listing_done or done - self.last >= every:
                self.last = done
                emit(f"{label}: {done:,} of {listed:,} versions read" + (" (listing complete)" if listing_done else ""))

    return _Printer()
