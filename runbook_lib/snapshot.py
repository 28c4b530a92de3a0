"""The state of every object version of a bucket, as a DataFrame with Inventory-like columns.

Versions are listed page by page; each object version is HEADed through one shared client (boto3
clients are thread-safe) by a pool of threads while the next page is listed. Delete markers need
no HEAD: the listing says everything there is to know about them.

"unknown", never "none": HEAD carries the lock fields only when the caller may read them
(s3:GetObjectRetention, s3:GetObjectLegalHold) and silently leaves them out otherwise. So before
trusting an absent field, the snapshot asks GetObjectRetention and GetObjectLegalHold once per
bucket, about the first listed version that is not archived (and about the next ones, up to five,
while the answers say nothing about permissions). When a permission is missing, or no answer
settles it, an absent field reads "unknown" for every object version of the bucket, and
`verify.compare` refuses to call it equal.
A version whose HEAD fails keeps what the listing says, reads "unknown" wherever only HEAD could
tell, and names the error in `head_error`.

Progress goes to subscribers, always from the calling thread: after every listed page, and while
the last HEADs finish, at most every `PROGRESS_SECONDS`; the counts only grow, and the last call
has `listing_done` true and `done == listed`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from runbook_lib.accounts import error_code
from runbook_lib.errors import ParameterError, ParameterProblem, RunbookError

__all__ = [
    "COLUMNS",
    "HEAD_ERROR",
    "PROGRESS_SECONDS",
    "UNKNOWN",
    "SnapshotProgress",
    "progress_printer",
    "snapshot_bucket",
]

UNKNOWN = "unknown"
COLUMNS = [
    "key", "version_id", "is_latest", "is_delete_marker", "size", "etag", "last_modified",
    "storage_class", "replication_status", "encryption", "kms_key", "object_lock_mode",
    "object_lock_retain_until_date", "object_lock_legal_hold_status",
]
# Extra column: the error code of a failed HEAD, missing when the HEAD succeeded.
HEAD_ERROR = "head_error"
PROGRESS_SECONDS = 0.25
MAX_PAGE_SIZE = 1000

_TEXT_COLUMNS = (
    "key", "version_id", "etag", "storage_class", "replication_status", "encryption", "kms_key",
    "object_lock_mode", "object_lock_legal_hold_status", HEAD_ERROR,
)
_RETENTION_FIELDS = ("object_lock_mode", "object_lock_retain_until_date")
_HOLD_FIELDS = ("object_lock_legal_hold_status",)
# What only a HEAD can tell; all of it reads "unknown" when the HEAD fails.
_HEAD_FIELDS = ("replication_status", "encryption", "kms_key", *_RETENTION_FIELDS, *_HOLD_FIELDS)
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
# Answers that prove the caller may read the field, and that this version simply has none.
_NOTHING_TO_READ = frozenset(
    {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError", "InvalidRequest"})
# Archived versions may refuse the question for reasons of their own: ask about another version.
_ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Listed versions asked at most before an open question is settled as "unknown".
_PROBE_ATTEMPTS = 5


class SnapshotProgress(Protocol):
    """Receives (versions done, versions listed so far, listing finished)."""

    def on_progress(self, done: int, listed: int, listing_done: bool) -> None: ...


class _LockReadability:
    """Whether this caller may read retention and legal holds in the bucket, asked once per bucket.

    Each field is True (readable), False (refused or never settled) or None (not settled yet). An
    answer about one version that says nothing about permissions (it is archived, or was deleted
    meanwhile) leaves the field open, and the next listed version is asked instead.
    """

    def __init__(self, s3: Any, bucket: str) -> None:
        self._calls = {"retention": s3.get_object_retention, "legal_hold": s3.get_object_legal_hold}
        self._bucket = bucket
        self._attempts = 0
        self.readable: dict[str, bool | None] = {"retention": None, "legal_hold": None}

    def consider(self, row: dict[str, Any]) -> None:
        """Ask about the fields still open, using this listed object version."""
        open_fields = [name for name, state in self.readable.items() if state is None]
        if not open_fields or row["storage_class"] in _ARCHIVED or self._attempts >= _PROBE_ATTEMPTS:
            return
        self._attempts += 1
        for name in open_fields:
            self.readable[name] = _may_read(self._calls[name], self._bucket, row["key"], row["version_id"])

    def unreadable_fields(self) -> tuple[str, ...]:
        """Return the columns whose absence cannot be trusted to mean "none"."""
        fields: tuple[str, ...] = ()
        if self.readable["retention"] is not True:
            fields += _RETENTION_FIELDS
        if self.readable["legal_hold"] is not True:
            fields += _HOLD_FIELDS
        return fields


def snapshot_bucket(
    s3: Any,
    bucket: str,
    *,
    workers: int = 16,
    subscribers: Sequence[SnapshotProgress] = (),
    prefix: str = "",
    page_size: int = 1000,
) -> pd.DataFrame:
    """Return every version (and delete marker) of `bucket` with its lock, hold, replication and encryption state.

    Rows are in S3's listing order whatever the page size: by key, newest first. Columns are
    COLUMNS plus HEAD_ERROR.
    """
    _check_arguments(workers, page_size)
    rows: list[dict[str, Any]] = []
    finished: queue.SimpleQueue[tuple[int, Future[dict[str, Any]]]] = queue.SimpleQueue()
    progress = _Progress(subscribers)
    readability = _LockReadability(s3, bucket)
    pending = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-head")
    completed = False
    try:
        for page in _pages(s3, bucket, prefix, page_size):
            for version in page.get("Versions", []):
                row = _listed(version, is_delete_marker=False)
                readability.consider(row)
                _submit(pool, finished, len(rows), s3, bucket, row)
                rows.append(row)
                pending += 1
            markers = [_listed(marker, is_delete_marker=True) for marker in page.get("DeleteMarkers", [])]
            rows.extend(markers)
            progress.listed += len(page.get("Versions", [])) + len(markers)
            progress.add_done(len(markers))
            pending -= progress.add_done(_collect(rows, finished, block=False))
            progress.notify(listing_done=False)
        while pending:
            pending -= progress.add_done(_collect(rows, finished, block=True))
            progress.notify(listing_done=True, throttle=True)
        completed = True
    finally:
        # On an error or an interrupt, HEADs still queued would only delay it.
        pool.shutdown(wait=True, cancel_futures=not completed)
    progress.notify(listing_done=True)
    _mark_unknown(rows, readability.unreadable_fields())
    return _frame(rows)


def _check_arguments(workers: int, page_size: int) -> None:
    """Raise ParameterError listing every out-of-range tunable."""
    problems = []
    if not isinstance(workers, int) or workers < 1:
        problems.append(ParameterProblem("workers", workers, "a whole number of threads, 1 or more"))
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        problems.append(ParameterProblem("page_size", page_size, f"a whole number from 1 to {MAX_PAGE_SIZE}"))
    if problems:
        raise ParameterError(problems, source="snapshot_bucket")


# ----------------------------------------------------------------------------- listing


def _pages(s3: Any, bucket: str, prefix: str, page_size: int) -> Iterator[dict[str, Any]]:
    """Yield the pages of ListObjectVersions, turning a refusal into an error that says what to check."""
    paginator = s3.get_paginator("list_object_versions")
    try:
        yield from paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    except ClientError as error:
        raise RunbookError(
            f"cannot list the object versions of bucket {bucket!r}: {error_code(error)} ({error}). Check that the "
            "bucket exists in this profile's account and that the profile may s3:ListBucketVersions on it."
        ) from error


def _listed(entry: dict[str, Any], *, is_delete_marker: bool) -> dict[str, Any]:
    """Return a row with what the listing says about a version or a delete marker."""
    row: dict[str, Any] = {
        "key": entry["Key"],
        "version_id": entry.get("VersionId") or "null",
        "is_latest": bool(entry.get("IsLatest")),
        "is_delete_marker": is_delete_marker,
        "last_modified": _utc(entry.get("LastModified")),
    }
    if is_delete_marker:
        row.update(size=0, etag=None, storage_class=None)
    else:
        row.update(
            size=int(entry.get("Size", 0)),
            etag=str(entry.get("ETag", "")).strip('"'),
            storage_class=entry.get("StorageClass") or "STANDARD",
        )
    return row


def _utc(value: Any) -> Any:
    """Return a datetime in UTC (other values unchanged): botocore may hand back local-time zones."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


