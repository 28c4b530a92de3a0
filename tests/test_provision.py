"""Provisioning against the embedded backend: each ensure_* creates, then leaves alone, then reports drift.

Every test uses resource names of its own (see runbook_fixtures), and a vault bucket and key of its
own when it changes vault-level settings, so the tests share one seeded backend per module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from runbook_fixtures import CtxFactory, Drill, watch_calls, write_calls

from runbook_lib import guide, notifications, policies, provision
from runbook_lib.context import RunContext
from runbook_lib.errors import DriftError, ProvisionError
from runbook_lib.provision import Outcome

pytestmark = pytest.mark.xdist_group("runbook-provision")

Step = Callable[[RunContext], Any]

# Each step with the steps that must run before it (what it reads from the ledger or needs to exist).
STEPS: dict[str, tuple[Step, ...]] = {
    "recovery key": (provision.ensure_recovery_key,),
    "recovery bucket": (provision.ensure_recovery_key, provision.ensure_recovery_bucket),
    "report bucket": (provision.ensure_report_bucket,),
    "batch policy": (provision.ensure_recovery_key, provision.ensure_batch_policy),
    "batch role": (provision.ensure_recovery_key, provision.ensure_batch_policy, provision.ensure_batch_role),
    "vault key grants": (provision.ensure_vault_key_grants,),
    "recovery key grants": (provision.ensure_recovery_key, provision.ensure_batch_policy, provision.ensure_batch_role,
                            provision.ensure_recovery_key_grants),
    "recovery bucket policy": (provision.ensure_recovery_key, provision.ensure_recovery_bucket,
                               provision.ensure_recovery_bucket_policy),
    "replication rule": (provision.ensure_recovery_key, provision.ensure_replication_rule),
    "vault EventBridge": (provision.ensure_vault_eventbridge,),
    "notification topic": (provision.ensure_notification_topic,),
    "audit queue": (provision.ensure_notification_topic, notifications.ensure_audit_queue),
    "job status rule": (provision.ensure_notification_topic, provision.ensure_job_status_rule),
}
# Steps that change the vault bucket or key: they get a vault of their own.
VAULT_SETTINGS = ("vault key grants", "replication rule", "vault EventBridge")
# Settings on resources the run does not own (the vault's key and bucket) are updated, not created.
FIRST_STATUS = {name: "created" for name in STEPS} | {
    "vault key grants": "updated", "recovery key grants": "updated", "vault EventBridge": "updated"}

VERSION = "2012-10-17"
OTHER_TRUST = {"Version": VERSION, "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
NARROW_POLICY = {"Version": VERSION, "Statement": [
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::somewhere-else"}]}


def as_list(result: Outcome | list[Outcome]) -> list[Outcome]:
    return result if isinstance(result, list) else [result]


def run_steps(ctx: RunContext, steps: tuple[Step, ...]) -> list[Outcome]:
    """Run steps in order and return the outcomes of the last one."""
    outcomes: list[Outcome] = []
    for step in steps:
        outcomes = as_list(step(ctx))
    return outcomes


def assert_phase_stops(ctx: RunContext, outcome: Outcome) -> None:
    """The notebook's outcome table refuses to go on past a drifted resource, and names it."""
    with pytest.raises(DriftError) as stopped:
        ctx.phase = "test-phase"
        guide.show_outcomes(ctx, [outcome])
    assert outcome.identifier in str(stopped.value)
    assert stopped.value.difference == [outcome.difference]
    assert ctx.ledger.state.outcomes["test-phase"][-1]["status"] == "drift"


def fresh_vault_ctx(drill: Drill, make_ctx: CtxFactory, **vault: Any) -> RunContext:
    overrides = drill.fresh_vault(f"vault-{make_ctx.suffix}", **vault)
    return make_ctx(**overrides)


# --------------------------------------------------------------------------- created, unchanged


