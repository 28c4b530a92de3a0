"""Phase 08: remove what the run created and is safe to remove; put back what it changed; keep the rest.

Never removed: an object version (in any bucket), the recovery bucket and its key (they hold and
protect the recovered data), the report bucket (manifests and completion reports are evidence),
and anything the run did not create. Batch Operations jobs cannot be deleted; AWS expires them.

On documents others share (key policies, bucket policies, the vault bucket's notification and
replication configurations) cleanup undoes only the run's own part: its statements (by their
run-scoped Sids), the EventBridge setting if the run turned it on. Whatever others changed
meanwhile is kept and reported as drift. A replication configuration someone changed since the
run put it is left as found. A resource that is gone already is reported as such.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from runbook_lib import policies, provision
from runbook_lib.accounts import error_code, without_metadata
from runbook_lib.context import RunContext

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import NotificationConfigurationTypeDef

__all__ = ["CleanupAction", "PlannedCleanup", "clean_up", "planned_cleanup"]


@dataclass(frozen=True)
class CleanupAction:
    """What cleanup did with one resource, and why."""

    resource: str
    identifier: str
    action: str  # removed | restored | kept | already gone
    why: str
    drift: Any = None  # what others changed meanwhile, kept as they left it


    def as_row(self) -> dict[str, Any]:
        """Return the action as a table row."""
        return asdict(self)



def _gone(error: ClientError) -> bool:
    return error_code(error) in ("NoSuchEntity", "ResourceNotFoundException", "NotFound", "NotFoundException",
                            "AWS.SimpleQueueService.NonExistentQueue", "NoSuchBucket", "NoSuchBucketPolicy")


def _statement_drift(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any] | None:
    """Return the statements others added or removed between the captured policy and now, or None."""
    def keyed(policy: dict[str, Any] | None) -> dict[str, Any]:
        return {str(s.get("Sid", json.dumps(s, sort_keys=True))): s for s in policies.statements_of(policy)}

    earlier, now = keyed(before), keyed(after)
    drift = {
        "added_by_others": sorted(set(now) - set(earlier)),
        "removed_by_others": sorted(set(earlier) - set(now)),
        "changed_by_others": sorted(sid for sid in set(now) & set(earlier) if now[sid] != earlier[sid]),
    }
    drift = {key: value for key, value in drift.items() if value}
    return drift or None


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
        return CleanupAction("SNS topic", record["id"], "already gone", "not found")
    return CleanupAction("SNS topic", record["id"], "removed", "its subscriptions go with it")


def _queue(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    try:
        ctx.vault("sqs").delete_queue(QueueUrl=record["id"])
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction("audit queue", record.get("arn", record["id"]), "already gone", "not found")
    return CleanupAction("audit queue", record.get("arn", record["id"]), "removed",
                         "the events it received are kept in the ledger")


def _notifications(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    s3 = ctx.vault("s3")
    bucket = record["id"]
    label = "vault bucket notifications"
    try:
        current = without_metadata(s3.get_bucket_notification_configuration(Bucket=bucket))
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction(label, bucket, "already gone", "the bucket no longer exists")
    name = ctx.original_name("vault_notification_configuration", bucket)
    original = ctx.ledger.original(name) if ctx.ledger.has_original(name) else {}
    # The run only ever adds EventBridgeConfiguration (and records it only when it was not there).
    others_now: dict[str, Any] = {k: v for k, v in current.items() if k != "EventBridgeConfiguration"}
    others_before = {k: v for k, v in (original or {}).items() if k != "EventBridgeConfiguration"}
    drift = {k: {"before_run": others_before.get(k), "now": others_now.get(k)}
             for k in sorted(set(others_now) | set(others_before)) if others_now.get(k) != others_before.get(k)}
    if "EventBridgeConfiguration" not in current:
        return CleanupAction(label, bucket, "already gone", "EventBridge delivery was turned off meanwhile",
                             drift or None)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=cast("NotificationConfigurationTypeDef", others_now))
    kept = "; other notification settings changed since the run started were kept" if drift else ""
    return CleanupAction(label, bucket, "restored",
                         "the run's EventBridge delivery turned off, as before the run" + kept, drift or None)


def _replication(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    s3 = ctx.vault("s3")
    bucket = record["id"]
    label = "vault replication configuration"
    try:
        current = provision.current_replication(s3, bucket)
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction(label, bucket, "already gone", "the bucket no longer exists")
    if current is None:
        return CleanupAction(label, bucket, "already gone", "someone removed it since the run put it")
    put_by_run = provision.replication_document(ctx.pair_context(bucket))
    if not provision.replication_matches(current, put_by_run):
        return CleanupAction(label, bucket, "kept",
                             "it changed since the run put it: left as found, nothing overwritten; review it",
                             {"found": current, "put_by_run": put_by_run})
    original = ctx.ledger.original(ctx.original_name("vault_replication_configuration", bucket))
    if original is None:
        s3.delete_bucket_replication(Bucket=bucket)
        return CleanupAction(label, bucket, "removed",
                             "the vault had none before the run; it no longer replicates to the recovery account")
    arguments: dict[str, Any] = {"Bucket": bucket, "ReplicationConfiguration": original}
    if ctx.params.object_lock_token:
        arguments["Token"] = ctx.params.object_lock_token.get_secret_value()
    s3.put_bucket_replication(**arguments)
    return CleanupAction(label, bucket, "restored", "as captured before the run")


def _key_policy(kms: Any, key: str) -> dict[str, Any] | None:
    """Return a key's policy, or None when the key no longer exists."""
    try:
        return dict(json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]))
    except ClientError as error:
        if not _gone(error):
            raise
        return None


