"""Policy documents: lint-clean, least privilege, never less than the method grants, valid for AWS."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import parliament
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto.events.models import EventPattern
from parliament import analyze_policy_string

from runbook_lib import policies
from runbook_lib.embedded import iam_eval
from runbook_lib.errors import InvalidArguments, ProvisionError

VAULT_ACCOUNT = "111111111111"
RECOVERY_ACCOUNT = "222222222222"
VAULT_BUCKET = "golden-vault-bucket"
RECOVERY_BUCKET = "mys3-recovery-bucket"
REPORT_BUCKET = "mys3-batch-report-bucket"
VAULT_KEY = f"arn:aws:kms:us-east-1:{VAULT_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
RECOVERY_KEY = f"arn:aws:kms:us-east-1:{RECOVERY_ACCOUNT}:key/0987dcba-09fe-87dc-65ba-ab0987654321"
ROLE = f"arn:aws:iam::{VAULT_ACCOUNT}:role/s3-batch-replication-role"
TOPIC = f"arn:aws:sns:us-east-1:{VAULT_ACCOUNT}:runbook-job-status"
RULE = f"arn:aws:events:us-east-1:{VAULT_ACCOUNT}:rule/runbook-job-status"
RUN_ID = "drill-2026-05"
OTHER_RUN_ID = "drill"

# AWS's default key policy statement; its Sid has spaces, which KMS accepts.
AWS_DEFAULT_KEY_STATEMENT = {
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"},
    "Action": "kms:*",
    "Resource": "*",
}
KEY_ADMIN_STATEMENT = {
    "Sid": "Allow access for Key Administrators",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:role/KeyAdmins"},
    "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:Put*", "kms:ScheduleKeyDeletion"],
    "Resource": "*",
}
VAULT_KEY_POLICY = {
    "Version": "2012-10-17",
    "Id": "key-consolepolicy-3",
    "Statement": [AWS_DEFAULT_KEY_STATEMENT, KEY_ADMIN_STATEMENT],
}


def role_policy(**overrides: str) -> dict[str, Any]:
    arguments = {
        "vault_bucket": VAULT_BUCKET,
        "recovery_bucket": RECOVERY_BUCKET,
        "report_bucket": REPORT_BUCKET,
        "vault_key_arn": VAULT_KEY,
        "recovery_key_arn": RECOVERY_KEY,
        "region": "us-east-1",
    } | overrides
    return policies.batch_role_policy(**arguments)


def trust_policy(region: str = "us-east-1") -> dict[str, Any]:
    return policies.batch_role_trust_policy(vault_account_id=VAULT_ACCOUNT, vault_bucket=VAULT_BUCKET, region=region)


def vault_key_statements(run_id: str = RUN_ID) -> list[dict[str, Any]]:
    return policies.vault_key_policy_statements(
        batch_role_arn=ROLE, vault_bucket=VAULT_BUCKET, region="us-east-1", run_id=run_id
    )


def recovery_key_statements() -> list[dict[str, Any]]:
    return policies.recovery_key_statements(
        batch_role_arn=ROLE, recovery_bucket=RECOVERY_BUCKET, recovery_region="us-east-1", run_id=RUN_ID
    )


def recovery_key_policy() -> dict[str, Any]:
    """The recovery key's policy once phase 03 added the role."""
    base = policies.recovery_key_policy(recovery_account_id=RECOVERY_ACCOUNT, partition="aws")
    return policies.merge_statements(base, recovery_key_statements(), run_id=RUN_ID)


def bucket_policy() -> dict[str, Any]:
    return policies.recovery_bucket_policy(
        recovery_bucket=RECOVERY_BUCKET, batch_role_arn=ROLE, run_id=RUN_ID, partition="aws"
    )


def topic_policy() -> dict[str, Any]:
    return policies.sns_topic_policy(topic_arn=TOPIC, event_rule_arn=RULE, account_id=VAULT_ACCOUNT)


def replication() -> dict[str, Any]:
    return policies.replication_configuration(
        batch_role_arn=ROLE,
        recovery_bucket=RECOVERY_BUCKET,
        recovery_account_id=RECOVERY_ACCOUNT,
        recovery_key_arn=RECOVERY_KEY,
        partition="aws",
    )


POLICY_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "role": role_policy,
    "role-cross-region": lambda: role_policy(recovery_region="eu-west-1"),
    "trust": trust_policy,
    "vault-key-statements": lambda: {"Version": "2012-10-17", "Statement": vault_key_statements()},
    "vault-key-merged": lambda: policies.merge_statements(VAULT_KEY_POLICY, vault_key_statements(), run_id=RUN_ID),
    "recovery-key": recovery_key_policy,
    "recovery-key-before-role": lambda: policies.recovery_key_policy(
        recovery_account_id=RECOVERY_ACCOUNT, partition="aws"
    ),
    "recovery-bucket": bucket_policy,
    "topic": topic_policy,
}
ALL_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = POLICY_BUILDERS | {
    "replication": replication,
    "events-all": policies.job_status_event_pattern,
    "events-terminal": lambda: policies.job_status_event_pattern(
        vault_account_id=VAULT_ACCOUNT, terminal_only=True
    ),
}

