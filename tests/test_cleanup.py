"""Phase 08 against the seeded vault: cleanup removes the run's own resources, puts back what it changed,
keeps buckets, data and keys, leaves everyone else's resources alone, and can run twice.

One scenario for the module: provision everything a run provisions (no job is needed), write some
recovered data and a report, add resources the run does not own, then clean up twice. Each test
checks one promise of that scenario.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from runbook_fixtures import DRILL_PARAMS, PROVISION_ORDER, Drill, count_versions, watch_calls, write_calls

from runbook_lib import cleanup, policies
from runbook_lib.cleanup import CleanupAction
from runbook_lib.context import open_run

pytestmark = pytest.mark.xdist_group("runbook-cleanup")

VAULT = "vault-golden-copies"
RECOVERY = "recovery-golden-copies"
REPORTS = "vault-batch-reports"
OTHER_ROLE = "vault-auditor"
OTHER_POLICY = f"arn:aws:iam::111111111111:policy/{OTHER_ROLE}"
OTHER_RULE = "vault-bucket-changes"
OTHER_TOPIC = "security-alerts"
OTHER_QUEUE = "vault-object-audit"
TRUST_EC2 = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


@dataclass
class Scenario:
    """What existed before cleanup, what each cleanup did, and what exists after."""

    drill: Drill
    original_key_policy: dict[str, Any]
    original_notifications: dict[str, Any]
    created: list[dict[str, Any]]
    captured_key_policy: dict[str, Any]
    topic_arn: str
    queue_url: str
    recovery_key_arn: str
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    first: list[CleanupAction]
    first_calls: list[str]
    second: list[CleanupAction]
    second_calls: list[str]

    def actions(self) -> dict[str, str]:
        return {a.resource: a.action for a in self.first}


def _notification_configuration(drill: Drill) -> dict[str, Any]:
    answer = drill.client("s3").get_bucket_notification_configuration(Bucket=VAULT)
    answer.pop("ResponseMetadata", None)
    return dict(answer)


def _add_resources_of_others(drill: Drill) -> None:
    """Resources in the vault account that the run must never touch, some named like the run's."""
    iam, events, sns, sqs = (drill.client(s) for s in ("iam", "events", "sns", "sqs"))
    iam.create_role(RoleName=OTHER_ROLE, AssumeRolePolicyDocument=json.dumps(TRUST_EC2))
    iam.create_policy(PolicyName=OTHER_ROLE, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{VAULT}/*"}]}))
    iam.attach_role_policy(RoleName=OTHER_ROLE, PolicyArn=OTHER_POLICY)
    topic = sns.create_topic(Name=OTHER_TOPIC)["TopicArn"]
    events.put_rule(Name=OTHER_RULE, EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule=OTHER_RULE, Targets=[{"Id": "alerts", "Arn": topic}])
    url = sqs.create_queue(QueueName=OTHER_QUEUE)["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    drill.client("s3").put_bucket_notification_configuration(Bucket=VAULT, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "object-audit", "QueueArn": queue, "Events": ["s3:ObjectCreated:*"]}]})


def _write_recovered_data(drill: Drill) -> None:
    recovery = drill.client("s3", "recovery")
    for body in (b"first recovered version", b"second recovered version"):
        recovery.put_object(Bucket=RECOVERY, Key="billing/2026/invoice.json", Body=body)
    drill.client("s3").put_object(Bucket=REPORTS, Key="batch-replication-reports/report.csv", Body=b"a,b\n")


@pytest.fixture(scope="module")
def scenario(drill: Drill, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    run_dir = tmp_path_factory.mktemp("cleanup-run")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in drill.environ().items():
            patch.setenv(name, value)
        kms = drill.client("kms")
        original_key_policy = json.loads(kms.get_key_policy(KeyId=drill.truth.vault_key_arn,
                                                            PolicyName="default")["Policy"])
        _add_resources_of_others(drill)
        original_notifications = _notification_configuration(drill)

        ctx = open_run(DRILL_PARAMS, run_dir, create=True)
        for step in PROVISION_ORDER:
            outcomes = step(ctx)
            statuses = {o.status for o in (outcomes if isinstance(outcomes, list) else [outcomes])}
            assert statuses <= {"created", "updated"}
        _write_recovered_data(drill)
        created = ctx.ledger.created()
        versions_before = count_versions(drill)

        first_ctx = open_run(DRILL_PARAMS, run_dir)
        first_calls = watch_calls(first_ctx)
        first = cleanup.clean_up(first_ctx)
        second_ctx = open_run(DRILL_PARAMS, run_dir)
        second_calls = watch_calls(second_ctx)
        second = cleanup.clean_up(second_ctx)

        yield Scenario(
            drill=drill,
            original_key_policy=original_key_policy,
            original_notifications=original_notifications,
            created=created,
            captured_key_policy=second_ctx.ledger.original("vault_key_policy"),
            topic_arn=ctx.ledger.state.resources.topic_arn,
            queue_url=ctx.ledger.state.resources.audit_queue_url,
            recovery_key_arn=ctx.ledger.state.resources.recovery_key_arn,
            versions_before=versions_before,
            versions_after=count_versions(drill),
            first=first,
            first_calls=first_calls,
            second=second,
            second_calls=second_calls,
        )


@pytest.fixture
def done(scenario: Scenario, aws_env: Drill) -> Scenario:
    """The scenario, with this test's AWS config pointing at the backend again."""
    return scenario


def _missing(call: Any, code: str, **arguments: Any) -> bool:
    try:
        call(**arguments)
    except ClientError as error:
        return bool(error.response["Error"]["Code"] == code)
    return False


def test_cleanup_removes_the_runs_own_resources(done: Scenario) -> None:
    drill = done.drill
    iam, events, sns, sqs, s3 = (drill.client(s) for s in ("iam", "events", "sns", "sqs", "s3"))

    assert {r: a for r, a in done.actions().items() if a == "removed"} == {
        "EventBridge rule": "removed", "SNS topic": "removed", "audit queue": "removed", "IAM role": "removed",
        "IAM policy": "removed", "vault replication configuration": "removed", "recovery bucket policy": "removed",
    }
    assert not [a for a in done.first if a.action == "already gone"]
    assert _missing(events.describe_rule, "ResourceNotFoundException", Name="s3-batch-replication-job-status")
    assert _missing(sns.get_topic_attributes, "NotFound", TopicArn=done.topic_arn)
    assert _missing(sqs.get_queue_url, "AWS.SimpleQueueService.NonExistentQueue",
                    QueueName="s3-batch-replication-status-audit")
    assert _missing(iam.get_role, "NoSuchEntity", RoleName="s3-batch-replication-role")
    assert _missing(iam.get_policy, "NoSuchEntity",
                    PolicyArn="arn:aws:iam::111111111111:policy/s3-batch-replication-policy")
    assert _missing(s3.get_bucket_replication, "ReplicationConfigurationNotFoundError", Bucket=VAULT)
    assert _missing(drill.client("s3", "recovery").get_bucket_policy, "NoSuchBucketPolicy", Bucket=RECOVERY)


def test_vault_key_policy_is_exactly_the_original_again(done: Scenario) -> None:
    kms = done.drill.client("kms")
    current = json.loads(kms.get_key_policy(KeyId=done.drill.truth.vault_key_arn, PolicyName="default")["Policy"])

    assert done.captured_key_policy == done.original_key_policy
    assert current == done.original_key_policy
    restored = next(a for a in done.first if a.resource == "vault KMS key policy")
    assert restored.action == "restored"
    assert restored.why == "the run's statements removed; identical to the captured original"


def test_vault_notifications_are_as_before_the_run(done: Scenario) -> None:
    assert "QueueConfigurations" in done.original_notifications
    assert _notification_configuration(done.drill) == done.original_notifications
    assert done.actions()["vault bucket notifications"] == "restored"


def test_buckets_and_the_recovery_key_are_kept_with_the_reason(done: Scenario) -> None:
    kept = {(a.resource, a.identifier): a.why for a in done.first if a.action == "kept"}
    kms = done.drill.client("kms", "recovery")
    key = kms.describe_key(KeyId=done.recovery_key_arn)["KeyMetadata"]
    key_policy = json.loads(kms.get_key_policy(KeyId=done.recovery_key_arn, PolicyName="default")["Policy"])

    assert set(kept) == {("s3 bucket", RECOVERY), ("s3 bucket", REPORTS), ("recovery KMS key", done.recovery_key_arn)}
    assert "never removed" in kept[("s3 bucket", RECOVERY)]
    assert "encrypts the recovered data" in kept[("recovery KMS key", done.recovery_key_arn)]
    assert key["KeyState"] == "Enabled"
    assert not [s for s in key_policy["Statement"] if s["Sid"].startswith(policies.OWN_SID_PREFIX)]
    assert [s["Sid"] for s in key_policy["Statement"]] == ["EnableRecoveryAccountAdministration"]
    for side, bucket in (("recovery", RECOVERY), ("vault", REPORTS), ("vault", VAULT)):
        done.drill.client("s3", side).head_bucket(Bucket=bucket)


def test_no_object_version_is_ever_removed(done: Scenario) -> None:
    deletions = {"DeleteObject", "DeleteObjects", "DeleteBucket", "PutBucketLifecycleConfiguration",
                 "ScheduleKeyDeletion", "DisableKey"}

    assert done.versions_before[f"222222222222/{RECOVERY}"] == 2
    assert done.versions_before[f"111111111111/{VAULT}"] == len(done.drill.truth.versions)
    assert done.versions_after == done.versions_before
    assert deletions.isdisjoint(done.first_calls + done.second_calls)


def test_second_cleanup_changes_nothing_and_says_so(done: Scenario) -> None:
    again = {(a.resource, a.action) for a in done.second}

    assert write_calls(done.second_calls) == []
    assert not {action for _, action in again} & {"removed", "restored"}
    assert ("recovery bucket policy", "already gone") in again
    assert {a.identifier for a in done.second if a.action == "already gone"} >= {
        done.topic_arn, done.queue_url, "arn:aws:iam::111111111111:role/s3-batch-replication-role"}


def test_resources_the_run_did_not_create_are_untouched(done: Scenario) -> None:
    iam, events, sns, sqs = (done.drill.client(s) for s in ("iam", "events", "sns", "sqs"))

    assert iam.get_role(RoleName=OTHER_ROLE)["Role"]["AssumeRolePolicyDocument"] == TRUST_EC2
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=OTHER_ROLE)["AttachedPolicies"]] == [
        OTHER_POLICY]
    assert iam.get_role(RoleName="drill-operator")["Role"]["RoleName"] == "drill-operator"
    assert json.loads(events.describe_rule(Name=OTHER_RULE)["EventPattern"]) == {"source": ["aws.s3"]}
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=OTHER_RULE)["Targets"]] == ["alerts"]
    assert sns.get_topic_attributes(TopicArn=f"arn:aws:sns:us-east-1:111111111111:{OTHER_TOPIC}")["Attributes"]
    assert sqs.get_queue_url(QueueName=OTHER_QUEUE)["QueueUrl"]
    created_ids = {r["id"] for r in done.created}
    assert not any(OTHER_ROLE in i or OTHER_RULE in i or OTHER_TOPIC in i for i in created_ids)

