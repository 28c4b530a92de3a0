"""Cleanup on documents others share: only the run's own part goes, the rest stays and is reported.

Each test provisions one run (with a vault bucket and key of its own), lets someone else change the
shared documents meanwhile (another run's grant, an administrator's Deny, a queue notification, a new
replication rule), then cleans up and checks what a security team would: nothing of theirs was lost.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from runbook_fixtures import CtxFactory, Drill, watch_calls, write_calls

from runbook_lib import cleanup, policies, provision
from runbook_lib.cleanup import CleanupAction
from runbook_lib.context import RunContext

pytestmark = pytest.mark.xdist_group("runbook-cleanup-shared")

VERSION = "2012-10-17"
PROVISION = (
    provision.ensure_recovery_key, provision.ensure_recovery_bucket, provision.ensure_batch_policy,
    provision.ensure_batch_role, provision.ensure_vault_key_grants, provision.ensure_recovery_key_grants,
    provision.ensure_recovery_bucket_policy, provision.ensure_replication_rule, provision.ensure_vault_eventbridge,
)
ADMIN_DENY_SID = "DenyInsecureTransport"
KEY_AUDITOR_SID = "SecurityAuditorDescribesKey"


def _provisioned(drill: Drill, make_ctx: CtxFactory) -> tuple[RunContext, dict[str, Any]]:
    overrides = drill.fresh_vault(f"vault-{make_ctx.suffix}")
    ctx = make_ctx(**overrides)
    for step in PROVISION:
        step(ctx)
    return ctx, overrides


def _by_resource(actions: list[CleanupAction]) -> dict[str, CleanupAction]:
    return {a.resource: a for a in actions}


def _policy(drill: Drill, side: str, key: str) -> dict[str, Any]:
    return dict(json.loads(drill.client("kms", side).get_key_policy(KeyId=key, PolicyName="default")["Policy"]))


def test_cleanup_removes_only_the_runs_statements_and_settings(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx, overrides = _provisioned(aws_env, make_ctx)
    params = ctx.params
    vault_key, recovery_key = params.vault.kms_key_arn, ctx.ledger.state.resources.recovery_key_arn
    # Meanwhile: a second recovery of the same vault grants its role on the vault key ...
    other = make_ctx("other", **overrides, run_id=f"{params.run_id}-b")
    provision.ensure_vault_key_grants(other)
    (other_sid,) = [s["Sid"] for s in provision.documents(other)["vault_key_policy_statements"]]
    # ... an administrator adds a Deny to the recovery bucket policy and an auditor to the recovery key ...
    recovery_s3 = aws_env.client("s3", "recovery")
    bucket_policy = json.loads(recovery_s3.get_bucket_policy(Bucket=params.recovery.bucket)["Policy"])
    deny = {"Sid": ADMIN_DENY_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": f"arn:aws:s3:::{params.recovery.bucket}/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    bucket_policy["Statement"].append(deny)
    recovery_s3.put_bucket_policy(Bucket=params.recovery.bucket, Policy=json.dumps(bucket_policy))
    auditor = {"Sid": KEY_AUDITOR_SID, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
               "Action": "kms:DescribeKey", "Resource": "*"}
    key_policy = _policy(aws_env, "recovery", recovery_key)
    key_policy["Statement"].append(auditor)
    aws_env.client("kms", "recovery").put_key_policy(KeyId=recovery_key, PolicyName="default",
                                                     Policy=json.dumps(key_policy))
    # ... and the vault team sends object events to a queue.
    sqs = aws_env.client("sqs")
    url = sqs.create_queue(QueueName=f"audit-{make_ctx.suffix}")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queues = [{"Id": "object-audit", "QueueArn": queue, "Events": ["s3:ObjectCreated:*"]}]
    vault_s3 = aws_env.client("s3")
    vault_s3.put_bucket_notification_configuration(Bucket=params.vault.bucket, NotificationConfiguration={
        "QueueConfigurations": queues, "EventBridgeConfiguration": {}})

    actions = _by_resource(cleanup.clean_up(make_ctx(**overrides)))
    again = cleanup.clean_up(make_ctx(**overrides))

    vault_sids = [s.get("Sid") for s in _policy(aws_env, "vault", vault_key)["Statement"]]
    assert other_sid in vault_sids, "the other run's grant must survive this run's cleanup"
    assert [sid for sid in vault_sids if policies.sid_run_id(sid) == params.run_id] == []
    assert actions["vault KMS key policy"].drift == {"added_by_others": [other_sid]}

    assert json.loads(recovery_s3.get_bucket_policy(Bucket=params.recovery.bucket)["Policy"])["Statement"] == [deny]
    assert actions["recovery bucket policy"].action == "removed"
    assert actions["recovery bucket policy"].drift == {"kept_statements": [ADMIN_DENY_SID]}

    assert [s["Sid"] for s in _policy(aws_env, "recovery", recovery_key)["Statement"]] == [
        "EnableRecoveryAccountAdministration", KEY_AUDITOR_SID]
    assert actions["recovery KMS key policy"].action == "restored"

    notifications = vault_s3.get_bucket_notification_configuration(Bucket=params.vault.bucket)
    assert "EventBridgeConfiguration" not in notifications
    assert [q["QueueArn"] for q in notifications["QueueConfigurations"]] == [queue]
    assert actions["vault bucket notifications"].action == "restored"
    assert actions["vault bucket notifications"].drift == {
        "QueueConfigurations": {"before_run": None, "now": queues}}
    assert not {a.action for a in again} & {"removed", "restored"}


def test_replication_configuration_changed_meanwhile_is_left_as_found(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx, overrides = _provisioned(aws_env, make_ctx)
    vault_s3 = aws_env.client("s3")
    changed = provision.replication_document(ctx)
    changed["Rules"][0]["Destination"]["StorageClass"] = "STANDARD"
    vault_s3.put_bucket_replication(Bucket=ctx.params.vault.bucket, ReplicationConfiguration=changed)
    later = make_ctx(**overrides)
    calls = watch_calls(later)

    action = _by_resource(cleanup.clean_up(later))["vault replication configuration"]

    assert action.action == "kept"
    assert "PutBucketReplication" not in calls and "DeleteBucketReplication" not in calls
    found = vault_s3.get_bucket_replication(Bucket=ctx.params.vault.bucket)["ReplicationConfiguration"]
    assert found["Rules"][0]["Destination"]["StorageClass"] == "STANDARD"
    assert action.drift["put_by_run"] == provision.replication_document(ctx)


def test_cleanup_says_already_gone_for_keys_and_buckets_that_no_longer_exist(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    # A ledger written against an embedded backend that has since restarted: it names a vault key,
    # a recovery key and buckets that do not exist any more.
    ctx = make_ctx()
    gone_key = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-4000-8000-000000000000"
    gone_recovery_key = "arn:aws:kms:us-east-1:222222222222:key/00000000-0000-4000-8000-000000000001"
    gone_bucket = f"vault-gone-{make_ctx.suffix}"
    ctx.ledger.record_created("kms_key_statements", gone_key, sids=list(policies.LEGACY_VAULT_KEY_SIDS))
    ctx.ledger.record_created("kms_key_statements", gone_recovery_key, sids=["x"], side="recovery")
    ctx.ledger.record_created("kms_key", gone_recovery_key, alias="alias/gone")
    ctx.ledger.record_created("eventbridge_notifications", gone_bucket)
    ctx.ledger.record_created("replication_configuration", gone_bucket, original_existed=False)
    calls = watch_calls(ctx)

    actions = cleanup.clean_up(ctx)

    assert {(a.resource, a.action) for a in actions} >= {
        ("vault KMS key policy", "already gone"), ("recovery KMS key policy", "already gone"),
        ("recovery KMS key", "already gone"), ("vault bucket notifications", "already gone"),
        ("vault replication configuration", "already gone"),
    }
    assert write_calls(calls) == []


def test_fixed_sids_of_an_earlier_version_are_removed_only_where_the_ledger_recorded_them(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    overrides = aws_env.fresh_vault(f"vault-{make_ctx.suffix}")
    ctx = make_ctx(**overrides)
    key = ctx.params.vault.kms_key_arn
    kms = aws_env.client("kms")
    old = {"Sid": "RunbookRecoveryRoleUsesKey", "Effect": "Allow", "Principal": {"AWS": ctx.params.batch_role_arn},
           "Action": "kms:Decrypt", "Resource": "*"}
    policy = _policy(aws_env, "vault", key)
    ctx.ledger.capture_original("vault_key_policy", policy)
    kms.put_key_policy(KeyId=key, PolicyName="default",
                       Policy=json.dumps({**policy, "Statement": [*policy["Statement"], old]}))
    # Another run's ledger does not name the statement: its cleanup leaves it.
    stranger = make_ctx("stranger", **overrides, run_id=f"{ctx.params.run_id}-s")
    stranger.ledger.record_created("kms_key_statements", key, sids=[])
    cleanup.clean_up(stranger)
    kept = [s.get("Sid") for s in _policy(aws_env, "vault", key)["Statement"]]
    ctx.ledger.record_created("kms_key_statements", key, sids=[old["Sid"]])

    action = _by_resource(cleanup.clean_up(ctx))["vault KMS key policy"]

    assert old["Sid"] in kept
    assert _policy(aws_env, "vault", key) == policy
    assert action.why == "the run's statements removed; identical to the captured original"