# parliament's reasons to flag, accepted one by one. Anything else it reports fails the lint.
KEY_RESOURCE_STAR = "a key policy's Resource must be '*': it stands for the key it is attached to"
KEY_ADMINISTRATION = (
    "the recovery account's kms:* is AWS's default statement; without it the key is unmanageable"
)
OWNER_OVERRIDE = (
    "s3:ObjectOwnerOverrideToBucketOwner counts as permissions management; the rule's "
    "AccessControlTranslation (replicas owned by the recovery account) requires it"
)
ASSUME_ROLE = "sts:AssumeRole hands out the role's credentials, which is what a trust policy is for"
ALLOWED_FINDINGS: dict[str, dict[str, str]] = {
    "role": {"PERMISSIONS_MANAGEMENT_ACTIONS": OWNER_OVERRIDE},
    "role-cross-region": {"PERMISSIONS_MANAGEMENT_ACTIONS": OWNER_OVERRIDE},
    "trust": {"CREDENTIALS_EXPOSURE": ASSUME_ROLE},
    "vault-key-statements": {"RESOURCE_STAR": KEY_RESOURCE_STAR},
    "vault-key-merged": {
        "RESOURCE_STAR": KEY_RESOURCE_STAR,
        "PERMISSIONS_MANAGEMENT_ACTIONS": "the existing statements hold kms:*, kms:Put*; not ours",
    },
    "recovery-key": {
        "RESOURCE_STAR": KEY_RESOURCE_STAR,
        "PERMISSIONS_MANAGEMENT_ACTIONS": KEY_ADMINISTRATION,
    },
    "recovery-key-before-role": {
        "RESOURCE_STAR": KEY_RESOURCE_STAR,
        "PERMISSIONS_MANAGEMENT_ACTIONS": KEY_ADMINISTRATION,
    },
    "recovery-bucket": {"PERMISSIONS_MANAGEMENT_ACTIONS": OWNER_OVERRIDE},
    "topic": {
        "PERMISSIONS_MANAGEMENT_ACTIONS": (
            "the owner account keeps SNS's default administration (AddPermission, SetTopicAttributes)"
        ),
    },
}


def severities() -> dict[str, str]:
    """parliament's severity per finding, community auditors included, its global config untouched."""
    community = Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml"
    merged = {code: dict(settings) for code, settings in parliament.config.items()}
    for code, settings in yaml.safe_load(community.read_text()).items():
        merged.setdefault(code, {}).update(settings)
    return {code: settings["severity"] for code, settings in merged.items()}


def lint(document: dict[str, Any]) -> dict[str, str]:
    """Return every parliament finding of a document as finding code -> severity."""
    levels = severities()
    analysed = analyze_policy_string(policies.to_json(document), include_community_auditors=True)
    return {finding.issue: levels[finding.issue] for finding in analysed.findings}


def as_linted(name: str, document: dict[str, Any]) -> dict[str, Any]:
    """The document in a form parliament can analyse to the end.

    A trust policy has no Resource (it applies to its own role), so it is linted with the role as
    Resource. parliament stops analysing at a Sid with spaces, which KMS accepts and AWS's default
    key statements use; such foreign Sids are dropped so the rest of the key policy is still linted.
    """
    linted = copy.deepcopy(document)
    for statement in linted["Statement"]:
        if name.startswith("trust"):
            statement["Resource"] = ROLE
        if not re.fullmatch(r"[A-Za-z0-9]*", statement.get("Sid", "")):
            del statement["Sid"]
    return linted


@pytest.mark.parametrize("name", sorted(POLICY_BUILDERS))
def test_every_policy_is_lint_clean_except_for_accepted_findings(name: str) -> None:
    findings = lint(as_linted(name, POLICY_BUILDERS[name]()))
    assert findings.keys() == ALLOWED_FINDINGS[name].keys(), findings
    assert "CRITICAL" not in findings.values()
    assert "HIGH" not in findings.values()


@pytest.mark.parametrize(
    ("mistake", "finding"),
    [
        ({"Action": "s3:GetObjectVersionForReplicaton"}, "UNKNOWN_ACTION"),
        ({"Resource": f"arn:aws:s3:::{VAULT_BUCKET}"}, "RESOURCE_MISMATCH"),
        ({"Resource": "*"}, "RESOURCE_STAR"),
        ({"Sid": "4 objects"}, "INVALID_SID"),
    ],
)
def test_the_lint_catches_the_mistakes_it_is_here_for(mistake: dict[str, str], finding: str) -> None:
    document = role_policy()
    statement = next(s for s in document["Statement"] if s["Sid"] == "ReadVaultObjectVersions")
    statement.update(mistake)
    assert finding in lint(document)


