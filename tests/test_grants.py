"""The runbook's narrowed grants are enough for Batch Replication, and each one of them is needed.

Every scenario applies the documents the runbook builds (the role's policy and trust policy, its
statement on the vault key, its statement on the recovery key, the recovery bucket policy and the
replication configuration) in the embedded backend, then replicates single versions as a Batch
Replication task does. With everything in place each version is copied; with one grant taken away
the task fails with the code AWS documents for it, and nothing reaches the recovery bucket.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from runbook_fixtures import AccountClients, clients_on_a_new_backend

from runbook_lib import policies
from runbook_lib.embedded.replication import TaskResult, replicate_task
from runbook_lib.embedded.server import RECOVERY_ACCOUNT, REGION, VAULT_ACCOUNT

RUN_ID = "grants-drill"
RETAIN_UNTIL = datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
Documents = dict[str, Any]
# A vault key whose administrators cannot use it and whose account cannot delegate its use to IAM
# policies: only a key policy statement naming the role lets the role decrypt.
LOCKED_DOWN_VAULT_KEY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"},
        "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                   "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
                   "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
        "Resource": "*",
    }],
}


Clients = AccountClients


@pytest.fixture(scope="module")
def clients() -> Iterator[AccountClients]:
    """Start one backend for the module and return clients acting in the vault and recovery accounts."""
    with clients_on_a_new_backend("grants-tester") as clients:
        yield clients


@dataclass
class Setup:
    """Names of one vault-to-recovery setup and the documents the runbook builds for it."""

    vault_bucket: str
    recovery_bucket: str
    report_bucket: str
    role_name: str
    role_arn: str
    vault_key_arn: str
    recovery_key_arn: str

    def documents(self) -> Documents:
        role = self.role_arn
        recovery_key = policies.merge_statements(
            policies.recovery_key_policy(recovery_account_id=RECOVERY_ACCOUNT, partition="aws"),
            policies.recovery_key_statements(batch_role_arn=role, recovery_bucket=self.recovery_bucket,
                                             recovery_region=REGION, run_id=RUN_ID),
            run_id=RUN_ID,
        )
        vault_key = policies.merge_statements(
            LOCKED_DOWN_VAULT_KEY,
            policies.vault_key_policy_statements(batch_role_arn=role, vault_bucket=self.vault_bucket,
                                                 region=REGION, run_id=RUN_ID),
            run_id=RUN_ID,
        )
        return {
            "trust": policies.batch_role_trust_policy(
                vault_account_id=VAULT_ACCOUNT, vault_bucket=self.vault_bucket, region=REGION),
            "role": policies.batch_role_policy(
                vault_bucket=self.vault_bucket, recovery_bucket=self.recovery_bucket,
                report_bucket=self.report_bucket, vault_key_arn=self.vault_key_arn,
                recovery_key_arn=self.recovery_key_arn, region=REGION),
            "vault_key": vault_key,
            "recovery_key": recovery_key,
            "recovery_bucket": policies.recovery_bucket_policy(
                recovery_bucket=self.recovery_bucket, batch_role_arn=role, run_id=RUN_ID, partition="aws"),
            "replication": policies.replication_configuration(
                batch_role_arn=role, recovery_bucket=self.recovery_bucket, recovery_account_id=RECOVERY_ACCOUNT,
                recovery_key_arn=self.recovery_key_arn, partition="aws"),
        }


def _apply(clients: Clients, setup: Setup, documents: Documents) -> dict[str, str]:
    """Apply the documents, write three vault versions, and return their version ids by label."""
    clients.vault_iam.create_role(RoleName=setup.role_name,
                                  AssumeRolePolicyDocument=policies.to_json(documents["trust"]))
    clients.vault_iam.put_role_policy(RoleName=setup.role_name, PolicyName="batch-replication",
                                      PolicyDocument=policies.to_json(documents["role"]))
    clients.vault_kms.put_key_policy(KeyId=setup.vault_key_arn, PolicyName="default",
                                     Policy=policies.to_json(documents["vault_key"]))
    clients.recovery_kms.put_key_policy(KeyId=setup.recovery_key_arn, PolicyName="default",
                                        Policy=policies.to_json(documents["recovery_key"]))
    for s3, bucket, key in ((clients.vault_s3, setup.vault_bucket, setup.vault_key_arn),
                            (clients.recovery_s3, setup.recovery_bucket, setup.recovery_key_arn)):
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True,
        }]})
    clients.recovery_s3.put_bucket_policy(Bucket=setup.recovery_bucket,
                                          Policy=policies.to_json(documents["recovery_bucket"]))
    clients.vault_s3.put_bucket_replication(Bucket=setup.vault_bucket,
                                            ReplicationConfiguration=documents["replication"])
    s3 = clients.vault_s3
    versions = {
        "locked": s3.put_object(
            Bucket=setup.vault_bucket, Key="ledger/2024.parquet", Body=b"golden copy", Tagging="class=gold",
            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=RETAIN_UNTIL, ObjectLockLegalHoldStatus="ON",
        )["VersionId"],
        "plain": s3.put_object(Bucket=setup.vault_bucket, Key="notes.txt", Body=b"plain")["VersionId"],
        "plaintext": s3.put_object(Bucket=setup.vault_bucket, Key="old/2019.csv", Body=b"a,b")["VersionId"],
    }
    # A version written before S3 encrypted every new object: stored without encryption.
    stored = _stored(setup.vault_bucket, "old/2019.csv", versions["plaintext"])
    stored.encryption, stored.kms_key_id, stored.bucket_key_enabled = None, None, None
    return versions


def _stored(bucket: str, key: str, version_id: str) -> Any:
    from moto.s3.models import s3_backends

    versions = s3_backends[VAULT_ACCOUNT]["aws"].buckets[bucket].keys.getlist(key)
    return next(v for v in versions if v.version_id == version_id)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _without(document: Documents, action: str, *, sid_part: str = "") -> Documents:
    """Return the document with `action` taken out of every statement whose Sid contains `sid_part`."""
    changed = copy.deepcopy(document)
    kept = []
    for statement in changed["Statement"]:
        if sid_part in statement.get("Sid", ""):
            actions = [a for a in _as_list(statement["Action"]) if a != action]
            if not actions:
                continue
            statement["Action"] = actions if len(actions) > 1 else actions[0]
        kept.append(statement)
    changed["Statement"] = kept
    return changed


def _build(clients: Clients, change: Callable[[Setup, Documents], None] | None = None) -> tuple[Setup, dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    setup = Setup(
        vault_bucket=f"vault-{suffix}", recovery_bucket=f"recovery-{suffix}", report_bucket=f"reports-{suffix}",
        role_name=f"batch-replication-{suffix}",
        role_arn=f"arn:aws:iam::{VAULT_ACCOUNT}:role/batch-replication-{suffix}",
        vault_key_arn=clients.vault_kms.create_key(Description="vault key")["KeyMetadata"]["Arn"],
        recovery_key_arn=clients.recovery_kms.create_key(Description="recovery key")["KeyMetadata"]["Arn"],
    )
    documents = setup.documents()
    if change is not None:
        change(setup, documents)
    return setup, _apply(clients, setup, documents)


def _replicate(setup: Setup, versions: dict[str, str], label: str) -> TaskResult:
    key = {"locked": "ledger/2024.parquet", "plain": "notes.txt", "plaintext": "old/2019.csv"}[label]
    return replicate_task(VAULT_ACCOUNT, setup.vault_bucket, key, versions[label], setup.role_arn)


def _recovered(clients: Clients, setup: Setup) -> list[str]:
    answer = clients.recovery_s3.list_object_versions(Bucket=setup.recovery_bucket)
    return [v["VersionId"] for v in answer.get("Versions", [])]


def test_the_runbooks_narrowed_grants_replicate_every_kind_of_vault_version(clients: Clients) -> None:
    setup, versions = _build(clients)

    results = {label: _replicate(setup, versions, label) for label in versions}

    assert {label: r.error_code for label, r in results.items() if not r.succeeded} == {}
    assert sorted(_recovered(clients, setup)) == sorted(versions.values())
    head = clients.recovery_s3.head_object(Bucket=setup.recovery_bucket, Key="ledger/2024.parquet",
                                           VersionId=versions["locked"])
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", "ON")
    assert head["SSEKMSKeyId"] == setup.recovery_key_arn


def _drop(name: str, action: str, sid_part: str = "") -> Callable[[Setup, Documents], None]:
    def change(setup: Setup, documents: Documents) -> None:
        documents[name] = _without(documents[name], action, sid_part=sid_part)

    return change


def _vault_key_statement_for(**arguments: str) -> Callable[[Setup, Documents], None]:
    """Replace the run's vault key statement by one built for another bucket or region."""
    def change(setup: Setup, documents: Documents) -> None:
        built = {"batch_role_arn": setup.role_arn, "vault_bucket": setup.vault_bucket, "region": REGION} | arguments
        statements = policies.vault_key_policy_statements(**built, run_id=RUN_ID)
        documents["vault_key"] = policies.merge_statements(LOCKED_DOWN_VAULT_KEY, statements, run_id=RUN_ID)

    return change