# ----------------------------------------------------------------------------- lock readability



def _may_read(call: Callable[..., Any], bucket: str, key: str, version_id: str) -> bool | None:
    """Return True when the answer proves the caller may read the field, False when refused, else None."""
    try:
        call(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as error:
        code = error_code(error)
        if code in _NOTHING_TO_READ:
            return True
        return False if code in _DENIED else None
    except BotoCoreError:
        return None
    return True


def _mark_unknown(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    """Write "unknown" where an object version's HEAD left out a field the caller may not read."""
    if not fields:
        return
    for row in rows:
        if row["is_delete_marker"]:
            continue
        for name in fields:
            # A value HEAD did send is the truth; only an absent one is in doubt.
            if row.get(name) is None:
                row[name] = UNKNOWN


# ----------------------------------------------------------------------------- HEAD


def _submit(
    pool: ThreadPoolExecutor,
    finished: queue.SimpleQueue[tuple[int, Future[dict[str, Any]]]],
    index: int,
    s3: Any,
    bucket: str,
    row: dict[str, Any],
) -> None:
    """Queue the HEAD of one version; its outcome lands in `finished` under the row's index."""
    future = pool.submit(_head, s3, bucket, row["key"], row["version_id"])
    future.add_done_callback(lambda done: finished.put((index, done)))


def _head(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """Return what HEAD tells about one version, "unknown" everywhere when it fails."""
    try:
        answer = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as error:
        return {**dict.fromkeys(_HEAD_FIELDS, UNKNOWN), HEAD_ERROR: error_code(error) or "HeadObjectFailed"}
    except BotoCoreError as error:
        return {**dict.fromkeys(_HEAD_FIELDS, UNKNOWN), HEAD_ERROR: type(error).__name__}
    return {
        "replication_status": answer.get("ReplicationStatus"),
        "encryption": answer.get("ServerSideEncryption"),
        "kms_key": answer.get("SSEKMSKeyId"),
        "object_lock_mode": answer.get("ObjectLockMode"),
        "object_lock_retain_until_date": _utc(answer.get("ObjectLockRetainUntilDate")),
        "object_lock_legal_hold_status": answer.get("ObjectLockLegalHoldStatus"),
    }


def _collect(
    rows: list[dict[str, Any]], finished: queue.SimpleQueue[tuple[int, Future[dict[str, Any]]]], *, block: bool
) -> int:
    """Merge finished HEADs into their rows and return how many; with `block`, wait for at least one."""
    merged = 0
    while True:
        try:
            index, future = finished.get(timeout=PROGRESS_SECONDS) if block and not merged else finished.get_nowait()
        except queue.Empty:
            return merged
        # A failure here is a bug, not an AWS answer (those are caught in _head): let it surface.
        rows[index].update(future.result())
        merged += 1


# ----------------------------------------------------------------------------- progress


class _Progress:
    """Counts versions listed and done, and tells the subscribers from the calling thread."""

    def __init__(self, subscribers: Sequence[SnapshotProgress]) -> None:
        self.subscribers = list(subscribers)
        self.listed = 0
        self.done = 0
        self._last_notice = 0.0

    def add_done(self, count: int) -> int:
        """Count `count` more versions as read and return it."""
        self.done += count
        return count

    def notify(self, *, listing_done: bool, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._last_notice < PROGRESS_SECONDS:
            return
        self._last_notice = now
        for subscriber in self.subscribers:
            subscriber.on_progress(self.done, self.listed, listing_done)


def progress_printer(label: str, every: int = 1000, emit: Callable[[str], None] = print) -> SnapshotProgress:
    """Return a subscriber that prints a line every `every` versions read, and once when all are read."""

    class _Printer:
        printed = 0
        finished = False

        def on_progress(self, done: int, listed: int, listing_done: bool) -> None:
            complete = listing_done and done == listed
            if self.finished or not (complete or done - self.printed >= every):
                return
            self.printed, self.finished = done, complete
            total = f"{listed:,}" if listing_done else f"{listed:,}+"
            emit(f"{label}: {done:,} of {total} versions read" + (" (complete)" if complete else ""))

    return _Printer()


# ----------------------------------------------------------------------------- frame


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the rows as a typed DataFrame in listing order (by key, newest first)."""

    def column(name: str) -> list[Any]:
        return [row.get(name) for row in rows]

    frame = pd.DataFrame({
        **{name: pd.array(column(name), dtype="string") for name in _TEXT_COLUMNS},
        "is_latest": pd.array(column("is_latest"), dtype=bool),
        "is_delete_marker": pd.array(column("is_delete_marker"), dtype=bool),
        "size": pd.array(column("size"), dtype="Int64"),
        "last_modified": pd.to_datetime(pd.Series(column("last_modified"), dtype=object), utc=True),
        "object_lock_retain_until_date": _retain_until(column("object_lock_retain_until_date")),
    })[[*COLUMNS, HEAD_ERROR]]
    # Pages split S3's order into versions and delete markers; put them back so that a frame does
    # not depend on the page size.
    ordered = frame.sort_values(["key", "last_modified"], ascending=[True, False], kind="stable")
    return ordered.reset_index(drop=True)


def _retain_until(values: list[Any]) -> pd.Series:
    """Return retain-until dates as UTC datetimes, or as ISO-8601 text when some read "unknown"."""
    if UNKNOWN not in values:
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    # A datetime column cannot hold "unknown"; text keeps both, and verify reads either.
    text = [value if value is None or value == UNKNOWN else value.isoformat() for value in values]
    return pd.Series(pd.array(text, dtype="string"))
