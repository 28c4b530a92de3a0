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

from runbook_lib.errors import ParameterError, ParameterProblem, ProvisionError
from runbook_lib.params import STORAGE_CLASSES

__all__ = [
    "BATCH_ROLE_SERVICE_PRINCIPALS",
    "GENERATED_MANIFEST_ACTIONS",
    "JOB_EVENT_DETAIL_TYPE",
    "JOB_EVENT_NAMES",
    "OWN_SID_PREFIX",
    "POLICY_VERSION",
    "RECOVERY_BUCKET_BUCKET_ACTIONS",
    "RECOVERY_BUCKET_OBJECT_ACTIONS",
    "RECOVERY_BUCKET_POLICY_ID",
    "RECOVERY_KEY_USER_ACTIONS",
    "REPLICATION_ROLE_ACTIONS",
    "REPLICA_STORAGE_CLASSES",
    "SEED_ROLE_ACTIONS",
    "TERMINAL_JOB_STATUSES",
    "VAULT_KEY_ACCOUNT_ACTIONS",
    "VAULT_KEY_ACCOUNT_SID",
    "VAULT_KEY_ROLE_ACTIONS",
    "VAULT_KEY_ROLE_SID",
    "VAULT_KEY_SIDS",
    "Document",
    "batch_role_policy",
    "batch_role_trust_policy",
    "bucket_arn",
    "job_status_event_pattern",
    "merge_key_policy",
    "objects_arn",
    "own_statement_sids",
    "recovery_bucket_policy",
    "recovery_key_policy",
    "remove_statements",
    "replication_configuration",
    "sns_topic_policy",
    "to_json",
    "vault_key_policy_statements",
]

Document = dict[str, Any]

POLICY_VERSION = "2012-10-17"
PARTITION = "aws"

# Every statement this runbook adds to a policy it does not own starts with this Sid prefix, so
# provisioning and cleanup can find their own statements and leave all others alone.
OWN_SID_PREFIX = "RunbookRecovery"
VAULT_KEY_ROLE_SID = "RunbookRecoveryRoleUsesKey"
VAULT_KEY_ACCOUNT_SID = "RunbookRecoveryAccountUsesKey"
VAULT_KEY_SIDS = (VAULT_KEY_ROLE_SID, VAULT_KEY_ACCOUNT_SID)
RECOVERY_BUCKET_POLICY_ID = "RunbookRecoveryBucketPolicy"

# The actions the method's step-2 policy grants, typos aside: this role must never get less.
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
# tags, then write the replica (owned by the recovery account) into the recovery bucket.
REPLICATION_ROLE_ACTIONS = (
    "s3:ListBucket",
    "s3:GetReplicationConfiguration",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
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
    "s3:GetObjectTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:InitiateReplication",
)
_REPORT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
_REPORT_WRITE_ACTIONS = ("s3:PutObject",)

RECOVERY_BUCKET_OBJECT_ACTIONS = (
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
)
# The method grants s3:List*, s3:GetBucketVersioning and s3:PutBucketVersioning on the bucket.
# s3:List* is narrowed to the two listings that exist on a bucket resource; s3:PutBucketVersioning
# is left out: replication only needs to see that versioning is on, and a vault-side role able to
# change the recovery bucket's versioning is the kind of reach a clean account should refuse.
RECOVERY_BUCKET_BUCKET_ACTIONS = (
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
)

# What the console's "key users" box grants; the role reads vault objects through it.
VAULT_KEY_ROLE_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:GenerateDataKey*",
    "kms:Encrypt",
    "kms:ReEncrypt*",
)
# What the method's "Other AWS accounts" box is used for on the vault key: reading, never writing.
VAULT_KEY_ACCOUNT_ACTIONS = ("kms:Decrypt", "kms:DescribeKey")
# What the console's "Other AWS accounts" box grants on the recovery key: the vault account's
# role encrypts each replica with it.
RECOVERY_KEY_USER_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
)

BATCH_ROLE_SERVICE_PRINCIPALS = ("batchoperations.s3.amazonaws.com", "s3.amazonaws.com")

# Storage classes a replication rule may name for its replicas: the parameter model's list.
REPLICA_STORAGE_CLASSES = STORAGE_CLASSES

JOB_EVENT_DETAIL_TYPE = "AWS Service Event via CloudTrail"
JOB_EVENT_NAMES = ("JobCreated", "JobStatusChanged")
TERMINAL_JOB_STATUSES = ("Complete", "Failed", "Cancelled")

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
    "storage_class": (
        re.compile("|".join(map(re.escape, REPLICA_STORAGE_CLASSES))),
        "one of " + ", ".join(REPLICA_STORAGE_CLASSES),
    ),
}


def bucket_arn(bucket: str) -> str:
    """Return the ARN of a bucket, the resource of bucket-level actions."""
    return f"arn:{PARTITION}:s3:::{bucket}"


