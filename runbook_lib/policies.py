"""Pure builders of every JSON document the runbook applies: IAM, KMS, S3, EventBridge and SNS.

Each builder takes plain strings, checks them, and returns a JSON-ready dict. Nothing here calls
AWS, so every document can be shown to the operator, linted and compared before it is applied.
The documents follow the recovery method's steps 2 to 6, with its printed typos fixed and the
permissions that Batch Replication with a generated manifest needs added.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from runbook_lib.aws_facts import (
    BATCH_OPERATIONS_SERVICE_PRINCIPAL,
    S3_SERVICE_PRINCIPAL,
    TERMINAL_JOB_STATUSES,
    account_root_arn,
    bucket_arn,
    kms_via_service,
    objects_arn,
    partition_of,
)
from runbook_lib.errors import InvalidArguments, ParameterProblem, ProvisionError
from runbook_lib.params import STORAGE_CLASSES

__all__ = [
    "BATCH_ROLE_SERVICE_PRINCIPALS",
    "GENERATED_MANIFEST_ACTIONS",
    "JOB_EVENT_DETAIL_TYPE",
    "JOB_EVENT_NAMES",
    "LEGACY_RECOVERY_BUCKET_SIDS",
    "LEGACY_RECOVERY_KEY_SIDS",
    "LEGACY_VAULT_KEY_SIDS",
    "OWN_SID_PREFIX",
    "POLICY_VERSION",
    "RECOVERY_BUCKET_BUCKET_ACTIONS",
    "RECOVERY_BUCKET_OBJECT_ACTIONS",
    "RECOVERY_BUCKET_POLICY_ID",
    "RECOVERY_KEY_ROLE_ACTIONS",
    "REPLICATION_ROLE_ACTIONS",
    "REPLICA_STORAGE_CLASSES",
    "RESTORE_ACTIONS",
    "SEED_ROLE_ACTIONS",
    "TERMINAL_JOB_STATUSES",
    "VAULT_KEY_ROLE_ACTIONS",
    "Document",
    "batch_role_policy",
    "batch_role_trust_policy",
    "bucket_arn",
    "job_status_event_pattern",
    "merge_statements",
    "objects_arn",
    "own_statement_sids",
    "recovery_bucket_policy",
    "recovery_key_policy",
    "recovery_key_statements",
    "remove_statements",
    "replication_configuration",
    "run_sid",
    "sid_run_id",
    "sns_topic_policy",
    "statements_of",
    "to_json",
    "vault_key_policy_statements",
]
__all__ += ["inventory_destination_statement"]

Document = dict[str, Any]

POLICY_VERSION = "2012-10-17"

# Every statement this runbook adds to a policy it does not own starts with this Sid prefix and
# ends with the run it belongs to (see `run_sid`), so provisioning and cleanup find their own
# statements, leave everyone else's alone, and never touch another run's.
OWN_SID_PREFIX = "RunbookRecovery"
# The Sids earlier versions gave their statements, the same for every run. Cleanup removes them
# only where the run's ledger recorded them (or the run created the key or bucket holding them).
LEGACY_VAULT_KEY_SIDS = ("RunbookRecoveryRoleUsesKey", "RunbookRecoveryAccountUsesKey")
LEGACY_RECOVERY_KEY_SIDS = ("RunbookRecoveryVaultAccountUsesKey",)
LEGACY_RECOVERY_BUCKET_SIDS = ("RunbookRecoveryReplicateObjects", "RunbookRecoveryReadBucket")
RECOVERY_BUCKET_POLICY_ID = "RunbookRecoveryBucketPolicy"
# Separates a statement's name from its run in a run-scoped Sid. Names never contain it, and run
# ids are lowercase, so the last occurrence is always the separator.
_RUN_MARK = "Run"
# Run ids hold lowercase letters, digits and '-'; a Sid only letters and digits. '-' becomes this
# capital, which no run id contains, so two runs never share a Sid.
_DASH = "X"

# The actions the method's step-2 policy grants, typos aside. The role gets all of them but two
# that nothing in the job uses: s3:ReplicateDelete (delete markers are not replicated: the rule
# has DeleteMarkerReplication Disabled) and s3:GetObjectTagging (replication reads each version's
# tags with s3:GetObjectVersionTagging).
SEED_ROLE_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "s3:ListBucket",
    "s3:GetReplicationConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:GetObjectRetention",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectLegalHold",
    "s3:InitiateReplication",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
)

# What the Batch Operations job itself needs when S3 generates the manifest from the source
# bucket's replication configuration and saves it, with the report, in the report bucket.
GENERATED_MANIFEST_ACTIONS = (
    "s3:InitiateReplication",
    "s3:GetReplicationConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
)

# What the replication role does for each task: read a version with its Object Lock state and
# tags, then write the replica (owned by the recovery account) into the recovery bucket. No
# s3:ReplicateDelete: the rule does not replicate delete markers.
REPLICATION_ROLE_ACTIONS = (
    "s3:ListBucket",
    "s3:GetReplicationConfiguration",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
)

_VAULT_BUCKET_ACTIONS = (
    "s3:ListBucket",
    "s3:GetReplicationConfiguration",
    "s3:PutInventoryConfiguration",
)
_VAULT_OBJECT_ACTIONS = (
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:InitiateReplication",
)
_REPORT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
# The restore job (S3InitiateRestoreObject) asks S3 to restore each archived version as the role.
RESTORE_ACTIONS = ("s3:RestoreObject",)
_REPORT_WRITE_ACTIONS = ("s3:PutObject",)

# What the role does in the recovery bucket: write replicas, their tags, and make the recovery
# account their owner. No s3:ReplicateDelete: delete markers are not replicated.
RECOVERY_BUCKET_OBJECT_ACTIONS = (
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
)
# The method grants s3:List*, s3:GetBucketVersioning and s3:PutBucketVersioning on the bucket.
# Replication lists nothing in the destination, so s3:List* goes; s3:PutBucketVersioning goes too
# (a vault-side role able to change the recovery bucket's versioning is the kind of reach a clean
# account should refuse). s3:GetBucketVersioning stays: AWS's cross-account replication setup
# grants it in the destination bucket policy so that S3 can confirm, acting as the role, that the
# destination is versioned.
RECOVERY_BUCKET_BUCKET_ACTIONS = ("s3:GetBucketVersioning",)

# The role reads vault objects: S3 decrypts each one (or its Bucket Key) with the vault key.
VAULT_KEY_ROLE_ACTIONS = ("kms:Decrypt",)
# The role writes replicas with the recovery key: kms:Encrypt for SSE-KMS sources, and
# kms:GenerateDataKey for versions stored unencrypted (possible for versions written before S3
# encrypted every new object), which take the recovery bucket's default key. kms:Decrypt because
# the recovery bucket uses an S3 Bucket Key, which S3 decrypts as the role to verify it.
RECOVERY_KEY_ROLE_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt")

# Names of the run's statements on documents others own (each becomes a run-scoped Sid).
_VAULT_KEY_ROLE = "RoleDecryptsVaultObjects"
_RECOVERY_KEY_ROLE = "RoleEncryptsReplicas"
_RECOVERY_BUCKET_REPLICAS = "RoleWritesReplicas"
_RECOVERY_BUCKET_VERSIONING = "RoleReadsVersioning"

BATCH_ROLE_SERVICE_PRINCIPALS = (BATCH_OPERATIONS_SERVICE_PRINCIPAL, S3_SERVICE_PRINCIPAL)

# Storage classes a replication rule may name for its replicas: the parameter model's list.
REPLICA_STORAGE_CLASSES = STORAGE_CLASSES

JOB_EVENT_DETAIL_TYPE = "AWS Service Event via CloudTrail"
JOB_EVENT_NAMES = ("JobCreated", "JobStatusChanged")
_LEGACY_SIDS = (*LEGACY_VAULT_KEY_SIDS, *LEGACY_RECOVERY_KEY_SIDS, *LEGACY_RECOVERY_BUCKET_SIDS)

# What each kind of argument must look like, and how to say so when it does not. The method's
# printed policies show how easily a placeholder or a leading space slips into an ARN.
_KINDS: dict[str, tuple[re.Pattern[str], str]] = {
    "bucket": (
        re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
        "an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens",
    ),
    "account": (re.compile(r"\d{12}"), "a 12-digit AWS account id"),
    "region": (re.compile(r"[a-z]{2}(-[a-z]+)+-\d+"), "an AWS Region code such as us-east-1"),
    "key_arn": (
        re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+"),
        "a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id> (not an alias)",
    ),
    "role_arn": (
        re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+"),
        "an IAM role ARN, arn:aws:iam::<account>:role/<name>",
    ),
    "topic_arn": (
        re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?"),
        "an SNS topic ARN, arn:aws:sns:<region>:<account>:<name>",
    ),
    "rule_arn": (
        re.compile(r"arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:rule/[A-Za-z0-9._/-]+"),
        "an EventBridge rule ARN, arn:aws:events:<region>:<account>:rule/<name>",
    ),
    "rule_id": (re.compile(r"\S.{0,254}"), "1-255 characters, not starting with a space"),
    "run_id": (
        re.compile(r"[a-z][a-z0-9-]{0,39}"),
        "1 to 40 lowercase letters, digits or '-', starting with a letter",
    ),
    "partition": (re.compile(r"aws(-[a-z]+)*"), "an ARN partition: aws, aws-cn or aws-us-gov"),
    "storage_class": (
        re.compile("|".join(map(re.escape, REPLICA_STORAGE_CLASSES))),
        "one of " + ", ".join(REPLICA_STORAGE_CLASSES),
    ),
}


def _check(arguments: Iterable[tuple[str, object, str]]) -> None:
    """Raise one InvalidArguments naming every (field, value, kind) whose value is not of its kind.

    Every argument reaches a builder from code: from parameters the model has already checked, or
    from AWS's answers. A value of the wrong kind here is a bug in the caller, not in the user's file.
    """
    problems = []
    for field, value, kind in arguments:
        pattern, expected = _KINDS[kind]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(ParameterProblem(field, value, expected))
    if problems:
        raise InvalidArguments(problems, "policy builder")


def _statement(
    sid: str,
    actions: Sequence[str],
    resources: Sequence[str] | str,
    *,
    principal: Document | None = None,
    condition: Document | None = None,
) -> Document:
    """Return one Allow statement with its elements in the order people expect to read them."""
    statement: Document = {"Sid": sid, "Effect": "Allow"}
    if principal is not None:
        statement["Principal"] = principal
    statement["Action"] = list(actions) if len(actions) > 1 else actions[0]
    if isinstance(resources, str):
        statement["Resource"] = resources
    else:
        statement["Resource"] = list(resources) if len(resources) > 1 else resources[0]
    if condition is not None:
        statement["Condition"] = condition
    return statement


def _policy(statements: list[Document], policy_id: str | None = None) -> Document:
    """Return a policy document around its statements."""
    document: Document = {"Version": POLICY_VERSION}
    if policy_id is not None:
        document["Id"] = policy_id
    document["Statement"] = statements
    return document


# One bucket (or key) name, or several: a run over many vault buckets grants for all of them at once.
Names = str | Sequence[str]


def _listed(names: Names) -> list[str]:
    """Return one name or several as a list."""
    return [names] if isinstance(names, str) else list(names)


def _named(field: str, names: Names, kind: str) -> list[tuple[str, object, str]]:
    """Return the `_check` arguments of one name or of each of several (none: one empty name, refused)."""
    listed = _listed(names) or [""]
    if len(listed) == 1:
        return [(field, listed[0], kind)]
    return [(f"{field}[{i}]", name, kind) for i, name in enumerate(listed)]


def _kms_via_s3(region: str, bucket: Names) -> Document:
    """Return a condition limiting a key to S3 in one region, acting for one bucket (or any of several).

    With an S3 Bucket Key the encryption context is the bucket ARN; without one it is the
    object ARN, so both forms are allowed.
    """
    partition = partition_of(region)
    arns = [arn for name in _listed(bucket) for arn in (bucket_arn(name, partition), objects_arn(name, partition))]
    return {
        "StringEquals": {"kms:ViaService": kms_via_service("s3", region)},
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": arns},
    }


def batch_role_policy(
    *,
    vault_bucket: Names,
    recovery_bucket: Names,
    report_bucket: str,
    vault_key_arn: Names,
    recovery_key_arn: str,
    region: str,
    recovery_region: str | None = None,
    restore_archived: bool = False,
) -> Document:
    """Return the Batch Replication role's policy: the method's grants plus what the job needs.

    The role is both the Batch Operations job role and the replication configuration's role, so
    it holds the job's permissions (generate and save the manifest, write the report, start
    replication) and the replication permissions (read versions with their lock state, write
    replicas). With `restore_archived` (the restore step, `restore.archived`) it may also restore
    archived versions of the vault buckets, which the restore job does as this role; without it,
    it may not.
    Every statement names its resource; object-level actions are granted on objects only. A run
    over many vault buckets gives each name as a list: one role serves every bucket's job.
    """
    checks = [
        *_named("vault_bucket", vault_bucket, "bucket"),
        *_named("recovery_bucket", recovery_bucket, "bucket"),
        ("report_bucket", report_bucket, "bucket"),
        *_named("vault_key_arn", vault_key_arn, "key_arn"),
        ("recovery_key_arn", recovery_key_arn, "key_arn"),
        ("region", region, "region"),
    ]
    if recovery_region is not None:
        checks.append(("recovery_region", recovery_region, "region"))
    _check(checks)
    target_region = region if recovery_region is None else recovery_region
    partition, target_partition = partition_of(region), partition_of(target_region)
    return _policy(
        [
            _statement(
                "DecryptVaultObjects",
                ["kms:Decrypt"],
                _listed(vault_key_arn),
                condition=_kms_via_s3(region, vault_bucket),
            ),
            _statement(
                "EncryptReplicas",
                # Decrypt too: writing replicas into a bucket with S3 Bucket Keys uses the replica key's data key.
                RECOVERY_KEY_ROLE_ACTIONS,
                recovery_key_arn,
                condition=_kms_via_s3(target_region, recovery_bucket),
            ),
            _statement("ReadVaultBucket", _VAULT_BUCKET_ACTIONS,
                       [bucket_arn(name, partition) for name in _listed(vault_bucket)]),
            _statement("ReadVaultObjectVersions", _VAULT_OBJECT_ACTIONS,
                       [objects_arn(name, partition) for name in _listed(vault_bucket)]),
            _statement(
                "ReplicateIntoRecoveryBucket",
                RECOVERY_BUCKET_OBJECT_ACTIONS,
                [objects_arn(name, target_partition) for name in _listed(recovery_bucket)],
            ),
            _statement("ReadManifests", _REPORT_READ_ACTIONS, objects_arn(report_bucket, partition)),
            _statement("WriteManifestAndReport", _REPORT_WRITE_ACTIONS, objects_arn(report_bucket, partition)),
            *([_statement("RestoreArchivedVaultVersions", RESTORE_ACTIONS,
                                    [objects_arn(name, partition) for name in _listed(vault_bucket)])]
              if restore_archived else []),
        ]
    )


def batch_role_trust_policy(*, vault_account_id: str, vault_bucket: Names, region: str) -> Document:
    """Return the role's trust policy: S3 Batch Operations may assume it, and S3 replication for the vault bucket only.

    S3 documents that replication assumes its role with `aws:SourceAccount` (the source bucket's
    owner) and `aws:SourceArn` (the source bucket's ARN), so that statement carries both as a
    confused-deputy guard: S3 acting for any other bucket or account cannot use the role. AWS
    documents no such keys for Batch Operations, and a condition on a key the request lacks never
    holds, so its statement carries none (docs/aws-facts.md has the sources).
    """
    _check([("vault_account_id", vault_account_id, "account"), *_named("vault_bucket", vault_bucket, "bucket"),
            ("region", region, "region")])
    source_arns = [bucket_arn(name, partition_of(region)) for name in _listed(vault_bucket)]
    batch_operations: Document = {
        "Sid": "S3BatchOperationsAssumeRole",
        "Effect": "Allow",
        "Principal": {"Service": BATCH_OPERATIONS_SERVICE_PRINCIPAL},
        "Action": "sts:AssumeRole",
    }
    replication: Document = {
        "Sid": "S3ReplicationAssumeRoleForVaultBucket",
        "Effect": "Allow",
        "Principal": {"Service": S3_SERVICE_PRINCIPAL},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {
            "aws:SourceAccount": vault_account_id,
            "aws:SourceArn": source_arns[0] if len(source_arns) == 1 else source_arns,
        }},
    }
    return _policy([batch_operations, replication])


def run_sid(name: str, run_id: str) -> str:
    """Return the Sid of the run's statement `name`: own prefix, name, and the run it belongs to.

    Shared documents (the vault key policy, a recovery bucket or key policy that several runs
    use) hold each run's statements under that run's Sids, so one run never replaces or removes
    another's grant.
    """
    _check([("run_id", run_id, "run_id")])
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name) or _RUN_MARK in name:
        raise ValueError(f"statement name {name!r} must be CamelCase letters and digits without {_RUN_MARK!r}")
    return f"{OWN_SID_PREFIX}{name}{_RUN_MARK}{run_id.replace('-', _DASH)}"


def sid_run_id(sid: object) -> str | None:
    """Return the run id a run-scoped Sid belongs to, or None for any other Sid."""
    if not isinstance(sid, str) or not sid.startswith(OWN_SID_PREFIX):
        return None
    head, mark, token = sid[len(OWN_SID_PREFIX):].rpartition(_RUN_MARK)
    if not mark or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", head) or not re.fullmatch(r"[a-z][a-z0-9X]*", token):
        return None
    return token.replace(_DASH, "-")


def vault_key_policy_statements(
    *, batch_role_arn: str, vault_bucket: Names, region: str, run_id: str
) -> list[Document]:
    """Return the statement the run adds to the vault key's policy: the role decrypts vault objects.

    Only kms:Decrypt, only through S3 in the vault's region, and only for the vault bucket's
    objects (or its Bucket Key). A key policy statement's Resource is always "*": it means the key
    the policy is attached to.

    The method's step 4 also names the recovery account on the vault key. Nothing uses that grant:
    the role (in the vault account) reads every vault object and S3 encrypts each replica with
    the recovery key, so the recovery account never calls KMS with the vault key. It is left out.
    """
    _check(
        [
            ("batch_role_arn", batch_role_arn, "role_arn"),
            *_named("vault_bucket", vault_bucket, "bucket"),
            ("region", region, "region"),
        ]
    )
    return [
        _statement(
            run_sid(_VAULT_KEY_ROLE, run_id),
            VAULT_KEY_ROLE_ACTIONS,
            "*",
            principal={"AWS": batch_role_arn},
            condition=_kms_via_s3(region, vault_bucket),
        ),
    ]


def statements_of(policy: Document | None) -> list[Document]:
    """Return a policy's statements as a list; IAM also accepts a single statement object."""
    statements = (policy or {}).get("Statement", [])
    if isinstance(statements, dict):
        return [statements]
    return list(statements)


def _require_own(sids: Iterable[object], run_id: str, legacy: Iterable[str] = ()) -> None:
    """Refuse any Sid that is not this run's own, so foreign statements and other runs' are never touched."""
    allowed_legacy = set(legacy)
    refused = [sid for sid in sids if sid_run_id(sid) != run_id and sid not in allowed_legacy]
    if refused:
        raise ProvisionError(
            f"refusing to add, replace or remove statements {refused!r}: run {run_id!r} only manages "
            f"statements whose Sid starts with {OWN_SID_PREFIX!r} and ends with its own run id; "
            "statements of other runs and of other people are left alone: edit the policy by hand if needed"
        )


def merge_statements(
    existing: Document, added: list[Document], *, run_id: str, replaced: Iterable[str] = ()
) -> Document:
    """Return the existing policy with the run's statements added or replaced by Sid.

    Every other statement is kept unchanged and in its place, and merging twice gives the same
    policy as merging once, so re-running a phase never grows or reorders the policy. `replaced`
    names legacy Sids the ledger recorded for this run: they are dropped, as the run's statements
    now go by run-scoped Sids.
    """
    dropped = set(replaced)
    _require_own([statement.get("Sid") for statement in added], run_id)
    _require_own(dropped, run_id, legacy=dropped & set(_LEGACY_SIDS))
    replacements = {statement["Sid"]: copy.deepcopy(statement) for statement in added}
    merged: list[Document] = []
    placed: set[str] = set()
    for statement in statements_of(existing):
        sid = statement.get("Sid")
        if isinstance(sid, str) and sid in dropped:
            continue
        if isinstance(sid, str) and sid in replacements:
            if sid not in placed:
                merged.append(replacements[sid])
                placed.add(sid)
            continue
        merged.append(copy.deepcopy(statement))
    merged.extend(statement for sid, statement in replacements.items() if sid not in placed)
    result = copy.deepcopy(existing)
    result["Statement"] = merged
    return result


def remove_statements(existing: Document, sids: list[str], *, run_id: str, legacy: Iterable[str] = ()) -> Document:
    """Return the existing policy without the run's statements named by `sids`; others stay.

    `legacy` lists fixed Sids of earlier versions that the ledger recorded for this run; only
    those may be removed besides the run's run-scoped Sids.
    """
    _require_own(sids, run_id, legacy)
    unwanted = set(sids)
    result = copy.deepcopy(existing)
    result["Statement"] = [
        copy.deepcopy(statement)
        for statement in statements_of(existing)
        if statement.get("Sid") not in unwanted
    ]
    return result


def own_statement_sids(policy: Document | None, run_id: str, legacy: Iterable[str] = ()) -> list[str]:
    """Return the Sids of this run's statements in a policy (legacy ones included), in policy order."""
    allowed_legacy = set(legacy)
    sids = [statement.get("Sid") for statement in statements_of(policy)]
    return [
        sid for sid in sids
        if isinstance(sid, str) and (sid_run_id(sid) == run_id or sid in allowed_legacy)
    ]


def recovery_key_policy(*, recovery_account_id: str, partition: str) -> Document:
    """Return the new recovery key's policy as created: its account administers it, nobody else.

    This is AWS's default statement; without it no one in the recovery account could manage the
    key again. The key is created before the role exists (KMS rejects a policy naming an unknown
    principal), so the role's use of it is added by `recovery_key_statements` once it does.
    """
    _check([("recovery_account_id", recovery_account_id, "account"), ("partition", partition, "partition")])
    return _policy(
        [
            _statement(
                "EnableRecoveryAccountAdministration",
                ["kms:*"],
                "*",
                principal={"AWS": account_root_arn(recovery_account_id, partition)},
            ),
        ],
        policy_id="RunbookRecoveryKeyPolicy",
    )


def recovery_key_statements(
    *, batch_role_arn: str, recovery_bucket: Names, recovery_region: str, run_id: str
) -> list[Document]:
    """Return the statement the run adds to the recovery key's policy: the role encrypts replicas.

    Only the role (not the whole vault account), only the actions writing a replica needs, only
    through S3 in the recovery bucket's region and only for the recovery bucket's objects (or its
    Bucket Key).
    """
    _check(
        [
            ("batch_role_arn", batch_role_arn, "role_arn"),
            *_named("recovery_bucket", recovery_bucket, "bucket"),
            ("recovery_region", recovery_region, "region"),
        ]
    )
    return [
        _statement(
            run_sid(_RECOVERY_KEY_ROLE, run_id),
            RECOVERY_KEY_ROLE_ACTIONS,
            "*",
            principal={"AWS": batch_role_arn},
            condition=_kms_via_s3(recovery_region, recovery_bucket),
        ),
    ]


def recovery_bucket_policy(*, recovery_bucket: str, batch_role_arn: str, run_id: str, partition: str) -> Document:
    """Return the recovery bucket's policy as the run would create it: the role may write replicas.

    When the bucket already has a policy, the run merges these statements into it instead.
    """
    _check(
        [
            ("recovery_bucket", recovery_bucket, "bucket"),
            ("batch_role_arn", batch_role_arn, "role_arn"),
            ("partition", partition, "partition"),
        ]
    )
    role = {"AWS": batch_role_arn}
    return _policy(
        [
            _statement(
                run_sid(_RECOVERY_BUCKET_REPLICAS, run_id),
                RECOVERY_BUCKET_OBJECT_ACTIONS,
                objects_arn(recovery_bucket, partition),
                principal=role,
            ),
            _statement(
                run_sid(_RECOVERY_BUCKET_VERSIONING, run_id),
                RECOVERY_BUCKET_BUCKET_ACTIONS,
                bucket_arn(recovery_bucket, partition),
                principal=role,
            ),
        ],
        policy_id=RECOVERY_BUCKET_POLICY_ID,
    )


def replication_configuration(
    *,
    batch_role_arn: str,
    recovery_bucket: str,
    recovery_account_id: str,
    recovery_key_arn: str,
    partition: str,
    storage_class: str = "INTELLIGENT_TIERING",
    rule_id: str = "runbook-batch-replication",
) -> Document:
    """Return the vault bucket's replication configuration: one rule, every object, to recovery.

    The shape is the method's step 6. An empty Filter selects every object and makes this a
    current-schema rule, which is the form that accepts DeleteMarkerReplication. Metrics carries
    no EventThreshold: S3 rejects a threshold unless Replication Time Control is on, and it is off
    here.
    """
    _check(
        [
            ("batch_role_arn", batch_role_arn, "role_arn"),
            ("recovery_bucket", recovery_bucket, "bucket"),
            ("recovery_account_id", recovery_account_id, "account"),
            ("recovery_key_arn", recovery_key_arn, "key_arn"),
            ("storage_class", storage_class, "storage_class"),
            ("rule_id", rule_id, "rule_id"),
            ("partition", partition, "partition"),
        ]
    )
    return {
        "Role": batch_role_arn,
        "Rules": [
            {
                "ID": rule_id,
                "Priority": 0,
                "Filter": {},
                "Status": "Enabled",
                "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                "Destination": {
                    "Bucket": bucket_arn(recovery_bucket, partition),
                    "Account": recovery_account_id,
                    "StorageClass": storage_class,
                    "AccessControlTranslation": {"Owner": "Destination"},
                    "EncryptionConfiguration": {"ReplicaKmsKeyID": recovery_key_arn},
                    "Metrics": {"Status": "Enabled"},
                },
                "DeleteMarkerReplication": {"Status": "Disabled"},
            }
        ],
    }


