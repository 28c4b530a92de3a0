"""S3 Batch Replication of one object version, as AWS performs it, inside the embedded backend.

The Batch Operations emulator calls `replicate_task` once per manifest row. It checks what AWS
checks (the source version and its bucket's replication configuration, the job role, the
replication role with its identity policies, the bucket policies and the KMS key policies, the
destination bucket), then writes the replica through moto's in-process backend with the source's
version id, bytes, ETag, metadata, tags, Object Lock state and creation time. A task never raises
for a failure AWS would report: it returns a `TaskResult` carrying AWS's replication failure code.
Authorization goes through `iam_eval`, so an explicit Deny anywhere wins.

Order of the checks (the first failure is reported):

1. version id given (SrcObjectNotFound), source bucket (SrcBucketNotFound), its replication
   configuration (SrcBucketReplicationConfigMissing);
2. the job role: exists and trusts batchoperations.s3.amazonaws.com (AssumeRoleNotPermitted),
   may s3:InitiateReplication on the object (InitiateReplicationNotPermitted);
3. the version: key (SrcKeyNotFound), version (SrcVersionNotFound), eligibility under the rules,
   archived storage class included (SrcObjectNotEligible);
4. per destination, the replication role (the configuration's Role): exists and trusts
   s3.amazonaws.com (AssumeRoleNotPermitted); reads the configuration, the version, its retention,
   legal hold and tags; decrypts an SSE-KMS source (Src* codes below);
5. the destination bucket: exists (DstBucketNotFound), versioned (DstBucketUnversioned), Object
   Lock when the source has it (DstBucketObjectLockConfigMissing); the replica key
   (DstKmsKeyNotFound, DstKmsKeyInvalidState) and the role's use of it, s3:ReplicateObject,
   s3:ObjectOwnerOverrideToBucketOwner and s3:ReplicateTags (DstPutObjectNotPermitted,
   DstPutTaggingNotPermitted), s3:ReplicateDelete for delete markers (DstDelObjNotPermitted);
6. a version written before and since deleted by version id at the destination
   (DstObjectHardDeleted); a version still there succeeds without being written again.

Replication status of the source version (the verify step reads these):

| source status before       | task outcome                                  | source status after |
|----------------------------|-----------------------------------------------|---------------------|
| none, COMPLETED or FAILED  | success                                       | COMPLETED           |
| REPLICA (or FAILED after a | success                                       | REPLICA             |
| failed try of a replica)   |                                               |                     |
| any                        | failure once S3 began replicating: the        | FAILED              |
|                            | replication role, a permission, a KMS key or  |                     |
|                            | the destination bucket                        |                     |
| any                        | SrcObjectNotFound, SrcKeyNotFound,            | unchanged           |
|                            | SrcVersionNotFound, SrcBucketNotFound,        |                     |
|                            | SrcBucketReplicationConfigMissing (no         |                     |
|                            | configuration), SrcObjectNotEligible, the job |                     |
|                            | role's AssumeRoleNotPermitted or              |                     |
|                            | InitiateReplicationNotPermitted,              |                     |
|                            | DstObjectHardDeleted                          |                     |

The vault's versions are themselves replicas. AWS documents how a replica's status behaves when
S3 replicates from it (replica modification sync): FAILED while the attempt failed, REPLICA again
once it succeeded. We apply the same to a replica copied onwards by Batch Replication, so a replica
never turns into COMPLETED, a failed one can be retried with the FAILED filter, and a re-run with
the REPLICA filter finds the copied ones again (and succeeds without rewriting them).

Choices no AWS source confirms (the reference marks them UNCONFIRMED or is silent):

| question                                   | what this module does                                 |
|--------------------------------------------|-------------------------------------------------------|
| HTTP status of a failed task               | 500 for every code (observed for SrcObjectNotFound    |
|                                            | and SrcObjectNotEligible; nothing known for others)   |
| ResultMessage of a failure                 | observed text where known ("Object versionID is       |
|                                            | invalid", "Object is not eligible for replication"),  |
|                                            | else our sentence naming what to fix                  |
| status of a REPLICA source after the task  | REPLICA on success, FAILED on failure (table above)   |
| which failures mark the source FAILED      | those after S3 began replicating (table above)        |
| role cannot s3:GetReplicationConfiguration | SrcBucketReplicationConfigMissing                     |
| role cannot kms:Decrypt the source key     | SrcGetObjectNotPermitted (S3 cannot read the object)  |
| source key missing, disabled or pending    | SrcKmsKeyInvalidState (there is no SrcKmsKeyNotFound) |
| deletion                                   |                                                       |
| KMS actions on the replica key             | kms:Encrypt (the replication permission AWS documents |
|                                            | for SSE-KMS sources); kms:GenerateDataKey only for an |
|                                            | unencrypted source encrypted by a KMS bucket default; |
|                                            | both in the identity policy and the key policy,       |
|                                            | missing either gives DstPutObjectNotPermitted         |
| s3:PutObjectRetention / PutObjectLegalHold | not required: retention and legal hold travel with    |
| on the destination                         | the replica under s3:ReplicateObject, as the Object   |
|                                            | Lock replication docs list no destination permission  |
|                                            | for them; DstPutRetentionNotPermitted and             |
|                                            | DstPutLegalHoldNotPermitted are never reported        |
| s3:GetObjectVersionAcl on the source       | not checked; SrcGetAclNotPermitted never reported     |
| DstBucketInvalidRegion                     | never reported: Batch Replication across Regions is   |
|                                            | supported and the job's Region is not known here      |
| replica of a source without retention      | gets the destination bucket's default retention,      |
|                                            | counted from the moment the replica is written        |
| unencrypted source into a KMS-default      | encrypted with the default key; the ETag is kept      |
| destination                                | (AWS would give the replica a different ETag)         |
| several destinations                       | each destination's highest-priority Enabled rule      |
|                                            | that matches applies; the first failure is reported   |
| delete markers and tag filters             | a delete marker never matches a rule with a Tag       |
|                                            | filter (AWS refuses delete marker replication there)  |
| re-run of a version already at destination | success, nothing rewritten, even if the replica was   |
|                                            | changed since                                         |
| DstObjectHardDeleted                       | each source version remembers the destination buckets |
|                                            | it was written to; gone from one of them means        |
|                                            | deleted by version id                                 |
| event notifications for replicas           | none (community reports say AWS sends ObjectCreated;  |
|                                            | nothing in the runbook listens to them)               |
| replica owner                              | moto keeps no object owner: a replica belongs to the  |
|                                            | destination bucket's account, as with owner override  |
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from runbook_lib import aws_facts
from runbook_lib.embedded.iam_eval import Decision, Request, can_assume, is_allowed

__all__ = [
    "TaskResult",
    "eligible_for_replication",
    "mark_source_failed",
    "replicate_task",
    "replication_configuration",
]

SUCCESS_MESSAGE = "success"
BATCH_OPERATIONS_PRINCIPAL = "batchoperations.s3.amazonaws.com"
REPLICATION_PRINCIPAL = "s3.amazonaws.com"
ARCHIVED_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
KMS_ENCRYPTIONS = frozenset({"aws:kms", "aws:kms:dsse"})
# moto serves one partition; every ARN the emulator builds is in it.
PARTITION = aws_facts.partition_of("us-east-1")
# Manifests write an empty version field as \N; AWS reports both forms the same way.
INVALID_VERSION_IDS = frozenset({"", "\\N"})
_FAILED_TASK_HTTP_STATUS = 500
# Attributes we keep on a source version: the destination buckets it was written to, and whether
# it is a replica (its REPLICA status is replaced by FAILED while a try of it has failed).
_REPLICATED_TO = "replicated_to_buckets"
_IS_REPLICA = "is_replica"

# Replicas are inserted into moto's version lists, which request threads read and write too.
_write_lock = threading.RLock()


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one Batch Replication task, as a completion report row states it."""

    succeeded: bool
    http_status: int
    error_code: str
    message: str


