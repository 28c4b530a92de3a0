"""What a Batch Operations job reads and writes in S3: its manifest in, its completion report out.

Everything here works on moto's S3 backend inside the server's process, never over HTTP: a job of
10,000 tasks writes and lists objects two orders of magnitude faster that way. Before the job role
reads or writes an object, `iam_eval` decides whether the role may, from the role's identity
policies in moto's IAM backend and the bucket's policy, so a drill whose role lacks a grant fails
the way AWS fails.

Layouts written (the generated manifest's is our design, see the table below):

    <ManifestPrefix>/job-<JobId>/manifest.json        S3InventoryReport_CSV_20211130 index
    <ManifestPrefix>/job-<JobId>/data/<uuid>.csv      rows: bucket,url-encoded key,version id
    <Prefix>/job-<JobId>/manifest.json                completion report index (Report_CSV_20180820)
    <Prefix>/job-<JobId>/results/<40 hex>.csv         one file per task outcome, CRLF, no header

Keys are URL-encoded with `quote(key, safe="/")` (a space becomes %20, a plus %2B), which reads
back the same whether a reader decodes as a URL path or as form data; supplied manifests are
decoded as form data (`unquote_plus`), as S3 Inventory writes them.

Choices we made where AWS's behaviour is not documented (UNCONFIRMED) or where we simplify:

| topic | what the emulator does |
|---|---|
| manifest not readable / missing / wrong ETag / bad row | FailureCode `AccessDenied` / `NoSuchKey` (or `NoSuchBucket`) / `InvalidManifestContent` / `InvalidManifestContent` |
| CSV manifest stored with SSE-KMS or SSE-C | FailureCode `AccessDenied`, "Reading the manifest is forbidden: AccessDenied" and why: AWS documents both as unsupported for CSV manifests and lists KMS encryption among the causes of that error (inventory manifests may use SSE-KMS) |
| CSV manifest without a single row | FailureCode `InvalidManifestContent`, as an empty generated manifest fails |
| role missing or not trusting batchoperations.s3.amazonaws.com | job fails in Preparing, FailureCode `AccessDenied` |
| context keys of the job's AssumeRole | none: AWS documents no aws:SourceAccount / aws:SourceArn for Batch Operations, so a trust condition on them fails here |
| generator role lacks s3:PutInventoryConfiguration | job fails in Preparing, FailureCode `AccessDenied` |
| report not writable | FailureCode `ReportWriteFailed`, reason as AWS documents it plus why; the job ends Failed |
| CreatedAfter / CreatedBefore | half-open interval: after inclusive, before exclusive, on the version's last-modified time |
| generated manifest layout | `<ManifestPrefix>/job-<id>/manifest.json` + `data/<uuid>.csv` (not gzipped), fileSchema `Bucket, Key, VersionId`, version `2021-11-30`, null version as an empty field |
| key encoding | manifests and reports write keys as `quote(key, safe="/")`; supplied manifests are decoded with `unquote_plus`; the report echoes the manifest's spelling |
| FailedTasksOnly with no failed task | the report index is written with an empty Results list |
| S3JobManifestGenerator.ExpectedBucketOwner | compared with the source bucket's owner (the model's text names the manifest bucket; callers set the source owner) |
| role permissions the job itself uses | checked with `iam_eval` against the role's identity policies and the bucket policy: s3:PutObject (saved manifest, report), s3:GetObject / s3:GetObjectVersion (supplied manifest), s3:PutInventoryConfiguration (generator); KMS grants for an SSE-KMS saved manifest are not checked |
| objects the job writes | written with S3 event notifications on, as any object S3 writes for you |
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote_plus

from runbook_lib import aws_facts
from runbook_lib.embedded import iam_eval, moto_state
from runbook_lib.embedded.moto_state import PARTITION, bucket_owner, is_delete_marker
from runbook_lib.embedded.s3control.exceptions import JobFailure
from runbook_lib.embedded.utc import as_utc, epoch_millis, iso_nanos_now
from runbook_lib.errors import BackendError

__all__ = [
    "BATCH_OPERATIONS_SERVICE",
    "GENERATED_MANIFEST_FORMAT",
    "MANIFEST_ROWS_PER_FILE",
    "REPORT_FORMAT",
    "REPORT_SCHEMA",
    "ManifestEntry",
    "ReportRow",
    "check_role_trust",
    "check_source_bucket",
    "encode_key",
    "generate_manifest",
    "matches_filter",
    "read_manifest",
    "replication_status_of",
    "role_may",
    "write_completion_report",
    "write_generated_manifest",
]

BATCH_OPERATIONS_SERVICE = aws_facts.BATCH_OPERATIONS_SERVICE_PRINCIPAL
GENERATED_MANIFEST_FORMAT = "S3InventoryReport_CSV_20211130"
REPORT_FORMAT = "Report_CSV_20180820"
# The schema string S3 writes into the report index; real rows put HTTPStatusCode before ErrorCode.
REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
MANIFEST_ROWS_PER_FILE = 1_000_000

@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One task of a job: the object version and its fields exactly as the manifest spells them.

    `version_id` is None when the manifest has no VersionId column, "" when its field was empty.
    """

    bucket: str
    key: str
    version_id: str | None
    manifest_key: str

    @property
    def report_version(self) -> str:
        """Return the VersionId column of this task's report row, as S3 writes it."""
        if self.version_id is None:
            return ""
        return self.version_id if self.version_id != "" else "\\N"


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One completion report row: a task and how it ended."""

    entry: ManifestEntry
    succeeded: bool
    http_status: int
    error_code: str
    message: str


def encode_key(key: str) -> str:
    """Return a key URL-encoded for a manifest or report CSV field ('/' kept, '+' and ' ' escaped)."""
    return quote(key, safe="/")


# --------------------------------------------------------------------------- permissions


def role_may(role_arn: str, action: str, bucket: str, key: str | None = None) -> iam_eval.Decision:
    """Return whether the job role may do `action` on the bucket (or one of its objects), and why."""
    role = moto_state.iam_role(role_arn)
    identity = moto_state.identity_policies(role) if role is not None else []
    stored = moto_state.find_bucket(bucket)
    owner = bucket_owner(bucket) or ""
    resource = aws_facts.bucket_arn(bucket, PARTITION) if key is None else aws_facts.object_arn(bucket, key, PARTITION)
    request = iam_eval.Request(
        principal_arn=role_arn,
        principal_account=aws_facts.account_of_arn(role_arn),
        action=action,
        resource=resource,
        resource_account=owner,
    )
    try:
        return iam_eval.is_allowed(
            request, identity_policies=identity,
            resource_policy=moto_state.policy_document(stored.policy) if stored else None,
        )
    except BackendError as error:
        return iam_eval.Decision(False, f"a policy could not be evaluated: {error}")


def check_role_trust(role_arn: str, account: str) -> None:
    """Raise JobFailure unless S3 Batch Operations may assume the job role for this account's job."""
    role = moto_state.iam_role(role_arn)
    if role is None:
        raise JobFailure(
            "AccessDenied",
            f"Batch Operations cannot assume the role {role_arn}: it does not exist. Create the role "
            "or pass the ARN of an existing one.",
        )
    trust = moto_state.policy_document(role.assume_role_policy_document)
    context = iam_eval.service_source_context(BATCH_OPERATIONS_SERVICE, source_account=account)
    try:
        trusted = trust is not None and iam_eval.can_assume(trust, BATCH_OPERATIONS_SERVICE, context=context)
    except BackendError:
        trusted = False
    if not trusted:
        raise JobFailure(
            "AccessDenied",
            f"Batch Operations cannot assume the role {role_arn}: its trust policy does not allow "
            f"{BATCH_OPERATIONS_SERVICE} to call sts:AssumeRole for account {account} (Batch Operations "
            "sends no aws:SourceAccount or aws:SourceArn that a condition could match).",
        )


