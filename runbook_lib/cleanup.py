"""Phase 08: remove what the run created and is safe to remove; put back what it changed; keep the rest.

Never removed: an object version (in any bucket), the recovery bucket and its key (they hold and
protect the recovered data), the report bucket (manifests and completion reports are evidence),
and anything the run did not create. Batch Operations jobs cannot be deleted; AWS expires them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from runbook_lib import policies
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext

__all__ = ["CleanupAction", "clean_up"]


@dataclass(frozen=True)
class CleanupAction:
    """What cleanup did with one resource, and why."""

    resource: str
    identifier: str
    action: str  # removed | restored | kept | already gone
    why: str

    def as_row(self) -> dict[str, Any]:
        """Return the action as a table row."""
        return asdict(self)



def _gone(error: ClientError) -> bool:
    return error_code(error) in ("NoSuchEntity", "ResourceNotFoundException", "NotFound", "NotFoundException",
                            "AWS.SimpleQueueService.NonExistentQueue", "NoSuchBucket", "NoSuchBucketPolicy")


def _event_rule(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    events = ctx.vault("events")
    name = record.get("name", ctx.params.event_rule_name)
    try:
        targets = events.list_targets_by_rule(Rule=name).get("Targets", [])
        if targets:
            events.remove_targets(Rule=name, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=name)
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction("EventBridge rule", record["id"], "already gone", "not found")
    return CleanupAction("EventBridge rule", record["id"], "removed", "job status notifications are no longer needed")


def _topic(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    try:
        ctx.vault("sns").delete_topic(TopicArn=record["id"])
    except ClientError as error:
        if not _gone(error):
            raise
    return CleanupAction("SNS topic", record["id"], "removed", "its subscriptions go with it")


def _queue(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    try:
        ctx.vault("sqs").delete_queue(QueueUrl=record["id"])
    except ClientError as error:
        if not _gone(error):
            raise
    return CleanupAction("audit queue", record.get("arn", record["id"]), "removed",
                         "the events it received are kept in the ledger")


def _notifications(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    original = ctx.ledger.original("vault_notification_configuration") or {}
    ctx.vault("s3").put_bucket_notification_configuration(Bucket=record["id"], NotificationConfiguration=original)
    return CleanupAction("vault bucket notifications", record["id"], "restored", "as captured before the run")


def _replication(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    s3 = ctx.vault("s3")
    original = ctx.ledger.original("vault_replication_configuration")
    if original is None:
        s3.delete_bucket_replication(Bucket=record["id"])
        return CleanupAction("vault replication configuration", record["id"], "removed",
                             "the vault had none before the run; it no longer replicates to the recovery account")
    arguments: dict[str, Any] = {"Bucket": record["id"], "ReplicationConfiguration": original}
    if ctx.params.object_lock_token:
        arguments["Token"] = ctx.params.object_lock_token.get_secret_value()
    s3.put_bucket_replication(**arguments)
    return CleanupAction("vault replication configuration", record["id"], "restored", "as captured before the run")


def _key_statements(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    kms = ctx.vault("kms")
    current = json.loads(kms.get_key_policy(KeyId=record["id"], PolicyName="default")["Policy"])
    reduced = policies.remove_statements(current, list(record.get("sids", [])))
    if reduced != current:
        kms.put_key_policy(KeyId=record["id"], PolicyName="default", Policy=policies.to_json(reduced))
    same = reduced == ctx.ledger.original("vault_key_policy")
    kept = "identical to the captured original" if same else "other statements changed since the run started were kept"
    return CleanupAction("vault KMS key policy", record["id"], "restored", "the run's statements removed; " + kept)


def _recovery_bucket_policy(ctx: RunContext, bucket: str) -> CleanupAction:
    s3 = ctx.recovery("s3")
    try:
        # Deleting an absent bucket policy succeeds silently, so look first to report what happened.
        s3.get_bucket_policy(Bucket=bucket)
        s3.delete_bucket_policy(Bucket=bucket)
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction("recovery bucket policy", bucket, "already gone", "the bucket has no policy")
    return CleanupAction("recovery bucket policy", bucket, "removed",
                         "the vault account's role no longer needs to write into the recovery bucket")


def _recovery_key_policy(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    kms = ctx.recovery("kms")
    current = json.loads(kms.get_key_policy(KeyId=record["id"], PolicyName="default")["Policy"])
    reduced = policies.remove_statements(current, policies.own_statement_sids(current))
    if reduced != current:
        kms.put_key_policy(KeyId=record["id"], PolicyName="default", Policy=policies.to_json(reduced))
    return CleanupAction("recovery KMS key", record["id"], "kept",
                         "it encrypts the recovered data; the vault account's access to it was removed")


def _role(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    iam = ctx.vault("iam")
    name = record.get("name", ctx.params.batch_role_name)
    try:
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=name)
    except ClientError as error:
        if not _gone(error):
            raise
    return CleanupAction("IAM role", record["id"], "removed", "the replication job is finished")


def _policy(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    iam = ctx.vault("iam")
    try:
        for version in iam.list_policy_versions(PolicyArn=record["id"])["Versions"]:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=record["id"], VersionId=version["VersionId"])
        iam.delete_policy(PolicyArn=record["id"])
    except ClientError as error:
        if not _gone(error):
            raise
    return CleanupAction("IAM policy", record["id"], "removed", "the role that used it is removed")


_KEPT = {
    "s3_bucket": "holds recovered data or evidence; buckets and their object versions are never removed",
    "batch_job": "AWS keeps finished jobs for 90 days; they cannot be deleted",
}

# Removal order: what depends on something goes first.
_ORDER = ("event_rule", "sqs_queue", "sns_topic", "eventbridge_notifications", "replication_configuration",
          "kms_key_statements", "iam_role", "iam_policy")


def clean_up(ctx: RunContext) -> list[CleanupAction]:
    """Return what cleanup did with every resource the run created or changed, in order."""
    handlers = {
        "event_rule": _event_rule, "sqs_queue": _queue, "sns_topic": _topic,
        "eventbridge_notifications": _notifications, "replication_configuration": _replication,
        "kms_key_statements": _key_statements, "iam_role": _role, "iam_policy": _policy,
    }
    actions: list[CleanupAction] = []
    handled_now: set[str] = set()
    for kind in _ORDER:
        for record in ctx.ledger.created(kind):
            actions.append(handlers[kind](ctx, record))
            ctx.ledger.forget_created(kind, record["id"])
            handled_now.add(record["id"])
    recovery_bucket = ctx.params.recovery.bucket
    if ctx.ledger.was_created("s3_bucket", recovery_bucket):
        actions.append(_recovery_bucket_policy(ctx, recovery_bucket))
    for record in ctx.ledger.created("kms_key"):
        actions.append(_recovery_key_policy(ctx, record))
    for kind, why in _KEPT.items():
        for record in ctx.ledger.created(kind):
            actions.append(CleanupAction(kind.replace("_", " "), record["id"], "kept", why))
    for entry in ctx.ledger.data.get("removed", []):
        # An action may name a resource by another identifier than its record (a queue's ARN, not its URL).
        if entry["id"] not in handled_now and not any(a.identifier == entry["id"] for a in actions):
            actions.append(CleanupAction(entry["kind"].replace("_", " "), entry["id"], "already gone",
                                         f"removed by an earlier cleanup at {entry['at']}"))
    ctx.ledger.set("cleanup", [a.as_row() for a in actions])
    return actions
