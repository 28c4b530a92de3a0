"""The state of every object version of a bucket, as a DataFrame with Inventory-like columns.

Versions are listed page by page; each object version is HEADed through one shared client (boto3
clients are thread-safe) by a pool of threads while the next page is listed. The listing stays at
most QUEUED_PER_WORKER versions per worker ahead of the reads. Delete markers need no HEAD: the
listing says everything there is to know about them.

"unknown", never "none": HEAD carries the lock fields only when the caller may read them
(s3:GetObjectRetention, s3:GetObjectLegalHold) and silently leaves them out otherwise, and a bucket
policy may refuse them for some objects only (a Deny on a prefix). So, in a bucket with Object Lock
(GetObjectLockConfiguration, asked once), a version whose HEAD shows no retention is asked
GetObjectRetention, and one whose HEAD shows no legal hold is asked GetObjectLegalHold, in the same
worker right after its HEAD. NoSuchObjectLockConfiguration confirms "none"; a refusal, or any answer
that settles nothing, makes that field "unknown" for that version only, and `verify.compare` refuses
to call it equal. A bucket without Object Lock cannot hold retention or holds: it needs no extra call.
A version whose HEAD fails keeps what the listing says, reads "unknown" wherever only HEAD could
tell, and names the error in `head_error`.

HEAD asks for the version's additional checksum (ChecksumMode=ENABLED): `checksum_algorithm` and
`checksum` hold it (none when the version has none). For an SSE-KMS object that has one, AWS also
wants kms:Decrypt on its key before it shows the checksum; a HEAD refused with checksums asked is
asked again without, and only the checksum reads "unknown".

Throttling is never a denial. botocore retries a throttled call first (the client's retry config);
when SlowDown, 503 or another throttling answer outlasts that, the call is tried again after a
growing pause, up to THROTTLE_ROUNDS times, and then the snapshot stops with a ThrottlingError that
names the cause: concluding "unknown" or "denied" from it would be wrong.

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

from runbook_lib.accounts import error_code, is_throttling, retry_throttled
from runbook_lib.errors import InvalidArguments, ParameterProblem, SnapshotError, ThrottlingError

__all__ = [
    "COLUMNS",
    "HEAD_ERROR",
    "PROGRESS_SECONDS",
    "QUEUED_PER_WORKER",
    "THROTTLE_ROUNDS",
    "UNKNOWN",
    "SnapshotProgress",
    "progress_printer",
    "snapshot_bucket",
]

UNKNOWN = "unknown"
COLUMNS = [
    "key", "version_id", "is_latest", "is_delete_marker", "size", "etag", "last_modified",
    "storage_class", "replication_status", "encryption", "kms_key", "object_lock_mode",
    "object_lock_retain_until_date", "object_lock_legal_hold_status", "checksum_algorithm", "checksum",
]
# Extra column: the error code of a failed HEAD, missing when the HEAD succeeded.
HEAD_ERROR = "head_error"
PROGRESS_SECONDS = 0.25
# Versions listed but not yet read, per worker, before the listing waits for the reads. Without a
# bound, the listing ran far ahead of the HEADs: on a 10^6-version vault it competed with them for
# the interpreter and left hundreds of thousands of queued reads (a future each) in memory.
QUEUED_PER_WORKER = 64
MAX_PAGE_SIZE = 1000

_TEXT_COLUMNS = (
    "key", "version_id", "etag", "storage_class", "replication_status", "encryption", "kms_key",
    "object_lock_mode", "object_lock_legal_hold_status", "checksum_algorithm", "checksum", HEAD_ERROR,
)
_RETENTION_FIELDS = ("object_lock_mode", "object_lock_retain_until_date")
_HOLD_FIELDS = ("object_lock_legal_hold_status",)
# What only a HEAD can tell; all of it reads "unknown" when the HEAD fails.
_CHECKSUM_FIELDS = ("checksum_algorithm", "checksum")
_HEAD_FIELDS = ("replication_status", "encryption", "kms_key", *_RETENTION_FIELDS, *_HOLD_FIELDS, *_CHECKSUM_FIELDS)
# HEAD's answer names an additional checksum ChecksumCRC32, ChecksumSHA256, ...; these two are not one.
_NOT_A_CHECKSUM = frozenset({"ChecksumType", "ChecksumMode"})
# A HEAD refused with these may have been refused for its checksum alone (kms:Decrypt).
_REFUSED = frozenset({"403", "AccessDenied"})
# Answers that prove the caller may read the field, and that this version simply has none.
_NOTHING_TO_READ = frozenset(
    {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError", "InvalidRequest"})
# The answer to GetObjectLockConfiguration of a bucket without Object Lock.
_NO_LOCK_CONFIGURATION = frozenset({"ObjectLockConfigurationNotFoundError"})
# Rounds of our own retries of a throttled call (each round is botocore's retries), and the pause
# before the first; pauses double, with jitter, up to the cap.
THROTTLE_ROUNDS = 4
THROTTLE_PAUSE_SECONDS = 1.0
THROTTLE_PAUSE_CAP_SECONDS = 8.0
# How a worker waits between rounds (tests replace it to run without waiting).
_sleep = time.sleep


class SnapshotProgress(Protocol):
    """Receives (versions done, versions listed so far, listing finished)."""

    def on_progress(self, done: int, listed: int, listing_done: bool) -> None: ...


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
    lock_enabled = _object_lock_enabled(s3, bucket)
    pending = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-head")
    completed = False
    try:
        for page in _pages(s3, bucket, prefix, page_size):
            for version in page.get("Versions", []):
                if pending >= workers * QUEUED_PER_WORKER:
                    # Wait until half the queue is read, not for one read at a time: fewer wake-ups.
                    while pending > workers * QUEUED_PER_WORKER // 2:
                        pending -= progress.add_done(_collect(rows, finished, block=True))
                row = _listed(version, is_delete_marker=False)
                _submit(pool, finished, len(rows), _Reader(s3, bucket, lock_enabled), row)
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
    return _frame(rows)


def _check_arguments(workers: int, page_size: int) -> None:
    """Raise InvalidArguments listing every out-of-range tunable (they come from code, never from the user)."""
    problems = []
    if not isinstance(workers, int) or workers < 1:
        problems.append(ParameterProblem("workers", workers, "a whole number of threads, 1 or more"))
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        problems.append(ParameterProblem("page_size", page_size, f"a whole number from 1 to {MAX_PAGE_SIZE}"))
    if problems:
        raise InvalidArguments(problems, "snapshot_bucket")


# ----------------------------------------------------------------------------- listing


def _pages(s3: Any, bucket: str, prefix: str, page_size: int) -> Iterator[dict[str, Any]]:
    """Yield the pages of ListObjectVersions (each retried when throttled); a refusal says what to check."""
    markers: dict[str, str] = {}
    while True:
        try:
            page: dict[str, Any] = _retry_throttled(
                s3.list_object_versions, f"bucket {bucket!r}",
                Bucket=bucket, Prefix=prefix, MaxKeys=page_size, **markers,
            )
        except ClientError as error:
            raise SnapshotError(
                f"cannot list the object versions of bucket {bucket!r}: {error_code(error)} ({error}). Check that "
                "the bucket exists in this profile's account and that the profile may s3:ListBucketVersions on it.",
                bucket,
                error_code(error),
            ) from error
        yield page
        if not page.get("IsTruncated"):
            return
        markers = {"KeyMarker": page.get("NextKeyMarker", ""), "VersionIdMarker": page.get("NextVersionIdMarker", "")}


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
        row.update(size=0, etag=None, storage_class=None, checksum_algorithm=None, checksum=None)
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


# ----------------------------------------------------------------------------- throttling


def _retry_throttled(call: Callable[..., Any], subject: str, **arguments: Any) -> Any:
    """Return the call's answer, trying again after a pause while it is throttled; ThrottlingError after the last round.

    Any other error is raised as it is, for the caller to judge.
    """
    try:
        return retry_throttled(call, attempts=THROTTLE_ROUNDS, pause=THROTTLE_PAUSE_SECONDS,
                               cap=THROTTLE_PAUSE_CAP_SECONDS, sleep=_sleep, **arguments)
    except ClientError as last:
        if not is_throttling(last):
            raise
        raise ThrottlingError(
            f"S3 kept throttling {last.operation_name} on {subject} ({error_code(last)}, \"please reduce your "
            f"request rate\") through {THROTTLE_ROUNDS} rounds of retries, so the snapshot stopped without "
            "concluding anything about it. Lower verification.head_workers (fewer parallel requests), or run the "
            "verification again later.",
            last.operation_name, error_code(last),
        ) from last


# ----------------------------------------------------------------------------- lock fields


def _object_lock_enabled(s3: Any, bucket: str) -> bool:
    """Return False only when the bucket provably has no Object Lock (then no version can hold a lock field)."""
    try:
        answer = _retry_throttled(s3.get_object_lock_configuration, f"bucket {bucket!r}", Bucket=bucket)
    except ClientError as error:
        # Refused or unsettled: assume Object Lock, so every absent field is confirmed per version.
        return error_code(error) not in _NO_LOCK_CONFIGURATION
    except BotoCoreError:
        return True
    return bool(answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")


def _confirm_retention(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """Return the retention fields of a version whose HEAD showed none: none, its retention, or "unknown"."""
    answer = _confirm(s3.get_object_retention, bucket, key, version_id)
    if answer is None:
        return dict.fromkeys(_RETENTION_FIELDS, UNKNOWN)
    retention = answer.get("Retention", {})
    return {"object_lock_mode": retention.get("Mode"),
            "object_lock_retain_until_date": _utc(retention.get("RetainUntilDate"))}


def _confirm_legal_hold(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """Return the legal hold of a version whose HEAD showed none: none, its status, or "unknown"."""
    answer = _confirm(s3.get_object_legal_hold, bucket, key, version_id)
    if answer is None:
        return {"object_lock_legal_hold_status": UNKNOWN}
    return {"object_lock_legal_hold_status": answer.get("LegalHold", {}).get("Status")}


def _confirm(call: Callable[..., Any], bucket: str, key: str, version_id: str) -> dict[str, Any] | None:
    """Return the call's answer ({} when it proves there is nothing to read), or None when it settles nothing."""
    subject = f"s3://{bucket}/{key} (version {version_id})"
    try:
        answer: dict[str, Any] = _retry_throttled(call, subject, Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as error:
        # Refused, or an answer about something else (deleted since the listing, an internal error).
        return {} if error_code(error) in _NOTHING_TO_READ else None
    except BotoCoreError:
        return None
    return answer


# ----------------------------------------------------------------------------- HEAD


class _Reader:
    """What a worker needs to read one version: the client, the bucket, and whether it has Object Lock."""

    def __init__(self, s3: Any, bucket: str, lock_enabled: bool) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.lock_enabled = lock_enabled


def _submit(
    pool: ThreadPoolExecutor,
    finished: queue.SimpleQueue[tuple[int, Future[dict[str, Any]]]],
    index: int,
    reader: _Reader,
    row: dict[str, Any],
) -> None:
    """Queue the reading of one version; its outcome lands in `finished` under the row's index."""
    future = pool.submit(_read_version, reader, row["key"], row["version_id"])
    future.add_done_callback(lambda done: finished.put((index, done)))


def _read_version(reader: _Reader, key: str, version_id: str) -> dict[str, Any]:
    """Return what HEAD tells about one version, with absent lock fields confirmed or made "unknown"."""
    fields = _head(reader.s3, reader.bucket, key, version_id)
    if HEAD_ERROR in fields or not reader.lock_enabled:
        return fields
    if fields["object_lock_mode"] is None:
        fields.update(_confirm_retention(reader.s3, reader.bucket, key, version_id))
    if fields["object_lock_legal_hold_status"] is None:
        fields.update(_confirm_legal_hold(reader.s3, reader.bucket, key, version_id))
    return fields


def _head(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """Return what HEAD tells about one version, "unknown" everywhere when it fails for any reason but throttling."""
    subject = f"s3://{bucket}/{key} (version {version_id})"
    checksum: dict[str, Any] = {}
    try:
        try:
            answer = _retry_throttled(s3.head_object, subject, Bucket=bucket, Key=key, VersionId=version_id,
                                      ChecksumMode="ENABLED")
        except ClientError as error:
            if error_code(error) not in _REFUSED:
                raise
            # Maybe refused for the checksum alone: read the rest without it.
            answer = _retry_throttled(s3.head_object, subject, Bucket=bucket, Key=key, VersionId=version_id)
            checksum = dict.fromkeys(_CHECKSUM_FIELDS, UNKNOWN)
    except ClientError as error:
        return {**dict.fromkeys(_HEAD_FIELDS, UNKNOWN), HEAD_ERROR: error_code(error) or "HeadObjectFailed"}
    except BotoCoreError as error:
        return {**dict.fromkeys(_HEAD_FIELDS, UNKNOWN), HEAD_ERROR: type(error).__name__}
    return {
        **(checksum or _checksum(answer)),
        "replication_status": answer.get("ReplicationStatus"),
        "encryption": answer.get("ServerSideEncryption"),
        "kms_key": answer.get("SSEKMSKeyId"),
        "object_lock_mode": answer.get("ObjectLockMode"),
        "object_lock_retain_until_date": _utc(answer.get("ObjectLockRetainUntilDate")),
        "object_lock_legal_hold_status": answer.get("ObjectLockLegalHoldStatus"),
    }


def _checksum(answer: dict[str, Any]) -> dict[str, Any]:
    """Return the additional checksum HEAD showed, as (algorithm, value); both None when the version has none."""
    found = sorted((name, value) for name, value in answer.items()
                   if name.startswith("Checksum") and name not in _NOT_A_CHECKSUM and value)
    if not found:
        return dict.fromkeys(_CHECKSUM_FIELDS)
    name, value = found[0]
    return {"checksum_algorithm": name.removeprefix("Checksum").upper(), "checksum": str(value)}


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
        # A ThrottlingError, or a bug: AWS's other answers are caught in the worker. Either stops the snapshot.
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