def _require(decision: iam_eval.Decision, failure_code: str, reason: str) -> None:
    if not decision.allowed:
        raise JobFailure(failure_code, f"{reason} ({decision.reason})")


# --------------------------------------------------------------------------- generating


def _check_owner(bucket: str, expected: Any, failing: str) -> None:
    """Fail the job unless the bucket exists and, when an owner is expected, belongs to it."""
    owner = bucket_owner(bucket)
    if owner is None:
        raise JobFailure("NoSuchBucket", f"{failing} {bucket} does not exist.")
    if expected and expected != owner:
        raise JobFailure("AccessDenied", f"{failing} {bucket} is not owned by the expected bucket owner {expected}.")


def check_source_bucket(generator: Mapping[str, Any], role_arn: str) -> str:
    """Return the source bucket's name after checking it exists, its owner, and the role's grants."""
    bucket = aws_facts.bucket_name_of_arn(str(generator["SourceBucket"]))
    _check_owner(bucket, generator.get("ExpectedBucketOwner"), "Manifest generation failed: the source bucket")
    _require(
        role_may(role_arn, "s3:PutInventoryConfiguration", bucket),
        "AccessDenied",
        "Generating the manifest is forbidden: AccessDenied",
    )
    return bucket


def generate_manifest(
    generator: Mapping[str, Any], eligibility: Callable[[str, str], Callable[[Any], bool]]
) -> list[ManifestEntry]:
    """Return one task per version of the source bucket that passes the generator's filter.

    `eligibility(owner, bucket)` returns the test of EligibleForReplication for that bucket's
    versions (replication_rules.eligibility): asked once, its answer tried on every version.
    """
    bucket = aws_facts.bucket_name_of_arn(str(generator["SourceBucket"]))
    owner = bucket_owner(bucket) or ""
    stored = moto_state.find_bucket(bucket)
    if stored is None:
        return []
    criteria = generator.get("Filter") or {}
    checks = _checks_of(criteria)
    eligible = eligibility(owner, bucket) if criteria.get("EligibleForReplication") else None
    entries: list[ManifestEntry] = []
    for name in sorted(list(stored.keys.keys())):
        manifest_key = encode_key(name)
        for version in moto_state.versions_of(stored, name):
            if not all(check(version, criteria) for check in checks):
                continue
            if eligible is not None and not eligible(version):
                continue
            entries.append(ManifestEntry(bucket, name, str(version.version_id), manifest_key))
    return entries