def objects_arn(bucket: str) -> str:
    """Return the ARN matching every object of a bucket, the resource of object-level actions."""
    return f"{bucket_arn(bucket)}/*"


def _account_root(account_id: str) -> str:
    """Return the principal ARN that stands for a whole account in a resource policy."""
    return f"arn:{PARTITION}:iam::{account_id}:root"


def _s3_via(region: str) -> str:
    """Return the kms:ViaService value of S3 in a region, so a key is usable only through S3."""
    return f"s3.{region}.amazonaws.com"


def _check(arguments: Iterable[tuple[str, object, str]]) -> None:
    """Raise one ParameterError naming every (field, value, kind) whose value is not of its kind."""
    problems = []
    for field, value, kind in arguments:
        pattern, expected = _KINDS[kind]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(ParameterProblem(field, value, expected))
    if problems:
        raise ParameterError(problems, source="policy arguments")


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


def _kms_via_s3(region: str, bucket: str) -> Document:
    """Return a condition limiting a key to S3 in one region, acting for one bucket.

    With an S3 Bucket Key the encryption context is the bucket ARN; without one it is the
    object ARN, so both forms are allowed.
    """
    return {
        "StringEquals": {"kms:ViaService": _s3_via(region)},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [bucket_arn(bucket), objects_arn(bucket)],
        },
    }


def batch_role_policy(
    *,
    vault_bucket: str,
    recovery_bucket: str,
    report_bucket: str,
    vault_key_arn: str,
    recovery_key_arn: str,
    region: str,
    recovery_region: str | None = None,
) -> Document:
    """Return the Batch Replication role's policy: the method's grants plus what the job needs.

    The role is both the Batch Operations job role and the replication configuration's role, so
    it holds the job's permissions (generate and save the manifest, write the report, start
    replication) and the replication permissions (read versions with their lock state, write
    replicas).
    Every statement names its resource; object-level actions are granted on objects only.
    """
    checks = [
        ("vault_bucket", vault_bucket, "bucket"),
        ("recovery_bucket", recovery_bucket, "bucket"),
        ("report_bucket", report_bucket, "bucket"),
        ("vault_key_arn", vault_key_arn, "key_arn"),
        ("recovery_key_arn", recovery_key_arn, "key_arn"),
        ("region", region, "region"),
    ]
    if recovery_region is not None:
        checks.append(("recovery_region", recovery_region, "region"))
    _check(checks)
    target_region = region if recovery_region is None else recovery_region
    return _policy(
        [
            _statement(
                "DecryptVaultObjects",
                ["kms:Decrypt"],
                vault_key_arn,
                condition=_kms_via_s3(region, vault_bucket),
            ),
            _statement(
                "EncryptReplicas",
                # Decrypt too: writing replicas into a bucket with S3 Bucket Keys uses the replica key's data key.
                ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"],
                recovery_key_arn,
                condition=_kms_via_s3(target_region, recovery_bucket),
            ),
            _statement("ReadVaultBucket", _VAULT_BUCKET_ACTIONS, bucket_arn(vault_bucket)),
            _statement("ReadVaultObjectVersions", _VAULT_OBJECT_ACTIONS, objects_arn(vault_bucket)),
            _statement(
                "ReplicateIntoRecoveryBucket",
                RECOVERY_BUCKET_OBJECT_ACTIONS,
                objects_arn(recovery_bucket),
            ),
            _statement("ReadManifests", _REPORT_READ_ACTIONS, objects_arn(report_bucket)),
            _statement("WriteManifestAndReport", _REPORT_WRITE_ACTIONS, objects_arn(report_bucket)),
        ]
    )


def batch_role_trust_policy(*, vault_account_id: str | None = None) -> Document:
    """Return the role's trust policy: S3 Batch Operations and S3 replication may assume it.

    With the vault account given, an `aws:SourceAccount` condition is added as a confused-deputy
    guard. AWS does not document that these two services send that key when assuming the role,
    and a missing key fails the condition closed, so the runbook provisions the role without it.
    """
    if vault_account_id is not None:
        _check([("vault_account_id", vault_account_id, "account")])
    statement: Document = {
        "Sid": "S3BatchOperationsAndReplicationAssumeRole",
        "Effect": "Allow",
        "Principal": {"Service": list(BATCH_ROLE_SERVICE_PRINCIPALS)},
        "Action": "sts:AssumeRole",
    }
    if vault_account_id is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": vault_account_id}}
    return _policy([statement])