def _remove_own_statements(
    ctx: RunContext, kms: Any, key: str, current: dict[str, Any], legacy: list[str]
) -> dict[str, Any]:
    """Return the key policy without the run's statements, putting it when that changed something."""
    run_id = ctx.params.run_id
    reduced = policies.remove_statements(current, policies.own_statement_sids(current, run_id, legacy),
                                         run_id=run_id, legacy=legacy)
    if reduced != current:
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policies.to_json(reduced))
    return reduced


def _key_statements(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    recovery_side = record.get("side") == "recovery"
    kms = ctx.recovery("kms") if recovery_side else ctx.vault("kms")
    label = "recovery KMS key policy" if recovery_side else "vault KMS key policy"
    current = _key_policy(kms, record["id"])
    if current is None:
        return CleanupAction(label, record["id"], "already gone", "the key no longer exists")
    # Fixed Sids of earlier versions count as this run's only where its ledger recorded them.
    legacy = [sid for sid in record.get("sids", []) if policies.sid_run_id(sid) is None]
    reduced = _remove_own_statements(ctx, kms, record["id"], current, legacy)
    if recovery_side:
        return CleanupAction(label, record["id"], "restored", "the run's statements removed; other statements kept")
    name = ctx.original_name("vault_key_policy", record["id"])
    before = ctx.ledger.original(name) if ctx.ledger.has_original(name) else None
    drift = _statement_drift(before, reduced)
    kept = ("identical to the captured original" if drift is None
            else "statements changed by others since the run started were kept")
    return CleanupAction(label, record["id"], "restored", "the run's statements removed; " + kept, drift)


def _recovery_bucket_policy(ctx: RunContext, bucket: str, legacy: list[str]) -> CleanupAction:
    s3 = ctx.recovery("s3")
    label = "recovery bucket policy"
    run_id = ctx.params.run_id
    try:
        current = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        if not _gone(error):
            raise
        return CleanupAction(label, bucket, "already gone", "the bucket has no policy")
    ours = policies.own_statement_sids(current, run_id, legacy)
    if not ours:
        return CleanupAction(label, bucket, "already gone", "the policy holds none of the run's statements")
    reduced = policies.remove_statements(current, ours, run_id=run_id, legacy=legacy)
    others = [str(s.get("Sid", "(no Sid)")) for s in policies.statements_of(reduced)]
    if not others:
        s3.delete_bucket_policy(Bucket=bucket)
        return CleanupAction(label, bucket, "removed",
                             "the vault account's role no longer needs to write into the recovery bucket")
    s3.put_bucket_policy(Bucket=bucket, Policy=policies.to_json(reduced))
    return CleanupAction(label, bucket, "removed",
                         "the run's statements removed; statements others added were kept",
                         {"kept_statements": others})


def _recovery_key_policy(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    kms = ctx.recovery("kms")
    current = _key_policy(kms, record["id"])
    if current is None:
        return CleanupAction("recovery KMS key", record["id"], "already gone", "the key no longer exists")
    # The key is the run's: the fixed-Sid grant earlier versions gave it at creation is the run's too.
    _remove_own_statements(ctx, kms, record["id"], current, list(policies.LEGACY_RECOVERY_KEY_SIDS))
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
        return CleanupAction("IAM role", record["id"], "already gone", "not found")
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
        return CleanupAction("IAM policy", record["id"], "already gone", "not found")
    return CleanupAction("IAM policy", record["id"], "removed", "the role that used it is removed")


def _inventory_configuration(ctx: RunContext, record: dict[str, Any]) -> CleanupAction:
    """Delete an inventory configuration the run made for verification (its delivered reports stay as evidence)."""
    bucket, _, config_id = str(record["id"]).partition("/")
    s3 = ctx.vault("s3") if record.get("side") == "vault" else ctx.recovery("s3")
    try:
        s3.delete_bucket_inventory_configuration(Bucket=bucket, Id=config_id)
    except ClientError as error:
        if not _gone(error) and error_code(error) not in ("NoSuchConfiguration", "NoSuchInventoryConfig"):
            raise
        return CleanupAction("inventory configuration", record["id"], "already gone", "not found")
    return CleanupAction("inventory configuration", record["id"], "removed",
                         "made for verification; no more daily reports (those delivered stay in the report bucket)")


_KEPT = {
    "s3_bucket": "holds recovered data or evidence; buckets and their object versions are never removed",
    "batch_job": "AWS keeps finished jobs for 90 days; they cannot be deleted",
}

# Removal order: what depends on something goes first.
_ORDER = ("event_rule", "sqs_queue", "sns_topic", "eventbridge_notifications", "replication_configuration",
          "kms_key_statements", "iam_role", "iam_policy", "inventory_configuration")


# What cleanup does with each kind of record, as the plan of phase 08 shows it beforehand:
# (resource, action, the calls it makes, why).
_PLANNED: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "event_rule": ("EventBridge rule", "remove", ("events.RemoveTargets", "events.DeleteRule"),
                   "job status notifications are no longer needed"),
    "sqs_queue": ("audit queue", "remove", ("sqs.DeleteQueue",), "the events it received are kept in the ledger"),
    "sns_topic": ("SNS topic", "remove", ("sns.DeleteTopic",), "its subscriptions go with it"),
    "eventbridge_notifications": ("vault bucket notifications", "restore",
                                  ("s3.PutBucketNotificationConfiguration",),
                                  "the run's EventBridge delivery turned off; other settings kept"),
    "replication_configuration": ("vault replication configuration", "restore",
                                  ("s3.DeleteBucketReplication", "s3.PutBucketReplication"),
                                  "removed, or put back as captured before the run; left as found if it changed since"),
    "kms_key_statements": ("KMS key policy", "restore", ("kms.PutKeyPolicy",),
                           "the run's statements removed; other statements kept"),
    "iam_role": ("IAM role", "remove", ("iam.DetachRolePolicy", "iam.DeleteRole"), "the replication job is finished"),
    "iam_policy": ("IAM policy", "remove", ("iam.DeletePolicyVersion", "iam.DeletePolicy"),
                   "the role that used it is removed"),
    "inventory_configuration": ("inventory configuration", "remove", ("s3.DeleteBucketInventoryConfiguration",),
                                "made for verification; the reports delivered stay in the report bucket"),
}


@dataclass(frozen=True)
class PlannedCleanup:
    """What cleanup would do with one resource, and the calls it would make (the plan of phase 08)."""

    resource: str
    identifier: str
    action: str  # remove | restore | keep
    why: str
    side: str  # vault | recovery
    calls: tuple[str, ...]  # service.Operation


def planned_cleanup(ctx: RunContext) -> list[PlannedCleanup]:
    """Return what clean_up would do with every resource the run recorded, in its order, reading nothing.

    It follows the ledger alone: a resource someone else changed or removed meanwhile is found
    when cleanup runs, and reported then (kept as found, or already gone).
    """
    planned: list[PlannedCleanup] = []
    for kind in _ORDER:
        resource, action, calls, why = _PLANNED[kind]
        for record in ctx.ledger.created(kind):
            recovery_side = (kind in ("kms_key_statements", "inventory_configuration")
                             and record.get("side") == "recovery")
            label = resource
            if kind == "kms_key_statements":
                label = ("recovery " if recovery_side else "vault ") + resource
            identifier = record.get("arn", record["id"]) if kind == "sqs_queue" else record["id"]
            record_action, record_calls = action, calls
            original = ctx.original_name("vault_replication_configuration", record["id"])
            if kind == "replication_configuration" and ctx.ledger.has_original(original):
                # The vault had none before the run: cleanup removes the run's; else puts the original back.
                none_before = ctx.ledger.original(original) is None
                record_action, record_calls = ("remove", calls[:1]) if none_before else ("restore", calls[1:])
            planned.append(PlannedCleanup(label, identifier, record_action, why,
                                          "recovery" if recovery_side else "vault", record_calls))
    for pair in ctx.all_params.bucket_pairs:
        recovery_bucket = pair.recovery_bucket
        if ctx.ledger.was_created("s3_bucket", recovery_bucket) or ctx.ledger.was_created(
                "bucket_policy_statements", recovery_bucket):
            planned.append(PlannedCleanup("recovery bucket policy", recovery_bucket, "restore",
                                          "the run's statements removed (the policy too, when nothing else is in it)",
                                          "recovery", ("s3.PutBucketPolicy", "s3.DeleteBucketPolicy")))
    for record in ctx.ledger.created("kms_key"):
        planned.append(PlannedCleanup("recovery KMS key", record["id"], "keep",
                                      "it encrypts the recovered data; the vault account's access to it is removed",
                                      "recovery", ("kms.PutKeyPolicy",)))
    for kind, why in _KEPT.items():
        for record in ctx.ledger.created(kind):
            side = "recovery" if record.get("account") == ctx.params.recovery.account_id else "vault"
            planned.append(PlannedCleanup(kind.replace("_", " "), record["id"], "keep", why, side, ()))
    return planned


def clean_up(ctx: RunContext) -> list[CleanupAction]:
    """Return what cleanup did with every resource the run created or changed, in order."""
    handlers = {
        "event_rule": _event_rule, "sqs_queue": _queue, "sns_topic": _topic,
        "eventbridge_notifications": _notifications, "replication_configuration": _replication,
        "kms_key_statements": _key_statements, "iam_role": _role, "iam_policy": _policy,
        "inventory_configuration": _inventory_configuration,
    }
    actions: list[CleanupAction] = []
    handled_now: set[str] = set()
    for kind in _ORDER:
        for record in ctx.ledger.created(kind):
            actions.append(handlers[kind](ctx, record))
            ctx.ledger.forget_created(kind, record["id"])
            handled_now.add(record["id"])
    for pair in ctx.all_params.bucket_pairs:
        recovery_bucket = pair.recovery_bucket
        created_bucket = ctx.ledger.was_created("s3_bucket", recovery_bucket)
        if created_bucket or ctx.ledger.was_created("bucket_policy_statements", recovery_bucket):
            # Fixed Sids of earlier versions are the run's only in a bucket the run created.
            legacy = list(policies.LEGACY_RECOVERY_BUCKET_SIDS) if created_bucket else []
            actions.append(_recovery_bucket_policy(ctx, recovery_bucket, legacy))
    for record in ctx.ledger.created("kms_key"):
        actions.append(_recovery_key_policy(ctx, record))
    for kind, why in _KEPT.items():
        for record in ctx.ledger.created(kind):
            actions.append(CleanupAction(kind.replace("_", " "), record["id"], "kept", why))
    for entry in ctx.ledger.state.removed:
        # An action may name a resource by another identifier than its record (a queue's ARN, not its URL).
        if entry["id"] not in handled_now and not any(a.identifier == entry["id"] for a in actions):
            actions.append(CleanupAction(entry["kind"].replace("_", " "), entry["id"], "already gone",
                                         f"removed by an earlier cleanup at {entry['at']}"))
    ctx.ledger.state.cleanup = [a.as_row() for a in actions]
    ctx.ledger.save()
    return actions