# Where the method's step-2 policy grants each action, and where the job's generated manifest
# and the replication of each version need them. "vault-object" etc. are concrete resources below.
SEED_GRANTS = {
    "kms:Decrypt": "vault-key",
    "kms:Encrypt": "recovery-key",
    "s3:ListBucket": "vault-bucket",
    "s3:GetReplicationConfiguration": "vault-bucket",
    "s3:PutInventoryConfiguration": "vault-bucket",
    "s3:GetObjectRetention": "vault-object",
    "s3:GetObjectVersionAcl": "vault-object",
    "s3:GetObjectTagging": "vault-object",
    "s3:GetObjectVersionForReplication": "vault-object",
    "s3:GetObjectLegalHold": "vault-object",
    "s3:InitiateReplication": "vault-object",
    "s3:ReplicateObject": "recovery-object",
    "s3:ReplicateDelete": "recovery-object",
    "s3:GetObject": "report-object",
    "s3:GetObjectVersion": "report-object",
    "s3:PutObject": "report-object",
}
# What the method grants that no task of this job uses: delete markers are not replicated, and
# replication reads tags per version (s3:GetObjectVersionTagging).
UNUSED_SEED_GRANTS = ("s3:ReplicateDelete", "s3:GetObjectTagging")
REQUIRED_GRANTS = {action: where for action, where in SEED_GRANTS.items() if action not in UNUSED_SEED_GRANTS} | {
    "kms:GenerateDataKey": "recovery-key",
    "s3:GetObjectVersionTagging": "vault-object",
    "s3:ReplicateTags": "recovery-object",
    "s3:ObjectOwnerOverrideToBucketOwner": "recovery-object",
}
RESOURCES = {
    "vault-key": VAULT_KEY,
    "recovery-key": RECOVERY_KEY,
    "vault-bucket": f"arn:aws:s3:::{VAULT_BUCKET}",
    "vault-object": f"arn:aws:s3:::{VAULT_BUCKET}/finance/2024/ledger.parquet",
    "recovery-object": f"arn:aws:s3:::{RECOVERY_BUCKET}/finance/2024/ledger.parquet",
    "recovery-bucket": f"arn:aws:s3:::{RECOVERY_BUCKET}",
    "report-object": f"arn:aws:s3:::{REPORT_BUCKET}/batch-replication-report/job-1/manifest.json",
    "report-bucket": f"arn:aws:s3:::{REPORT_BUCKET}",
}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allowing(document: dict[str, Any], action: str, resource: str) -> list[dict[str, Any]]:
    """The Allow statements whose Action and Resource patterns cover an action on a resource."""
    return [
        statement
        for statement in document["Statement"]
        if statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in as_list(statement["Resource"]))
    ]


def test_role_grants_every_action_of_the_method_but_the_two_no_task_uses() -> None:
    # The built policy, not a second list of names, decides what SEED_ROLE_ACTIONS claims.
    document = role_policy()
    for action in policies.SEED_ROLE_ACTIONS:
        granted_on = [where for where, resource in RESOURCES.items() if allowing(document, action, resource)]
        if action in UNUSED_SEED_GRANTS:
            assert not granted_on, f"{action} is granted on {granted_on}, yet no task of the job uses it"
        else:
            assert SEED_GRANTS[action] in granted_on, f"{action} is not granted on {SEED_GRANTS[action]}"


@pytest.mark.parametrize(("action", "where"), sorted(REQUIRED_GRANTS.items()))
def test_role_grants_what_the_method_and_batch_replication_need_where_needed(
    action: str, where: str
) -> None:
    assert allowing(role_policy(), action, RESOURCES[where]), f"{action} is not granted on {where}"


@pytest.mark.parametrize(
    "action",
    sorted(set(policies.GENERATED_MANIFEST_ACTIONS) | set(policies.REPLICATION_ROLE_ACTIONS)),
)
def test_role_grants_every_generated_manifest_and_replication_action(action: str) -> None:
    assert any(allowing(role_policy(), action, resource) for resource in RESOURCES.values())


def test_role_may_decrypt_with_the_replica_key_as_bucket_key_replication_needs() -> None:
    # Replicating into a bucket with S3 Bucket Keys uses the replica key's data key; a missing
    # kms:Decrypt there fails tasks with DstPutObjectNotPermitted.
    (statement,) = allowing(role_policy(), "kms:Decrypt", RESOURCES["recovery-key"])
    assert statement["Sid"] == "EncryptReplicas"
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("action", "where"),
    [
        ("s3:PutObject", "vault-object"),
        ("s3:GetObject", "vault-object"),
        ("s3:DeleteObjectVersion", "vault-object"),
        ("s3:PutObjectRetention", "vault-object"),
        ("s3:BypassGovernanceRetention", "vault-object"),
        ("s3:PutBucketPolicy", "vault-bucket"),
        ("s3:PutObject", "recovery-object"),
        ("s3:DeleteObject", "report-object"),
        ("kms:Encrypt", "vault-key"),
        ("kms:GenerateDataKey", "vault-key"),
        ("kms:ReEncryptFrom", "recovery-key"),
        ("s3:GetObjectVersionForReplication", "recovery-object"),
        ("s3:ReplicateDelete", "recovery-object"),
        ("s3:GetObjectTagging", "vault-object"),
        ("s3:ListBucket", "recovery-bucket"),
    ],
)
def test_role_grants_nothing_beyond_its_job(action: str, where: str) -> None:
    assert not allowing(role_policy(), action, RESOURCES[where])


