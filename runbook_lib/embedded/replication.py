"""S3 Batch Replication of one object version, as AWS performs it, inside the embedded backend.

The Batch Operations emulator calls `replicate_task` once per manifest row. It checks what AWS
checks (the source version and its bucket's replication configuration, the job role, the
replication role with its identity policies, the bucket policies and the KMS key policies, the
destination bucket), then writes the replica through moto's in-process backend with the source's
version id, bytes, ETag, metadata, tags, Object Lock state and creation time. A task never raises
for a failure AWS would report: it returns a `TaskResult` carrying AWS's replication failure code.
Authorization goes through `iam_eval`, so an explicit Deny anywhere wins.

A job's tasks go through a `JobReplicator`. The tasks over one source bucket share one view of
what they read (the bucket and its configuration, the roles with their trust and identity
policies, bucket and key policies, KMS keys, destination buckets), and each kind of version gets
a plan: the checks its task makes, in the order below, then its writes. Every check still asks
about the task's own object (`iam_eval.PreparedCheck`). A view is read again as soon as a request
that may change state has reached the backend (`state_changes`), after 1,024 tasks in any case,
and for every task while the task caches are off; `replicate_task` reads everything afresh.

Order of the checks (the first failure is reported):

1. version id given (SrcObjectNotFound), source bucket (SrcBucketNotFound), its replication
   configuration (SrcBucketReplicationConfigMissing);
2. the job role: exists and trusts batchoperations.s3.amazonaws.com (AssumeRoleNotPermitted),
   may s3:InitiateReplication on the object (InitiateReplicationNotPermitted);
3. the version: key (SrcKeyNotFound), version (SrcVersionNotFound), eligibility under the rules,
   archived storage class included (SrcObjectNotEligible);
4. per destination, the replication role (the configuration's Role): exists and trusts
   s3.amazonaws.com for the source bucket and its account (AssumeRoleNotPermitted); reads the
   configuration, the version, its retention, legal hold and tags; decrypts an SSE-KMS source
   (Src* codes below);
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
| keys sent when a role is assumed           | the replication role: aws:SourceAccount (the source   |
|                                            | bucket's owner) and aws:SourceArn (its bucket ARN), as |
|                                            | S3 documents for replication; the job role: none, as  |
|                                            | nothing documents them for Batch Operations           |
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
| several destinations                       | each applicable rule's destination in turn (see       |
|                                            | `replication_rules`); the first failure is reported   |
| re-run of a version already at destination | success, nothing rewritten, even if the replica was   |
|                                            | changed since                                         |
| DstObjectHardDeleted                       | each source version remembers the destination buckets |
|                                            | it was written to; gone from one of them means        |
|                                            | deleted by version id                                 |
| event notifications for replicas           | none (community reports say AWS sends ObjectCreated;  |
|                                            | nothing in the runbook listens to them)               |
| replica owner                              | moto keeps no object owner: a replica belongs to the  |
|                                            | destination bucket's account, as with owner override  |
| replica of a multipart object              | same ETag (`<md5 of the parts' md5s>-<parts>`), same  |
|                                            | parts and part count, same additional checksum (type  |
|                                            | and value): AWS describes replicas as copies with the |
|                                            | same metadata and does not say more                   |
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast

from runbook_lib import aws_facts
from runbook_lib.embedded import moto_state, state_changes
from runbook_lib.embedded.iam_eval import PreparedCheck, Request, can_assume, service_source_context
from runbook_lib.embedded.moto_state import PARTITION, is_delete_marker
from runbook_lib.embedded.replica_keys import ReplicaFactory
from runbook_lib.embedded.replication_rules import KMS_ENCRYPTIONS, applicable_rules, stored_configuration
from runbook_lib.embedded.task_caches import caches_enabled
from runbook_lib.embedded.task_result import TaskResult
from runbook_lib.embedded.utc import as_utc, utc_now

__all__ = [
    "JobReplicator",
    "TaskResult",
    "job_replicator",
    "mark_source_failed",
    "replicate_task",
]

SUCCESS_MESSAGE = "success"
BATCH_OPERATIONS_PRINCIPAL = aws_facts.BATCH_OPERATIONS_SERVICE_PRINCIPAL
REPLICATION_PRINCIPAL = aws_facts.S3_SERVICE_PRINCIPAL
# Manifests write an empty version field as \N; AWS reports both forms the same way.
INVALID_VERSION_IDS = frozenset({"", "\\N"})
# The encryption context key S3 sends to KMS, naming the object (or, with Bucket Keys, the bucket).
_ENCRYPTION_CONTEXT_KEY = "kms:EncryptionContext:aws:s3:arn"
_FAILED_TASK_HTTP_STATUS = 500
# Attributes we keep on a source version: the destination buckets it was written to, and whether
# it is a replica (its REPLICA status is replaced by FAILED while a try of it has failed).
_REPLICATED_TO = "replicated_to_buckets"
_IS_REPLICA = "is_replica"

# Replicas are inserted into moto's version lists, which request threads read and write too.
_write_lock = threading.RLock()

# A view is read again after this many tasks even when no request came in: a bound on how long
# a change made inside the backend's process (never through the API) can go unseen.
_VIEW_TASKS = 1024
_VIEWS_PER_JOB = 64

_SUCCESS = TaskResult(True, 200, "", SUCCESS_MESSAGE)
_T = TypeVar("_T")


class _TaskFailed(Exception):
    """A check failed: carries the failure code, and whether S3 marks the source FAILED."""

    def __init__(self, code: str, message: str, *, marks_failed: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.marks_failed = marks_failed

    def again(self) -> _TaskFailed:
        """Return the same failure for another task (an exception object is raised once)."""
        return _TaskFailed(self.code, self.message, marks_failed=self.marks_failed)


# --- the task ---------------------------------------------------------------------------------


def replicate_task(
    source_account: str, bucket_name: str, key: str, version_id: str, job_role_arn: str
) -> TaskResult:
    """Return the outcome of replicating one version as a Batch Replication task would.

    On success the replica is written to every destination whose rule applies (or is already
    there) and the source's replication status is updated; a failure writes nothing more and
    marks the source FAILED where AWS would (see the module's table). Everything is read afresh.
    """
    return _View(source_account, bucket_name, job_role_arn).replicate(key, version_id)


class JobReplicator:
    """Replicates the tasks of one job, reusing what earlier tasks read while nothing can have changed it.

    Each task is decided as `replicate_task` decides it; what the tasks over one source bucket share
    (the bucket and its configuration, the roles and their policies, bucket and key policies, KMS
    keys, destination buckets) is read once per view. A view is read again once a request that may
    change state has reached the backend (see `state_changes`), after `_VIEW_TASKS` tasks, and
    always when the task caches are off.
    """

    def __init__(self) -> None:
        self._views: dict[tuple[str, str, str], _View] = {}

    def __call__(
        self, source_account: str, bucket_name: str, key: str, version_id: str, job_role_arn: str
    ) -> TaskResult:
        """Return the outcome of replicating one version, as `replicate_task` does."""
        where = (source_account, bucket_name, job_role_arn)
        view = self._views.get(where)
        if view is None or not view.fresh():
            if len(self._views) >= _VIEWS_PER_JOB:
                self._views.clear()
            view = self._views[where] = _View(source_account, bucket_name, job_role_arn)
        return view.replicate(key, version_id)


def job_replicator() -> JobReplicator:
    """Return a replicator for the tasks of one job (see `JobReplicator`)."""
    return JobReplicator()


# A task's plan is a list of steps, the same for every version of one shape (see `_shape`): a
# permission check (_CHECK, check, whether it asks about the object, failure code, marks FAILED),
# a failure found while planning (_FAIL, failure), a replica to write (_WRITE, destination, rule,
# encryption, replica factory or None for a delete marker).
_CHECK, _FAIL, _WRITE = 0, 1, 2
_PLANS_PER_VIEW = 256
_Step = tuple[Any, ...]


class _View:
    """What tasks over one source bucket with one job role read: read once, as the first task needing it found it.

    Each kind of version (`_shape`) gets a plan: the checks its task makes, in the order the module's
    docstring gives, then the write; a check asks its prepared question about each task's own key.
    """

    def __init__(self, source_account: str, bucket_name: str, job_role_arn: str) -> None:
        self._generation = state_changes.generation()  # first: a change from now on is seen
        self._cached = caches_enabled()
        self._tasks = 0
        self._source_account = source_account
        self._bucket_name = bucket_name
        self._job_role_arn = job_role_arn
        self._known: dict[Hashable, Any] = {}
        self._plans: dict[Hashable, list[_Step]] = {}

    def fresh(self) -> bool:
        """Return whether later tasks may still use what this view read."""
        return (self._cached and caches_enabled() and self._tasks < _VIEW_TASKS
                and self._generation == state_changes.generation())

    def _once(self, what: Hashable, read: Callable[[], _T]) -> _T:
        """Return what `read` gave (or raise the failure it raised) the first time this view asked for `what`."""
        try:
            found = self._known[what]
        except KeyError:
            try:
                found = read()
            except _TaskFailed as failure:
                found = failure
            self._known[what] = found
        if isinstance(found, _TaskFailed):
            raise found.again()
        return cast(_T, found)

    # --- the task

    def replicate(self, key: str, version_id: str) -> TaskResult:
        """Return the outcome of replicating one version of this view's bucket (see `replicate_task`)."""
        self._tasks += 1
        source_version: Any = None
        try:
            if version_id is None or version_id.strip() in INVALID_VERSION_IDS:
                raise _TaskFailed("SrcObjectNotFound", "Object versionID is invalid", marks_failed=False)
            source_bucket, config, initiate = self._once("prologue", self._prologue)
            if not initiate.allows(key):
                raise _TaskFailed("InitiateReplicationNotPermitted", initiate.decision(key).reason,
                                  marks_failed=False)
            source_version = _find_version(source_bucket, key, version_id)
            tags = moto_state.version_tags(source_bucket, source_version)
            rules = applicable_rules(config, source_version, tags)
            if not rules:
                raise _TaskFailed(
                    "SrcObjectNotEligible", "Object is not eligible for replication", marks_failed=False
                )
            marker = is_delete_marker(source_version)
            shape = _shape(source_version, marker, tags, rules)
            plan = self._plans.get(shape)
            if plan is None:
                plan = self._plan(shape, source_bucket, config["Role"], source_version, marker, tags, rules)
            _follow(plan, source_version, key, tags, marker)
        except _TaskFailed as failure:
            if failure.marks_failed and source_version is not None:
                _set_source_status(source_version, aws_facts.REPLICATION_STATUS_FAILED)
            return TaskResult(False, _FAILED_TASK_HTTP_STATUS, failure.code, failure.message)
        _set_source_status(source_version, aws_facts.REPLICATION_STATUS_COMPLETED)
        return _SUCCESS

    def _prologue(self) -> tuple[Any, dict[str, Any], PreparedCheck]:
        """Return the source bucket, its configuration and the job role's InitiateReplication question.

        Or fail, in this order, as AWS does before any access: the bucket, its configuration, the job role.
        """
        bucket = moto_state.owned_bucket(self._source_account, self._bucket_name)
        if bucket is None:
            raise _TaskFailed(
                "SrcBucketNotFound",
                f"Source bucket {self._bucket_name} does not exist in account {self._source_account}.",
                marks_failed=False,
            )
        config = stored_configuration(bucket)
        if config is None:
            raise _TaskFailed(
                "SrcBucketReplicationConfigMissing",
                f"Bucket {self._bucket_name} has no replication configuration; put one before replicating.",
                marks_failed=False,
            )
        job_role = _assume(self._job_role_arn, BATCH_OPERATIONS_PRINCIPAL, bucket, "the job role")
        return bucket, config, _s3_check(job_role, "s3:InitiateReplication", bucket, whole_bucket=False)

    # --- plans

    def _plan(
        self, shape: Hashable, source_bucket: Any, role_arn: str, version: Any, marker: bool,
        tags: Mapping[str, str], rules: Sequence[Mapping[str, Any]],
    ) -> list[_Step]:
        """Return (and keep) the steps of a task over a version of this shape: each rule's checks and write in turn."""
        steps: list[_Step] = []
        try:
            for rule in rules:
                self._plan_destination(steps, source_bucket, role_arn, version, marker, tags, rule)
        except _TaskFailed as failure:
            steps.append((_FAIL, failure))  # every task of this shape fails here, after the steps before
        if len(self._plans) >= _PLANS_PER_VIEW:
            self._plans.clear()
        self._plans[shape] = steps
        return steps

    def _plan_destination(
        self, steps: list[_Step], source_bucket: Any, role_arn: str, version: Any, marker: bool,
        tags: Mapping[str, str], rule: Mapping[str, Any],
    ) -> None:
        """Add the steps for one destination: the replication role, source reads, destination, its key, writes."""
        role = self._once(("role", role_arn, REPLICATION_PRINCIPAL), lambda: _assume(
            role_arn, REPLICATION_PRINCIPAL, source_bucket, "the replication role", marks_failed=True))
        self._plan_source_reads(steps, role, source_bucket, version, marker, tags)
        destination = self._once(("destination", id(rule)), lambda: _destination_bucket(rule, source_bucket))
        encryption = _Encryption(None)
        if not marker:
            replica_key = self._once(
                ("replica key", id(rule), version.encryption, bool(version.bucket_key_enabled)),
                lambda: _replica_encryption(destination, version, rule),
            )
            steps.extend(self._key_step(role, action, replica_key.key, destination, replica_key.bucket_context,
                                        "DstPutObjectNotPermitted") for action in replica_key.actions)
            encryption = replica_key.encryption
        self._plan_destination_writes(steps, role, destination, marker, tags, rule)
        factory = None if marker else self._once(("replicas", destination.name), lambda: ReplicaFactory(destination))
        steps.append((_WRITE, destination, rule, encryption, factory))

    def _plan_source_reads(
        self, steps: list[_Step], role: _Role, bucket: Any, version: Any, marker: bool, tags: Mapping[str, str]
    ) -> None:
        """Add the checks that the replication role may read the configuration, the version and its state."""
        steps.append(self._s3_step(role, "s3:GetReplicationConfiguration", bucket, False,
                                   "SrcBucketReplicationConfigMissing"))
        steps.append(self._s3_step(role, "s3:GetObjectVersionForReplication", bucket, True, "SrcGetObjectNotPermitted"))
        if marker:
            return
        for applies, action, code in (
            (bool(version.lock_mode or version.lock_until), "s3:GetObjectRetention", "SrcGetRetentionNotPermitted"),
            (bool(version.lock_legal_status), "s3:GetObjectLegalHold", "SrcGetLegalHoldNotPermitted"),
            (bool(tags), "s3:GetObjectVersionTagging", "SrcGetTaggingNotPermitted"),
        ):
            if applies:
                steps.append(self._s3_step(role, action, bucket, True, code))
        if version.encryption in KMS_ENCRYPTIONS:
            reference = version.kms_key_id or "alias/aws/s3"
            key = self._once(("source key", reference), lambda: _source_key(reference, bucket))
            steps.append(self._key_step(role, "kms:Decrypt", key, bucket, bool(version.bucket_key_enabled),
                                        "SrcGetObjectNotPermitted"))

    def _plan_destination_writes(
        self, steps: list[_Step], role: _Role, destination: Any, marker: bool, tags: Mapping[str, str],
        rule: Mapping[str, Any],
    ) -> None:
        """Add the checks that the role may write the replica (and its tags, and the owner change) there."""
        if marker:
            steps.append(self._s3_step(role, "s3:ReplicateDelete", destination, True, "DstDelObjNotPermitted"))
            return
        translation = rule["Destination"].get("AccessControlTranslation") or {}
        steps.append(self._s3_step(role, "s3:ReplicateObject", destination, True, "DstPutObjectNotPermitted"))
        if translation.get("Owner") == "Destination":
            steps.append(self._s3_step(role, "s3:ObjectOwnerOverrideToBucketOwner", destination, True,
                                       "DstPutObjectNotPermitted"))
        if tags:
            steps.append(self._s3_step(role, "s3:ReplicateTags", destination, True, "DstPutTaggingNotPermitted"))

    def _s3_step(self, role: _Role, action: str, bucket: Any, per_object: bool, code: str) -> _Step:
        """Return the step checking that the role may do the S3 action on the bucket, or on the task's object.

        Every failure after S3 began replicating marks the source FAILED.
        """
        check = self._once(("s3", id(role), action, bucket.name, per_object), lambda: _s3_check(
            role, action, bucket, whole_bucket=not per_object))
        return (_CHECK, check, per_object, code, True)

    def _key_step(self, role: _Role, action: str, key: Any, bucket: Any, bucket_context: bool, code: str) -> _Step:
        """Return the step checking that the role may use the KMS key for the task's object in the bucket."""
        check = self._once(("kms", id(role), action, key.arn, bucket.name, bucket_context), lambda: _key_check(
            role, action, key, bucket, bucket_context))
        return (_CHECK, check, not bucket_context, code, True)


def _shape(version: Any, marker: bool, tags: Mapping[str, str], rules: Sequence[Mapping[str, Any]]) -> Hashable:
    """Return what a task's checks depend on besides the object's key: the rules and the version's kind."""
    applying = tuple(id(rule) for rule in rules)
    if marker:
        return (True, applying)
    return (False, applying, bool(version.lock_mode or version.lock_until), bool(version.lock_legal_status),
            bool(tags), version.encryption, bool(version.bucket_key_enabled), version.kms_key_id)


def _follow(plan: Sequence[_Step], version: Any, key: str, tags: Mapping[str, str], marker: bool) -> None:
    """Take a plan's steps for one version: fail at the first check it does not pass, write each replica."""
    for step in plan:
        kind = step[0]
        if kind == _CHECK:
            _, check, per_object, code, marks_failed = step
            tail = key if per_object else ""
            if not check.allows(tail):
                raise _TaskFailed(code, check.decision(tail).reason, marks_failed=marks_failed)
        elif kind == _FAIL:
            raise step[1].again()
        else:
            _, destination, rule, encryption, factory = step
            with _write_lock:
                if _already_replicated(version, destination):
                    continue
                if marker:
                    _write_delete_marker(destination, version)
                else:
                    _write_object(factory, destination, version, tags, rule, encryption)
                _remember_destination(version, destination)


def _find_version(bucket: Any, key: str, version_id: str) -> Any:
    """Return the stored version (object or delete marker), or fail with AWS's not-found code."""
    versions = bucket.keys.getlist(key, None)
    if not versions:
        raise _TaskFailed(
            "SrcKeyNotFound", f"Key {key!r} does not exist in bucket {bucket.name}.", marks_failed=False
        )
    for version in list(versions):  # a copy: request threads may add versions meanwhile
        if str(version.version_id) == version_id:
            return version
    raise _TaskFailed(
        "SrcVersionNotFound",
        f"Version {version_id} of key {key!r} does not exist in bucket {bucket.name}.",
        marks_failed=False,
    )


# --- roles and authorization ----------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    """An assumed role: who it is and the identity policies it carries."""

    arn: str
    account: str
    policies: tuple[Mapping[str, Any], ...]
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


# Roles assumed so far, per (role ARN, service, source bucket, its account): the role object, its
# stored trust and identity policies, and the result. Reused only while all three are the very
# objects moto holds, so an edited trust or identity policy is read again on the next task.
_assumed: dict[tuple[str, str, str, str], tuple[Any, Any, tuple[Any, ...], _Role]] = {}


def _assume(
    role_arn: str, service: str, source_bucket: Any, label: str, *, marks_failed: bool = False
) -> _Role:
    """Return the role as `service` assumes it for this bucket, or fail with AssumeRoleNotPermitted."""
    account = aws_facts.account_of_arn(role_arn)
    role = moto_state.iam_role(role_arn)
    if role is None:
        raise _TaskFailed(
            "AssumeRoleNotPermitted",
            f"S3 cannot assume {label} {role_arn}: no such role in account {account or '?'}.",
            marks_failed=marks_failed,
        )
    stored_trust, stored_policies = role.assume_role_policy_document, moto_state.stored_identity_policies(role)
    memo = (role_arn, service, source_bucket.name, source_bucket.account_id)
    known = _assumed.get(memo) if caches_enabled() else None
    if known is not None and known[0] is role and known[1] is stored_trust and known[2] == stored_policies:
        return known[3]
    assumed = _assume_afresh(role, account, service, source_bucket, label, marks_failed=marks_failed)
    if len(_assumed) >= 64:
        _assumed.clear()
    _assumed[memo] = (role, stored_trust, stored_policies, assumed)
    return assumed


def _assume_afresh(
    role: Any, account: str, service: str, source_bucket: Any, label: str, *, marks_failed: bool
) -> _Role:
    """Return the role as `service` assumes it, reading its trust and identity policies."""
    role_arn = role.arn
    trust = moto_state.policy_document(role.assume_role_policy_document)
    source_context = service_source_context(
        service, source_bucket=source_bucket.name, source_account=source_bucket.account_id)
    if trust is None or not can_assume(trust, service, context=source_context):
        raise _TaskFailed(
            "AssumeRoleNotPermitted",
            f"S3 cannot assume {label} {role_arn}: its trust policy does not let {service} "
            f"call sts:AssumeRole with {_described(source_context)}; add that service principal to the "
            "trust policy, with conditions that match what it sends.",
            marks_failed=marks_failed,
        )
    context: dict[str, str | list[str]] = {
        "aws:PrincipalArn": role.arn,
        "aws:PrincipalAccount": account,
        "aws:SecureTransport": "true",
    }
    return _Role(role.arn, account, tuple(moto_state.identity_policies(role)), context)


def _described(context: Mapping[str, str | list[str]]) -> str:
    """Return a request context in words, for a failure message."""
    if not context:
        return "no source keys"
    return ", ".join(f"{name}={value}" for name, value in context.items())


def _s3_check(role: _Role, action: str, bucket: Any, *, whole_bucket: bool) -> PreparedCheck:
    """Return the question of the role doing an S3 action on the bucket, or on each object of it (by key)."""
    resource = _bucket_arn(bucket.name) if whole_bucket else _object_arn(bucket.name, "")
    request = Request(
        principal_arn=role.arn,
        principal_account=role.account,
        action=action,
        resource=resource,
        resource_account=bucket.account_id,
        context=role.context,
    )
    return PreparedCheck(request, resource_is_prefix=not whole_bucket, identity_policies=role.policies,
                         resource_policy=moto_state.policy_document(bucket.policy))


def _key_check(role: _Role, action: str, key: Any, bucket: Any, bucket_context: bool) -> PreparedCheck:
    """Return the question of the role using a KMS key for the bucket's objects (by key), its key policy included.

    The encryption context names the object, or the bucket itself when `bucket_context` (Bucket Keys).
    """
    context = {**role.context, "kms:CallerAccount": role.account,
               **_kms_context(bucket, "", bucket_context)}
    request = Request(
        principal_arn=role.arn,
        principal_account=role.account,
        action=action,
        resource=key.arn,
        resource_account=key.account_id,
        context=context,
    )
    return PreparedCheck(
        request,
        resource_is_prefix=False,
        tail_keys=() if bucket_context else (_ENCRYPTION_CONTEXT_KEY,),
        identity_policies=role.policies,
        resource_policy=moto_state.policy_document(key.policy),
        resource_is_kms_key=True,
    )


# --- source reads ---------------------------------------------------------------------------


def _source_key(reference: str, bucket: Any) -> Any:
    """Return the source object's KMS key, failing unless it exists and is enabled."""
    key = moto_state.kms_key(reference, bucket.account_id, bucket.region_name)
    if key is None or key.key_state != "Enabled":
        state = "does not exist" if key is None else f"is {key.key_state}"
        raise _TaskFailed(
            "SrcKmsKeyInvalidState",
            f"The KMS key {reference} of the source object {state}; enable it (or cancel its "
            "deletion and enable it) and run the task again.",
            marks_failed=True,
        )
    return key


# --- destination ----------------------------------------------------------------------------


def _destination_bucket(rule: Mapping[str, Any], source_bucket: Any) -> Any:
    """Return the rule's destination bucket, or fail when it is missing or cannot take replicas."""
    arn = str(rule["Destination"].get("Bucket", ""))
    name = arn.split(":::", 1)[-1]
    bucket = moto_state.find_bucket(name)
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


@dataclass(frozen=True)
class _ReplicaEncryption:
    """How replicas of one kind of source version are encrypted, and what the role must be allowed for it."""

    encryption: _Encryption
    key: Any = None  # the replica KMS key, when there is one
    actions: tuple[str, ...] = ()  # KMS actions on it
    bucket_context: bool = False  # whether the encryption context is the bucket's ARN


def _replica_encryption(destination: Any, version: Any, rule: Mapping[str, Any]) -> _ReplicaEncryption:
    """Return how a replica of this kind of version is encrypted, failing unless its key is usable.

    Depends on the version only through its encryption and Bucket Key setting.
    """
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
        return _ReplicaEncryption(_Encryption(version.encryption or default_algorithm))
    key = moto_state.kms_key(reference, destination.account_id, destination.region_name) if reference else None
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
    if bucket_key:
        # A Bucket Key replica is written with the replica key's data key, which the role decrypts.
        actions.append("kms:Decrypt")
    return _ReplicaEncryption(_Encryption(algorithm, key.arn, True if bucket_key else None), key, tuple(actions),
                              bucket_context)


def _already_replicated(version: Any, destination: Any) -> bool:
    """Return True when the version is at the destination; fail when it was there and is gone."""
    present = destination.keys.getlist(version.name, None)
    if present and any(str(v.version_id) == str(version.version_id) for v in list(present)):
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
    factory: ReplicaFactory, destination: Any, source: Any, tags: Mapping[str, str], rule: Mapping[str, Any],
    encryption: _Encryption,
) -> None:
    """Write the replica of an object version: same id, bytes, ETag, parts, checksum, metadata, lock state, time."""
    mode, until = source.lock_mode, source.lock_until
    if not mode and not until:
        mode, until = _default_retention(destination)
    # The replica takes the source's parts too, so it keeps its part count (HEAD with PartNumber) as its ETag says.
    replica = factory.replica_key(
        source,
        etag=_stored_etag(source),
        storage=str(
            rule["Destination"].get("StorageClass") or source.storage_class or aws_facts.DEFAULT_STORAGE_CLASS
        ),
        encryption=encryption.algorithm,
        kms_key_id=encryption.kms_key_id,
        bucket_key_enabled=encryption.bucket_key,
        lock_mode=mode,
        lock_until=until,
    )
    # Our attribute, which patches.py sends as x-amz-replication-status.
    replica.replication_status = aws_facts.REPLICATION_STATUS_REPLICA
    if tags:
        moto_state.tag_version(destination, replica, tags)
    _insert_in_time_order(destination, replica)


