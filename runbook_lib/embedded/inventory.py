"""S3 Inventory delivery for the embedded backend: the reports AWS writes daily, written on demand.

moto stores inventory configurations (with the fixes in `patches`) but never delivers a report.
`deliver` scans a bucket's versions in moto's state and writes one report in AWS's layout:

    <prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json   the index
    <prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.checksum   MD5 hex of manifest.json
    <prefix>/<source bucket>/<config id>/hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt   s3:// URL of each data file
    <prefix>/<source bucket>/<config id>/data/<uuid>.csv.gz | .parquet | .orc

With no prefix the keys start at `<source bucket>/`. `InventoryScheduler` delivers each enabled
configuration once when it appears (or changes), and again every `every` seconds when asked to,
which is how `runbook backend --inventory-every` and drills get their reports.

Choices where AWS documents nothing we could find (UNCONFIRMED), each a design decision:

| topic | what the emulator does |
|---|---|
| CSV quoting | every field in double quotes, empty fields as `""`, keys URL-encoded (`quote_plus`, '/' kept) |
| CSV dates | ISO-8601 UTC with milliseconds and a `Z` (`2026-01-02T03:04:05.000Z`) |
| Object Lock values | mode as `Governance`/`Compliance`, legal hold as `On`/`Off` (the user guide's spelling) |
| Parquet and ORC timestamps | last_modified_date and object_lock_retain_until_date as UTC timestamps in milliseconds |
| delete markers | Size, ETag, StorageClass and every Object Lock field empty |
| rows per data file | `ROWS_PER_FILE`; AWS splits by size |
| who may write | the destination bucket policy must let s3.amazonaws.com call s3:PutObject (with the source account and bucket as `aws:SourceAccount` / `aws:SourceArn`); otherwise nothing is delivered, as on AWS, and `deliver` says why |
| fields never filled | ObjectAccessControlList, ObjectOwner, LifecycleExpirationDate, IntelligentTieringAccessTier stay empty |
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import operator
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa

from runbook_lib import aws_facts
from runbook_lib.embedded import iam_eval, moto_state
from runbook_lib.embedded.moto_state import PARTITION, bucket_owner, is_delete_marker
from runbook_lib.embedded.utc import as_utc, epoch_millis, iso_millis, utc_now
from runbook_lib.errors import BackendError

__all__ = [
    "FIELD_ORDER",
    "INVENTORY_VERSION",
    "ROWS_PER_FILE",
    "Delivery",
    "InventoryScheduler",
    "column_name",
    "configurations",
    "deliver",
    "deliver_all",
    "file_schema",
]

INVENTORY_VERSION = "2016-11-30"
ROWS_PER_FILE = 250_000
# The order AWS writes fields in, whatever order the configuration lists them.
FIELD_ORDER: tuple[str, ...] = (
    "Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag",
    "StorageClass", "IsMultipartUploaded", "ReplicationStatus", "EncryptionStatus", "ObjectLockRetainUntilDate",
    "ObjectLockMode", "ObjectLockLegalHoldStatus", "IntelligentTieringAccessTier", "BucketKeyStatus",
    "ChecksumAlgorithm", "ObjectAccessControlList", "ObjectOwner", "LifecycleExpirationDate",
)
_VERSION_FIELDS = ("VersionId", "IsLatest", "IsDeleteMarker")
_BOOLEAN = frozenset({"IsLatest", "IsDeleteMarker", "IsMultipartUploaded"})
_TIMESTAMP = frozenset({"LastModifiedDate", "ObjectLockRetainUntilDate", "LifecycleExpirationDate"})
_INTEGER = frozenset({"Size"})
_EXTENSIONS = {"CSV": ".csv.gz", "Parquet": ".parquet", "ORC": ".orc"}
_LOCK_MODES = {"GOVERNANCE": "Governance", "COMPLIANCE": "Compliance"}
_HOLDS = {"ON": "On", "OFF": "Off"}
_ENCRYPTION = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}

log = logging.getLogger(__name__)
# One delivery at a time, so a report's manifest, checksum and symlink.txt always belong together;
# and the configuration each (bucket, id) was last delivered with, so the scheduler repeats no
# delivery a caller has just made.
_delivery_lock = threading.RLock()
_delivered: dict[tuple[str, str], str] = {}


def column_name(name: str) -> str:
    """Return the Parquet/ORC column of an inventory field: `LastModifiedDate` -> `last_modified_date`."""
    special = {"ETag": "e_tag", "VersionId": "version_id"}
    if name in special:
        return special[name]
    out = []
    for index, char in enumerate(name):
        if char.isupper() and index:
            out.append("_")
        out.append(char.lower())
    return "".join(out)


@dataclass(frozen=True)
class Delivery:
    """One delivered report: where its manifest is, and what it holds (or why nothing was written)."""

    source_bucket: str
    config_id: str
    destination_bucket: str
    manifest_key: str
    rows: int
    files: tuple[str, ...]
    created: datetime
    skipped: str = ""


# --------------------------------------------------------------------------- configurations


def configurations(source_bucket: str) -> list[Any]:
    """Return moto's inventory configurations of a bucket (none when the bucket does not exist)."""
    stored = moto_state.find_bucket(source_bucket)
    return [] if stored is None else list(stored.inventory_configs.values())