def job_status_event_pattern(
    *, vault_account_id: str | None = None, terminal_only: bool = False
) -> Document:
    """Return the EventBridge pattern matching Batch Operations job status events.

    S3 reports a job's creation and each status change as CloudTrail service events. With
    `terminal_only` the pattern keeps only the final ones (Complete, Failed, Cancelled), which is
    what an operator wants in their inbox.
    """
    if vault_account_id is not None:
        _check([("vault_account_id", vault_account_id, "account")])
    pattern: Document = {"source": ["aws.s3"], "detail-type": [JOB_EVENT_DETAIL_TYPE]}
    if vault_account_id is not None:
        pattern["account"] = [vault_account_id]
    detail: Document = {"eventSource": ["s3.amazonaws.com"]}
    if terminal_only:
        detail["eventName"] = ["JobStatusChanged"]
        detail["serviceEventDetails"] = {"status": list(TERMINAL_JOB_STATUSES)}
    else:
        detail["eventName"] = list(JOB_EVENT_NAMES)
    pattern["detail"] = detail
    return pattern


def sns_topic_policy(*, topic_arn: str, event_rule_arn: str, account_id: str) -> Document:
    """Return the notification topic's policy: its account manages it, only our rule publishes.

    The owner statement grants what SNS's default policy grants, but to the account itself rather
    than to anyone carrying the account's source-owner tag.
    """
    _check(
        [
            ("topic_arn", topic_arn, "topic_arn"),
            ("event_rule_arn", event_rule_arn, "rule_arn"),
            ("account_id", account_id, "account"),
        ]
    )
    return _policy(
        [
            _statement(
                "TopicOwnerAccountManagesTopic",
                [
                    "sns:GetTopicAttributes",
                    "sns:SetTopicAttributes",
                    "sns:AddPermission",
                    "sns:RemovePermission",
                    "sns:DeleteTopic",
                    "sns:Subscribe",
                    "sns:ListSubscriptionsByTopic",
                    "sns:Publish",
                ],
                topic_arn,
                # The topic's own partition: its ARN was checked above.
                principal={"AWS": account_root_arn(account_id, topic_arn.split(":")[1])},
            ),
            _statement(
                "RunbookRecoveryJobEventsPublish",
                ["sns:Publish"],
                topic_arn,
                principal={"Service": "events.amazonaws.com"},
                condition={"ArnEquals": {"aws:SourceArn": event_rule_arn}},
            ),
        ],
        policy_id="RunbookRecoveryTopicPolicy",
    )


def to_json(document: Document | list[Document]) -> str:
    """Return a document as indented JSON in its own key order, for display and for put_* calls."""
    return json.dumps(document, indent=2)


def inventory_destination_statement(
    *, report_bucket: str, prefix: str, source_buckets: Sequence[str], source_accounts: Sequence[str], run_id: str,
    partition: str = "aws",
) -> Document:
    """Return the report bucket's statement that lets S3 deliver the run's inventory reports under `prefix`.

    S3 writes inventory reports as the service principal s3.amazonaws.com; the conditions keep
    other accounts' and other buckets' inventories out (the confused-deputy guard AWS recommends).
    """
    return _statement(
        run_sid("InventoryReports", run_id),
        ["s3:PutObject"],
        f"{bucket_arn(report_bucket, partition)}/{prefix}/*",
        principal={"Service": "s3.amazonaws.com"},
        condition={
            "StringEquals": {"aws:SourceAccount": sorted(set(source_accounts))},
            "ArnLike": {"aws:SourceArn": [bucket_arn(b, partition) for b in source_buckets]},
        },
    )