def vault_key_policy_statements(*, batch_role_arn: str, recovery_account_id: str) -> list[Document]:
    """Return the statements the runbook adds to the vault key's policy, each with a stable own Sid.

    A key policy statement's Resource is always "*": it means the key the policy is attached to.
    """
    _check(
        [
            ("batch_role_arn", batch_role_arn, "role_arn"),
            ("recovery_account_id", recovery_account_id, "account"),
        ]
    )
    return [
        _statement(
            VAULT_KEY_ROLE_SID,
            VAULT_KEY_ROLE_ACTIONS,
            "*",
            principal={"AWS": batch_role_arn},
        ),
        _statement(
            VAULT_KEY_ACCOUNT_SID,
            VAULT_KEY_ACCOUNT_ACTIONS,
            "*",
            principal={"AWS": _account_root(recovery_account_id)},
        ),
    ]


def _statements_of(policy: Document) -> list[Document]:
    """Return a policy's statements as a list; IAM also accepts a single statement object."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        return [statements]
    return list(statements)


def _require_own(sids: Iterable[object]) -> None:
    """Refuse any Sid that is not the runbook's own, so foreign statements can never be touched."""
    foreign = [
        sid for sid in sids if not isinstance(sid, str) or not sid.startswith(OWN_SID_PREFIX)
    ]
    if foreign:
        raise ProvisionError(
            f"refusing to add, replace or remove statements {foreign!r}: the runbook only manages "
            f"statements whose Sid starts with {OWN_SID_PREFIX!r}; "
            "rename them or edit the policy by hand"
        )


def merge_key_policy(existing: Document, added: list[Document]) -> Document:
    """Return the existing policy with the runbook's statements added or replaced by Sid.

    Every other statement is kept unchanged and in its place, and merging twice gives the same
    policy as merging once, so re-running a phase never grows or reorders the key policy.
    """
    _require_own(statement.get("Sid") for statement in added)
    replacements = {statement["Sid"]: copy.deepcopy(statement) for statement in added}
    merged: list[Document] = []
    placed: set[str] = set()
    for statement in _statements_of(existing):
        sid = statement.get("Sid")
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


def remove_statements(existing: Document, sids: list[str]) -> Document:
    """Return the existing policy without the runbook's statements named by `sids`; others stay."""
    _require_own(sids)
    unwanted = set(sids)
    result = copy.deepcopy(existing)
    result["Statement"] = [
        copy.deepcopy(statement)
        for statement in _statements_of(existing)
        if statement.get("Sid") not in unwanted
    ]
    return result


def own_statement_sids(policy: Document) -> list[str]:
    """Return the Sids of the runbook's own statements in a policy, in policy order."""
    sids = [statement.get("Sid") for statement in _statements_of(policy)]
    return [sid for sid in sids if isinstance(sid, str) and sid.startswith(OWN_SID_PREFIX)]


def recovery_key_policy(
    *, recovery_account_id: str, vault_account_id: str, batch_role_arn: str | None = None
) -> Document:
    """Return the new recovery key's policy: its account administers it, the vault side uses it.

    The first statement is AWS's default one; without it no one in the recovery account could
    manage the key again. With `batch_role_arn` the role is named beside the vault account; leave
    it out when the key is created before the role exists (KMS rejects unknown principals).
    """
    checks = [
        ("recovery_account_id", recovery_account_id, "account"),
        ("vault_account_id", vault_account_id, "account"),
    ]
    if batch_role_arn is not None:
        checks.append(("batch_role_arn", batch_role_arn, "role_arn"))
    _check(checks)
    users: list[str] = [_account_root(vault_account_id)]
    if batch_role_arn is not None:
        users.append(batch_role_arn)
    return _policy(
        [
            _statement(
                "EnableRecoveryAccountAdministration",
                ["kms:*"],
                "*",
                principal={"AWS": _account_root(recovery_account_id)},
            ),
            _statement(
                "RunbookRecoveryVaultAccountUsesKey",
                RECOVERY_KEY_USER_ACTIONS,
                "*",
                principal={"AWS": users if len(users) > 1 else users[0]},
            ),
        ],
        policy_id="RunbookRecoveryKeyPolicy",
    )


def recovery_bucket_policy(*, recovery_bucket: str, batch_role_arn: str) -> Document:
    """Return the recovery bucket's policy: the vault account's role may write replicas into it."""
    _check(
        [
            ("recovery_bucket", recovery_bucket, "bucket"),
            ("batch_role_arn", batch_role_arn, "role_arn"),
        ]
    )
    role = {"AWS": batch_role_arn}
    return _policy(
        [
            _statement(
                "RunbookRecoveryReplicateObjects",
                RECOVERY_BUCKET_OBJECT_ACTIONS,
                objects_arn(recovery_bucket),
                principal=role,
            ),
            _statement(
                "RunbookRecoveryReadBucket",
                RECOVERY_BUCKET_BUCKET_ACTIONS,
                bucket_arn(recovery_bucket),
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
                    "Bucket": bucket_arn(recovery_bucket),
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
                principal={"AWS": _account_root(account_id)},
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