def _fields(config: Any) -> list[str]:
    """Return the fields a configuration writes, in AWS's order."""
    listed = config.optional_fields or []
    if isinstance(listed, Mapping):
        listed = listed.get("Field") or []
    if isinstance(listed, str):
        listed = [listed]
    wanted = {"Bucket", "Key", *(str(name) for name in listed)}
    if _included_versions(config) == "All":
        wanted.update(_VERSION_FIELDS)
    return [name for name in FIELD_ORDER if name in wanted]


def _included_versions(config: Any) -> str:
    return str(getattr(config, "included_object_versions", None) or "All")


def _destination(config: Any) -> dict[str, Any]:
    return dict((config.destination or {}).get("S3BucketDestination") or {})


def file_schema(fields: Sequence[str], file_format: str) -> str:
    """Return the fileSchema string manifest.json carries for these fields in this format."""
    if file_format == "CSV":
        return ", ".join(fields)
    if file_format == "ORC":
        types = {**dict.fromkeys(_BOOLEAN, "boolean"), **dict.fromkeys(_TIMESTAMP, "timestamp"), "Size": "bigint"}
        return "struct<" + ",".join(f"{column_name(n)}:{types.get(n, 'string')}" for n in fields) + ">"
    parts = []
    for name in fields:
        required = "required" if name in ("Bucket", "Key") else "optional"
        if name in _BOOLEAN:
            parts.append(f"{required} boolean {column_name(name)};")
        elif name in _INTEGER:
            parts.append(f"{required} int64 {column_name(name)};")
        elif name in _TIMESTAMP:
            parts.append(f"{required} int64 {column_name(name)} (TIMESTAMP_MILLIS);")
        else:
            parts.append(f"{required} binary {column_name(name)} (UTF8);")
    return "message s3.inventory { " + " ".join(parts) + "}"


# --------------------------------------------------------------------------- rows


def _storage_class(version: Any) -> str:
    return str(version.storage_class or aws_facts.DEFAULT_STORAGE_CLASS)


def _replication_status(version: Any) -> str | None:
    status = getattr(version, "replication_status", None)
    return str(status) if status else None


def _encryption_status(version: Any) -> str:
    # moto's LowercaseDict keeps its (lowercase) entries in `store`: a plain lookup, where its
    # Mapping.get raises and catches a KeyError per version without SSE-C.
    metadata = version.metadata
    if getattr(metadata, "store", metadata).get("x-amz-server-side-encryption-customer-algorithm"):
        return "SSE-C"
    return _ENCRYPTION.get(str(version.encryption), "NOT-SSE") if version.encryption else "NOT-SSE"


def _bucket_key_status(version: Any) -> str:
    enabled = str(version.bucket_key_enabled).lower() == "true" if version.encryption == "aws:kms" else False
    return "ENABLED" if enabled else "DISABLED"


def _lock_mode(version: Any) -> str | None:
    return _LOCK_MODES.get(str(version.lock_mode).upper()) if version.lock_mode else None