def test_role_names_every_resource_and_every_action() -> None:
    for statement in role_policy()["Statement"]:
        assert all("*" not in action for action in as_list(statement["Action"])), statement
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            # Only the "every object of this bucket" suffix may be a wildcard.
            assert "*" not in resource.removesuffix("/*"), statement


def actions_applying_to(resource: str) -> set[str]:
    """Every action whose documented resource types include the given ARN (per parliament's data)."""
    matches = parliament.get_privilege_matches_for_resource_type(
        parliament.get_resource_type_matches_from_arn(resource)
    )
    return {f"{m['privilege_prefix']}:{m['privilege_name']}".lower() for m in matches}


@pytest.mark.parametrize("name", ["role", "role-cross-region", "recovery-bucket", "topic"])
def test_every_action_applies_to_every_resource_of_its_statement(name: str) -> None:
    """The method grants object actions on the bucket ARN too: such pairs grant nothing."""
    for statement in POLICY_BUILDERS[name]()["Statement"]:
        for resource in as_list(statement["Resource"]):
            applicable = actions_applying_to(resource)
            for action in as_list(statement["Action"]):
                assert action.lower() in applicable, f"{statement['Sid']}: {action} on {resource}"


def test_role_uses_each_key_only_through_s3_for_its_own_bucket() -> None:
    statements = {s["Sid"]: s for s in role_policy(recovery_region="eu-west-1")["Statement"]}
    assert statements["DecryptVaultObjects"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [
                f"arn:aws:s3:::{VAULT_BUCKET}",
                f"arn:aws:s3:::{VAULT_BUCKET}/*",
            ]
        },
    }
    assert statements["EncryptReplicas"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [
                f"arn:aws:s3:::{RECOVERY_BUCKET}",
                f"arn:aws:s3:::{RECOVERY_BUCKET}/*",
            ]
        },
    }


def test_recovery_region_defaults_to_the_vault_region() -> None:
    statements = {s["Sid"]: s for s in role_policy()["Statement"]}
    assert statements["EncryptReplicas"]["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.us-east-1.amazonaws.com"
    }


@pytest.mark.parametrize("name", sorted(POLICY_BUILDERS))
def test_statement_ids_are_unique_and_alphanumeric_where_we_write_them(name: str) -> None:
    document = POLICY_BUILDERS[name]()
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids))
    foreign = {AWS_DEFAULT_KEY_STATEMENT["Sid"], KEY_ADMIN_STATEMENT["Sid"]}
    assert all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids if sid not in foreign), sids


def walk(node: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in a document; list items and scalars come with key None."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield None, item
            yield from walk(item)


ARN = re.compile(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:[^\s]+")
KEY = re.compile(r"[A-Za-z$][A-Za-z0-9-]*(:[A-Za-z0-9-]+)*")


@pytest.mark.parametrize("name", sorted(ALL_BUILDERS))
def test_every_key_and_every_arn_is_well_formed(name: str) -> None:
    document = ALL_BUILDERS[name]()
    for key, value in walk(document):
        assert key is None or KEY.fullmatch(key), f"malformed key {key!r}"
        if isinstance(value, str):
            assert value == value.strip(), f"{value!r} has surrounding whitespace"
            if "arn:" in value:
                assert ARN.fullmatch(value), f"malformed ARN {value!r}"
    assert json.loads(policies.to_json(document)) == document


def test_the_seeds_typos_are_rejected_at_the_door() -> None:
    with pytest.raises(InvalidArguments) as raised:
        policies.batch_role_policy(
            vault_bucket="<your source bucket>",
            recovery_bucket=" mys3-recovery-bucket",
            report_bucket=REPORT_BUCKET,
            vault_key_arn=VAULT_KEY,
            recovery_key_arn="alias/recovery",
            region="us-east-1",
            recovery_region="us east 1",
        )
    fields = [problem.field for problem in raised.value.problems]
    assert fields == ["vault_bucket", "recovery_bucket", "recovery_key_arn", "recovery_region"]
    assert "a KMS key ARN" in str(raised.value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: policies.batch_role_trust_policy(vault_account_id="1111", vault_bucket=VAULT_BUCKET,
                                                  region="us-east-1"), "vault_account_id"),
        (lambda: policies.batch_role_trust_policy(vault_account_id=VAULT_ACCOUNT, vault_bucket="Vault_Bucket",
                                                  region="us-east-1"), "vault_bucket"),
        (
            lambda: policies.vault_key_policy_statements(
                batch_role_arn=f" {ROLE}", vault_bucket=VAULT_BUCKET, region="us-east-1", run_id=RUN_ID
            ),
            "batch_role_arn",
        ),
        (
            lambda: policies.recovery_bucket_policy(
                recovery_bucket="Recovery_Bucket", batch_role_arn=ROLE, run_id=RUN_ID, partition="aws"
            ),
            "recovery_bucket",
        ),
        (
            lambda: policies.sns_topic_policy(
                topic_arn=TOPIC, event_rule_arn="runbook-job-status", account_id=VAULT_ACCOUNT
            ),
            "event_rule_arn",
        ),
        (lambda: policies.job_status_event_pattern(vault_account_id="vault"), "vault_account_id"),
        (
            lambda: policies.replication_configuration(
                batch_role_arn=ROLE,
                recovery_bucket=RECOVERY_BUCKET,
                recovery_account_id=RECOVERY_ACCOUNT,
                recovery_key_arn=RECOVERY_KEY,
                partition="aws",
                storage_class="STANDARD-IA",
            ),
            "storage_class",
        ),
    ],
)
def test_builders_name_the_argument_that_is_wrong(build: Callable[[], object], field: str) -> None:
    with pytest.raises(InvalidArguments) as raised:
        build()
    assert [problem.field for problem in raised.value.problems] == [field]