@pytest.mark.parametrize("name", list(STEPS))
def test_step_creates_then_changes_nothing_when_run_again(aws_env: Drill, make_ctx: CtxFactory, name: str) -> None:
    ctx = fresh_vault_ctx(aws_env, make_ctx) if name in VAULT_SETTINGS else make_ctx()
    *before, step = STEPS[name]
    run_steps(ctx, tuple(before))

    first = as_list(step(ctx))
    again = make_ctx()
    calls = watch_calls(again)
    second = as_list(step(again))

    assert {o.status for o in first} == {FIRST_STATUS[name]}
    assert {o.status for o in second} == {"unchanged"}
    assert calls, "the second run must look at what exists"
    assert write_calls(calls) == []


def test_every_step_in_notebook_order_creates_and_records_what_it_created(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = fresh_vault_ctx(aws_env, make_ctx)
    order = dict.fromkeys(step for steps in STEPS.values() for step in steps)
    for step in order:
        step(ctx)
    created = {(r["kind"], r["id"]) for r in make_ctx().ledger.created()}
    params = ctx.params
    assert {
        ("s3_bucket", params.recovery.bucket), ("s3_bucket", params.report_bucket),
        ("iam_policy", params.batch_policy_arn), ("iam_role", params.batch_role_arn),
        ("kms_key_statements", params.vault.kms_key_arn),
        ("replication_configuration", params.vault.bucket),
        ("eventbridge_notifications", params.vault.bucket),
    } <= created
    assert {kind for kind, _ in created} >= {"kms_key", "sns_topic", "sqs_queue", "event_rule"}


# ------------------------------------------------------------------------------- recovery key


def test_recovery_key_policy_changed_by_someone_else_is_put_back(aws_env: Drill, make_ctx: CtxFactory) -> None:
    key = provision.ensure_recovery_key(make_ctx())
    kms = aws_env.client("kms", "recovery")
    wanted = json.loads(kms.get_key_policy(KeyId=key.identifier, PolicyName="default")["Policy"])
    admin_only = {"Version": VERSION, "Statement": wanted["Statement"][:1]}
    kms.put_key_policy(KeyId=key.identifier, PolicyName="default", Policy=json.dumps(admin_only))

    outcome = provision.ensure_recovery_key(make_ctx())

    assert (outcome.status, outcome.identifier) == ("updated", key.identifier)
    assert outcome.difference["policy"]["found"] == admin_only
    assert json.loads(kms.get_key_policy(KeyId=key.identifier, PolicyName="default")["Policy"]) == wanted


def test_alias_on_a_key_the_run_did_not_create_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    kms = aws_env.client("kms", "recovery")
    foreign = kms.create_key(Description="another team's key", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    kms.create_alias(AliasName=make_ctx.names["recovery"]["kms_key_alias"], TargetKeyId=foreign["KeyId"])
    policy_before = kms.get_key_policy(KeyId=foreign["KeyId"], PolicyName="default")["Policy"]
    ctx = make_ctx()
    calls = watch_calls(ctx)

    outcome = provision.ensure_recovery_key(ctx)

    assert (outcome.status, outcome.identifier) == ("drift", foreign["Arn"])
    assert set(outcome.difference) == {"policy"}
    assert outcome.difference["policy"]["found"] == json.loads(policy_before)
    assert "recovery.kms_key_alias" in outcome.note
    assert write_calls(calls) == []
    assert kms.get_key_policy(KeyId=foreign["KeyId"], PolicyName="default")["Policy"] == policy_before
    assert_phase_stops(ctx, outcome)


# ------------------------------------------------------------------------------------ buckets


def _suspend_versioning(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


def _enable_versioning(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _sse_s3(s3: Any, bucket: str) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def _sse_kms(s3: Any, bucket: str) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})


OPEN_ACCESS = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
               "RestrictPublicBuckets": False}


def _open_access(s3: Any, bucket: str) -> None:
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=OPEN_ACCESS)