_SUCCESS = TaskResult(True, 200, "", SUCCESS_MESSAGE)


class _TaskFailed(Exception):
    """A check failed: carries the failure code, and whether S3 marks the source FAILED."""

    def __init__(self, code: str, message: str, *, marks_failed: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.marks_failed = marks_failed


# --- the replication configuration -----------------------------------------------------------


def replication_configuration(source_account: str, bucket_name: str) -> dict[str, Any] | None:
    """Return the bucket's replication configuration with every rule in one shape, or None.

    The shape is the stored XML's: `{"Role": str, "Rule": [rule, ...]}`. Each rule has `ID` (str),
    `Priority` (int), `Status`, and `Filter` as `{}`, `{"Prefix": str}`, `{"Tag": {"Key", "Value"}}`
    or `{"And": {"Prefix": str, "Tag": [{"Key", "Value"}, ...]}}`; a legacy rule keeps its
    top-level `Prefix` and has no `Filter`. `DeleteMarkerReplication`, `SourceSelectionCriteria`
    and `Destination` are dicts of strings (empty when absent).
    """
    bucket = _owned_bucket(source_account, bucket_name)
    if bucket is None:
        return None
    return _normalised(getattr(bucket, "replication", None))


def _normalised(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return moto's stored (xmltodict) configuration in the documented shape."""
    if not stored:
        return None
    rules = stored.get("Rule") or []
    if isinstance(rules, Mapping):
        rules = [rules]
    return {"Role": str(stored.get("Role") or ""), "Rule": [_normalised_rule(rule) for rule in rules]}


def _normalised_rule(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Return one stored rule with typed values and empty elements as empty values."""
    rule: dict[str, Any] = {
        key: _without_nones(value) for key, value in stored.items() if not key.startswith("@")
    }
    rule["ID"] = str(stored.get("ID") or "")
    rule["Priority"] = int(stored.get("Priority") or 0)
    rule["Status"] = str(stored.get("Status") or "Disabled")
    if "Filter" in stored:
        rule["Filter"] = _normalised_filter(stored.get("Filter"))
        rule.pop("Prefix", None)
    else:
        rule["Prefix"] = str(stored.get("Prefix") or "")
    for name in ("DeleteMarkerReplication", "SourceSelectionCriteria", "Destination"):
        rule[name] = rule.get(name) or {}
    return rule


def _normalised_filter(stored: Any) -> dict[str, Any]:
    """Return a rule's Filter as one of its three forms, or {} for "every object"."""
    if not stored:
        return {}
    if "And" in stored:
        both = stored["And"] or {}
        return {"And": {"Prefix": str(both.get("Prefix") or ""), "Tag": _tag_list(both.get("Tag"))}}
    if "Tag" in stored:
        tags = _tag_list(stored["Tag"])
        return {"Tag": tags[0]} if tags else {}
    if "Prefix" in stored:
        return {"Prefix": str(stored.get("Prefix") or "")}
    return {}


def _tag_list(stored: Any) -> list[dict[str, str]]:
    """Return XML Tag elements (one or many) as a list of Key/Value dicts."""
    if not stored:
        return []
    items = stored if isinstance(stored, list) else [stored]
    return [{"Key": str(t.get("Key") or ""), "Value": str(t.get("Value") or "")} for t in items]


def _without_nones(value: Any) -> Any:
    """Return a parsed XML value with empty elements (None) turned into empty dicts."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: _without_nones(v) for k, v in value.items() if not str(k).startswith("@")}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


# --- eligibility ------------------------------------------------------------------------------


def eligible_for_replication(source_account: str, bucket_name: str, version: Any) -> bool:
    """Return True when the bucket's replication rules would replicate this version.

    `version` is a moto FakeKey or FakeDeleteMarker of the bucket. For each destination the
    Enabled rule of highest priority whose filter matches applies; the version is eligible when
    that rule accepts it (SSE-KMS objects need SseKmsEncryptedObjects Enabled, delete markers need
    DeleteMarkerReplication Enabled, archived storage classes never replicate).
    """
    bucket = _owned_bucket(source_account, bucket_name)
    if bucket is None:
        return False
    config = _normalised(getattr(bucket, "replication", None))
    if config is None:
        return False
    return bool(_applicable_rules(config, version, _version_tags(bucket, version)))


def _applicable_rules(
    config: Mapping[str, Any], version: Any, tags: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Return, per destination, the rule that replicates the version there (none when it is excluded)."""
    enabled = [rule for rule in config["Rule"] if rule["Status"] == "Enabled"]
    # Highest priority first; a stable sort keeps the stored order among equal priorities.
    enabled.sort(key=lambda rule: -rule["Priority"])
    chosen: dict[str, dict[str, Any]] = {}
    for rule in enabled:
        destination = str(rule["Destination"].get("Bucket", ""))
        if destination not in chosen and _filter_matches(rule, version.name, tags, _is_marker(version)):
            chosen[destination] = rule
    return [rule for rule in chosen.values() if _rule_accepts(rule, version)]


def _filter_matches(rule: Mapping[str, Any], key: str, tags: Mapping[str, str], is_marker: bool) -> bool:
    """Return True when the rule's filter (or legacy prefix) selects the key and its tags."""
    if "Filter" not in rule:
        return key.startswith(rule.get("Prefix", ""))
    selector = rule["Filter"]
    prefix, wanted = "", []
    if "And" in selector:
        prefix, wanted = selector["And"]["Prefix"], selector["And"]["Tag"]
    elif "Tag" in selector:
        wanted = [selector["Tag"]]
    elif "Prefix" in selector:
        prefix = selector["Prefix"]
    if wanted and is_marker:
        return False  # delete markers carry no tags
    return key.startswith(prefix) and all(tags.get(t["Key"]) == t["Value"] for t in wanted)


def _rule_accepts(rule: Mapping[str, Any], version: Any) -> bool:
    """Return True when the rule's own settings let this version through."""
    if _is_marker(version):
        if "Filter" not in rule:
            return True  # legacy rules replicate delete markers
        return _enabled(rule["DeleteMarkerReplication"])
    if version.storage_class in ARCHIVED_STORAGE_CLASSES:
        return False
    if version.encryption in KMS_ENCRYPTIONS:
        return _enabled(rule["SourceSelectionCriteria"].get("SseKmsEncryptedObjects"))
    return True


def _enabled(setting: Any) -> bool:
    return isinstance(setting, Mapping) and setting.get("Status") == "Enabled"


# --- the task ---------------------------------------------------------------------------------


def replicate_task(
    source_account: str, bucket_name: str, key: str, version_id: str, job_role_arn: str
) -> TaskResult:
    """Return the outcome of replicating one version as a Batch Replication task would.

    On success the replica is written to every destination whose rule applies (or is already
    there) and the source's replication status is updated; a failure writes nothing more and
    marks the source FAILED where AWS would (see the module's table).
    """
    source_version: Any = None
    try:
        source_bucket, config = _source_side(source_account, bucket_name, version_id)
        job_role = _assume(job_role_arn, BATCH_OPERATIONS_PRINCIPAL, source_bucket, "the job role")
        _require(
            _allowed(job_role, "s3:InitiateReplication", _object_arn(bucket_name, key), source_bucket),
            "InitiateReplicationNotPermitted",
            marks_failed=False,
        )
        source_version = _find_version(source_bucket, key, version_id)
        tags = _version_tags(source_bucket, source_version)
        rules = _applicable_rules(config, source_version, tags)
        if not rules:
            raise _TaskFailed(
                "SrcObjectNotEligible", "Object is not eligible for replication", marks_failed=False
            )
        for rule in rules:
            _replicate_to(source_bucket, source_version, tags, config["Role"], rule)
    except _TaskFailed as failure:
        if failure.marks_failed and source_version is not None:
            _set_source_status(source_version, "FAILED")
        return TaskResult(False, _FAILED_TASK_HTTP_STATUS, failure.code, failure.message)
    _set_source_status(source_version, "COMPLETED")
    return _SUCCESS


def _source_side(source_account: str, bucket_name: str, version_id: str) -> tuple[Any, dict[str, Any]]:
    """Return the source bucket and its configuration, or fail as AWS does before any access."""
    if version_id is None or version_id.strip() in INVALID_VERSION_IDS:
        raise _TaskFailed("SrcObjectNotFound", "Object versionID is invalid", marks_failed=False)
    bucket = _owned_bucket(source_account, bucket_name)
    if bucket is None:
        raise _TaskFailed(
            "SrcBucketNotFound",
            f"Source bucket {bucket_name} does not exist in account {source_account}.",
            marks_failed=False,
        )
    config = _normalised(getattr(bucket, "replication", None))
    if config is None:
        raise _TaskFailed(
            "SrcBucketReplicationConfigMissing",
            f"Bucket {bucket_name} has no replication configuration; put one before replicating.",
            marks_failed=False,
        )
    return bucket, config


def _find_version(bucket: Any, key: str, version_id: str) -> Any:
    """Return the stored version (object or delete marker), or fail with AWS's not-found code."""
    versions = bucket.keys.getlist(key, [])
    if not versions:
        raise _TaskFailed(
            "SrcKeyNotFound", f"Key {key!r} does not exist in bucket {bucket.name}.", marks_failed=False
        )
    for version in versions:
        if str(version.version_id) == version_id:
            return version
    raise _TaskFailed(
        "SrcVersionNotFound",
        f"Version {version_id} of key {key!r} does not exist in bucket {bucket.name}.",
        marks_failed=False,
    )


def _replicate_to(
    source_bucket: Any, version: Any, tags: Mapping[str, str], role_arn: str, rule: Mapping[str, Any]
) -> None:
    """Check everything one destination needs, then write the replica there (or find it there)."""
    role = _assume(role_arn, REPLICATION_PRINCIPAL, source_bucket, "the replication role", marks_failed=True)
    _check_source_reads(role, source_bucket, version, tags)
    destination = _destination_bucket(rule, source_bucket)
    replica_encryption = _check_destination_kms(role, destination, version, rule)
    _check_destination_writes(role, destination, version, tags, rule)
    with _write_lock:
        if _already_replicated(version, destination):
            return
        if _is_marker(version):
            _write_delete_marker(destination, version)
        else:
            _write_object(destination, version, tags, rule, replica_encryption)
        _remember_destination(version, destination)


# --- roles and authorization ----------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    """An assumed role: who it is and the identity policies it carries."""

    arn: str
    account: str
    policies: tuple[Mapping[str, Any], ...]
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


def _assume(
    role_arn: str, service: str, source_bucket: Any, label: str, *, marks_failed: bool = False
) -> _Role:
    """Return the role as `service` assumes it for this bucket, or fail with AssumeRoleNotPermitted."""
    account = _arn_account(role_arn)
    role = _iam_role(role_arn, account)
    if role is None:
        raise _TaskFailed(
            "AssumeRoleNotPermitted",
            f"S3 cannot assume {label} {role_arn}: no such role in account {account or '?'}.",
            marks_failed=marks_failed,
        )
    trust = _document(role.assume_role_policy_document)
    # Both services act for the source account; replication also names the bucket it acts for
    # (a job's own ARN, which Batch Operations would send, is not known to a single task).
    source_context: dict[str, str | list[str]] = {"aws:SourceAccount": source_bucket.account_id}
    if service == REPLICATION_PRINCIPAL:
        source_context["aws:SourceArn"] = _bucket_arn(source_bucket.name)
    if trust is None or not can_assume(trust, service, context=source_context):
        raise _TaskFailed(
            "AssumeRoleNotPermitted",
            f"S3 cannot assume {label} {role_arn}: its trust policy does not let {service} "
            "call sts:AssumeRole; add that service principal to the trust policy.",
            marks_failed=marks_failed,
        )
    context: dict[str, str | list[str]] = {
        "aws:PrincipalArn": role.arn,
        "aws:PrincipalAccount": account,
        "aws:SecureTransport": "true",
    }
    return _Role(role.arn, account, tuple(_identity_policies(role)), context)


def _iam_role(role_arn: str, account: str) -> Any:
    """Return moto's role for an ARN, or None when the account has no such role."""
    from moto.iam.models import iam_backends

    if not account:
        return None
    backend = iam_backends[account][PARTITION]
    # moto's role ARN includes the role's path, as AWS's does.
    return next((role for role in list(backend.roles.values()) if role.arn == role_arn), None)


def _identity_policies(role: Any) -> Iterable[Mapping[str, Any]]:
    """Yield the role's inline policies and the default version of each attached managed policy."""
    for text in list(role.policies.values()):
        document = _document(text)
        if document is not None:
            yield document
    for policy in list(role.managed_policies.values()):
        default = next((v for v in policy.versions if v.is_default), None)
        document = _document(default.document) if default is not None else None
        if document is not None:
            yield document


def _document(stored: Any) -> dict[str, Any] | None:
    """Return a stored policy as a dict: moto keeps JSON text, sometimes URL-encoded."""
    if isinstance(stored, Mapping):
        return dict(stored)
    if isinstance(stored, bytes):
        stored = stored.decode()
    if not stored or not isinstance(stored, str):
        return None
    return _parsed(stored)


@lru_cache(maxsize=512)
def _parsed(text: str) -> dict[str, Any] | None:
    """Return a JSON policy text (plain or URL-encoded) as a dict; shared, so never modify it."""
    for candidate in (text, unquote(text)):
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict):
            return document
    return None


def _allowed(role: _Role, action: str, resource: str, bucket: Any) -> Decision:
    """Return AWS's verdict on the role doing an S3 action on a bucket or one of its objects."""
    request = Request(
        principal_arn=role.arn,
        principal_account=role.account,
        action=action,
        resource=resource,
        resource_account=bucket.account_id,
        context=role.context,
    )
    return is_allowed(
        request, identity_policies=role.policies, resource_policy=_document(bucket.policy)
    )


def _key_allowed(role: _Role, action: str, key: Any, context: Mapping[str, str]) -> Decision:
    """Return AWS's verdict on the role using a KMS key, its key policy included."""
    request = Request(
        principal_arn=role.arn,
        principal_account=role.account,
        action=action,
        resource=key.arn,
        resource_account=key.account_id,
        context={**role.context, "kms:CallerAccount": role.account, **context},
    )
    return is_allowed(
        request,
        identity_policies=role.policies,
        resource_policy=_document(key.policy),
        resource_is_kms_key=True,
    )


def _require(decision: Decision, code: str, *, marks_failed: bool) -> None:
    """Fail the task with `code` unless the decision allows."""
    if not decision.allowed:
        raise _TaskFailed(code, decision.reason, marks_failed=marks_failed)


# --- source reads ---------------------------------------------------------------------------


def _check_source_reads(role: _Role, bucket: Any, version: Any, tags: Mapping[str, str]) -> None:
    """Fail unless the replication role may read the configuration, the version and its state."""
    object_arn = _object_arn(bucket.name, version.name)
    _require(
        _allowed(role, "s3:GetReplicationConfiguration", _bucket_arn(bucket.name), bucket),
        "SrcBucketReplicationConfigMissing",
        marks_failed=True,
    )
    _require(
        _allowed(role, "s3:GetObjectVersionForReplication", object_arn, bucket),
        "SrcGetObjectNotPermitted",
        marks_failed=True,
    )
    if _is_marker(version):
        return
    if version.lock_mode or version.lock_until:
        _require(
            _allowed(role, "s3:GetObjectRetention", object_arn, bucket),
            "SrcGetRetentionNotPermitted",
            marks_failed=True,
        )
    if version.lock_legal_status:
        _require(
            _allowed(role, "s3:GetObjectLegalHold", object_arn, bucket),
            "SrcGetLegalHoldNotPermitted",
            marks_failed=True,
        )
    if tags:
        _require(
            _allowed(role, "s3:GetObjectVersionTagging", object_arn, bucket),
            "SrcGetTaggingNotPermitted",
            marks_failed=True,
        )
    if version.encryption in KMS_ENCRYPTIONS:
        _check_source_key(role, bucket, version)


def _check_source_key(role: _Role, bucket: Any, version: Any) -> None:
    """Fail unless the source object's KMS key is usable and the role may decrypt with it."""
    reference = version.kms_key_id or "alias/aws/s3"
    key = _kms_key(reference, bucket.account_id, bucket.region_name)
    if key is None or key.key_state != "Enabled":
        state = "does not exist" if key is None else f"is {key.key_state}"
        raise _TaskFailed(
            "SrcKmsKeyInvalidState",
            f"The KMS key {reference} of the source object {state}; enable it (or cancel its "
            "deletion and enable it) and run the task again.",
            marks_failed=True,
        )
    context = _kms_context(bucket, version.name, bool(version.bucket_key_enabled))
    _require(_key_allowed(role, "kms:Decrypt", key, context), "SrcGetObjectNotPermitted", marks_failed=True)


# --- destination ----------------------------------------------------------------------------


def _destination_bucket(rule: Mapping[str, Any], source_bucket: Any) -> Any:
    """Return the rule's destination bucket, or fail when it is missing or cannot take replicas."""
    arn = str(rule["Destination"].get("Bucket", ""))
    name = arn.split(":::", 1)[-1]
    bucket = _any_bucket(name)
    if bucket is None:
        raise _TaskFailed(
            "DstBucketNotFound",
            f"Destination bucket {name or arn!r} does not exist; create it or fix the rule.",
            marks_failed=True,
        )
    if bucket.versioning_status != "Enabled":
        raise _TaskFailed(
            "DstBucketUnversioned",
            f"Destination bucket {name} does not have versioning enabled; enable it.",
            marks_failed=True,
        )
    if source_bucket.object_lock_enabled and not bucket.object_lock_enabled:
        raise _TaskFailed(
            "DstBucketObjectLockConfigMissing",
            f"Source bucket {source_bucket.name} uses Object Lock but destination bucket {name} "
            "does not; enable Object Lock on the destination.",
            marks_failed=True,
        )
    return bucket


@dataclass(frozen=True)
class _Encryption:
    """How a replica is encrypted: algorithm, KMS key ARN and whether it uses a Bucket Key."""

    algorithm: str | None
    kms_key_id: str | None = None
    bucket_key: bool | None = None


def _check_destination_kms(
    role: _Role, destination: Any, version: Any, rule: Mapping[str, Any]
) -> _Encryption:
    """Return how the replica is encrypted, failing unless its key is usable by the role."""
    if _is_marker(version):
        return _Encryption(None)
    default_algorithm, default_key, default_bucket_key = _default_encryption(destination)
    if version.encryption in KMS_ENCRYPTIONS:
        reference = str(rule["Destination"].get("EncryptionConfiguration", {}).get("ReplicaKmsKeyID", ""))
        actions = ["kms:Encrypt"]
        algorithm = version.encryption
        # The replica keeps the source's encryption settings, Bucket Key included; the bucket ARN is
        # the encryption context only when both source and destination use Bucket Keys.
        bucket_key = bool(version.bucket_key_enabled)
        bucket_context = bucket_key and bool(default_bucket_key)
    elif version.encryption is None and default_algorithm in KMS_ENCRYPTIONS:
        # An unencrypted source takes the destination's default, which needs a new data key.
        reference, actions, algorithm = default_key or "alias/aws/s3", ["kms:GenerateDataKey"], default_algorithm
        bucket_key = bucket_context = bool(default_bucket_key)
    else:
        algorithm = version.encryption or default_algorithm
        return _Encryption(algorithm)
    key = _kms_key(reference, destination.account_id, destination.region_name) if reference else None
    if key is None or key.region != destination.region_name:
        raise _TaskFailed(
            "DstKmsKeyNotFound",
            f"The replica KMS key {reference or '(none given)'} does not exist in the destination "
            f"bucket's Region {destination.region_name}; set ReplicaKmsKeyID to an existing key ARN.",
            marks_failed=True,
        )
    if key.key_state != "Enabled":
        raise _TaskFailed(
            "DstKmsKeyInvalidState",
            f"The replica KMS key {key.arn} is {key.key_state}; enable it and run the task again.",
            marks_failed=True,
        )
    context = _kms_context(destination, version.name, bucket_context)
    if bucket_key:
        # A Bucket Key replica is written with the replica key's data key, which the role decrypts.
        actions.append("kms:Decrypt")
    for action in actions:
        _require(_key_allowed(role, action, key, context), "DstPutObjectNotPermitted", marks_failed=True)
    return _Encryption(algorithm, key.arn, True if bucket_key else None)


def _check_destination_writes(
    role: _Role, destination: Any, version: Any, tags: Mapping[str, str], rule: Mapping[str, Any]
) -> None:
    """Fail unless the role may write the replica (and its tags, and the owner change) there."""
    object_arn = _object_arn(destination.name, version.name)
    if _is_marker(version):
        _require(
            _allowed(role, "s3:ReplicateDelete", object_arn, destination),
            "DstDelObjNotPermitted",
            marks_failed=True,
        )
        return
    _require(
        _allowed(role, "s3:ReplicateObject", object_arn, destination),
        "DstPutObjectNotPermitted",
        marks_failed=True,
    )
    translation = rule["Destination"].get("AccessControlTranslation") or {}
    if translation.get("Owner") == "Destination":
        _require(
            _allowed(role, "s3:ObjectOwnerOverrideToBucketOwner", object_arn, destination),
            "DstPutObjectNotPermitted",
            marks_failed=True,
        )
    if tags:
        _require(
            _allowed(role, "s3:ReplicateTags", object_arn, destination),
            "DstPutTaggingNotPermitted",
            marks_failed=True,
        )


def _already_replicated(version: Any, destination: Any) -> bool:
    """Return True when the version is at the destination; fail when it was there and is gone."""
    present = any(
        str(v.version_id) == str(version.version_id) for v in destination.keys.getlist(version.name, [])
    )
    if present:
        return True
    if destination.name in getattr(version, _REPLICATED_TO, ()):
        raise _TaskFailed(
            "DstObjectHardDeleted",
            f"Version {version.version_id} was replicated to {destination.name} and has since been "
            "deleted there by version id; Batch Replication does not replicate it again.",
            marks_failed=False,
        )
    return False


# --- writing replicas -----------------------------------------------------------------------


def _write_object(
    destination: Any, source: Any, tags: Mapping[str, str], rule: Mapping[str, Any], encryption: _Encryption
) -> None:
    """Write the replica of an object version: same id, bytes, ETag, metadata, lock state, time."""
    from moto.s3.models import FakeKey, s3_backends

    mode, until = source.lock_mode, source.lock_until
    if not mode and not until:
        mode, until = _default_retention(destination)
    replica = FakeKey(
        name=source.name,
        value=source.value,
        account_id=destination.account_id,
        region_name=destination.region_name,
        storage=str(rule["Destination"].get("StorageClass") or source.storage_class or "STANDARD"),
        etag=_stored_etag(source),
        is_versioned=True,
        version_id=source.version_id,
        bucket_name=destination.name,
        encryption=encryption.algorithm,
        kms_key_id=encryption.kms_key_id,
        bucket_key_enabled=encryption.bucket_key,
        lock_mode=mode,
        lock_legal_status=source.lock_legal_status,
        lock_until=until,
        checksum_value=source.checksum_value,
        checksum_type=source.checksum_type,
        checksum_parts=source.checksum_parts,
    )
    replica.last_modified = source.last_modified
    replica.checksum_algorithm = source.checksum_algorithm
    replica.website_redirect_location = source.website_redirect_location
    replica.set_metadata(dict(source.metadata))
    replica.replication_status = "REPLICA"  # type: ignore[attr-defined]  # our attribute, sent by patches.py
    if tags:
        backend = s3_backends[destination.account_id][PARTITION]
        backend.tagger.tag_resource(replica.arn, [{"Key": k, "Value": v} for k, v in tags.items()])
    _insert_in_time_order(destination, replica)


def _write_delete_marker(destination: Any, source: Any) -> None:
    """Write the replica of a delete marker with the source's version id and time."""
    from moto.s3.models import FakeDeleteMarker

    existing = destination.keys.getlist(source.name, [])
    marker = FakeDeleteMarker(key=existing[-1] if existing else source.key)
    marker._version_id = source.version_id
    marker.last_modified = source.last_modified
    marker.replication_status = "REPLICA"  # type: ignore[attr-defined]  # our attribute, as on keys
    _insert_in_time_order(destination, marker)


def _insert_in_time_order(bucket: Any, version: Any) -> None:
    """Insert a version where its time puts it: moto serves the list's last entry as the latest."""
    versions = list(bucket.keys.getlist(version.name, []))
    moment = _utc(version.last_modified)
    position = next((i for i, v in enumerate(versions) if _utc(v.last_modified) > moment), len(versions))
    versions.insert(position, version)
    bucket.keys.setlist(version.name, versions)


def _remember_destination(version: Any, destination: Any) -> None:
    """Record on the source version that it now exists in the destination bucket."""
    buckets = set(getattr(version, _REPLICATED_TO, ()))
    buckets.add(destination.name)
    setattr(version, _REPLICATED_TO, frozenset(buckets))


def mark_source_failed(version: Any) -> None:
    """Mark a source version FAILED as a failed task does, remembering that a replica is one.

    For callers that fail a task themselves (an injected fault, say): setting the status directly
    would lose a replica's REPLICA, and a later successful retry would then report COMPLETED.
    """
    _set_source_status(version, "FAILED")


def _set_source_status(version: Any, outcome: str) -> None:
    """Set the source version's status after a task: COMPLETED or FAILED; REPLICA for a replica's success."""
    if version is None:
        return
    with _write_lock:
        if getattr(version, "replication_status", None) == "REPLICA":
            setattr(version, _IS_REPLICA, True)
        if outcome == "COMPLETED" and getattr(version, _IS_REPLICA, False):
            outcome = "REPLICA"
        version.replication_status = outcome


# --- moto lookups and small utilities ------------------------------------------------------


def _owned_bucket(account: str, name: str) -> Any:
    """Return the bucket of that name owned by the account, or None."""
    from moto.s3.models import s3_backends

    return s3_backends[account][PARTITION].buckets.get(name)


def _any_bucket(name: str) -> Any:
    """Return the bucket of that name in whichever account owns it, or None."""
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    if owner is None:
        return None
    partition, account = owner
    return s3_backends[account][partition].buckets.get(name)


def _version_tags(bucket: Any, version: Any) -> dict[str, str]:
    """Return the object tags of a version (delete markers have none)."""
    from moto.s3.models import s3_backends

    if _is_marker(version):
        return {}
    backend = s3_backends[bucket.account_id][PARTITION]
    return dict(backend.tagger.get_tag_dict_for_resource(version.arn))


def _kms_key(reference: str, account: str, region: str) -> Any:
    """Return the KMS key an ARN, key id, alias or alias ARN names, or None when there is none."""
    from moto.kms.models import kms_backends

    if reference.startswith("arn:"):
        parts = reference.split(":")
        if len(parts) < 6 or parts[2] != "kms":
            return None
        region, account = parts[3] or region, parts[4] or account
    backend = kms_backends[account][region]
    try:
        key_id = backend.any_id_to_key_id(reference)
    except Exception:  # moto raises several types for an unknown alias
        return None
    return backend.keys.get(key_id) if key_id else None


def _kms_context(bucket: Any, key: str, bucket_key: bool) -> dict[str, str]:
    """Return the KMS request context S3 sends: its service name and the encryption context."""
    resource = _bucket_arn(bucket.name) if bucket_key else _object_arn(bucket.name, key)
    return {
        "kms:ViaService": aws_facts.kms_via_service("s3", bucket.region_name),
        "kms:EncryptionContext:aws:s3:arn": resource,
    }


def _default_encryption(bucket: Any) -> tuple[str | None, str | None, bool]:
    """Return the bucket's default encryption: algorithm, KMS key and Bucket Key setting."""
    rule = (bucket.encryption or {}).get("Rule") or {}
    if isinstance(rule, list):
        rule = rule[0] if rule else {}
    default = rule.get("ApplyServerSideEncryptionByDefault") or {}
    bucket_key = str(rule.get("BucketKeyEnabled", "")).lower() == "true"
    return default.get("SSEAlgorithm"), default.get("KMSMasterKeyID"), bucket_key


def _default_retention(bucket: Any) -> tuple[str | None, str | None]:
    """Return the retention the bucket's default gives a new version, or (None, None)."""
    if not bucket.object_lock_enabled or not bucket.default_lock_mode:
        return None, None
    days = int(bucket.default_lock_days or 0) + 365 * int(bucket.default_lock_years or 0)
    if days <= 0:
        return None, None
    until = datetime.now(timezone.utc) + timedelta(days=days)
    return bucket.default_lock_mode, until.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored_etag(version: Any) -> str:
    """Return the version's ETag without quotes, as moto stores it (multipart form included)."""
    return str(version.etag).strip('"')


def _utc(moment: datetime) -> datetime:
    """Return a naive UTC datetime, the form moto stores, for ordering mixed values."""
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _is_marker(version: Any) -> bool:
    from moto.s3.models import FakeDeleteMarker

    return isinstance(version, FakeDeleteMarker)


def _arn_account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _bucket_arn(bucket: str) -> str:
    return aws_facts.bucket_arn(bucket, PARTITION)


def _object_arn(bucket: str, key: str) -> str:
    return aws_facts.object_arn(bucket, key, PARTITION)


