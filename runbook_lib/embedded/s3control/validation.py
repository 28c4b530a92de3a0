"""The rules of a CreateJob request that botocore's model of S3 Control cannot express.

The model (checked in `responses`) knows required members, enums, lengths and patterns; it does
not know that a job takes exactly one of Manifest and ManifestGenerator, that the emulator runs
S3ReplicateObject (Batch Replication) and S3InitiateRestoreObject (restore) jobs only, or which
manifest fields go together. Each violation is an InvalidRequest
whose message names the member and what is expected.
"""

from __future__ import annotations

from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded.moto_state import PARTITION
from runbook_lib.embedded.s3control.exceptions import InvalidRequest

__all__ = ["RESTORE_OPERATION", "SUPPORTED_OPERATION", "SUPPORTED_OPERATIONS", "validate_job_request"]

SUPPORTED_OPERATION = "S3ReplicateObject"
RESTORE_OPERATION = "S3InitiateRestoreObject"
SUPPORTED_OPERATIONS = (SUPPORTED_OPERATION, RESTORE_OPERATION)
# Spelled from the builders, so messages show the ARN form the backend accepts.
_BUCKET_ARN_FORM = aws_facts.bucket_arn("<bucket-name>", PARTITION)
_OBJECT_ARN_FORM = aws_facts.object_arn("<bucket>", "<key>", PARTITION)
_S3_ARN_PREFIX = aws_facts.bucket_arn("", PARTITION)


def _is_bucket_arn(value: object) -> bool:
    text = str(value)
    if not text.startswith("arn:") or ":s3:::" not in text:
        return False
    name = text.split(":s3:::", 1)[1]
    return 3 <= len(name) <= 63 and "/" not in name and name == name.lower()


def validate_job_request(request: dict[str, Any]) -> None:
    """Raise InvalidRequest when a CreateJob request breaks a rule the model alone cannot express."""
    operation = request.get("Operation") or {}
    if len(operation) != 1:
        raise InvalidRequest(
            "Operation must name exactly one operation, for Batch Replication {\"S3ReplicateObject\": {}}.")
    name = next(iter(operation))
    if name not in SUPPORTED_OPERATIONS:
        raise InvalidRequest(
            f"Operation {name} is not supported: the embedded backend runs S3ReplicateObject (Batch "
            "Replication) and S3InitiateRestoreObject (restore) jobs only."
        )
    if name == RESTORE_OPERATION:
        _validate_restore(operation[name] or {})
    has_manifest, has_generator = "Manifest" in request, "ManifestGenerator" in request
    if has_manifest == has_generator:
        raise InvalidRequest("Give exactly one of Manifest and ManifestGenerator: the job needs one list of objects.")
    if has_generator:
        _validate_generator(request["ManifestGenerator"])
    else:
        _validate_manifest(request["Manifest"])
    _validate_report(request["Report"])


def _validate_restore(restore: dict[str, Any]) -> None:
    days = restore.get("ExpirationInDays")
    if days is not None and int(days) < 1:
        raise InvalidRequest(
            f"Operation.S3InitiateRestoreObject.ExpirationInDays {days} must be 1 or greater for GLACIER and "
            "DEEP_ARCHIVE objects.")


def _validate_generator(generator: dict[str, Any]) -> None:
    spec = generator.get("S3JobManifestGenerator")
    if spec is None:
        raise InvalidRequest("ManifestGenerator must contain S3JobManifestGenerator.")
    if not _is_bucket_arn(spec.get("SourceBucket")):
        raise InvalidRequest(
            f"ManifestGenerator.S3JobManifestGenerator.SourceBucket {spec.get('SourceBucket')!r} is not a bucket "
            f"ARN; use {_BUCKET_ARN_FORM}."
        )
    output = spec.get("ManifestOutputLocation")
    if spec.get("EnableManifestOutput") and output is None:
        raise InvalidRequest(
            "EnableManifestOutput is true, so ManifestOutputLocation must say where to save the manifest.")
    if output is not None:
        if not _is_bucket_arn(output.get("Bucket")):
            raise InvalidRequest(
                f"ManifestOutputLocation.Bucket {output.get('Bucket')!r} is not a bucket ARN; use {_BUCKET_ARN_FORM}."
            )
        encryption = output.get("ManifestEncryption")
        if encryption is not None and len(encryption) != 1:
            raise InvalidRequest("ManifestOutputLocation.ManifestEncryption must hold exactly one of SSES3 and SSEKMS.")
    constraint = (spec.get("Filter") or {}).get("KeyNameConstraint") or {}
    for name, values in constraint.items():
        if len(values) > 1:
            raise InvalidRequest(f"Filter.KeyNameConstraint.{name} accepts one value, got {len(values)}.")
    for choice in (spec.get("Filter") or {}).get("MatchAnyObjectEncryption") or []:
        if len(choice) != 1:
            raise InvalidRequest("Each Filter.MatchAnyObjectEncryption entry must name exactly one encryption type.")


def _validate_manifest(manifest: dict[str, Any]) -> None:
    spec, location = manifest["Spec"], manifest["Location"]
    arn = str(location["ObjectArn"])
    if not arn.startswith(_S3_ARN_PREFIX) or "/" not in arn[len(_S3_ARN_PREFIX):]:
        raise InvalidRequest(f"Manifest.Location.ObjectArn {arn!r} is not an object ARN; use {_OBJECT_ARN_FORM}.")
    fields = spec.get("Fields")
    if spec["Format"] == "S3BatchOperations_CSV_20180820":
        named = [f for f in fields or [] if f != "Ignore"]
        if named not in (["Bucket", "Key"], ["Bucket", "Key", "VersionId"]):
            raise InvalidRequest(
                f"Manifest.Spec.Fields {fields!r} must list Bucket, Key and optionally VersionId, in that order "
                "(Ignore may stand for columns to skip)."
            )
    elif fields:
        raise InvalidRequest("Manifest.Spec.Fields is only allowed with the S3BatchOperations_CSV_20180820 format.")


def _validate_report(report: dict[str, Any]) -> None:
    if not report.get("Enabled"):
        return
    if not _is_bucket_arn(report.get("Bucket")):
        raise InvalidRequest(
            f"Report.Bucket {report.get('Bucket')!r} is not a bucket ARN; an enabled report needs "
            f"{_BUCKET_ARN_FORM}."
        )
    if report.get("Format") is None:
        raise InvalidRequest("Report.Format is required when the report is enabled; use Report_CSV_20180820.")