@pytest.mark.parametrize(
    ("label", "setting", "change", "found"),
    [
        ("recovery bucket", "versioning", _suspend_versioning, "Suspended"),
        ("recovery bucket", "encryption", _sse_s3, {"algorithm": "AES256", "key": None, "bucket_key": False}),
        ("recovery bucket", "public_access_block", _open_access, OPEN_ACCESS),
        ("report bucket", "versioning", _enable_versioning, "Enabled"),
        ("report bucket", "encryption", _sse_kms, {"algorithm": "aws:kms", "key": None, "bucket_key": False}),
    ],
)
def test_setting_of_the_runs_bucket_changed_out_of_band_is_put_back(
    aws_env: Drill, make_ctx: CtxFactory, label: str, setting: str, change: Callable[[Any, str], None], found: Any
) -> None:
    recovery = label == "recovery bucket"
    ensure = provision.ensure_recovery_bucket if recovery else provision.ensure_report_bucket
    ctx = make_ctx()
    if recovery:
        provision.ensure_recovery_key(ctx)
    ensure(ctx)
    bucket = ctx.params.recovery.bucket if recovery else ctx.params.report_bucket
    change(aws_env.client("s3", "recovery" if recovery else "vault"), bucket)

    outcomes = {o.resource: o for o in ensure(make_ctx())}
    after = {o.resource: o.status for o in ensure(make_ctx())}

    changed = outcomes.pop(f"{label} {setting}")
    assert changed.status == "updated"
    assert changed.difference["found"] == found
    assert {o.status for o in outcomes.values()} == {"unchanged"}
    assert set(after.values()) == {"unchanged"}


@pytest.mark.parametrize("label", ["recovery bucket", "report bucket"])
def test_existing_bucket_of_that_name_not_created_by_the_run_is_drift(
    aws_env: Drill, make_ctx: CtxFactory, label: str
) -> None:
    recovery = label == "recovery bucket"
    bucket = make_ctx.names["recovery"]["bucket"] if recovery else make_ctx.names["report_bucket"]
    s3 = aws_env.client("s3", "recovery" if recovery else "vault")
    s3.create_bucket(Bucket=bucket)
    _enable_versioning(s3, bucket)
    ctx = make_ctx()
    if recovery:
        provision.ensure_recovery_key(ctx)
    calls = watch_calls(ctx)

    outcomes = (provision.ensure_recovery_bucket if recovery else provision.ensure_report_bucket)(ctx)

    assert [(o.resource, o.identifier, o.status) for o in outcomes] == [(label, bucket, "drift")]
    difference = outcomes[0].difference
    if recovery:
        assert difference["object_lock"] == {"found": None, "wanted": "Enabled"}
        assert difference["encryption"]["wanted"]["algorithm"] == "aws:kms"
    else:
        assert difference["versioning"] == {"found": "Enabled", "wanted": "Disabled"}
    assert "not created by this run" in outcomes[0].note
    assert write_calls(calls) == []
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert_phase_stops(ctx, outcomes[0])