def _write_delete_marker(destination: Any, source: Any) -> None:
    """Write the replica of a delete marker with the source's version id and time."""
    FakeDeleteMarker = moto_state.moto_module("moto.s3.models").FakeDeleteMarker
    existing = moto_state.versions_of(destination, source.name)
    marker = FakeDeleteMarker(key=existing[-1] if existing else source.key)
    marker._version_id = source.version_id
    marker.last_modified = source.last_modified
    marker.replication_status = aws_facts.REPLICATION_STATUS_REPLICA  # as on keys
    _insert_in_time_order(destination, marker)


def _insert_in_time_order(bucket: Any, version: Any) -> None:
    """Insert a version where its time puts it: moto serves the list's last entry as the latest."""
    if not bucket.keys.getlist(version.name, None):
        bucket.keys.setlist(version.name, [version])  # the usual case: the key's first version there
        return
    versions = moto_state.versions_of(bucket, version.name)
    moment = as_utc(version.last_modified)
    position = next((i for i, v in enumerate(versions) if as_utc(v.last_modified) > moment), len(versions))
    versions.insert(position, version)
    bucket.keys.setlist(version.name, versions)


def _remember_destination(version: Any, destination: Any) -> None:
    """Record on the source version that it now exists in the destination bucket."""
    buckets: frozenset[str] = getattr(version, _REPLICATED_TO, frozenset())
    if destination.name not in buckets:
        setattr(version, _REPLICATED_TO, buckets | {destination.name})