def _trust_for(**arguments: str) -> Callable[[Setup, Documents], None]:
    """Replace the role's trust policy by the runbook's one built for another vault account or bucket."""
    def change(setup: Setup, documents: Documents) -> None:
        built = {"vault_account_id": VAULT_ACCOUNT, "vault_bucket": setup.vault_bucket, "region": REGION} | arguments
        documents["trust"] = policies.batch_role_trust_policy(**built)

    return change


def _batch_operations_trust_conditioned_on_source_account(setup: Setup, documents: Documents) -> None:
    """Guard the Batch Operations statement with aws:SourceAccount, a key AWS documents no value for."""
    batch_operations = documents["trust"]["Statement"][0]
    batch_operations["Condition"] = {"StringEquals": {"aws:SourceAccount": VAULT_ACCOUNT}}


# (what is taken away, which version is replicated, the failure code AWS documents for it)
MISSING_GRANTS = {
    "trust policy: replication for another vault account (aws:SourceAccount)": (
        _trust_for(vault_account_id="333333333333"), "plain", "AssumeRoleNotPermitted"),
    "trust policy: replication for another vault bucket (aws:SourceArn)": (
        _trust_for(vault_bucket="some-other-vault"), "plain", "AssumeRoleNotPermitted"),
    "trust policy: Batch Operations asked for aws:SourceAccount, which it does not send": (
        _batch_operations_trust_conditioned_on_source_account, "plain", "AssumeRoleNotPermitted"),
    "vault key: the role's kms:Decrypt": (_drop("vault_key", "kms:Decrypt", "RoleDecrypts"), "plain",
                                          "SrcGetObjectNotPermitted"),
    "vault key: Decrypt for another bucket's objects": (_vault_key_statement_for(vault_bucket="some-other-bucket"),
                                                        "plain", "SrcGetObjectNotPermitted"),
    "vault key: Decrypt through S3 in another region": (_vault_key_statement_for(region="eu-west-1"), "plain",
                                                        "SrcGetObjectNotPermitted"),
    "recovery key: the role's kms:Encrypt": (_drop("recovery_key", "kms:Encrypt", "RoleEncrypts"), "plain",
                                             "DstPutObjectNotPermitted"),
    "recovery key: the role's kms:Decrypt (Bucket Key)": (_drop("recovery_key", "kms:Decrypt", "RoleEncrypts"),
                                                          "plain", "DstPutObjectNotPermitted"),
    "recovery key: the role's kms:GenerateDataKey": (_drop("recovery_key", "kms:GenerateDataKey", "RoleEncrypts"),
                                                     "plaintext", "DstPutObjectNotPermitted"),
    "role policy: kms:Encrypt on the recovery key": (_drop("role", "kms:Encrypt"), "plain",
                                                     "DstPutObjectNotPermitted"),
    "recovery bucket policy: s3:ReplicateObject": (_drop("recovery_bucket", "s3:ReplicateObject"), "plain",
                                                   "DstPutObjectNotPermitted"),
    "recovery bucket policy: s3:ObjectOwnerOverrideToBucketOwner": (
        _drop("recovery_bucket", "s3:ObjectOwnerOverrideToBucketOwner"), "plain", "DstPutObjectNotPermitted"),
    "recovery bucket policy: s3:ReplicateTags": (_drop("recovery_bucket", "s3:ReplicateTags"), "locked",
                                                 "DstPutTaggingNotPermitted"),
    "role policy: s3:ReplicateObject": (_drop("role", "s3:ReplicateObject"), "plain", "DstPutObjectNotPermitted"),
    "role policy: s3:InitiateReplication": (_drop("role", "s3:InitiateReplication"), "plain",
                                            "InitiateReplicationNotPermitted"),
    "role policy: s3:GetObjectVersionForReplication": (_drop("role", "s3:GetObjectVersionForReplication"), "plain",
                                                       "SrcGetObjectNotPermitted"),
    "role policy: s3:GetObjectRetention": (_drop("role", "s3:GetObjectRetention"), "locked",
                                           "SrcGetRetentionNotPermitted"),
    "role policy: s3:GetObjectLegalHold": (_drop("role", "s3:GetObjectLegalHold"), "locked",
                                           "SrcGetLegalHoldNotPermitted"),
    "role policy: s3:GetObjectVersionTagging": (_drop("role", "s3:GetObjectVersionTagging"), "locked",
                                                "SrcGetTaggingNotPermitted"),
    "role policy: s3:GetReplicationConfiguration": (_drop("role", "s3:GetReplicationConfiguration"), "plain",
                                                    "SrcBucketReplicationConfigMissing"),
}


@pytest.mark.parametrize("missing", list(MISSING_GRANTS))
def test_each_narrowed_grant_is_needed(clients: Clients, missing: str) -> None:
    change, label, code = MISSING_GRANTS[missing]
    setup, versions = _build(clients, change)

    result = _replicate(setup, versions, label)

    assert (result.succeeded, result.error_code) == (False, code), result.message
    assert _recovered(clients, setup) == []