def _checks_of(criteria: Mapping[str, Any]) -> list[Callable[[Any, Mapping[str, Any]], bool]]:
    """Return the checks a generator Filter asks for (those of its criteria that are set)."""
    return [check for names, check in _CHECKS if any(criteria.get(name) is not None for name in names)]


def matches_filter(version: Any, criteria: Mapping[str, Any]) -> bool:
    """Return True when a stored version passes every criterion of a generator Filter but eligibility."""
    return all(check(version, criteria) for check in _checks_of(criteria))


def _created_within(version: Any, criteria: Mapping[str, Any]) -> bool:
    # A half-open interval: CreatedAfter inclusive, CreatedBefore exclusive.
    created = as_utc(version.last_modified)
    after, before = criteria.get("CreatedAfter"), criteria.get("CreatedBefore")
    if after is not None and created < as_utc(after):
        return False
    return before is None or created < as_utc(before)


def replication_status_of(version: Any) -> str:
    """Return a version's replication status as the generator filter names it (NONE when unset)."""
    status = getattr(version, "replication_status", None) or aws_facts.REPLICATION_STATUS_NONE
    # COMPLETE is the status's older spelling, which S3 still writes on some versions.
    return aws_facts.REPLICATION_STATUS_COMPLETED if status == "COMPLETE" else str(status)