@pytest.mark.parametrize(("region", "partition"), [("us-east-1", "aws"), ("cn-north-1", "aws-cn")])
def test_trust_policy_guards_replication_by_source_and_leaves_batch_operations_unconditioned(
    region: str, partition: str
) -> None:
    batch_operations, replication_statement = trust_policy(region)["Statement"]
    assert batch_operations["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    assert batch_operations["Action"] == "sts:AssumeRole"
    # AWS documents no confused-deputy keys for Batch Operations: a condition would never match.
    assert "Condition" not in batch_operations
    assert replication_statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert replication_statement["Action"] == "sts:AssumeRole"
    assert replication_statement["Condition"] == {"StringEquals": {
        "aws:SourceAccount": VAULT_ACCOUNT, "aws:SourceArn": f"arn:{partition}:s3:::{VAULT_BUCKET}"}}


def test_vault_key_statement_lets_only_the_role_decrypt_only_through_s3_for_the_vault_bucket() -> None:
    (statement,) = vault_key_statements()
    assert statement["Sid"] == "RunbookRecoveryRoleDecryptsVaultObjectsRundrillX2026X05"
    assert statement["Principal"] == {"AWS": ROLE}
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == "*"
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{VAULT_BUCKET}/*"]
        },
    }


def test_run_scoped_sids_name_their_run_and_never_collide() -> None:
    sids = {run_id: policies.run_sid("RoleEncryptsReplicas", run_id)
            for run_id in ("drill", "drill-1", "drill1", "drill-run-2", "r")}
    assert len(set(sids.values())) == len(sids)
    for run_id, sid in sids.items():
        assert re.fullmatch(r"RunbookRecovery[A-Za-z0-9]+", sid), sid
        assert policies.sid_run_id(sid) == run_id
    for foreign in ("Enable IAM User Permissions", "RunbookRecoveryRoleUsesKey", *policies.LEGACY_RECOVERY_BUCKET_SIDS,
                    "RunbookRecoveryJobEventsPublish", None):
        assert policies.sid_run_id(foreign) is None
    with pytest.raises(InvalidArguments):
        policies.run_sid("RoleEncryptsReplicas", "Drill_1")


def test_merge_adds_our_statements_after_the_others_and_keeps_those_untouched() -> None:
    original = copy.deepcopy(VAULT_KEY_POLICY)
    merged = policies.merge_statements(VAULT_KEY_POLICY, vault_key_statements(), run_id=RUN_ID)
    assert original == VAULT_KEY_POLICY, "the input policy must not be modified"
    assert merged["Id"] == "key-consolepolicy-3"
    assert merged["Statement"][:2] == [AWS_DEFAULT_KEY_STATEMENT, KEY_ADMIN_STATEMENT]
    assert merged["Statement"][2:] == vault_key_statements()


def test_merge_is_idempotent() -> None:
    once = policies.merge_statements(VAULT_KEY_POLICY, vault_key_statements(), run_id=RUN_ID)
    twice = policies.merge_statements(once, vault_key_statements(), run_id=RUN_ID)
    assert policies.to_json(twice) == policies.to_json(once)


def test_merge_replaces_our_statement_in_place_and_keeps_what_follows() -> None:
    stale = {**vault_key_statements()[0], "Condition": {}}
    later = {
        "Sid": "AddedByAnotherTeam",
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": "kms:Sign",
        "Resource": "*",
    }
    existing = {**VAULT_KEY_POLICY, "Statement": [AWS_DEFAULT_KEY_STATEMENT, stale, later]}
    merged = policies.merge_statements(existing, vault_key_statements(), run_id=RUN_ID)
    assert [s["Sid"] for s in merged["Statement"]] == [
        "Enable IAM User Permissions",
        vault_key_statements()[0]["Sid"],
        "AddedByAnotherTeam",
    ]
    assert merged["Statement"][1] == vault_key_statements()[0]
    assert merged["Statement"][2] == later


def test_two_runs_keep_their_own_statements_side_by_side() -> None:
    first = policies.merge_statements(VAULT_KEY_POLICY, vault_key_statements(OTHER_RUN_ID), run_id=OTHER_RUN_ID)
    both = policies.merge_statements(first, vault_key_statements(), run_id=RUN_ID)
    assert both["Statement"][:3] == first["Statement"]
    assert both["Statement"][3:] == vault_key_statements()
    assert policies.own_statement_sids(both, RUN_ID) == [vault_key_statements()[0]["Sid"]]
    # This run's cleanup leaves the other run's grant in place.
    cleaned = policies.remove_statements(both, policies.own_statement_sids(both, RUN_ID), run_id=RUN_ID)
    assert cleaned == first
    with pytest.raises(ProvisionError, match=OTHER_RUN_ID):
        policies.merge_statements(both, vault_key_statements(OTHER_RUN_ID), run_id=RUN_ID)
    with pytest.raises(ProvisionError, match="RunbookRecoveryRoleDecryptsVaultObjectsRundrill"):
        policies.remove_statements(both, [vault_key_statements(OTHER_RUN_ID)[0]["Sid"]], run_id=RUN_ID)


def test_legacy_fixed_sids_are_this_runs_only_when_named_as_such() -> None:
    legacy = {"Sid": "RunbookRecoveryRoleUsesKey", "Effect": "Allow", "Principal": {"AWS": ROLE},
              "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}
    existing = {**VAULT_KEY_POLICY, "Statement": [AWS_DEFAULT_KEY_STATEMENT, legacy]}
    assert policies.own_statement_sids(existing, RUN_ID) == []
    recorded = ["RunbookRecoveryRoleUsesKey"]
    assert policies.own_statement_sids(existing, RUN_ID, recorded) == recorded
    with pytest.raises(ProvisionError):
        policies.remove_statements(existing, ["RunbookRecoveryRoleUsesKey"], run_id=RUN_ID)
    upgraded = policies.merge_statements(existing, vault_key_statements(), run_id=RUN_ID,
                                         replaced=["RunbookRecoveryRoleUsesKey"])
    assert upgraded["Statement"] == [AWS_DEFAULT_KEY_STATEMENT, *vault_key_statements()]


def test_merge_accepts_a_single_statement_object() -> None:
    existing = {"Version": "2012-10-17", "Statement": AWS_DEFAULT_KEY_STATEMENT}
    merged = policies.merge_statements(existing, vault_key_statements(), run_id=RUN_ID)
    assert merged["Statement"] == [AWS_DEFAULT_KEY_STATEMENT, *vault_key_statements()]


def test_merge_refuses_to_replace_a_statement_that_is_not_ours() -> None:
    hijack = {**KEY_ADMIN_STATEMENT, "Action": "kms:Decrypt"}
    with pytest.raises(ProvisionError, match="Allow access for Key Administrators"):
        policies.merge_statements(VAULT_KEY_POLICY, [hijack], run_id=RUN_ID)


def test_remove_statements_removes_only_ours() -> None:
    merged = policies.merge_statements(VAULT_KEY_POLICY, vault_key_statements(), run_id=RUN_ID)
    ours = [s["Sid"] for s in vault_key_statements()]
    assert policies.own_statement_sids(merged, RUN_ID) == ours
    cleaned = policies.remove_statements(merged, ours, run_id=RUN_ID)
    assert cleaned == VAULT_KEY_POLICY
    assert policies.own_statement_sids(cleaned, RUN_ID) == []
    # Removing what is already gone changes nothing.
    assert policies.remove_statements(cleaned, ours, run_id=RUN_ID) == VAULT_KEY_POLICY


def test_remove_statements_refuses_foreign_sids() -> None:
    with pytest.raises(ProvisionError, match="Enable IAM User Permissions"):
        policies.remove_statements(VAULT_KEY_POLICY, ["Enable IAM User Permissions"], run_id=RUN_ID)


def test_recovery_key_is_created_for_its_account_alone() -> None:
    (admin,) = policies.recovery_key_policy(recovery_account_id=RECOVERY_ACCOUNT, partition="aws")["Statement"]
    assert admin == {
        "Sid": "EnableRecoveryAccountAdministration",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{RECOVERY_ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }


def test_recovery_key_lets_only_the_role_encrypt_replicas_through_s3_for_the_recovery_bucket() -> None:
    admin, role = recovery_key_policy()["Statement"]
    assert admin["Sid"] == "EnableRecoveryAccountAdministration"
    assert role["Principal"] == {"AWS": ROLE}
    assert set(role["Action"]) == {"kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"}
    assert role["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
        "StringLike": {
            "kms:EncryptionContext:aws:s3:arn": [
                f"arn:aws:s3:::{RECOVERY_BUCKET}", f"arn:aws:s3:::{RECOVERY_BUCKET}/*"
            ]
        },
    }
    assert policies.sid_run_id(role["Sid"]) == RUN_ID


def test_recovery_bucket_policy_lets_the_role_write_replicas_and_read_versioning() -> None:
    document = bucket_policy()
    assert document["Id"] == "RunbookRecoveryBucketPolicy"
    assert all(s["Principal"] == {"AWS": ROLE} for s in document["Statement"])
    assert all(policies.sid_run_id(s["Sid"]) == RUN_ID for s in document["Statement"])
    for action in ("s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"):
        assert allowing(document, action, RESOURCES["recovery-object"]), action
    assert allowing(document, "s3:GetBucketVersioning", RESOURCES["recovery-bucket"])
    # Narrower than the method: nothing to list, no delete markers, no way to change versioning.
    for action in (
        "s3:ReplicateDelete",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:PutBucketVersioning",
        "s3:ListBucketMultipartUploads",
        "s3:PutObject",
        "s3:DeleteObjectVersion",
    ):
        assert not any(allowing(document, action, r) for r in RESOURCES.values()), action


EXPECTED_REPLICATION = {
    "Role": ROLE,
    "Rules": [
        {
            "ID": "runbook-batch-replication",
            "Priority": 0,
            "Filter": {},
            "Status": "Enabled",
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
            "Destination": {
                "Bucket": f"arn:aws:s3:::{RECOVERY_BUCKET}",
                "Account": RECOVERY_ACCOUNT,
                "StorageClass": "INTELLIGENT_TIERING",
                "AccessControlTranslation": {"Owner": "Destination"},
                "EncryptionConfiguration": {"ReplicaKmsKeyID": RECOVERY_KEY},
                # No EventThreshold: S3 answers InvalidArgument when a threshold is set without
                # Replication Time Control, and the method does not turn RTC on.
                "Metrics": {"Status": "Enabled"},
            },
            "DeleteMarkerReplication": {"Status": "Disabled"},
        }
    ],
}


def test_replication_configuration_is_the_methods_step_6() -> None:
    assert replication() == EXPECTED_REPLICATION


def s3_client() -> Any:
    return botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.mark.parametrize("storage_class", policies.REPLICA_STORAGE_CLASSES)
def test_replication_configuration_passes_botocore_validation_with_a_token(
    storage_class: str,
) -> None:
    configuration = policies.replication_configuration(
        batch_role_arn=ROLE,
        recovery_bucket=RECOVERY_BUCKET,
        recovery_account_id=RECOVERY_ACCOUNT,
        recovery_key_arn=RECOVERY_KEY,
        partition="aws",
        storage_class=storage_class,
    )
    client = s3_client()
    request = {
        "Bucket": VAULT_BUCKET,
        "ReplicationConfiguration": configuration,
        "Token": "object-lock-token",
    }
    with Stubber(client) as stubber:
        stubber.add_response("put_bucket_replication", {}, request)
        client.put_bucket_replication(**request)
        stubber.assert_no_pending_responses()


def test_replication_request_on_the_wire_keeps_the_empty_filter_and_the_token() -> None:
    """Without <Filter/> S3 would read the rule in the old schema and refuse DeleteMarkerReplication."""
    captured: dict[str, Any] = {}

    class EmptyBody:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b""

    def answer(request: Any, **_: Any) -> AWSResponse:
        captured["body"] = request.body
        captured["headers"] = request.headers
        return AWSResponse(request.url, 200, {}, EmptyBody())

    client = s3_client()
    client.meta.events.register("before-send.s3.PutBucketReplication", answer)
    client.put_bucket_replication(
        Bucket=VAULT_BUCKET, ReplicationConfiguration=replication(), Token="tok-123"
    )
    assert b"<Filter />" in captured["body"] or b"<Filter></Filter>" in captured["body"]
    delete_markers = b"<DeleteMarkerReplication><Status>Disabled</Status></DeleteMarkerReplication>"
    assert delete_markers in captured["body"]
    assert captured["headers"]["x-amz-bucket-object-lock-token"] == b"tok-123"


def test_every_replica_storage_class_is_known_to_s3() -> None:
    shape = s3_client().meta.service_model.shape_for("StorageClass")
    assert set(policies.REPLICA_STORAGE_CLASSES) <= set(shape.enum)


# The shape of a Batch Operations job status event, as S3 delivers it through CloudTrail.
JOB_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "c8791abf-2af8-c754-0435-fd869ce25233",
    "detail-type": "AWS Service Event via CloudTrail",
    "source": "aws.s3",
    "account": VAULT_ACCOUNT,
    "time": "2026-08-27T09:49:47Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "eventVersion": "1.05",
        "userIdentity": {"accountId": VAULT_ACCOUNT, "invokedBy": "s3.amazonaws.com"},
        "eventTime": "2026-08-27T09:49:47Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "JobStatusChanged",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "s3.amazonaws.com",
        "userAgent": "s3.amazonaws.com",
        "requestParameters": None,
        "responseElements": None,
        "eventID": "0238c1f7-c2b0-440b-8dbd-1ed5e5833afb",
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "recipientAccountId": VAULT_ACCOUNT,
        "serviceEventDetails": {
            "jobId": "8f1c6a0e-3d52-4c8b-9a61-5c2f7d0e4b11",
            "jobArn": f"arn:aws:s3:us-east-1:{VAULT_ACCOUNT}:job/8f1c6a0e-3d52-4c8b-9a61-5c2f7d0e4b11",
            "status": "Complete",
            "jobEventId": "51f5ac17dba408301d56cd1b2c8d1e9e",
            "failureCodes": [],
            "statusChangeReason": [],
        },
    },
}


def job_event(
    *, name: str = "JobStatusChanged", status: str = "Complete", account: str = VAULT_ACCOUNT
) -> dict[str, Any]:
    event = copy.deepcopy(JOB_EVENT)
    event["account"] = account
    event["detail"]["eventName"] = name
    event["detail"]["serviceEventDetails"]["status"] = status
    return event


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(policies.to_json(pattern)).matches_event(event))


@pytest.mark.parametrize(
    ("event", "every_event", "terminal_only"),
    [
        (job_event(), True, True),
        (job_event(status="Failed"), True, True),
        (job_event(status="Cancelled"), True, True),
        (job_event(status="Active"), True, False),
        (job_event(status="Suspended"), True, False),
        (job_event(name="JobCreated", status="New"), True, False),
        (job_event(name="PutBucketReplication"), False, False),
        (job_event(account="333333333333"), True, False),
        ({**job_event(), "detail-type": "Object Created"}, False, False),
        ({**job_event(), "source": "aws.s3control"}, False, False),
    ],
)
def test_event_patterns_match_the_job_status_events_they_should(
    event: dict[str, Any], every_event: bool, terminal_only: bool
) -> None:
    assert matches(policies.job_status_event_pattern(), event) is every_event
    terminal = policies.job_status_event_pattern(vault_account_id=VAULT_ACCOUNT, terminal_only=True)
    assert matches(terminal, event) is terminal_only


def test_event_pattern_for_all_job_events_is_the_documented_one() -> None:
    assert policies.job_status_event_pattern() == {
        "source": ["aws.s3"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {"eventSource": ["s3.amazonaws.com"], "eventName": ["JobCreated", "JobStatusChanged"]},
    }


def test_topic_policy_lets_only_our_rule_publish_through_eventbridge() -> None:
    owner, events = topic_policy()["Statement"]
    assert owner["Principal"] == {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"}
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Action"] == "sns:Publish"
    assert events["Resource"] == TOPIC
    assert events["Condition"] == {"ArnEquals": {"aws:SourceArn": RULE}}
    assert owner["Resource"] == TOPIC


def test_to_json_keeps_the_builders_order_and_indents_by_two() -> None:
    text = policies.to_json(bucket_policy())
    assert text.splitlines()[:3] == ['{', '  "Version": "2012-10-17",', '  "Id": "RunbookRecoveryBucketPolicy",']
    assert text.index('"Sid"') < text.index('"Effect"') < text.index('"Principal"') < text.index('"Action"')


@pytest.mark.parametrize(("action", "bucket", "allowed"), [
    ("s3:GetObject", REPORT_BUCKET, True),
    ("s3:GetObjectVersion", REPORT_BUCKET, True),
    ("s3:GetObject", VAULT_BUCKET, False),
    ("s3:PutObject", RECOVERY_BUCKET, False),
])
def test_the_role_may_read_a_sample_manifest_in_the_report_bucket_and_no_other_object(
    action: str, bucket: str, allowed: bool
) -> None:
    # A sample drill's job reads its CSV manifest from the report bucket, as a retry round's job does.
    request = iam_eval.Request(
        principal_arn=ROLE, principal_account=VAULT_ACCOUNT, action=action,
        resource=f"arn:aws:s3:::{bucket}/batch-replication-manifests/samples/drill-0123456789abcdef.csv",
        resource_account=VAULT_ACCOUNT,
    )

    decision = iam_eval.is_allowed(request, identity_policies=[role_policy()])

    assert decision.allowed is allowed, decision.reason
