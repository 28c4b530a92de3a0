"""The parameter model: every invalid value is reported, with its field, value and expectation."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest

from runbook_lib.embedded import seed, server
from runbook_lib.errors import ParameterError, ParameterProblem
from runbook_lib.params import MISSING, RunbookParams, load_params, parse_params

PARAMETERS = Path(__file__).resolve().parent.parent / "parameters"
KEY_ARN = "arn:aws:kms:us-east-1:111111111111:key/6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1"
KEY_ID = "6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1"
TOKEN = "olt-SECRET-4f2a9c"
DELETE = object()

TOP_LEVEL_KEYS = (
    "run_id, run, region, allow_cross_region, recover_as_of, vault, recovery, report_bucket, batch_role_name, "
    "batch_policy_name, object_lock_token, notification_email, notification_topic_name, "
    "event_rule_name, job, restore, verification, tags, history"
)
JOB_KEYS = (
    "replication_statuses, created_after, created_before, key_prefix, key_suffix, key_substring, "
    "replica_storage_class, priority, "
    "confirmation_required, report_prefix, manifest_prefix, poll_seconds, timeout_minutes, sample"
)


def valid_data() -> dict[str, Any]:
    """Return a complete, valid parameter set as YAML would load it."""
    return {
        "run_id": "drill",
        "region": "us-east-1",
        "allow_cross_region": False,
        "vault": {
            "profile": "drill-vault",
            "account_id": "111111111111",
            "bucket": "vault-golden-copies",
            "kms_key_arn": KEY_ARN,
        },
        "recovery": {
            "profile": "drill-recovery",
            "account_id": "222222222222",
            "region": None,
            "bucket": "recovery-golden-copies",
            "kms_key_alias": "alias/recovery-golden-copies",
        },
        "report_bucket": "vault-batch-reports",
        "notification_email": "recovery-team@example.com",
        "job": {"replication_statuses": ["REPLICA"], "poll_seconds": 1},
        "tags": {"Project": "vault-recovery"},
    }


def mutated(**changes: Any) -> dict[str, Any]:
    """Return the valid set with dotted paths (written with '__') set to new values or deleted."""
    data = valid_data()
    for dunder_path, value in changes.items():
        *sections, leaf = dunder_path.split("__")
        node = data
        for name in sections:
            node = node.setdefault(name, {})
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return data


def problems_of(data: object) -> list[ParameterProblem]:
    """Return the problems parse_params reports for `data` (failing the test when there are none)."""
    with pytest.raises(ParameterError) as caught:
        parse_params(data, "test.yaml")
    return caught.value.problems


def write(tmp_path: Path, text: str) -> Path:
    """Return the path of a parameter file holding `text`."""
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_set_loads() -> None:
    params = parse_params(valid_data(), "test.yaml")
    assert params.vault.bucket == "vault-golden-copies"
    assert params.recovery.account_id == "222222222222"


BAD_SETS = [
    # run and region
    (mutated(run_id="Drill"),
     "run_id: got 'Drill'; expected 1 to 40 lowercase letters, digits or '-', starting with a letter"),
    (mutated(run_id="1-drill"),
     "run_id: got '1-drill'; expected 1 to 40 lowercase letters, digits or '-', starting with a letter"),
    (mutated(run_id="d" * 41),
     f"run_id: got '{'d' * 41}'; expected 1 to 40 lowercase letters, digits or '-', starting with a letter"),
    (mutated(region="us-east"),
     "region: got 'us-east'; expected an AWS region name such as us-east-1, eu-west-3 or ap-southeast-2"),
    (mutated(region="US-EAST-1"),
     "region: got 'US-EAST-1'; expected an AWS region name such as us-east-1, eu-west-3 or ap-southeast-2"),
    (mutated(allow_cross_region="yes"),
     "allow_cross_region: got 'yes'; expected true or false"),
    # vault account
    (mutated(vault__profile="drill vault"),
     "vault.profile: got 'drill vault'; expected an AWS profile name: not empty, without spaces"),
    (mutated(vault__profile=""),
     "vault.profile: got ''; expected an AWS profile name: not empty, without spaces"),
    (mutated(vault__account_id="11111111111"),
     "vault.account_id: got '11111111111'; expected an AWS account id of exactly 12 digits, in quotes"),
    (mutated(vault__account_id="11111111111x"),
     "vault.account_id: got '11111111111x'; expected an AWS account id of exactly 12 digits, in quotes"),
    (mutated(vault__account_id=11111111111),
     "vault.account_id: got 11111111111; expected an account id of exactly 12 digits written in quotes, "
     'such as "012345678901": YAML reads a bare number and drops its leading zeros'),
    # S3 bucket naming rules, one by one
    (mutated(vault__bucket="ab"),
     "vault.bucket: got 'ab'; expected an S3 bucket name of 3 to 63 characters"),
    (mutated(vault__bucket="v" * 64),
     f"vault.bucket: got '{'v' * 64}'; expected an S3 bucket name of 3 to 63 characters"),
    (mutated(vault__bucket="Vault-Golden"),
     "vault.bucket: got 'Vault-Golden'; expected an S3 bucket name of only lowercase letters, digits, '.' and '-'"),
    (mutated(vault__bucket="vault_golden"),
     "vault.bucket: got 'vault_golden'; expected an S3 bucket name of only lowercase letters, digits, '.' and '-'"),
    (mutated(vault__bucket="-vault-golden"),
     "vault.bucket: got '-vault-golden'; expected an S3 bucket name that begins and ends with a letter or digit"),
    (mutated(vault__bucket="vault-golden."),
     "vault.bucket: got 'vault-golden.'; expected an S3 bucket name that begins and ends with a letter or digit"),
    (mutated(vault__bucket="vault..golden"),
     "vault.bucket: got 'vault..golden'; expected an S3 bucket name without two adjacent periods"),
    (mutated(vault__bucket="192.168.5.4"),
     "vault.bucket: got '192.168.5.4'; expected an S3 bucket name not formatted as an IP address"),
    (mutated(vault__bucket="xn--vault"),
     "vault.bucket: got 'xn--vault'; expected an S3 bucket name not starting with 'xn--' (reserved by AWS)"),
    (mutated(vault__bucket="sthree-vault"),
     "vault.bucket: got 'sthree-vault'; expected an S3 bucket name not starting with 'sthree-' (reserved by AWS)"),
    (mutated(vault__bucket="amzn-s3-demo-vault"),
     "vault.bucket: got 'amzn-s3-demo-vault'; expected an S3 bucket name not starting with 'amzn-s3-demo-' "
     "(reserved by AWS)"),
    (mutated(vault__bucket="vault-s3alias"),
     "vault.bucket: got 'vault-s3alias'; expected an S3 bucket name not ending with '-s3alias' (reserved by AWS)"),
    (mutated(vault__bucket="vault--ol-s3"),
     "vault.bucket: got 'vault--ol-s3'; expected an S3 bucket name not ending with '--ol-s3' (reserved by AWS)"),
    (mutated(vault__bucket="vault.mrap"),
     "vault.bucket: got 'vault.mrap'; expected an S3 bucket name not ending with '.mrap' (reserved by AWS)"),
    (mutated(vault__bucket="vault--x-s3"),
     "vault.bucket: got 'vault--x-s3'; expected an S3 bucket name not ending with '--x-s3' (reserved by AWS)"),
    (mutated(vault__bucket="vault--table-s3"),
     "vault.bucket: got 'vault--table-s3'; expected an S3 bucket name not ending with '--table-s3' "
     "(reserved by AWS)"),
    (mutated(vault__bucket="Vault..Copies-"),
     "vault.bucket: got 'Vault..Copies-'; expected an S3 bucket name of only lowercase letters, digits, "
     "'.' and '-'; that begins and ends with a letter or digit; without two adjacent periods"),
    (mutated(vault__bucket=42),
     "vault.bucket: got 42; expected an S3 bucket name (text)"),
    (mutated(report_bucket=None),
     "report_bucket: got None; expected an S3 bucket name (text)"),
    # the vault KMS key ARN
    (mutated(vault__kms_key_arn="arn:aws:kms:us-east-1:111111111111:alias/vault-golden-copies"),
     "vault.kms_key_arn: got 'arn:aws:kms:us-east-1:111111111111:alias/vault-golden-copies'; "
     "expected the ARN of the key itself, not of an alias: it ends in key/<key id>"),
    (mutated(vault__kms_key_arn=f"arn:aws:s3:us-east-1:111111111111:key/{KEY_ID}"),
     f"vault.kms_key_arn: got 'arn:aws:s3:us-east-1:111111111111:key/{KEY_ID}'; "
     "expected a KMS key ARN (service kms, not 's3')"),
    (mutated(vault__kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/1234"),
     "vault.kms_key_arn: got 'arn:aws:kms:us-east-1:111111111111:key/1234'; "
     "expected a key id that is a lowercase UUID or mrk- followed by 32 lowercase hex digits"),
    (mutated(vault__kms_key_arn=KEY_ID),
     f"vault.kms_key_arn: got '{KEY_ID}'; "
     "expected a KMS key ARN such as arn:aws:kms:us-east-1:111111111111:key/<key id>"),
    (mutated(vault__kms_key_arn=f"arn:aws:kms:cn-north-1:111111111111:key/{KEY_ID}"),
     f"vault.kms_key_arn: got 'arn:aws:kms:cn-north-1:111111111111:key/{KEY_ID}'; "
     "expected the partition 'aws-cn' for region cn-north-1"),
    (mutated(vault__kms_key_arn=f"arn:aws:kms:us-east-1:333333333333:key/{KEY_ID}"),
     f"vault.kms_key_arn: got 'arn:aws:kms:us-east-1:333333333333:key/{KEY_ID}'; "
     "expected a key in the vault account 111111111111 (vault.account_id), not in 333333333333"),
    (mutated(vault__kms_key_arn=f"arn:aws:kms:eu-west-1:111111111111:key/{KEY_ID}"),
     f"vault.kms_key_arn: got 'arn:aws:kms:eu-west-1:111111111111:key/{KEY_ID}'; "
     "expected a key in the vault region us-east-1 (region), not in eu-west-1"),
    # recovery account
    (mutated(recovery__kms_key_alias="recovery-golden-copies"),
     "recovery.kms_key_alias: got 'recovery-golden-copies'; "
     "expected 'alias/' followed by 1 to 250 letters, digits, '/', '_' or '-'"),
    (mutated(recovery__kms_key_alias="alias/aws/s3"),
     "recovery.kms_key_alias: got 'alias/aws/s3'; "
     "expected an alias not starting with 'alias/aws/', which AWS keeps for its managed keys"),
    (mutated(recovery__region="mars-1"),
     "recovery.region: got 'mars-1'; expected an AWS region name such as us-east-1, eu-west-3 or ap-southeast-2"),
    (mutated(recovery__region="eu-west-1"),
     "recovery.region: got 'eu-west-1'; expected the vault region us-east-1 (region), "
     "or allow_cross_region: true to recover into another region"),
    # rules between the two accounts
    (mutated(recovery__account_id="111111111111"),
     "recovery.account_id: got '111111111111'; expected an account other than the vault account "
     "(vault.account_id): recover into a new, separate account"),
    (mutated(recovery__profile="drill-vault"),
     "recovery.profile: got 'drill-vault'; expected a profile other than the vault profile (vault.profile): "
     "each account needs its own identity"),
    (mutated(recovery__bucket="vault-golden-copies"),
     "recovery.bucket: got 'vault-golden-copies'; expected a bucket name other than the vault bucket's "
     "(vault.bucket)"),
    (mutated(report_bucket="vault-golden-copies"),
     "report_bucket: got 'vault-golden-copies'; expected a bucket of its own, not the vault bucket (vault.bucket)"),
    (mutated(report_bucket="recovery-golden-copies"),
     "report_bucket: got 'recovery-golden-copies'; expected a bucket of its own, not the recovery bucket "
     "(recovery.bucket)"),
    # names of what the run creates
    (mutated(batch_role_name="batch/role"),
     "batch_role_name: got 'batch/role'; expected an IAM role name: 1 to 64 letters, digits or _ + = , . @ -"),
    (mutated(batch_role_name="r" * 65),
     f"batch_role_name: got '{'r' * 65}'; expected an IAM role name: 1 to 64 letters, digits or _ + = , . @ -"),
    (mutated(batch_policy_name="batch policy"),
     "batch_policy_name: got 'batch policy'; expected an IAM policy name: 1 to 128 letters, digits or "
     "_ + = , . @ -"),
    (mutated(notification_topic_name="job.status"),
     "notification_topic_name: got 'job.status'; expected an SNS topic name: 1 to 256 letters, digits, '_' or '-'"),
    (mutated(event_rule_name="job status"),
     "event_rule_name: got 'job status'; expected an EventBridge rule name: 1 to 64 letters, digits, "
     "'.', '_' or '-'"),
    (mutated(notification_email="recovery-team"),
     "notification_email: got 'recovery-team'; expected an e-mail address such as recovery-team@example.com"),
    (mutated(notification_email="recovery-team@localhost"),
     "notification_email: got 'recovery-team@localhost'; expected an e-mail address such as "
     "recovery-team@example.com"),
    # the Object Lock token: wrong, and still never shown
    (mutated(object_lock_token=""),
     "object_lock_token: got ''; expected the Object Lock token from AWS Support as text, or null when you have none"),
    (mutated(object_lock_token=918273645),
     "object_lock_token: got '***'; expected the Object Lock token from AWS Support as text, "
     "or null when you have none"),
    # the job
    (mutated(job__replication_statuses=[]),
     "job.replication_statuses: got []; expected a non-empty list of statuses from: NONE, FAILED, COMPLETED, REPLICA"),
    (mutated(job__replication_statuses="REPLICA"),
     "job.replication_statuses: got 'REPLICA'; expected a non-empty list of statuses from: "
     "NONE, FAILED, COMPLETED, REPLICA"),
    (mutated(job__replication_statuses=["REPLICA", "replica", "DONE"]),
     "job.replication_statuses: got ['REPLICA', 'replica', 'DONE']; expected only statuses from: "
     "NONE, FAILED, COMPLETED, REPLICA (not 'replica', 'DONE')"),
    (mutated(job__replication_statuses=["FAILED", "REPLICA", "FAILED"]),
     "job.replication_statuses: got ['FAILED', 'REPLICA', 'FAILED']; expected each status at most once "
     "(FAILED repeated)"),
    (mutated(job__created_after="2024-05-01T00:00:00"),
     "job.created_after: got '2024-05-01T00:00:00'; expected a date and time with a timezone: add Z for UTC, "
     "as in 2024-05-01T00:00:00Z"),
    (mutated(job__created_before="last tuesday"),
     "job.created_before: got 'last tuesday'; expected an ISO-8601 date and time with a timezone, "
     "such as 2024-05-01T00:00:00Z"),
    (mutated(job__created_after="2024-06-01T00:00:00Z", job__created_before="2024-05-01T00:00:00Z"),
     "job.created_after: got '2024-06-01T00:00:00+00:00'; expected a time before job.created_before "
     "(2024-05-01T00:00:00+00:00)"),
    (mutated(job__created_after="2024-05-01T00:00:00Z", job__created_before="2024-05-01T02:00:00+02:00"),
     "job.created_after: got '2024-05-01T00:00:00+00:00'; expected a time before job.created_before "
     "(2024-05-01T02:00:00+02:00)"),
    (mutated(job__replica_storage_class="EXPRESS_ONEZONE"),
     "job.replica_storage_class: got 'EXPRESS_ONEZONE'; expected one of STANDARD, REDUCED_REDUNDANCY, "
     "STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE, GLACIER_IR"),
    (mutated(job__priority=-1),
     "job.priority: got -1; expected a whole number from 0 to 2147483647"),
    (mutated(job__priority=2147483648),
     "job.priority: got 2147483648; expected a whole number from 0 to 2147483647"),
    (mutated(job__priority="10"),
     "job.priority: got '10'; expected a whole number from 0 to 2147483647"),
    (mutated(job__confirmation_required="no"),
     "job.confirmation_required: got 'no'; expected true or false"),
    (mutated(job__report_prefix="/batch-replication-reports"),
     "job.report_prefix: got '/batch-replication-reports'; expected a key prefix that does not start with '/'"),
    (mutated(job__manifest_prefix=""),
     "job.manifest_prefix: got ''; expected a key prefix of 1 to 512 characters"),
    (mutated(job__key_prefix=""),
     "job.key_prefix: got ''; expected 1 to 1024 characters of a key name, or null for none"),
    (mutated(job__key_suffix=7),
     "job.key_suffix: got 7; expected a piece of key name (text), or null for none"),
    (mutated(job__key_substring="x" * 1025),
     f"job.key_substring: got {'x' * 1025!r}; expected 1 to 1024 characters of a key name, or null for none"),
    (mutated(job__poll_seconds=0),
     "job.poll_seconds: got 0; expected a number of seconds greater than 0 and at most 300"),
    (mutated(job__poll_seconds=300.5),
     "job.poll_seconds: got 300.5; expected a number of seconds greater than 0 and at most 300"),
    (mutated(job__poll_seconds=True),
     "job.poll_seconds: got True; expected a number of seconds greater than 0 and at most 300"),
    (mutated(job__timeout_minutes=10081),
     "job.timeout_minutes: got 10081; expected a whole number of minutes from 1 to 10080 (one week)"),
    (mutated(job__timeout_minutes=1.5),
     "job.timeout_minutes: got 1.5; expected a whole number of minutes from 1 to 10080 (one week)"),
    # verification
    (mutated(verification__max_retry_rounds=11),
     "verification.max_retry_rounds: got 11; expected a whole number from 0 to 10"),
    (mutated(verification__head_workers=0),
     "verification.head_workers: got 0; expected a whole number from 1 to 128"),
    # restore
    (mutated(restore__archived="yes"), "restore.archived: got 'yes'; expected true or false"),
    (mutated(restore__tier="EXPEDITED"),
     "restore.tier: got 'EXPEDITED'; expected one of BULK, STANDARD "
     "(Batch Operations restore jobs offer no other tier)"),
    (mutated(restore__expiration_days=0),
     "restore.expiration_days: got 0; expected a whole number of days from 1 to 365"),
    # tags
    (mutated(tags={"aws:cost-center": "ops"}),
     "tags.aws:cost-center: got 'aws:cost-center'; expected a tag key not starting with 'aws:', "
     "which AWS keeps for itself"),
    (mutated(tags={"RunbookRunId": "mine"}),
     "tags.RunbookRunId: got 'RunbookRunId'; expected a tag key other than RunbookRunId, "
     "which the run adds by itself"),
    (mutated(tags={"Version": 2}),
     """tags.Version: got 2; expected a tag value as text (quote numbers, such as "2")"""),
    (mutated(tags={"Owner#": "ops"}),
     "tags.Owner#: got 'Owner#'; expected a tag key of letters, digits, spaces and _ . : / = + - @"),
    (mutated(tags={"Note": "n" * 257}),
     f"tags.Note: got '{'n' * 257}'; expected a tag value of at most 256 characters"),
    (mutated(tags={f"Tag{n}": "x" for n in range(41)}),
     "tags: got '41 tags'; expected at most 40 tags"),
    (mutated(tags=None),
     "tags: got None; expected a mapping of tag keys to values ({} for none)"),
    # whole sections of the wrong shape
    (mutated(vault="drill-vault"),
     "vault: got 'drill-vault'; expected a mapping with the keys: profile, account_id, bucket, kms_key_arn, buckets"),
    (mutated(job=None),
     f"job: got None; expected a mapping with the keys: {JOB_KEYS}"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_SETS, ids=[expected.split(":")[0] for _, expected in BAD_SETS])
def test_bad_parameter_is_named_with_value_and_expectation(data: dict[str, Any], expected: str) -> None:
    assert [str(problem) for problem in problems_of(data)] == [expected]


def test_enough_bad_sets_are_checked() -> None:
    assert len(BAD_SETS) >= 35


def test_every_problem_is_reported_at_once() -> None:
    data = mutated(
        run_id="Drill",
        vault__bucket="ab",
        recovery__account_id="111111111111",
        job__priority=-5,
        verification__head_workers=500,
    )
    with pytest.raises(ParameterError) as caught:
        parse_params(data, "parameters/broken.yaml")
    error = caught.value
    assert [problem.field for problem in error.problems] == [
        "run_id",
        "vault.bucket",
        "job.priority",
        "verification.head_workers",
        "recovery.account_id",
    ]
    message = str(error)
    assert message.startswith("parameters/broken.yaml has 5 problems; fix them and run again:")
    assert "verification.head_workers: got 500; expected a whole number from 1 to 128" in message


def test_rule_between_fields_reads_the_same_whether_or_not_another_field_is_invalid() -> None:
    alone = problems_of(mutated(report_bucket="vault-golden-copies"))
    with_another = problems_of(mutated(report_bucket="vault-golden-copies", job__priority=-5))
    assert len(alone) == 1
    assert with_another == [ParameterProblem("job.priority", -5, "a whole number from 0 to 2147483647"), *alone]


def test_rule_between_fields_is_skipped_when_one_of_them_is_invalid() -> None:
    # the ARN's account cannot be compared with an account id that is itself wrong
    problems = problems_of(mutated(vault__account_id="12345"))
    assert [problem.field for problem in problems] == ["vault.account_id"]


def test_unknown_key_at_top_level_lists_every_allowed_key() -> None:
    problems = problems_of(mutated(regoin="us-east-1"))
    assert problems == [
        ParameterProblem("regoin", "us-east-1", f"unknown parameter; allowed: {TOP_LEVEL_KEYS}")
    ]


@pytest.mark.parametrize(
    ("section", "key", "allowed"),
    [
        ("vault", "bukcet", "profile, account_id, bucket, kms_key_arn, buckets"),
        ("recovery", "kms_key_arn", "profile, account_id, region, bucket, bucket_name_pattern, kms_key_alias"),
        ("job", "poll_interval", JOB_KEYS),
        ("verification", "retries", "max_retry_rounds, head_workers, current_view, method, engine, "
         "auto_inventory_from, inventory_prefix, vault_inventory_id, head_sample, athena_workgroup, athena_database, "
         "inventory_wait_minutes, athena_output_location"),
    ],
)
def test_unknown_nested_key_lists_the_keys_of_its_section(section: str, key: str, allowed: str) -> None:
    problems = problems_of(mutated(**{f"{section}__{key}": "x"}))
    assert problems == [ParameterProblem(f"{section}.{key}", "x", f"unknown parameter; allowed: {allowed}")]


def test_missing_required_parameter_says_what_it_is() -> None:
    problems = problems_of(mutated(vault__bucket=DELETE))
    assert problems == [
        ParameterProblem(
            "vault.bucket",
            MISSING,
            "a value: the one-bucket form names vault.bucket, vault.kms_key_arn and recovery.bucket "
            "(or give vault.buckets, a list)",
        )
    ]
    assert str(problems[0]) == (
        "vault.bucket: got nothing; expected a value: the one-bucket form names vault.bucket, "
        "vault.kms_key_arn and recovery.bucket (or give vault.buckets, a list)"
    )


def test_empty_mapping_reports_every_required_parameter() -> None:
    fields = [problem.field for problem in problems_of({})]
    assert fields == ["run_id", "region", "vault", "recovery", "report_bucket", "notification_email"]


def test_defaults_are_applied_to_everything_optional() -> None:
    data = valid_data()
    for optional in ("allow_cross_region", "job", "tags"):
        del data[optional]
    del data["recovery"]["region"]
    params = parse_params(data, "test.yaml")
    assert params.allow_cross_region is False
    assert params.recovery.region is None
    assert params.object_lock_token is None
    assert params.batch_role_name == "s3-batch-replication-role"
    assert params.batch_policy_name == "s3-batch-replication-policy"
    assert params.notification_topic_name == "s3-batch-replication-status"
    assert params.event_rule_name == "s3-batch-replication-job-status"
    assert params.tags == {}
    assert params.job.model_dump() == {
        "replication_statuses": ["REPLICA"],
        "created_after": None,
        "created_before": None,
        "key_prefix": None,
        "key_suffix": None,
        "key_substring": None,
        "replica_storage_class": "INTELLIGENT_TIERING",
        "priority": 10,
        "confirmation_required": True,
        "report_prefix": "batch-replication-reports",
        "manifest_prefix": "batch-replication-manifests",
        "poll_seconds": 5,
        "timeout_minutes": 720,
        "sample": None,
    }
    assert (params.run.purpose, params.run.backend) == (None, "aws")
    assert params.verification.max_retry_rounds == 2
    assert params.verification.head_workers == 16


def test_properties_derive_names_and_arns() -> None:
    params = parse_params(valid_data(), "test.yaml")
    assert params.recovery_region == "us-east-1"
    assert params.resource_tags == {"Project": "vault-recovery", "RunbookRunId": "drill"}
    assert params.tags == {"Project": "vault-recovery"}  # the run's tag is not written back
    assert params.vault_bucket_arn == "arn:aws:s3:::vault-golden-copies"
    assert params.recovery_bucket_arn == "arn:aws:s3:::recovery-golden-copies"
    assert params.report_bucket_arn == "arn:aws:s3:::vault-batch-reports"
    assert params.batch_role_arn == "arn:aws:iam::111111111111:role/s3-batch-replication-role"
    assert params.batch_policy_arn == "arn:aws:iam::111111111111:policy/s3-batch-replication-policy"


def test_cross_region_recovery_needs_the_flag() -> None:
    params = parse_params(mutated(recovery__region="eu-west-1", allow_cross_region=True), "test.yaml")
    assert params.recovery_region == "eu-west-1"


def test_govcloud_arns_use_their_partition() -> None:
    data = mutated(
        region="us-gov-west-1",
        vault__kms_key_arn=f"arn:aws-us-gov:kms:us-gov-west-1:111111111111:key/{KEY_ID}",
    )
    params = parse_params(data, "test.yaml")
    assert params.vault_bucket_arn == "arn:aws-us-gov:s3:::vault-golden-copies"
    assert params.batch_role_arn == "arn:aws-us-gov:iam::111111111111:role/s3-batch-replication-role"


def test_multi_region_key_is_accepted() -> None:
    arn = "arn:aws:kms:us-east-1:111111111111:key/mrk-1234abcd12ab34cd56ef1234567890ab"
    assert parse_params(mutated(vault__kms_key_arn=arn), "test.yaml").vault.kms_key_arn == arn


def test_twelve_digit_account_number_without_quotes_is_accepted_as_text() -> None:
    params = parse_params(mutated(vault__account_id=111111111111), "test.yaml")
    assert params.vault.account_id == "111111111111"


def test_parameters_cannot_change_after_loading() -> None:
    params = parse_params(valid_data(), "test.yaml")
    with pytest.raises(pydantic.ValidationError):
        params.run_id = "other"  # type: ignore[misc]


def test_rules_between_fields_hold_for_direct_model_validation() -> None:
    with pytest.raises(ParameterError) as caught:
        RunbookParams.model_validate(mutated(recovery__bucket="vault-golden-copies"))
    assert [problem.field for problem in caught.value.problems] == ["recovery.bucket"]


def test_object_lock_token_is_never_shown() -> None:
    params = parse_params(mutated(object_lock_token=TOKEN), "test.yaml")
    assert params.object_lock_token is not None
    assert params.object_lock_token.get_secret_value() == TOKEN
    redacted = params.redacted()
    assert redacted["object_lock_token"] == "***"
    for shown in (repr(params), str(params), json.dumps(redacted), repr(params.object_lock_token)):
        assert TOKEN not in shown


def test_object_lock_token_is_not_shown_when_other_parameters_are_wrong() -> None:
    with pytest.raises(ParameterError) as caught:
        parse_params(mutated(object_lock_token=TOKEN, unknown="x", region="nowhere"), "test.yaml")
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.problems)


@pytest.mark.parametrize("key", ["object_lock_tokn", "objectlocktoken", "lock_token", "Object_Lock_Token"])
def test_object_lock_token_under_a_misspelt_key_is_not_shown(key: str) -> None:
    problems = problems_of(mutated(**{key: TOKEN}))
    assert problems == [ParameterProblem(key, "***", f"unknown parameter; allowed: {TOP_LEVEL_KEYS}")]


def test_other_unknown_keys_show_their_value() -> None:
    assert problems_of(mutated(notification_mail="ops@example.com"))[0].value == "ops@example.com"


def test_redacted_without_token_is_plain_json_data() -> None:
    data = mutated(job__created_after="2024-05-01T00:00:00Z")
    redacted = parse_params(data, "test.yaml").redacted()
    assert redacted["object_lock_token"] is None
    assert redacted["job"]["created_after"] == "2024-05-01T00:00:00Z"
    assert redacted["vault"]["bucket"] == "vault-golden-copies"
    assert json.loads(json.dumps(redacted)) == redacted


@pytest.mark.parametrize("name", ["drill.yaml", "aws.example.yaml"])
def test_shipped_parameter_sets_load(name: str) -> None:
    params = load_params(PARAMETERS / name)
    assert params.vault.account_id != params.recovery.account_id


def test_drill_parameters_match_the_embedded_backend() -> None:
    # Compared with what the backend serves and seeds, not with a copy of the file's own values.
    params = load_params(PARAMETERS / "drill.yaml")
    assert params.region == server.REGION
    assert (params.vault.profile, params.recovery.profile) == (server.VAULT_PROFILE, server.RECOVERY_PROFILE)
    assert (params.vault.account_id, params.recovery.account_id) == (server.VAULT_ACCOUNT, server.RECOVERY_ACCOUNT)
    assert (params.vault.bucket, params.vault.kms_key_arn) == (seed.VAULT_BUCKET, seed.VAULT_KEY_ARN)
    assert params.job.replication_statuses == ["REPLICA"]
    assert params.job.confirmation_required is True
    assert params.job.poll_seconds == 1


def test_yaml_timestamps_are_read_with_their_timezone(tmp_path: Path) -> None:
    text = (PARAMETERS / "drill.yaml").read_text(encoding="utf-8").replace(
        "created_after: null", "created_after: 2024-05-01T00:00:00Z"
    )
    params = load_params(write(tmp_path, text))
    assert params.job.created_after == datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_yaml_timestamp_without_timezone_is_refused(tmp_path: Path) -> None:
    text = (PARAMETERS / "drill.yaml").read_text(encoding="utf-8").replace(
        "created_before: null", "created_before: 2024-05-01 00:00:00"
    )
    with pytest.raises(ParameterError) as caught:
        load_params(write(tmp_path, text))
    assert [str(problem) for problem in caught.value.problems] == [
        "job.created_before: got '2024-05-01T00:00:00'; expected a date and time with a timezone: "
        "add Z for UTC, as in 2024-05-01T00:00:00Z"
    ]


def test_unquoted_account_id_with_leading_zero_is_refused(tmp_path: Path) -> None:
    # YAML reads 011111111111 as an octal number, so the account id cannot be recovered from it
    text = (PARAMETERS / "drill.yaml").read_text(encoding="utf-8").replace('"111111111111"', "011111111111", 1)
    with pytest.raises(ParameterError) as caught:
        load_params(write(tmp_path, text))
    assert [problem.field for problem in caught.value.problems] == ["vault.account_id"]
    assert "drops its leading zeros" in caught.value.problems[0].expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("- run_id\n- region\n", ["run_id", "region"]), ("just words\n", "just words"), ("", None)],
)
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, value: object) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ParameterError) as caught:
        load_params(path)
    assert caught.value.source == str(path)
    assert caught.value.problems == [
        ParameterProblem(
            "(top level)", value, "a mapping of parameter names to values, such as 'run_id: drill' on its own line"
        )
    ]


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ParameterError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{path} has 1 problem; fix them and run again:\n"
        f"  - (file): got '{path}'; expected an existing YAML file: no file is at this path"
    )


def test_directory_is_not_a_parameter_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as caught:
        load_params(tmp_path)
    (problem,) = caught.value.problems
    assert problem.field == "(file)"
    assert problem.expected.startswith("a readable UTF-8 YAML file")


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "run_id: drill\nvault: [unclosed\n")
    with pytest.raises(ParameterError) as caught:
        load_params(path)
    (problem,) = caught.value.problems
    assert (problem.field, problem.expected) == ("(file)", "valid YAML")
    assert str(problem.value).startswith("line 3, column 1:")


def test_key_written_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "run_id: drill\nregion: us-east-1\nregion: eu-west-1\n")
    with pytest.raises(ParameterError) as caught:
        load_params(path)
    assert caught.value.problems == [
        ParameterProblem("(file)", "line 3, column 1: found the key 'region' twice", "valid YAML")
    ]


def test_file_problems_are_reported_with_field_problems(tmp_path: Path) -> None:
    text = (PARAMETERS / "drill.yaml").read_text(encoding="utf-8")
    text = text.replace("bucket: vault-golden-copies", "bucket: Vault").replace("priority: 10", "priority: high")
    path = write(tmp_path, text)
    with pytest.raises(ParameterError) as caught:
        load_params(path)
    assert caught.value.source == str(path)
    assert [problem.field for problem in caught.value.problems] == ["vault.bucket", "job.priority"]


def test_valid_data_is_not_changed_by_parsing() -> None:
    data = valid_data()
    before = copy.deepcopy(data)
    parse_params(data, "test.yaml")
    assert data == before


# --------------------------------------------------------------------------- many vault buckets

OTHER_KEY_ARN = "arn:aws:kms:us-east-1:111111111111:key/0b6d7c1e-2f0e-4e55-9d7e-3f1b1c2d3e4f"


def many_buckets(*entries: dict[str, Any], pattern: str | None = "{vault_bucket}-recovered") -> dict[str, Any]:
    """Return the valid set in the many-bucket form with the given vault.buckets entries."""
    data = mutated(vault__bucket=DELETE, vault__kms_key_arn=DELETE, recovery__bucket=DELETE)
    data["vault"]["buckets"] = list(entries)
    data["recovery"]["bucket_name_pattern"] = pattern
    return data


def test_one_bucket_form_is_one_pair_with_the_job_scope_and_priority() -> None:
    params = parse_params(mutated(job__key_prefix="finance/", job__priority=7))
    (pair,) = params.bucket_pairs
    assert (pair.vault_bucket, pair.recovery_bucket, pair.vault_kms_key_arn) == (
        "vault-golden-copies", "recovery-golden-copies", KEY_ARN)
    assert (pair.key_prefix, pair.priority) == ("finance/", 7)
    assert params.pair == pair


def test_many_buckets_name_recovery_buckets_by_pattern_unless_given() -> None:
    params = parse_params(many_buckets(
        {"bucket": "vault-a", "kms_key_arn": KEY_ARN},
        {"bucket": "vault-b", "kms_key_arn": OTHER_KEY_ARN, "key_prefix": "hr/", "priority": 30,
         "recovery_bucket": "hr-restored"},
    ))
    pairs = params.bucket_pairs
    assert [(p.vault_bucket, p.recovery_bucket, p.vault_kms_key_arn, p.key_prefix, p.priority) for p in pairs] == [
        ("vault-a", "vault-a-recovered", KEY_ARN, None, 10),
        ("vault-b", "hr-restored", OTHER_KEY_ARN, "hr/", 30),
    ]
    with pytest.raises(ValueError, match="2 vault buckets"):
        _ = params.pair
    one = params.for_pair(pairs[1])
    assert (one.vault.bucket, one.vault.kms_key_arn, one.recovery.bucket) == ("vault-b", OTHER_KEY_ARN, "hr-restored")
    assert (one.job.key_prefix, one.job.priority, one.pair) == ("hr/", 30, pairs[1])


def test_many_buckets_report_every_clash_at_once() -> None:
    problems = problems_of(many_buckets(
        {"bucket": "vault-a", "kms_key_arn": KEY_ARN},
        {"bucket": "vault-a", "kms_key_arn": KEY_ARN, "recovery_bucket": "vault-c"},
        {"bucket": "vault-c", "kms_key_arn": KEY_ARN, "recovery_bucket": "vault-batch-reports"},
        {"bucket": "vault-d", "kms_key_arn": KEY_ARN, "recovery_bucket": "vault-a-recovered"},
    ))
    found = {(p.field, p.value) for p in problems}
    assert ("vault.buckets.0.bucket", "vault-a") in found  # listed twice
    assert ("vault.buckets.1.recovery_bucket", "vault-c") in found  # a vault bucket
    assert ("vault.buckets.2.recovery_bucket", "vault-batch-reports") in found  # the report bucket
    assert ("vault.buckets.0.recovery_bucket", "vault-a-recovered") in found  # shared with vault-d
    assert ("vault.buckets.3.recovery_bucket", "vault-a-recovered") in found


def test_many_buckets_check_the_pattern_and_the_names_it_gives() -> None:
    problems = problems_of(many_buckets({"bucket": "vault-a", "kms_key_arn": KEY_ARN}, pattern="{bucket}-copy"))
    assert [(p.field, "{vault_bucket} exactly once" in p.expected) for p in problems] == [
        ("recovery.bucket_name_pattern", True)]
    problems = problems_of(many_buckets({"bucket": "vault-a", "kms_key_arn": KEY_ARN}, pattern="{vault_bucket}_X"))
    assert [p.field for p in problems] == ["vault.buckets.0.recovery_bucket"]
    assert problems[0].value == "vault-a_X" and "lowercase letters" in problems[0].expected
    problems = problems_of(many_buckets({"bucket": "vault-a", "kms_key_arn": KEY_ARN}, pattern=None))
    assert [p.field for p in problems] == ["recovery.bucket_name_pattern"]
    assert "vault.buckets.0 has no recovery_bucket" in problems[0].expected


def test_many_buckets_refuse_mixed_forms_prefix_twice_foreign_keys_and_samples() -> None:
    data = many_buckets(
        {"bucket": "vault-a", "kms_key_arn": KEY_ARN.replace("111111111111", "333333333333"), "key_prefix": "a/"},
        {"bucket": "vault-b", "kms_key_arn": KEY_ARN},
    )
    data["vault"]["bucket"] = "vault-golden-copies"
    data["job"].update(key_prefix="all/", sample={"count": 10, "seed": 1})
    fields = sorted(p.field for p in problems_of(data))
    assert fields == ["job.sample", "vault.bucket", "vault.buckets.0.key_prefix", "vault.buckets.0.kms_key_arn"]
    invalid = many_buckets({"bucket": "Vault_B", "kms_key_arn": KEY_ARN})
    assert [p.field for p in problems_of(invalid)] == ["vault.buckets.0.bucket"]