def _replication_status_matches(version: Any, criteria: Mapping[str, Any]) -> bool:
    wanted = criteria.get("ObjectReplicationStatuses")
    return not wanted or replication_status_of(version) in wanted


def _key_name_matches(version: Any, criteria: Mapping[str, Any]) -> bool:
    constraint = criteria.get("KeyNameConstraint") or {}
    name = str(version.name)
    tests = (
        (constraint.get("MatchAnyPrefix"), name.startswith),
        (constraint.get("MatchAnySuffix"), name.endswith),
        (constraint.get("MatchAnySubstring"), name.__contains__),
    )
    return all(not values or any(test(value) for value in values) for values, test in tests)


def _size_within(version: Any, criteria: Mapping[str, Any]) -> bool:
    size = 0 if is_delete_marker(version) else int(version.size)
    above, below = criteria.get("ObjectSizeGreaterThanBytes"), criteria.get("ObjectSizeLessThanBytes")
    if above is not None and not size > above:
        return False
    return below is None or size < below


def _storage_class_matches(version: Any, criteria: Mapping[str, Any]) -> bool:
    wanted = criteria.get("MatchAnyStorageClass")
    if not wanted:
        return True
    return not is_delete_marker(version) and (version.storage_class or aws_facts.DEFAULT_STORAGE_CLASS) in wanted


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true" if not isinstance(value, bool) else value


def _encryption_matches(version: Any, criteria: Mapping[str, Any]) -> bool:
    wanted = criteria.get("MatchAnyObjectEncryption")
    if not wanted:
        return True
    if is_delete_marker(version):
        return False
    return any(_encryption_is(version, choice) for choice in wanted)


def _encryption_is(version: Any, choice: Mapping[str, Any]) -> bool:
    algorithm = version.encryption
    customer_key = version.metadata.get("x-amz-server-side-encryption-customer-algorithm")
    if "SSES3" in choice:
        return algorithm == "AES256" and not customer_key
    if "SSEC" in choice:
        return bool(customer_key)
    if "NOTSSE" in choice:
        return not algorithm and not customer_key
    if "SSEKMS" in choice:
        wanted = choice["SSEKMS"] or {}
        if algorithm != "aws:kms":
            return False
        if wanted.get("KmsKeyArn") and version.kms_key_id != wanted["KmsKeyArn"]:
            return False
        return "BucketKeyEnabled" not in wanted or _truthy(version.bucket_key_enabled) == wanted["BucketKeyEnabled"]
    if "DSSEKMS" in choice:
        wanted = choice["DSSEKMS"] or {}
        if algorithm != "aws:kms:dsse":
            return False
        return not wanted.get("KmsKeyArn") or version.kms_key_id == wanted["KmsKeyArn"]
    return False


# --------------------------------------------------------------------------- writing objects


# Each check of a generator Filter and the criteria it reads; a check runs only when one of them is set.
_CHECKS: tuple[tuple[tuple[str, ...], Callable[[Any, Mapping[str, Any]], bool]], ...] = (
    (("CreatedAfter", "CreatedBefore"), _created_within),
    (("ObjectReplicationStatuses",), _replication_status_matches),
    (("KeyNameConstraint",), _key_name_matches),
    (("ObjectSizeGreaterThanBytes", "ObjectSizeLessThanBytes"), _size_within),
    (("MatchAnyStorageClass",), _storage_class_matches),
    (("MatchAnyObjectEncryption",), _encryption_matches),
)


def _put(
    bucket: str, key: str, body: bytes, encryption: Mapping[str, Any] | None = None
) -> Any:
    """Write one object as S3 itself would for a job (notifications on) and return the stored key."""
    owner = bucket_owner(bucket)
    if owner is None:
        raise JobFailure("NoSuchBucket", f"the bucket {bucket} does not exist")
    kms = (encryption or {}).get("SSEKMS")
    if kms is not None:
        return moto_state.s3_backend(owner).put_object(
            bucket, key, body, encryption="aws:kms", kms_key_id=kms.get("KeyId")
        )
    return moto_state.s3_backend(owner).put_object(bucket, key, body, encryption="AES256")