def test_recovery_bucket_name_taken_by_another_account_stops_with_what_to_do(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    bucket = make_ctx.names["recovery"]["bucket"]
    aws_env.client("s3", "vault").create_bucket(Bucket=bucket)
    ctx = make_ctx()
    provision.ensure_recovery_key(ctx)

    with pytest.raises(ProvisionError, match="taken by another account; choose another name"):
        provision.ensure_recovery_bucket(ctx)
    assert not ctx.ledger.was_created("s3_bucket", bucket)


# ---------------------------------------------------------------------------------------- IAM


def test_batch_policy_changed_out_of_band_gets_a_new_default_version(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    run_steps(ctx, STEPS["batch policy"])
    iam = aws_env.client("iam")
    arn = ctx.params.batch_policy_arn
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(NARROW_POLICY), SetAsDefault=True)

    outcome = provision.ensure_batch_policy(make_ctx())

    assert outcome.status == "updated"
    assert outcome.difference["found"] == NARROW_POLICY
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
    assert document == provision.documents(ctx)["batch_role_policy"]


def test_batch_policy_of_that_name_not_created_by_the_run_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    iam = aws_env.client("iam")
    iam.create_policy(PolicyName=make_ctx.names["batch_policy_name"], PolicyDocument=json.dumps(NARROW_POLICY))
    ctx = make_ctx()
    provision.ensure_recovery_key(ctx)
    calls = watch_calls(ctx)

    outcome = provision.ensure_batch_policy(ctx)

    assert outcome.status == "drift"
    assert outcome.difference["found"] == NARROW_POLICY
    assert "batch_policy_name" in outcome.note
    assert write_calls(calls) == []
    assert len(iam.list_policy_versions(PolicyArn=ctx.params.batch_policy_arn)["Versions"]) == 1
    assert_phase_stops(ctx, outcome)


def test_batch_role_trust_changed_out_of_band_is_put_back(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    run_steps(ctx, STEPS["batch role"])
    iam = aws_env.client("iam")
    iam.update_assume_role_policy(RoleName=ctx.params.batch_role_name, PolicyDocument=json.dumps(OTHER_TRUST))

    outcome = provision.ensure_batch_role(make_ctx())

    assert outcome.status == "updated"
    assert set(outcome.difference) == {"trust_policy"}
    assert outcome.difference["trust_policy"]["found"] == OTHER_TRUST
    trust = iam.get_role(RoleName=ctx.params.batch_role_name)["Role"]["AssumeRolePolicyDocument"]
    assert trust == policies.batch_role_trust_policy(
        vault_account_id=ctx.params.vault.account_id, vault_bucket=ctx.params.vault.bucket, region=ctx.params.region)


def test_batch_role_of_that_name_not_created_by_the_run_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    iam = aws_env.client("iam")
    name = make_ctx.names["batch_role_name"]
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(OTHER_TRUST))
    ctx = make_ctx()
    run_steps(ctx, STEPS["batch policy"])
    calls = watch_calls(ctx)

    outcome = provision.ensure_batch_role(ctx)

    assert outcome.status == "drift"
    assert set(outcome.difference) == {"trust_policy", "attached_policies"}
    assert outcome.difference["attached_policies"] == {"found": [], "wanted": [ctx.params.batch_policy_arn]}
    assert "batch_role_name" in outcome.note
    assert write_calls(calls) == []
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == OTHER_TRUST
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    assert_phase_stops(ctx, outcome)


# ------------------------------------------------------------------------------------- grants

FOREIGN_KEY_POLICY: dict[str, Any] = {
    "Version": VERSION,
    "Id": "vault-key-policy",
    "Statement": [
        {"Sid": "EnableVaultAdministration", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "ProductionReplicationEncrypts", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::333333333333:role/prod-to-vault-replication"},
         "Action": ["kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}},
    ],
}


def _key_policy(drill: Drill, key: str) -> dict[str, Any]:
    return dict(json.loads(drill.client("kms").get_key_policy(KeyId=key, PolicyName="default")["Policy"]))


def _foreign(policy: dict[str, Any]) -> list[str]:
    """Return the statements the runbook does not own, each as its JSON text in policy order."""
    return [json.dumps(s) for s in policy["Statement"]
            if not str(s.get("Sid", "")).startswith(policies.OWN_SID_PREFIX)]


def test_vault_key_grants_keep_foreign_statements_and_capture_the_original_once(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    ctx = fresh_vault_ctx(aws_env, make_ctx, key_policy=FOREIGN_KEY_POLICY)
    key = ctx.params.vault.kms_key_arn
    (sid,) = [s["Sid"] for s in provision.documents(ctx)["vault_key_policy_statements"]]

    first = provision.ensure_vault_key_grants(ctx)
    granted = _key_policy(aws_env, key)
    captured = ctx.ledger.state.originals["vault_key_policy"].model_dump()
    second = provision.ensure_vault_key_grants(make_ctx())
    # Someone removes the run's statement; the next run puts it back.
    without_ours = {**granted, "Statement": [s for s in granted["Statement"] if s.get("Sid") != sid]}
    aws_env.client("kms").put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(without_ours))
    third_ctx = make_ctx()
    third = provision.ensure_vault_key_grants(third_ctx)

    assert first.status == "updated"
    assert first.difference == {"added_or_replaced": [sid]}
    assert policies.sid_run_id(sid) == ctx.params.run_id
    assert _foreign(granted) == _foreign(FOREIGN_KEY_POLICY)
    assert granted["Id"] == FOREIGN_KEY_POLICY["Id"]
    ours = next(s for s in granted["Statement"] if s.get("Sid") == sid)
    assert ours["Principal"] == {"AWS": ctx.params.batch_role_arn}
    assert ours["Action"] == "kms:Decrypt"
    assert second.status == "unchanged"
    assert third.status == "updated"
    assert _key_policy(aws_env, key) == granted
    assert captured["value"] == FOREIGN_KEY_POLICY
    assert third_ctx.ledger.state.originals["vault_key_policy"].model_dump() == captured
    assert len(third_ctx.ledger.created("kms_key_statements")) == 1


def test_two_runs_on_one_vault_key_keep_each_others_grant(aws_env: Drill, make_ctx: CtxFactory) -> None:
    overrides = aws_env.fresh_vault(f"vault-{make_ctx.suffix}", key_policy=FOREIGN_KEY_POLICY)
    first = make_ctx(**overrides)
    second = make_ctx("second", **overrides, run_id=f"{first.params.run_id}-b")
    key = first.params.vault.kms_key_arn

    provision.ensure_vault_key_grants(first)
    provision.ensure_vault_key_grants(second)
    both = _key_policy(aws_env, key)
    again = provision.ensure_vault_key_grants(make_ctx(**overrides))

    runs = [policies.sid_run_id(s.get("Sid")) for s in both["Statement"]]
    assert runs.count(first.params.run_id) == runs.count(second.params.run_id) == 1
    assert again.status == "unchanged"
    assert _foreign(both) == _foreign(FOREIGN_KEY_POLICY)


def test_vault_key_grants_of_an_earlier_version_give_way_to_run_scoped_ones(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    ctx = fresh_vault_ctx(aws_env, make_ctx, key_policy=FOREIGN_KEY_POLICY)
    key = ctx.params.vault.kms_key_arn
    old = [{"Sid": "RunbookRecoveryRoleUsesKey", "Effect": "Allow", "Principal": {"AWS": ctx.params.batch_role_arn},
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*"], "Resource": "*"},
           {"Sid": "RunbookRecoveryAccountUsesKey", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:Decrypt", "Resource": "*"}]
    aws_env.client("kms").put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(
        {**FOREIGN_KEY_POLICY, "Statement": [*FOREIGN_KEY_POLICY["Statement"], *old]}))
    # The ledger of a run made by the earlier version records its fixed Sids.
    ctx.ledger.record_created("kms_key_statements", key, sids=[s["Sid"] for s in old])

    outcome = provision.ensure_vault_key_grants(ctx)

    assert outcome.status == "updated"
    assert outcome.difference["removed_earlier_sids"] == [s["Sid"] for s in old]
    sids = [s.get("Sid") for s in _key_policy(aws_env, key)["Statement"]]
    assert not set(policies.LEGACY_VAULT_KEY_SIDS) & set(sids)
    assert _foreign(_key_policy(aws_env, key)) == _foreign(FOREIGN_KEY_POLICY)


# ------------------------------------------------------------------------ recovery bucket policy


def test_recovery_bucket_policy_changed_out_of_band_gets_the_runs_statements_back_and_keeps_the_rest(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    ctx = make_ctx()
    run_steps(ctx, STEPS["recovery bucket policy"])
    bucket = ctx.params.recovery.bucket
    s3 = aws_env.client("s3", "recovery")
    # An administrator replaces the policy with their own Deny.
    other = {"Version": VERSION, "Statement": [{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
                                                "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*",
                                                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(other))

    outcome = provision.ensure_recovery_bucket_policy(make_ctx())
    again = provision.ensure_recovery_bucket_policy(make_ctx())

    assert outcome.status == "updated"
    assert outcome.difference["found"] == other
    current = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    ours = provision.documents(ctx)["recovery_bucket_policy"]["Statement"]
    assert current["Statement"] == [*other["Statement"], *ours]
    assert again.status == "unchanged"


def test_recovery_bucket_policy_on_a_bucket_the_run_did_not_create_is_drift(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    bucket = make_ctx.names["recovery"]["bucket"]
    s3 = aws_env.client("s3", "recovery")
    s3.create_bucket(Bucket=bucket)
    ctx = make_ctx()
    calls = watch_calls(ctx)

    outcome = provision.ensure_recovery_bucket_policy(ctx)

    assert outcome.status == "drift"
    assert outcome.difference == {"found": None, "wanted": provision.documents(ctx)["recovery_bucket_policy"]}
    assert write_calls(calls) == []
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    assert_phase_stops(ctx, outcome)


# --------------------------------------------------------------------------- replication rule

EXISTING_REPLICATION = {
    "Role": "arn:aws:iam::111111111111:role/vault-offsite-copy",
    "Rules": [{"ID": "offsite-finance", "Priority": 1, "Filter": {"Prefix": "finance/"}, "Status": "Enabled",
               "Destination": {"Bucket": "arn:aws:s3:::vault-offsite-copy"},
               "DeleteMarkerReplication": {"Status": "Disabled"}}],
}


def test_existing_replication_configuration_on_the_vault_is_drift_and_captured(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    overrides = aws_env.fresh_vault(f"vault-{make_ctx.suffix}")
    bucket = overrides["vault"]["bucket"]
    s3 = aws_env.client("s3")
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=EXISTING_REPLICATION)
    existing = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    ctx = make_ctx(**overrides)
    provision.ensure_recovery_key(ctx)
    calls = watch_calls(ctx)

    outcome = provision.ensure_replication_rule(ctx)

    assert outcome.status == "drift"
    assert outcome.difference["found"] == existing
    assert outcome.difference["found"]["Rules"][0]["ID"] == "offsite-finance"
    assert outcome.difference["wanted"] == provision.documents(ctx)["replication_configuration"]
    assert "captured in the ledger" in outcome.note
    assert ctx.ledger.original("vault_replication_configuration") == existing
    assert write_calls(calls) == []
    assert s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"] == existing
    assert_phase_stops(ctx, outcome)


def test_runs_replication_rule_changed_out_of_band_is_put_back(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = fresh_vault_ctx(aws_env, make_ctx)
    run_steps(ctx, STEPS["replication rule"])
    bucket = ctx.params.vault.bucket
    s3 = aws_env.client("s3")
    changed = provision.documents(ctx)["replication_configuration"]
    changed["Rules"][0]["Destination"]["StorageClass"] = "STANDARD"
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=changed)

    again = make_ctx()
    outcome = provision.ensure_replication_rule(again)

    assert outcome.status == "updated"
    assert outcome.difference["found"]["Rules"][0]["Destination"]["StorageClass"] == "STANDARD"
    current = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    assert current["Rules"][0]["Destination"]["StorageClass"] == "INTELLIGENT_TIERING"
    assert again.ledger.original("vault_replication_configuration") is None


@pytest.mark.parametrize("token", [None, "object-lock-token-from-support"])
def test_replication_configuration_request_is_exactly_the_methods_step_6(
    aws_env: Drill, make_ctx: CtxFactory, token: str | None
) -> None:
    ctx = make_ctx(object_lock_token=token)
    recovery_key = "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-0000-4000-8000-000000000001"
    ctx.ledger.set_resource("recovery_key_arn", recovery_key)
    params = ctx.params
    wanted: dict[str, Any] = {
        "Bucket": "vault-golden-copies",
        "ReplicationConfiguration": {
            "Role": f"arn:aws:iam::111111111111:role/{params.batch_role_name}",
            "Rules": [{
                "ID": "runbook-batch-replication",
                "Priority": 0,
                "Filter": {},
                "Status": "Enabled",
                "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                "Destination": {
                    "Bucket": f"arn:aws:s3:::{params.recovery.bucket}",
                    "Account": "222222222222",
                    "StorageClass": "INTELLIGENT_TIERING",
                    "AccessControlTranslation": {"Owner": "Destination"},
                    "EncryptionConfiguration": {"ReplicaKmsKeyID": recovery_key},
                    "Metrics": {"Status": "Enabled"},
                },
                "DeleteMarkerReplication": {"Status": "Disabled"},
            }],
        },
    }
    if token is not None:
        wanted["Token"] = token

    with Stubber(ctx.vault("s3")) as s3:
        s3.add_client_error("get_bucket_replication", "ReplicationConfigurationNotFoundError", http_status_code=404,
                            expected_params={"Bucket": "vault-golden-copies"})
        s3.add_response("put_bucket_replication", {}, expected_params=wanted)
        outcome = provision.ensure_replication_rule(ctx)
        s3.assert_no_pending_responses()

    assert outcome.status == "created"
    assert ("Object Lock token" in outcome.note) == (token is not None)
    assert token is None or token not in ctx.ledger.path.read_text()


# ------------------------------------------------------------------------- vault EventBridge


def test_vault_eventbridge_keeps_the_buckets_other_notifications(aws_env: Drill, make_ctx: CtxFactory) -> None:
    overrides = aws_env.fresh_vault(f"vault-{make_ctx.suffix}")
    bucket = overrides["vault"]["bucket"]
    sqs = aws_env.client("sqs")
    url = sqs.create_queue(QueueName=f"object-audit-{make_ctx.suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3 = aws_env.client("s3")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"Id": "object-audit", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})
    before = s3.get_bucket_notification_configuration(Bucket=bucket)
    before.pop("ResponseMetadata")
    ctx = make_ctx(**overrides)

    outcome = provision.ensure_vault_eventbridge(ctx)

    after = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert outcome.status == "updated"
    assert outcome.difference == {"found": ["QueueConfigurations"],
                                  "wanted": ["EventBridgeConfiguration", "QueueConfigurations"]}
    assert after["QueueConfigurations"] == before["QueueConfigurations"]
    assert after["EventBridgeConfiguration"] == {}
    assert ctx.ledger.original("vault_notification_configuration") == before


# ------------------------------------------------------------------------------ notifications


def test_email_subscription_removed_out_of_band_is_added_again(aws_env: Drill, make_ctx: CtxFactory) -> None:
    topic = provision.ensure_notification_topic(make_ctx())
    sns = aws_env.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=topic.identifier)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])

    outcome = provision.ensure_notification_topic(make_ctx())

    assert outcome.status == "updated"
    assert outcome.difference == {"subscription_added": "recovery-team@example.com"}
    endpoints = [(s["Protocol"], s["Endpoint"])
                 for s in sns.list_subscriptions_by_topic(TopicArn=topic.identifier)["Subscriptions"]]
    assert endpoints == [("email", "recovery-team@example.com")]


def test_topic_of_that_name_not_created_by_the_run_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    sns = aws_env.client("sns")
    arn = sns.create_topic(Name=make_ctx.names["notification_topic_name"])["TopicArn"]
    ctx = make_ctx()
    calls = watch_calls(ctx)

    outcome = provision.ensure_notification_topic(ctx)

    assert (outcome.status, outcome.identifier) == ("drift", arn)
    assert "notification_topic_name" in outcome.note
    assert write_calls(calls) == []
    assert sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"] == []
    assert_phase_stops(ctx, outcome)


def test_audit_queue_policy_and_subscription_changed_out_of_band_are_put_back(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    ctx = make_ctx()
    queue = run_steps(ctx, STEPS["audit queue"])[0]
    sqs, sns = aws_env.client("sqs"), aws_env.client("sns")
    url = ctx.ledger.state.resources.audit_queue_url
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(NARROW_POLICY)})
    topic = ctx.ledger.state.resources.topic_arn
    for subscription in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        if subscription["Protocol"] == "sqs":
            sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])

    outcome = notifications.ensure_audit_queue(make_ctx())
    again = notifications.ensure_audit_queue(make_ctx())

    assert (outcome.status, outcome.identifier) == ("updated", queue.identifier)
    assert set(outcome.difference) == {"queue_policy", "subscribed"}
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Condition"] == {"ArnEquals": {"aws:SourceArn": topic}}
    assert again.status == "unchanged"


def test_audit_queue_of_that_name_not_created_by_the_run_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    run_steps(ctx, STEPS["audit queue"][:1])  # the topic only
    sqs = aws_env.client("sqs")
    name = f"{ctx.params.notification_topic_name}-audit"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    calls = watch_calls(ctx)

    outcome = notifications.ensure_audit_queue(ctx)

    assert outcome.status == "drift"
    assert "notification_topic_name" in outcome.note
    assert write_calls(calls) == []
    assert "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert_phase_stops(ctx, outcome)


def test_job_status_rule_pattern_changed_out_of_band_is_put_back(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    run_steps(ctx, STEPS["job status rule"])
    events = aws_env.client("events")
    name = ctx.params.event_rule_name
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.s3"]}))

    outcome = provision.ensure_job_status_rule(make_ctx())

    wanted = policies.job_status_event_pattern(vault_account_id="111111111111")
    assert outcome.status == "updated"
    assert outcome.difference["event_pattern"] == {"found": {"source": ["aws.s3"]}, "wanted": wanted}
    assert json.loads(events.describe_rule(Name=name)["EventPattern"]) == wanted


def test_job_status_rule_of_that_name_not_created_by_the_run_is_drift(aws_env: Drill, make_ctx: CtxFactory) -> None:
    events = aws_env.client("events")
    name = make_ctx.names["event_rule_name"]
    foreign_pattern = {"source": ["aws.ec2"]}
    events.put_rule(Name=name, EventPattern=json.dumps(foreign_pattern))
    ctx = make_ctx()
    provision.ensure_notification_topic(ctx)
    calls = watch_calls(ctx)

    outcome = provision.ensure_job_status_rule(ctx)

    assert outcome.status == "drift"
    assert outcome.difference["event_pattern"]["found"] == foreign_pattern
    assert "event_rule_name" in outcome.note
    assert write_calls(calls) == []
    assert json.loads(events.describe_rule(Name=name)["EventPattern"]) == foreign_pattern
    assert events.list_targets_by_rule(Rule=name)["Targets"] == []
    assert_phase_stops(ctx, outcome)


def test_policy_naming_a_just_created_role_is_retried_until_visible() -> None:
    from botocore.exceptions import ClientError as AwsError

    answers = [AwsError({"Error": {"Code": "MalformedPolicyDocumentException"}}, "PutKeyPolicy")] * 2 + [{"ok": True}]
    waits: list[float] = []

    def put(**arguments: object) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert provision.put_naming_new_principal(put, sleep=waits.append, KeyId="k") == {"ok": True}
    assert waits == [1.0, 2.0]


def test_other_policy_errors_and_exhausted_retries_are_raised() -> None:
    from botocore.exceptions import ClientError as AwsError

    def denied(**arguments: object) -> object:
        raise AwsError({"Error": {"Code": "AccessDeniedException"}}, "PutKeyPolicy")

    def never_visible(**arguments: object) -> object:
        raise AwsError({"Error": {"Code": "MalformedPolicy"}}, "PutBucketPolicy")

    waits: list[float] = []
    with pytest.raises(AwsError, match="AccessDenied"):
        provision.put_naming_new_principal(denied, sleep=waits.append)
    assert waits == []
    with pytest.raises(AwsError, match="MalformedPolicy"):
        provision.put_naming_new_principal(never_visible, attempts=3, sleep=waits.append)
    assert waits == [1.0, 2.0]