def _object_values(version: Any, latest: bool, bucket: str, modified: datetime) -> tuple[Any, ...]:
    """Return every field of FIELD_ORDER of an object version, in that order (None for the ones not kept).

    `modified` is the version's LastModified in UTC, which the caller has read already.
    """
    version_id = str(version.version_id)
    return (
        bucket, str(version.name), None if version_id == "null" else version_id, latest, False,
        int(version.size), modified, str(version.etag).strip('"'), _storage_class(version),
        bool(getattr(version, "multipart", None)), _replication_status(version), _encryption_status(version),
        _retain_until(version.lock_until), _lock_mode(version),
        _HOLDS.get(str(version.lock_legal_status or "OFF").upper(), "Off"), None, _bucket_key_status(version),
        getattr(version, "checksum_algorithm", None) or None, None, None, None,
    )


def _marker_values(version: Any, latest: bool, bucket: str, modified: datetime) -> tuple[Any, ...]:
    """Return every field of FIELD_ORDER of a delete marker: its key, id, place and time; nothing else."""
    version_id = str(version.version_id)
    return (bucket, str(version.name), None if version_id == "null" else version_id, latest, True, None,
            modified, *([None] * (len(FIELD_ORDER) - 7)))


def _row_reader(fields: Sequence[str], bucket: str,
                marker: bool) -> Callable[[Any, bool, datetime], Sequence[Any]]:
    """Return what makes the row of a version (or, with `marker`, a delete marker): the configured fields, in order."""
    values = _marker_values if marker else _object_values
    indexes = [FIELD_ORDER.index(name) for name in fields]
    if len(indexes) == 1:
        return lambda version, latest, modified: (values(version, latest, bucket, modified)[indexes[0]],)
    pick = operator.itemgetter(*indexes)
    return lambda version, latest, modified: pick(values(version, latest, bucket, modified))


def _retain_until(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))


_FIRST = operator.itemgetter(0)


def _rows(config: Any, source_bucket: str, fields: Sequence[str]) -> Iterator[Sequence[Any]]:
    """Yield one row per version the configuration lists: by key, newest version first."""
    stored = moto_state.find_bucket(source_bucket)
    if stored is None:
        return
    prefix = str(((config.filters or {}).get("Prefix")) or "")
    current_only = _included_versions(config) == "Current"
    object_row = _row_reader(fields, source_bucket, marker=False)
    marker_row = _row_reader(fields, source_bucket, marker=True)
    for name in sorted(list(stored.keys.keys())):
        if not name.startswith(prefix):
            continue
        # Each version's time read once, for the order and for its row; sorted on the time alone, as before.
        stamped = sorted(((as_utc(v.last_modified), v) for v in moto_state.versions_of(stored, name)),
                         key=_FIRST, reverse=True)
        for index, (modified, version) in enumerate(stamped):
            marker = is_delete_marker(version)
            if current_only and (index or marker):
                break
            yield (marker_row if marker else object_row)(version, index == 0, modified)


# --------------------------------------------------------------------------- files


def _csv_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if name == "Key":
        return quote_plus(str(value), safe="/")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_millis(value)
    return str(value)