def _job_folder(prefix: str | None, job_id: str) -> str:
    # S3 joins with a literal "/": a prefix ending in "/" yields "prefix//job-...".
    return f"{prefix}/job-{job_id}" if prefix else f"job-{job_id}"


def _manifest_rows(entries: Sequence[ManifestEntry]) -> Iterator[bytes]:
    """Yield CSV files of at most MANIFEST_ROWS_PER_FILE rows: bucket, encoded key, version id."""
    for start in range(0, len(entries), MANIFEST_ROWS_PER_FILE):
        lines = []
        for entry in entries[start:start + MANIFEST_ROWS_PER_FILE]:
            # Inventory files leave the version field empty for the null version.
            version = "" if entry.version_id in (None, "null") else entry.version_id
            lines.append(f"{entry.bucket},{entry.manifest_key},{version}\n")
        yield "".join(lines).encode()


def write_generated_manifest(
    job_id: str,
    source_bucket: str,
    entries: Sequence[ManifestEntry],
    output: Mapping[str, Any],
    role_arn: str,
    now: datetime,
) -> dict[str, Any]:
    """Write the generated manifest where the job asked and return its GeneratedManifestDescriptor."""
    bucket = aws_facts.bucket_name_of_arn(str(output["Bucket"]))
    _check_owner(bucket, output.get("ExpectedManifestBucketOwner"), "Writing the manifest failed: the bucket")
    folder = _job_folder(output.get("ManifestPrefix"), job_id)
    manifest_key = f"{folder}/manifest.json"
    _require(role_may(role_arn, "s3:PutObject", bucket, manifest_key), "AccessDenied",
             "Writing the manifest is forbidden: AccessDenied")
    encryption = output.get("ManifestEncryption")
    files = []
    for body in _manifest_rows(entries):
        data_key = f"{folder}/data/{uuid.uuid4()}.csv"
        _put(bucket, data_key, body, encryption)
        files.append({"key": data_key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    index = {
        "sourceBucket": source_bucket,
        "destinationBucket": aws_facts.bucket_arn(bucket, PARTITION),
        "version": "2021-11-30",
        "creationTimestamp": epoch_millis(now),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId",
        "files": files,
    }
    stored = _put(bucket, manifest_key, json.dumps(index).encode(), encryption)
    location: dict[str, Any] = {
        "ObjectArn": aws_facts.object_arn(bucket, manifest_key, PARTITION), "ETag": stored.etag.strip('"'),
    }
    if stored.version_id and stored.version_id != "null":
        location["ObjectVersionId"] = stored.version_id
    return {"Format": GENERATED_MANIFEST_FORMAT, "Location": location}


# --------------------------------------------------------------------------- reading manifests


def _read_object(bucket: str, key: str, version_id: str | None, role_arn: str) -> Any:
    """Return the stored manifest object after the role's read permission and existence checks."""
    action = "s3:GetObjectVersion" if version_id else "s3:GetObject"
    if bucket_owner(bucket) is None:
        raise JobFailure(
            "NoSuchBucket", f"Reading the manifest failed: NoSuchBucket (the bucket {bucket} does not exist)")
    _require(role_may(role_arn, action, bucket, key), "AccessDenied", "Reading the manifest is forbidden: AccessDenied")
    stored = moto_state.find_bucket(bucket)
    if version_id:
        version = moto_state.find_version(stored, key, version_id)
    else:
        version = stored.keys.get(key) if key in stored.keys else None
    if version is None or is_delete_marker(version):
        what = f"s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
        raise JobFailure("NoSuchKey", f"Reading the manifest failed: NoSuchKey ({what} does not exist)")
    return version


def read_manifest(manifest: Mapping[str, Any], role_arn: str) -> list[ManifestEntry]:
    """Return the tasks a supplied manifest lists, after checking its ETag and every row."""
    spec, location = manifest["Spec"], manifest["Location"]
    bucket, key = aws_facts.split_s3_object_arn(str(location["ObjectArn"]))
    stored = _read_object(bucket, key, location.get("ObjectVersionId"), role_arn)
    if stored.etag.strip('"') != str(location["ETag"]).strip('"'):
        raise JobFailure(
            "InvalidManifestContent",
            f"The manifest's ETag {location['ETag']} does not match the object s3://{bucket}/{key} "
            f"(ETag {stored.etag.strip(chr(34))}); pass the ETag of the manifest as it is now.",
        )
    if spec["Format"] == "S3InventoryReport_CSV_20161130":
        return _read_inventory_manifest(stored.value, bucket, key, role_arn)
    _check_csv_encryption(stored, bucket, key)
    entries = list(_parse_csv_rows(stored.value, list(spec.get("Fields") or ["Bucket", "Key"]), f"s3://{bucket}/{key}"))
    if not entries:
        raise JobFailure("InvalidManifestContent", f"Invalid manifest content: s3://{bucket}/{key} lists no objects.")
    return entries


def _check_csv_encryption(stored: Any, bucket: str, key: str) -> None:
    """Fail the job when a CSV manifest is stored with SSE-KMS or SSE-C, which Batch Operations cannot read."""
    algorithm = str(getattr(stored, "encryption", None) or "")
    customer_key = (getattr(stored, "metadata", None) or {}).get("x-amz-server-side-encryption-customer-algorithm")
    if algorithm.startswith("aws:kms") or customer_key:
        kind = "SSE-C" if customer_key else "SSE-KMS"
        raise JobFailure(
            "AccessDenied",
            f"Reading the manifest is forbidden: AccessDenied (s3://{bucket}/{key} is encrypted with {kind}; "
            "a CSV manifest must be stored with SSE-S3 or without encryption).",
        )


def _parse_csv_rows(
    body: bytes, fields: Sequence[str], source: str, inventory: bool = False,
) -> Iterator[ManifestEntry]:
    """Yield the tasks of CSV manifest rows whose columns are `fields`, failing on any bad row."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JobFailure("InvalidManifestContent", f"The manifest {source} is not UTF-8 text: {error}") from error
    has_version = "VersionId" in fields
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) < len(fields) or (not inventory and len(row) != len(fields)):
            raise JobFailure(
                "InvalidManifestContent",
                f"Invalid manifest content: row {number} of {source} has {len(row)} fields; the manifest "
                f"spec lists {len(fields)} ({', '.join(fields)}).",
            )
        # An inventory row may carry more columns than the manifest spec names; the extras are ignored.
        values = dict(zip(fields, row, strict=False))
        if not values.get("Bucket") or not values.get("Key"):
            raise JobFailure(
                "InvalidManifestContent",
                f"Invalid manifest content: row {number} of {source} has an empty bucket or key.",
            )
        version: str | None = values.get("VersionId") if has_version else None
        if inventory and version == "":
            version = "null"  # inventory files leave the null version's field empty
        yield ManifestEntry(values["Bucket"], unquote_plus(values["Key"]), version, values["Key"])


def _manifest_index(body: bytes) -> Any:
    """Return an inventory manifest.json as parsed JSON, or None when it is not JSON."""
    try:
        return json.loads(body.decode())
    except ValueError:
        return None


def _read_inventory_manifest(body: bytes, bucket: str, key: str, role_arn: str) -> list[ManifestEntry]:
    """Return the tasks of an inventory-style manifest.json and the CSV files it lists."""
    source = f"s3://{bucket}/{key}"
    index = _manifest_index(body)
    if not isinstance(index, dict) or not isinstance(index.get("files"), list):
        raise JobFailure(
            "InvalidManifestContent", f"The manifest {source} is not an inventory manifest.json with a files list.")
    fields = [name.strip() for name in str(index.get("fileSchema", "")).split(",")]
    if "Bucket" not in fields or "Key" not in fields:
        raise JobFailure("InvalidManifestContent", f"The manifest {source} has no Bucket and Key in its fileSchema.")
    data_bucket = aws_facts.bucket_name_of_arn(str(index.get("destinationBucket") or bucket))
    entries: list[ManifestEntry] = []
    for listed in index["files"]:
        data = _read_object(data_bucket, str(listed.get("key")), None, role_arn).value
        if listed.get("MD5checksum") and hashlib.md5(data).hexdigest() != listed["MD5checksum"]:
            raise JobFailure(
                "InvalidManifestContent",
                f"The manifest file s3://{data_bucket}/{listed.get('key')} does not match "
                f"the MD5 checksum {source} lists.",
            )
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        entries.extend(_parse_csv_rows(data, fields, f"s3://{data_bucket}/{listed.get('key')}", inventory=True))
    return entries


# --------------------------------------------------------------------------- completion report

_REPORT_WRITE_FAILED = "The job report could not be written to your report bucket. Please check your permissions."


def _report_csv(rows: Iterable[ReportRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([
            row.entry.bucket,
            row.entry.manifest_key,
            row.entry.report_version,
            "succeeded" if row.succeeded else "failed",
            row.http_status,
            row.error_code,
            row.message,
        ])
    return buffer.getvalue().encode()


def _check_report_bucket(report: Mapping[str, Any], role_arn: str, manifest_key: str) -> str:
    bucket = aws_facts.bucket_name_of_arn(str(report.get("Bucket", "")))
    owner = bucket_owner(bucket)
    expected = report.get("ExpectedBucketOwner")
    stored = moto_state.find_bucket(bucket)
    reasons = []
    if owner is None or stored is None:
        reasons.append(f"the bucket {bucket} does not exist")
    elif expected and expected != owner:
        reasons.append(f"the bucket {bucket} is not owned by the expected bucket owner {expected}")
    elif stored.has_default_lock:
        # S3 cannot write the report into a bucket with a default Object Lock retention.
        reasons.append(f"the bucket {bucket} applies a default Object Lock retention")
    else:
        decision = role_may(role_arn, "s3:PutObject", bucket, manifest_key)
        if not decision.allowed:
            reasons.append(decision.reason)
    if reasons:
        raise JobFailure("ReportWriteFailed", f"{_REPORT_WRITE_FAILED} ({reasons[0]})")
    return bucket


def write_completion_report(
    job_id: str, report: Mapping[str, Any], rows: Sequence[ReportRow], role_arn: str
) -> str:
    """Write the completion report in S3's layout and return the key of its manifest.json."""
    folder = _job_folder(report.get("Prefix"), job_id)
    manifest_key = f"{folder}/manifest.json"
    bucket = _check_report_bucket(report, role_arn, manifest_key)
    failed_only = report.get("ReportScope") == "FailedTasksOnly"
    groups = [("failed", [r for r in rows if not r.succeeded])]
    if not failed_only:
        groups.insert(0, ("succeeded", [r for r in rows if r.succeeded]))
    results = []
    for status, group in groups:
        if not group:
            continue
        body = _report_csv(group)
        name = hashlib.sha1(f"{job_id}/{status}/{uuid.uuid4()}".encode()).hexdigest()
        key = f"{folder}/results/{name}.csv"
        _put(bucket, key, body)
        results.append({"TaskExecutionStatus": status, "Bucket": bucket,
                        "MD5Checksum": hashlib.md5(body).hexdigest(), "Key": key})
    index = {"Format": REPORT_FORMAT, "ReportCreationDate": iso_nanos_now(),
             "Results": results, "ReportSchema": REPORT_SCHEMA}
    _put(bucket, manifest_key, json.dumps(index).encode())
    return manifest_key