def mark_source_failed(version: Any) -> None:
    """Mark a source version FAILED as a failed task does, remembering that a replica is one.

    For callers that fail a task themselves (an injected fault, say): setting the status directly
    would lose a replica's REPLICA, and a later successful retry would then report COMPLETED.
    """
    _set_source_status(version, aws_facts.REPLICATION_STATUS_FAILED)


def _set_source_status(version: Any, outcome: str) -> None:
    """Set the source version's status after a task: COMPLETED or FAILED; REPLICA for a replica's success."""
    if version is None:
        return
    with _write_lock:
        if getattr(version, "replication_status", None) == aws_facts.REPLICATION_STATUS_REPLICA:
            setattr(version, _IS_REPLICA, True)
        if outcome == aws_facts.REPLICATION_STATUS_COMPLETED and getattr(version, _IS_REPLICA, False):
            outcome = aws_facts.REPLICATION_STATUS_REPLICA
        version.replication_status = outcome


# --- small utilities -------------------------------------------------------------------------


def _kms_context(bucket: Any, key: str, bucket_key: bool) -> dict[str, str]:
    """Return the KMS request context S3 sends: its service name and the encryption context."""
    resource = _bucket_arn(bucket.name) if bucket_key else _object_arn(bucket.name, key)
    return {
        "kms:ViaService": aws_facts.kms_via_service("s3", bucket.region_name),
        _ENCRYPTION_CONTEXT_KEY: resource,
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
    until = utc_now() + timedelta(days=days)
    return bucket.default_lock_mode, until.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored_etag(version: Any) -> str:
    """Return the version's ETag without quotes, as moto stores it (multipart form included)."""
    return str(version.etag).strip('"')


def _bucket_arn(bucket: str) -> str:
    return aws_facts.bucket_arn(bucket, PARTITION)


def _object_arn(bucket: str, key: str) -> str:
    return aws_facts.object_arn(bucket, key, PARTITION)