def _csv_file(rows: Sequence[Sequence[Any]], fields: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in rows:
        writer.writerow([_csv_text(value, name) for value, name in zip(row, fields, strict=True)])
    return gzip.compress(buffer.getvalue().encode(), mtime=0)


def _arrow_table(rows: Sequence[Sequence[Any]], fields: Sequence[str]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    arrays = []
    for name, values in zip(fields, columns, strict=True):
        if name in _BOOLEAN:
            kind: pa.DataType = pa.bool_()
        elif name in _INTEGER:
            kind = pa.int64()
        elif name in _TIMESTAMP:
            kind = pa.timestamp("ms", tz="UTC")
        else:
            kind = pa.string()
        arrays.append(pa.array(list(values), type=kind))
    return pa.Table.from_arrays(arrays, names=[column_name(n) for n in fields])


def _columnar_file(rows: Sequence[Sequence[Any]], fields: Sequence[str], file_format: str) -> bytes:
    table = _arrow_table(rows, fields)
    sink = pa.BufferOutputStream()
    if file_format == "Parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="snappy")
    else:
        import pyarrow.orc as orc

        orc.write_table(table, sink, compression="zlib")
    return bytes(sink.getvalue().to_pybytes())


def _file_body(rows: Sequence[Sequence[Any]], fields: Sequence[str], file_format: str) -> bytes:
    if file_format == "CSV":
        return _csv_file(rows, fields)
    return _columnar_file(rows, fields, file_format)


# --------------------------------------------------------------------------- delivery


def _may_deliver(destination_bucket: str, source_bucket: str, source_account: str, key: str) -> str:
    """Return "" when S3 may write the report into the destination bucket, else why not."""
    stored = moto_state.find_bucket(destination_bucket)
    owner = bucket_owner(destination_bucket)
    if stored is None or owner is None:
        return f"the destination bucket {destination_bucket} does not exist"
    policy = moto_state.policy_document(stored.policy)
    request = iam_eval.Request(
        principal_arn="", principal_account="", action="s3:PutObject",
        resource=aws_facts.object_arn(destination_bucket, key, PARTITION), resource_account=owner,
        context={"aws:SourceAccount": source_account,
                 "aws:SourceArn": aws_facts.bucket_arn(source_bucket, PARTITION)},
        service_principal=aws_facts.S3_SERVICE_PRINCIPAL,
    )
    try:
        effect = iam_eval.evaluate(policy, request) if policy else "NotApplicable"
    except BackendError as error:
        return f"the destination bucket policy could not be evaluated: {error}"
    if effect != "Allow":
        return (f"the policy of {destination_bucket} does not let {aws_facts.S3_SERVICE_PRINCIPAL} call "
                f"s3:PutObject on {key} for source bucket {source_bucket} in account {source_account}")
    return ""


def _put(bucket: str, key: str, body: bytes, encryption: Mapping[str, Any] | None) -> None:
    owner = bucket_owner(bucket)
    if owner is None:
        raise BackendError(f"the inventory destination bucket {bucket} does not exist")
    backend = moto_state.s3_backend(owner)
    kms = (encryption or {}).get("SSE-KMS")
    if kms is not None:
        backend.put_object(bucket, key, body, encryption="aws:kms", kms_key_id=(kms or {}).get("KeyId"))
    else:
        backend.put_object(bucket, key, body, encryption="AES256")


def _fingerprint(config: Any) -> str:
    return json.dumps([config.destination, config.optional_fields, config.filters, _included_versions(config)],
                      sort_keys=True, default=str)


def deliver(source_bucket: str, config_id: str, now: datetime | None = None) -> Delivery:
    """Write one inventory report of the bucket for that configuration, as S3 would, and say what was written.

    Raises BackendError when the bucket or configuration does not exist. A destination that S3
    may not write to gives a Delivery with `skipped` saying why, and nothing written.
    """
    with _delivery_lock:
        delivery = _deliver(source_bucket, config_id, now)
        config = moto_state.find_bucket(source_bucket).inventory_configs.get(config_id)
        if not delivery.skipped and config is not None:
            _delivered[(source_bucket, config_id)] = _fingerprint(config)
        return delivery


def _deliver(source_bucket: str, config_id: str, now: datetime | None) -> Delivery:
    source_account = bucket_owner(source_bucket)
    stored = moto_state.find_bucket(source_bucket)
    if stored is None or source_account is None:
        raise BackendError(f"cannot deliver an inventory of {source_bucket}: the bucket does not exist")
    config = stored.inventory_configs.get(config_id)
    if config is None:
        raise BackendError(
            f"the bucket {source_bucket} has no inventory configuration {config_id!r}; "
            f"it has: {', '.join(sorted(stored.inventory_configs)) or 'none'}")
    destination = _destination(config)
    dest_bucket = aws_facts.bucket_name_of_arn(str(destination.get("Bucket", "")))
    file_format = str(destination.get("Format", "CSV"))
    if file_format not in _EXTENSIONS:
        raise BackendError(f"inventory format {file_format!r} is not one of {', '.join(_EXTENSIONS)}")
    moment = as_utc(now or utc_now())
    prefix = str(destination.get("Prefix") or "")
    base = f"{prefix}/{source_bucket}/{config_id}" if prefix else f"{source_bucket}/{config_id}"
    manifest_key = f"{base}/{moment.strftime('%Y-%m-%dT%H-%MZ')}/manifest.json"
    refused = _may_deliver(dest_bucket, source_bucket, source_account, manifest_key)
    if refused:
        log.warning("inventory %s of %s not delivered: %s", config_id, source_bucket, refused)
        return Delivery(source_bucket, config_id, dest_bucket, "", 0, (), moment, skipped=refused)
    fields = _fields(config)
    encryption = destination.get("Encryption")
    files: list[dict[str, Any]] = []
    rows = 0
    batch: list[Sequence[Any]] = []

    def flush() -> None:
        body = _file_body(batch, fields, file_format)
        key = f"{base}/data/{uuid.uuid4()}{_EXTENSIONS[file_format]}"
        _put(dest_bucket, key, body, encryption)
        files.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
        batch.clear()

    for row in _rows(config, source_bucket, fields):
        batch.append(row)
        rows += 1
        if len(batch) >= ROWS_PER_FILE:
            flush()
    if batch or not files:
        flush()
    index = {
        "sourceBucket": source_bucket,
        "destinationBucket": aws_facts.bucket_arn(dest_bucket, PARTITION),
        "version": INVENTORY_VERSION,
        "creationTimestamp": epoch_millis(moment),
        "fileFormat": file_format,
        "fileSchema": file_schema(fields, file_format),
        "files": files,
    }
    body = json.dumps(index, indent=2).encode()
    _put(dest_bucket, manifest_key, body, encryption)
    _put(dest_bucket, manifest_key.rsplit("/", 1)[0] + "/manifest.checksum",
         hashlib.md5(body).hexdigest().encode(), encryption)
    symlink = "".join(f"s3://{dest_bucket}/{item['key']}\n" for item in files).encode()
    _put(dest_bucket, f"{base}/hive/dt={moment.strftime('%Y-%m-%d-%H-%M')}/symlink.txt", symlink, encryption)
    return Delivery(source_bucket, config_id, dest_bucket, manifest_key, rows,
                    tuple(str(item["key"]) for item in files), moment)


def deliver_all(now: datetime | None = None) -> list[Delivery]:
    """Deliver a report for every enabled inventory configuration of every bucket in every account."""
    from moto.s3.models import s3_backends

    deliveries = []
    for bucket_name, _ in list(s3_backends.bucket_accounts.items()):
        for config in configurations(bucket_name):
            if str(config.is_enabled).lower() == "true":
                deliveries.append(deliver(bucket_name, config.id, now))
    return deliveries


# --------------------------------------------------------------------------- schedule


_REFUSED = "refused:"
_REFUSED_RETRY_SECONDS = 5.0


@dataclass
class InventoryScheduler:
    """Delivers each enabled configuration when it appears or changes, and every `every` seconds if set."""

    every: float | None = None
    poll_seconds: float = 0.5
    deliveries: list[Delivery] = field(default_factory=list)
    _seen: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="embedded-inventory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def tick(self, clock: float) -> list[Delivery]:
        """Deliver what is due at monotonic time `clock` and return those deliveries."""
        from moto.s3.models import s3_backends

        done = []
        for bucket_name in list(s3_backends.bucket_accounts):
            for config in configurations(bucket_name):
                if str(config.is_enabled).lower() != "true":
                    continue
                with _delivery_lock:
                    fingerprint = _fingerprint(config)
                    seen = self._seen.get((bucket_name, config.id))
                    refused_before = seen is not None and seen[0] == _REFUSED + fingerprint
                    changed = seen is None or seen[0] != fingerprint
                    if changed and not refused_before and _delivered.get((bucket_name, config.id)) == fingerprint:
                        # A caller just delivered this very configuration: a second report in the same
                        # minute would overwrite its manifest under a reader's feet.
                        self._seen[(bucket_name, config.id)] = (fingerprint, clock)
                        continue
                    due = changed or (self.every is not None and seen is not None and clock - seen[1] >= self.every)
                    if refused_before and seen is not None:
                        # A refused destination is tried again now and then, as S3 tries the next day.
                        due = clock - seen[1] >= _REFUSED_RETRY_SECONDS
                    if not due:
                        continue
                    try:
                        delivery = deliver(bucket_name, config.id)
                    except BackendError as error:
                        log.warning("inventory %s of %s not delivered: %s", config.id, bucket_name, error)
                        continue
                refused = bool(delivery.skipped)
                self._seen[(bucket_name, config.id)] = ((_REFUSED if refused else "") + fingerprint, clock)
                if not refused:
                    done.append(delivery)
        self.deliveries.extend(done)
        return done

    def _loop(self) -> None:
        import time

        while not self._stop.wait(self.poll_seconds):
            try:
                self.tick(time.monotonic())
            except Exception:  # a delivery must never take the backend down
                log.exception("inventory delivery failed")
