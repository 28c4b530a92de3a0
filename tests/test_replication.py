"""Batch Replication of one version in the embedded backend: the copy, and each way it fails.

Every scenario is built with real IAM, KMS and S3 calls against a running embedded backend: a
vault bucket (Object Lock, SSE-KMS with a Bucket Key) replicated by a role into a recovery bucket
in another account. A failure test changes exactly one thing and checks the failure code AWS
reports, that nothing reached the recovery bucket, and what became of the source's status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from runbook_fixtures import AccountClients, clients_on_a_new_backend

from runbook_lib.embedded.replication import TaskResult, job_replicator, mark_source_failed, replicate_task
from runbook_lib.embedded.replication_rules import eligible_for_replication, replication_configuration
from runbook_lib.embedded.server import RECOVERY_ACCOUNT, REGION, VAULT_ACCOUNT

BATCH_SERVICE = "batchoperations.s3.amazonaws.com"
REPLICATION_SERVICE = "s3.amazonaws.com"
VERSION = "2012-10-17"
RETAIN_UNTIL = datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REPORT_KEY = "docs/quarterly report.pdf"


# --- the backend and the two accounts ---------------------------------------------------------


Accounts = AccountClients


@pytest.fixture(scope="module")
def accounts() -> Iterator[AccountClients]:
    """Start one backend for the module and return clients acting in the vault and recovery accounts."""
    with clients_on_a_new_backend("replication-tester") as clients:
        yield clients


# --- a correct recovery setup ------------------------------------------------------------------

# The role's grants, one statement each, so a test can take exactly one away.
OBJECT_SOURCE_ACTIONS = (
    "s3:InitiateReplication",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
)
DESTINATION_ACTIONS = (
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": VERSION, "Statement": list(statements)})


def trust_policy(*services: str) -> str:
    return policy(
        {"Effect": "Allow", "Principal": {"Service": list(services)}, "Action": "sts:AssumeRole"}
    )


@dataclass
class World:
    """One vault bucket replicated into one recovery bucket, and the versions put into the vault."""

    accounts: Accounts
    vault_bucket: str
    recovery_bucket: str
    role_name: str
    role_arn: str
    vault_key_arn: str
    recovery_key_arn: str
    versions: dict[str, str] = field(default_factory=dict)  # label -> version id

    def role_policy(self, without: str = "") -> str:
        """Return the role's policy: everything replication needs, minus the action `without`."""
        vault_objects = f"arn:aws:s3:::{self.vault_bucket}/*"
        statements: list[dict[str, Any]] = [
            {"Effect": "Allow", "Action": action, "Resource": vault_objects} for action in OBJECT_SOURCE_ACTIONS
        ]
        statements.append(
            {"Effect": "Allow", "Action": "s3:GetReplicationConfiguration",
             "Resource": f"arn:aws:s3:::{self.vault_bucket}"}
        )
        statements += [
            {"Effect": "Allow", "Action": action, "Resource": f"arn:aws:s3:::{self.recovery_bucket}/*"}
            for action in DESTINATION_ACTIONS
        ]
        statements.append(self._key_statement("kms:Decrypt", self.vault_key_arn, self.vault_bucket))
        statements.append(self._key_statement("kms:Encrypt", self.recovery_key_arn, self.recovery_bucket))
        # Bucket Key replicas are written with the replica key's data key, which the role decrypts.
        statements.append(self._key_statement("kms:Decrypt", self.recovery_key_arn, self.recovery_bucket))
        return policy(*[s for s in statements if s["Action"] != without])

    @staticmethod
    def _key_statement(action: str, key_arn: str, bucket: str) -> dict[str, Any]:
        return {
            "Effect": "Allow", "Action": action, "Resource": key_arn,
            "Condition": {
                "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                },
            },
        }

    def recovery_bucket_policy(self, *extra: dict[str, Any]) -> str:
        grant = {
            "Sid": "ReplicasFromTheVaultRole", "Effect": "Allow", "Principal": {"AWS": self.role_arn},
            "Action": list(DESTINATION_ACTIONS), "Resource": f"arn:aws:s3:::{self.recovery_bucket}/*",
        }
        return policy(grant, *extra)

    def recovery_key_policy(self, *, with_vault_grant: bool = True) -> str:
        statements: list[dict[str, Any]] = [{
            "Sid": "RecoveryAccountAdministers", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{RECOVERY_ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*",
        }]
        if with_vault_grant:
            statements.append({
                "Sid": "VaultSideEncryptsReplicas", "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam::{VAULT_ACCOUNT}:root", self.role_arn]},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
            })
        return policy(*statements)

    def rule(self, **changes: Any) -> dict[str, Any]:
        """Return the recovery rule (the method's step 6), with top-level keys replaced by `changes`."""
        rule: dict[str, Any] = {
            "ID": "recover-golden-copies",
            "Priority": 0,
            "Filter": {},
            "Status": "Enabled",
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
            "Destination": {
                "Bucket": f"arn:aws:s3:::{self.recovery_bucket}",
                "Account": RECOVERY_ACCOUNT,
                "StorageClass": "INTELLIGENT_TIERING",
                "AccessControlTranslation": {"Owner": "Destination"},
                "EncryptionConfiguration": {"ReplicaKmsKeyID": self.recovery_key_arn},
            },
            "DeleteMarkerReplication": {"Status": "Disabled"},
        }
        rule.update(changes)
        return {key: value for key, value in rule.items() if value is not None}

    def put_rules(self, *rules: dict[str, Any]) -> None:
        self.accounts.vault_s3.put_bucket_replication(
            Bucket=self.vault_bucket,
            ReplicationConfiguration={"Role": self.role_arn, "Rules": list(rules) or [self.rule()]},
        )

    def replicate(self, label: str, *, key: str = REPORT_KEY, role_arn: str | None = None) -> TaskResult:
        return replicate_task(
            VAULT_ACCOUNT, self.vault_bucket, key, self.versions.get(label, label), role_arn or self.role_arn
        )

    def recovery_version_ids(self, key: str = REPORT_KEY, bucket: str | None = None) -> list[str]:
        """Return the version ids of the key in the recovery bucket, newest first, as S3 lists them."""
        answer = self.accounts.recovery_s3.list_object_versions(
            Bucket=bucket or self.recovery_bucket, Prefix=key
        )
        entries = answer.get("Versions", []) + answer.get("DeleteMarkers", [])
        entries.sort(key=lambda entry: entry["LastModified"], reverse=True)
        return [entry["VersionId"] for entry in entries if entry["Key"] == key]

    def source_status(self, label: str, key: str = REPORT_KEY) -> str | None:
        head = self.accounts.vault_s3.head_object(Bucket=self.vault_bucket, Key=key, VersionId=self.versions[label])
        return head.get("ReplicationStatus")


def _stored(account: str, bucket: str, key: str, version_id: str) -> Any:
    """Return moto's stored version (the replication module works on these)."""
    from moto.s3.models import s3_backends

    versions = s3_backends[account]["aws"].buckets[bucket].keys.getlist(key)
    return next(v for v in versions if v.version_id == version_id)


def _age(world: World, key: str, label: str, days_ago: int, status: str | None = None) -> None:
    """Back-date a vault version and give it a replication status, as the vault's history did."""
    stored = _stored(VAULT_ACCOUNT, world.vault_bucket, key, world.versions[label])
    stored.last_modified = (datetime.now(timezone.utc) - timedelta(days=days_ago)).replace(tzinfo=None)
    stored.replication_status = status


def build_world(accounts: Accounts) -> World:
    """Create a correct recovery setup and a few vault versions; return its handles."""
    suffix = uuid.uuid4().hex[:10]
    role_name = f"batch-replication-{suffix}"
    role_arn = f"arn:aws:iam::{VAULT_ACCOUNT}:role/{role_name}"
    vault_key = accounts.vault_kms.create_key(Description="vault key")["KeyMetadata"]["Arn"]
    recovery_key = accounts.recovery_kms.create_key(Description="recovery key")["KeyMetadata"]["Arn"]
    world = World(accounts, f"vault-{suffix}", f"recovery-{suffix}", role_name, role_arn, vault_key, recovery_key)

    accounts.vault_iam.create_role(
        RoleName=role_name, AssumeRolePolicyDocument=trust_policy(BATCH_SERVICE, REPLICATION_SERVICE)
    )
    accounts.vault_iam.put_role_policy(RoleName=role_name, PolicyName="replication", PolicyDocument=world.role_policy())
    # The vault key keeps its default policy, which lets the account's IAM policies grant its use.
    accounts.vault_kms.put_key_policy(KeyId=vault_key, PolicyName="default", Policy=policy(
        {"Sid": "VaultAccountAdministers", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
    ))
    accounts.recovery_kms.put_key_policy(KeyId=recovery_key, PolicyName="default", Policy=world.recovery_key_policy())

    for s3, bucket, key in ((accounts.vault_s3, world.vault_bucket, vault_key),
                            (accounts.recovery_s3, world.recovery_bucket, recovery_key)):
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True,
        }]})
    accounts.recovery_s3.put_bucket_policy(Bucket=world.recovery_bucket, Policy=world.recovery_bucket_policy())
    world.put_rules()

    s3 = accounts.vault_s3
    world.versions["report-v1"] = s3.put_object(
        Bucket=world.vault_bucket, Key=REPORT_KEY, Body=b"first quarter, draft",
        ContentType="application/pdf", Metadata={"source-system": "erp"}, Tagging="team=finance&class=gold",
        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=RETAIN_UNTIL, ObjectLockLegalHoldStatus="ON",
    )["VersionId"]
    world.versions["report-v2"] = s3.put_object(
        Bucket=world.vault_bucket, Key=REPORT_KEY, Body=b"first quarter, final",
        ContentType="application/pdf", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=RETAIN_UNTIL + timedelta(days=400),
    )["VersionId"]
    world.versions["plain"] = s3.put_object(
        Bucket=world.vault_bucket, Key="plain.txt", Body=b"nothing special",
        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=RETAIN_UNTIL,
    )["VersionId"]
    world.versions["archived"] = s3.put_object(
        Bucket=world.vault_bucket, Key="cold.bin", Body=b"frozen", StorageClass="GLACIER",
    )["VersionId"]
    # v1 is an operator's upload (no status); v2 came from production (a replica).
    _age(world, REPORT_KEY, "report-v1", days_ago=40)
    _age(world, REPORT_KEY, "report-v2", days_ago=20, status="REPLICA")
    return world


@pytest.fixture
def world(accounts: Accounts) -> World:
    return build_world(accounts)


# --- the happy path ---------------------------------------------------------------------------


def test_replica_is_the_same_version_with_its_lock_state_tags_and_replica_key(world: World) -> None:
    result = world.replicate("report-v1")

    assert result == TaskResult(True, 200, "", "success")
    vault, recovery = world.accounts.vault_s3, world.accounts.recovery_s3
    version_id = world.versions["report-v1"]
    source = vault.head_object(Bucket=world.vault_bucket, Key=REPORT_KEY, VersionId=version_id)
    replica = recovery.head_object(Bucket=world.recovery_bucket, Key=REPORT_KEY, VersionId=version_id)
    assert replica["VersionId"] == version_id
    for field_name in ("ETag", "ContentLength", "ContentType", "Metadata", "LastModified",
                       "ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"):
        assert replica[field_name] == source[field_name], field_name
    assert replica["ObjectLockMode"] == "GOVERNANCE"
    assert replica["ObjectLockRetainUntilDate"] == RETAIN_UNTIL
    assert replica["ObjectLockLegalHoldStatus"] == "ON"
    assert replica["Metadata"] == {"source-system": "erp"}
    assert replica["StorageClass"] == "INTELLIGENT_TIERING"
    assert replica["ServerSideEncryption"] == "aws:kms"
    assert replica["SSEKMSKeyId"] == world.recovery_key_arn
    assert replica["BucketKeyEnabled"] is True
    assert replica["ReplicationStatus"] == "REPLICA"
    body = recovery.get_object(Bucket=world.recovery_bucket, Key=REPORT_KEY, VersionId=version_id)["Body"].read()
    assert body == b"first quarter, draft"
    tags = recovery.get_object_tagging(Bucket=world.recovery_bucket, Key=REPORT_KEY, VersionId=version_id)
    assert {t["Key"]: t["Value"] for t in tags["TagSet"]} == {"team": "finance", "class": "gold"}
    assert world.source_status("report-v1") == "COMPLETED"


def test_a_replica_in_the_vault_keeps_its_replica_status_once_copied(world: World) -> None:
    assert world.source_status("report-v2") == "REPLICA"

    assert world.replicate("report-v2").succeeded

    assert world.source_status("report-v2") == "REPLICA"
    replica = world.accounts.recovery_s3.head_object(
        Bucket=world.recovery_bucket, Key=REPORT_KEY, VersionId=world.versions["report-v2"]
    )
    assert replica["ReplicationStatus"] == "REPLICA"
    assert replica["ObjectLockMode"] == "COMPLIANCE"


def test_versions_replicated_newest_first_still_list_and_read_in_time_order(world: World) -> None:
    newer, older = world.versions["report-v2"], world.versions["report-v1"]

    assert world.replicate("report-v2").succeeded
    assert world.replicate("report-v1").succeeded

    assert world.recovery_version_ids() == [newer, older]
    latest = world.accounts.recovery_s3.get_object(Bucket=world.recovery_bucket, Key=REPORT_KEY)
    assert latest["VersionId"] == newer
    assert latest["Body"].read() == b"first quarter, final"


def test_a_second_run_succeeds_without_writing_the_replica_again(world: World) -> None:
    assert world.replicate("report-v1").succeeded
    replica = _stored(RECOVERY_ACCOUNT, world.recovery_bucket, REPORT_KEY, world.versions["report-v1"])

    again = world.replicate("report-v1")

    assert again == TaskResult(True, 200, "", "success")
    assert world.recovery_version_ids() == [world.versions["report-v1"]]
    assert _stored(RECOVERY_ACCOUNT, world.recovery_bucket, REPORT_KEY, world.versions["report-v1"]) is replica


def test_a_multipart_object_is_replicated_with_its_etag_parts_checksum_and_lock(world: World) -> None:
    s3, key, part = world.accounts.vault_s3, "large/ledger.parquet", 5 * 1024 * 1024
    upload = s3.create_multipart_upload(
        Bucket=world.vault_bucket, Key=key, ChecksumAlgorithm="SHA256", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=RETAIN_UNTIL, ObjectLockLegalHoldStatus="ON")["UploadId"]
    parts = [{"PartNumber": number, **{name: answer[name] for name in ("ETag", "ChecksumSHA256") if name in answer}}
             for number, body in enumerate((b"x" * part, b"y" * part, b"last part"), start=1)
             for answer in [s3.upload_part(Bucket=world.vault_bucket, Key=key, UploadId=upload, PartNumber=number,
                                           Body=body, ChecksumAlgorithm="SHA256")]]
    version = s3.complete_multipart_upload(Bucket=world.vault_bucket, Key=key, UploadId=upload,
                                           MultipartUpload={"Parts": parts})["VersionId"]
    world.versions["multipart"] = version

    assert world.replicate("multipart", key=key).succeeded

    def head(client: Any, bucket: str, **extra: Any) -> dict[str, Any]:
        return dict(client.head_object(Bucket=bucket, Key=key, VersionId=version, ChecksumMode="ENABLED", **extra))

    source, replica = head(s3, world.vault_bucket), head(world.accounts.recovery_s3, world.recovery_bucket)
    assert replica["ETag"] == source["ETag"] and source["ETag"].endswith('-3"')
    assert replica["ChecksumSHA256"] == source["ChecksumSHA256"]
    assert (replica["ObjectLockMode"], replica["ObjectLockRetainUntilDate"], replica["ObjectLockLegalHoldStatus"]) == (
        "COMPLIANCE", RETAIN_UNTIL, "ON")
    assert head(world.accounts.recovery_s3, world.recovery_bucket, PartNumber=1)["PartsCount"] == 3
    assert replica["ContentLength"] == source["ContentLength"] == 2 * part + len(b"last part")


def test_the_highest_priority_matching_rule_decides_the_storage_class(world: World) -> None:
    everything = world.rule(ID="everything", Priority=1, Destination={
        **world.rule()["Destination"], "StorageClass": "STANDARD_IA"})
    documents = world.rule(ID="documents", Priority=5, Filter={"Prefix": "docs/"}, Destination={
        **world.rule()["Destination"], "StorageClass": "GLACIER_IR"})
    world.put_rules(everything, documents)

    assert world.replicate("report-v1").succeeded
    assert world.replicate("plain", key="plain.txt").succeeded

    recovery = world.accounts.recovery_s3
    report = recovery.head_object(Bucket=world.recovery_bucket, Key=REPORT_KEY, VersionId=world.versions["report-v1"])
    plain = recovery.head_object(Bucket=world.recovery_bucket, Key="plain.txt", VersionId=world.versions["plain"])
    assert (report["StorageClass"], plain["StorageClass"]) == ("GLACIER_IR", "STANDARD_IA")


def test_a_delete_marker_is_replicated_when_the_rule_says_so(world: World) -> None:
    world.put_rules(world.rule(DeleteMarkerReplication={"Status": "Enabled"}))
    assert world.replicate("report-v1").succeeded
    marker = world.accounts.vault_s3.delete_object(Bucket=world.vault_bucket, Key=REPORT_KEY)["VersionId"]

    assert world.replicate(marker).succeeded

    assert world.recovery_version_ids()[0] == marker
    markers = world.accounts.recovery_s3.list_object_versions(Bucket=world.recovery_bucket, Prefix=REPORT_KEY)
    assert [m["VersionId"] for m in markers["DeleteMarkers"]] == [marker]


def test_the_normalised_configuration_types_every_rule(world: World) -> None:
    world.put_rules(
        world.rule(),
        world.rule(ID="tagged", Priority=3, Status="Disabled",
                   Filter={"And": {"Prefix": "docs/", "Tags": [{"Key": "team", "Value": "finance"}]}}),
    )

    config = replication_configuration(VAULT_ACCOUNT, world.vault_bucket)

    assert config is not None
    assert config["Role"] == world.role_arn
    first, second = config["Rule"]
    assert (first["Priority"], first["Filter"], first["Status"]) == (0, {}, "Enabled")
    assert first["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == world.recovery_key_arn
    assert second["Priority"] == 3
    assert second["Filter"] == {"And": {"Prefix": "docs/", "Tag": [{"Key": "team", "Value": "finance"}]}}
    assert replication_configuration(VAULT_ACCOUNT, "no-such-bucket-anywhere") is None


# --- failures: exactly one thing wrong each ---------------------------------------------------


def _drop(action: str) -> Callable[[World], None]:
    def change(world: World) -> None:
        world.accounts.vault_iam.put_role_policy(
            RoleName=world.role_name, PolicyName="replication", PolicyDocument=world.role_policy(without=action)
        )

    return change


def _no_replica_key_decrypt(world: World) -> None:
    document = json.loads(world.role_policy())
    document["Statement"] = [
        s for s in document["Statement"]
        if not (s["Action"] == "kms:Decrypt" and s["Resource"] == world.recovery_key_arn)
    ]
    world.accounts.vault_iam.put_role_policy(
        RoleName=world.role_name, PolicyName="replication", PolicyDocument=json.dumps(document)
    )


def _trust_only_replication(world: World) -> None:
    world.accounts.vault_iam.update_assume_role_policy(
        RoleName=world.role_name, PolicyDocument=trust_policy(REPLICATION_SERVICE)
    )


def _trust_only_batch_operations(world: World) -> None:
    world.accounts.vault_iam.update_assume_role_policy(
        RoleName=world.role_name, PolicyDocument=trust_policy(BATCH_SERVICE)
    )


def _disable_vault_key(world: World) -> None:
    world.accounts.vault_kms.disable_key(KeyId=world.vault_key_arn.rsplit("/", 1)[-1])


def _disable_recovery_key(world: World) -> None:
    key_id = world.recovery_key_arn.rsplit("/", 1)[-1]  # moto finds keys to delete by id only
    world.accounts.recovery_kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)


def _destination(world: World, bucket: str) -> None:
    world.put_rules(world.rule(Destination={**world.rule()["Destination"], "Bucket": f"arn:aws:s3:::{bucket}"}))


def _missing_destination(world: World) -> None:
    _destination(world, f"{world.recovery_bucket}-gone")


def _unversioned_destination(world: World) -> None:
    bucket = f"{world.recovery_bucket}-plain"
    world.accounts.recovery_s3.create_bucket(Bucket=bucket)
    _destination(world, bucket)


def _destination_without_object_lock(world: World) -> None:
    bucket = f"{world.recovery_bucket}-nolock"
    world.accounts.recovery_s3.create_bucket(Bucket=bucket)
    world.accounts.recovery_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    world.accounts.recovery_s3.put_bucket_policy(Bucket=bucket, Policy=world.recovery_bucket_policy())
    _destination(world, bucket)


def _no_recovery_bucket_policy(world: World) -> None:
    world.accounts.recovery_s3.delete_bucket_policy(Bucket=world.recovery_bucket)


def _recovery_key_without_vault_grant(world: World) -> None:
    world.accounts.recovery_kms.put_key_policy(
        KeyId=world.recovery_key_arn, PolicyName="default", Policy=world.recovery_key_policy(with_vault_grant=False)
    )


def _deny_in_recovery_bucket_policy(world: World) -> None:
    deny = {"Sid": "NoReplicasFromTheVault", "Effect": "Deny", "Principal": {"AWS": world.role_arn},
            "Action": "s3:ReplicateObject", "Resource": f"arn:aws:s3:::{world.recovery_bucket}/*"}
    world.accounts.recovery_s3.put_bucket_policy(
        Bucket=world.recovery_bucket, Policy=world.recovery_bucket_policy(deny))


def _replica_key(arn: str) -> Callable[[World], None]:
    def change(world: World) -> None:
        destination = {**world.rule()["Destination"], "EncryptionConfiguration": {"ReplicaKmsKeyID": arn}}
        world.put_rules(world.rule(Destination=destination))

    return change


def _no_replication_configuration(world: World) -> None:
    world.accounts.vault_s3.delete_bucket_replication(Bucket=world.vault_bucket)


def _rule_disabled(world: World) -> None:
    world.put_rules(world.rule(Status="Disabled"))


def _rule_without_sse_kms_objects(world: World) -> None:
    world.put_rules(world.rule(SourceSelectionCriteria=None))


def _delete_replication_role(world: World) -> None:
    iam = world.accounts.vault_iam
    other = f"{world.role_name}-job"
    iam.create_role(RoleName=other, AssumeRolePolicyDocument=trust_policy(BATCH_SERVICE))
    iam.put_role_policy(RoleName=other, PolicyName="replication", PolicyDocument=world.role_policy())
    iam.delete_role_policy(RoleName=world.role_name, PolicyName="replication")
    iam.delete_role(RoleName=world.role_name)
    world.role_arn = f"arn:aws:iam::{VAULT_ACCOUNT}:role/{other}"  # the job role from now on


def _nothing(world: World) -> None:
    """The setup stays correct; the manifest row itself is wrong."""


# (test id, change, manifest version label, error code, source status afterwards)
FAILURES: list[tuple[str, Callable[[World], None], str, str, str | None]] = [
    ("job role not trusted by Batch Operations", _trust_only_replication, "report-v1", "AssumeRoleNotPermitted", None),
    ("replication role not trusted by S3", _trust_only_batch_operations, "report-v1", "AssumeRoleNotPermitted",
     "FAILED"),
    ("replication role missing", _delete_replication_role, "report-v1", "AssumeRoleNotPermitted", "FAILED"),
    ("no s3:InitiateReplication", _drop("s3:InitiateReplication"), "report-v1", "InitiateReplicationNotPermitted",
     None),
    ("no s3:GetReplicationConfiguration", _drop("s3:GetReplicationConfiguration"), "report-v1",
     "SrcBucketReplicationConfigMissing", "FAILED"),
    ("no s3:GetObjectVersionForReplication", _drop("s3:GetObjectVersionForReplication"), "report-v1",
     "SrcGetObjectNotPermitted", "FAILED"),
    ("no s3:GetObjectRetention", _drop("s3:GetObjectRetention"), "report-v1", "SrcGetRetentionNotPermitted",
     "FAILED"),
    ("no s3:GetObjectLegalHold", _drop("s3:GetObjectLegalHold"), "report-v1", "SrcGetLegalHoldNotPermitted",
     "FAILED"),
    ("no s3:GetObjectVersionTagging", _drop("s3:GetObjectVersionTagging"), "report-v1", "SrcGetTaggingNotPermitted",
     "FAILED"),
    ("no kms:Decrypt on the vault key", _drop("kms:Decrypt"), "report-v1", "SrcGetObjectNotPermitted", "FAILED"),
    ("vault key disabled", _disable_vault_key, "report-v1", "SrcKmsKeyInvalidState", "FAILED"),
    ("recovery bucket missing", _missing_destination, "report-v1", "DstBucketNotFound", "FAILED"),
    ("recovery bucket unversioned", _unversioned_destination, "report-v1", "DstBucketUnversioned", "FAILED"),
    ("recovery bucket without Object Lock", _destination_without_object_lock, "report-v1",
     "DstBucketObjectLockConfigMissing", "FAILED"),
    ("no recovery bucket policy", _no_recovery_bucket_policy, "report-v1", "DstPutObjectNotPermitted", "FAILED"),
    ("no s3:ReplicateObject", _drop("s3:ReplicateObject"), "report-v1", "DstPutObjectNotPermitted", "FAILED"),
    ("no s3:ObjectOwnerOverrideToBucketOwner", _drop("s3:ObjectOwnerOverrideToBucketOwner"), "report-v1",
     "DstPutObjectNotPermitted", "FAILED"),
    ("no s3:ReplicateTags", _drop("s3:ReplicateTags"), "report-v1", "DstPutTaggingNotPermitted", "FAILED"),
    ("explicit deny in the recovery bucket policy", _deny_in_recovery_bucket_policy, "report-v1",
     "DstPutObjectNotPermitted", "FAILED"),
    ("recovery key policy without the vault side", _recovery_key_without_vault_grant, "report-v1",
     "DstPutObjectNotPermitted", "FAILED"),
    ("no kms:Encrypt on the recovery key", _drop("kms:Encrypt"), "report-v1", "DstPutObjectNotPermitted", "FAILED"),
    ("no kms:Decrypt on the recovery key for a Bucket Key replica", _no_replica_key_decrypt, "report-v1",
     "DstPutObjectNotPermitted", "FAILED"),
    ("replica key does not exist",
     _replica_key(f"arn:aws:kms:{REGION}:{RECOVERY_ACCOUNT}:key/00000000-0000-0000-0000-000000000000"),
     "report-v1", "DstKmsKeyNotFound", "FAILED"),
    ("replica key pending deletion", _disable_recovery_key, "report-v1", "DstKmsKeyInvalidState", "FAILED"),
    ("no replication configuration", _no_replication_configuration, "report-v1",
     "SrcBucketReplicationConfigMissing", None),
    ("archived version", _nothing, "archived", "SrcObjectNotEligible", None),
    ("rule disabled", _rule_disabled, "report-v1", "SrcObjectNotEligible", None),
    ("SSE-KMS object, rule without SseKmsEncryptedObjects", _rule_without_sse_kms_objects, "report-v1",
     "SrcObjectNotEligible", None),
    ("unknown version id", _nothing, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "SrcVersionNotFound", None),
]


@pytest.mark.parametrize(
    ("change", "label", "code", "status_after"),
    [pytest.param(*row[1:], id=row[0]) for row in FAILURES],
)
def test_one_wrong_thing_fails_the_task_with_awss_code_and_writes_nothing(
    world: World, change: Callable[[World], None], label: str, code: str, status_after: str | None
) -> None:
    change(world)

    result = world.replicate(label, key="cold.bin" if label == "archived" else REPORT_KEY)

    assert (result.succeeded, result.error_code, result.http_status) == (False, code, 500)
    assert result.message
    assert world.recovery_version_ids() == []
    if label in world.versions and label != "archived":
        assert world.source_status(label) == status_after


def test_a_replica_in_the_vault_shows_failed_until_a_retry_succeeds(world: World) -> None:
    _no_recovery_bucket_policy(world)
    assert world.replicate("report-v2").error_code == "DstPutObjectNotPermitted"
    assert world.source_status("report-v2") == "FAILED"
    world.accounts.recovery_s3.put_bucket_policy(Bucket=world.recovery_bucket, Policy=world.recovery_bucket_policy())

    assert world.replicate("report-v2").succeeded

    assert world.source_status("report-v2") == "REPLICA"


@pytest.mark.parametrize(("label", "status_after_retry"), [("report-v1", "COMPLETED"), ("report-v2", "REPLICA")])
def test_a_task_failed_by_its_caller_shows_failed_then_settles_on_retry(
    world: World, label: str, status_after_retry: str
) -> None:
    mark_source_failed(_stored(VAULT_ACCOUNT, world.vault_bucket, REPORT_KEY, world.versions[label]))
    assert world.source_status(label) == "FAILED"

    assert world.replicate(label).succeeded

    assert world.source_status(label) == status_after_retry


@pytest.mark.parametrize("version_id", ["", "\\N"])
def test_a_manifest_row_without_version_id_is_an_invalid_version(world: World, version_id: str) -> None:
    result = world.replicate(version_id)

    assert result == TaskResult(False, 500, "SrcObjectNotFound", "Object versionID is invalid")


def test_the_observed_message_for_an_ineligible_object(world: World) -> None:
    assert world.replicate("archived", key="cold.bin").message == "Object is not eligible for replication"


@pytest.mark.parametrize(
    ("bucket", "key", "code"),
    [("no-such-vault-bucket-anywhere", REPORT_KEY, "SrcBucketNotFound"), (None, "nobody/put/this", "SrcKeyNotFound")],
)
def test_a_missing_source_fails_as_not_found(world: World, bucket: str | None, key: str, code: str) -> None:
    result = replicate_task(
        VAULT_ACCOUNT, bucket or world.vault_bucket, key, world.versions["report-v1"], world.role_arn
    )

    assert (result.succeeded, result.error_code) == (False, code)


def test_a_delete_marker_without_replicate_delete_fails(world: World) -> None:
    world.put_rules(world.rule(DeleteMarkerReplication={"Status": "Enabled"}))
    _drop("s3:ReplicateDelete")(world)
    marker = world.accounts.vault_s3.delete_object(Bucket=world.vault_bucket, Key=REPORT_KEY)["VersionId"]

    assert world.replicate(marker).error_code == "DstDelObjNotPermitted"
    assert world.recovery_version_ids() == []


def test_a_version_deleted_at_the_destination_is_not_replicated_again(world: World) -> None:
    assert world.replicate("plain", key="plain.txt").succeeded
    world.accounts.recovery_s3.delete_object(
        Bucket=world.recovery_bucket, Key="plain.txt", VersionId=world.versions["plain"], BypassGovernanceRetention=True
    )

    result = world.replicate("plain", key="plain.txt")

    assert (result.succeeded, result.error_code) == (False, "DstObjectHardDeleted")
    assert world.recovery_version_ids("plain.txt") == []
    assert world.source_status("plain", key="plain.txt") == "COMPLETED"


def test_a_replica_deleted_at_the_destination_leaves_the_source_and_its_bytes_alone(world: World) -> None:
    assert world.replicate("plain", key="plain.txt").succeeded
    world.accounts.recovery_s3.delete_object(
        Bucket=world.recovery_bucket, Key="plain.txt", VersionId=world.versions["plain"], BypassGovernanceRetention=True
    )

    source = world.accounts.vault_s3.get_object(Bucket=world.vault_bucket, Key="plain.txt",
                                                VersionId=world.versions["plain"])

    assert source["Body"].read() == b"nothing special"


# --- a job's tasks: what one task read serves the next only while nothing changed --------------

# One change per kind of state a job's tasks share: the job role's and the replication role's
# identity policy, a trust policy, a key's state, a bucket policy, a key policy, the destination
# bucket, the replication configuration.
CHANGES_SEEN_BY_THE_NEXT_TASK = [row for row in FAILURES if row[0] in {
    "no s3:InitiateReplication", "no s3:ReplicateObject", "replication role not trusted by S3",
    "vault key disabled", "no recovery bucket policy", "recovery key policy without the vault side",
    "recovery bucket missing", "no replication configuration",
}]


def _twin_of_report_v1(world: World, key: str) -> str:
    """Put a version like report-v1 (tags, hold, retention, the vault key) under another key; return its id."""
    return str(world.accounts.vault_s3.put_object(
        Bucket=world.vault_bucket, Key=key, Body=b"second quarter", Metadata={"source-system": "erp"},
        Tagging="team=finance&class=gold", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=RETAIN_UNTIL,
        ObjectLockLegalHoldStatus="ON",
    )["VersionId"])


@pytest.mark.parametrize(
    ("change", "label", "code", "status_after"),
    [pytest.param(*row[1:], id=row[0]) for row in CHANGES_SEEN_BY_THE_NEXT_TASK],
)
def test_a_change_made_while_a_job_runs_decides_its_very_next_task(
    world: World, change: Callable[[World], None], label: str, code: str, status_after: str | None
) -> None:
    replicate = job_replicator()
    twin = _twin_of_report_v1(world, "docs/twin.pdf")
    assert replicate(VAULT_ACCOUNT, world.vault_bucket, "docs/twin.pdf", twin, world.role_arn).succeeded
    change(world)

    result = replicate(VAULT_ACCOUNT, world.vault_bucket, REPORT_KEY, world.versions[label], world.role_arn)

    assert (result.succeeded, result.error_code, result.http_status) == (False, code, 500)
    assert world.recovery_version_ids() == []
    assert world.source_status(label) == status_after


def test_a_job_replicates_as_single_tasks_do_and_a_fix_decides_its_next_task(world: World) -> None:
    replicate = job_replicator()
    versions = {key: _twin_of_report_v1(world, key) for key in ("docs/a.pdf", "docs/b.pdf", "docs/c.pdf")}
    assert replicate(VAULT_ACCOUNT, world.vault_bucket, "docs/a.pdf", versions["docs/a.pdf"], world.role_arn).succeeded
    _no_recovery_bucket_policy(world)
    failed = replicate(VAULT_ACCOUNT, world.vault_bucket, "docs/b.pdf", versions["docs/b.pdf"], world.role_arn)
    assert failed.error_code == "DstPutObjectNotPermitted"
    world.accounts.recovery_s3.put_bucket_policy(Bucket=world.recovery_bucket, Policy=world.recovery_bucket_policy())

    for key in ("docs/b.pdf", "docs/c.pdf"):
        assert replicate(VAULT_ACCOUNT, world.vault_bucket, key, versions[key], world.role_arn).succeeded

    for key, version_id in versions.items():
        replica = world.accounts.recovery_s3.head_object(Bucket=world.recovery_bucket, Key=key, VersionId=version_id)
        source = world.accounts.vault_s3.head_object(Bucket=world.vault_bucket, Key=key, VersionId=version_id)
        for name in ("ETag", "ContentLength", "Metadata", "LastModified", "ObjectLockMode",
                     "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"):
            assert replica[name] == source[name], (key, name)
        assert (replica["ReplicationStatus"], source["ReplicationStatus"]) == ("REPLICA", "COMPLETED")
        assert replica["SSEKMSKeyId"] == world.recovery_key_arn


# --- eligibility ------------------------------------------------------------------------------


@pytest.fixture
def eligibility(world: World) -> tuple[World, dict[str, Any]]:
    """The world plus moto's stored versions of every kind the rules tell apart."""
    s3 = world.accounts.vault_s3
    bucket = world.vault_bucket

    def put(key: str, **extra: Any) -> Any:
        version_id = s3.put_object(Bucket=bucket, Key=key, Body=b"x", **extra)["VersionId"]
        return _stored(VAULT_ACCOUNT, bucket, key, version_id)

    put("logs/old.log", ServerSideEncryption="AES256")
    marker_id = s3.delete_object(Bucket=bucket, Key="logs/old.log")["VersionId"]
    versions = {
        "logs kms": put("logs/app.log"),
        "logs sse-s3": put("logs/s3.log", ServerSideEncryption="AES256"),
        "data tagged": put("data/a.csv", ServerSideEncryption="AES256", Tagging="team=finance&tier=gold"),
        "logs tagged": put("logs/b.log", ServerSideEncryption="AES256", Tagging="team=finance"),
        "logs glacier": put("logs/cold.log", ServerSideEncryption="AES256", StorageClass="DEEP_ARCHIVE"),
        "logs marker": _stored(VAULT_ACCOUNT, bucket, "logs/old.log", marker_id),
    }
    return world, versions


LOGS = {"Prefix": "logs/"}
FINANCE = {"Tag": {"Key": "team", "Value": "finance"}}
FINANCE_GOLD_DATA = {"And": {"Prefix": "data/", "Tags": [{"Key": "team", "Value": "finance"},
                                                          {"Key": "tier", "Value": "gold"}]}}
FINANCE_GOLD_LOGS = {"And": {"Prefix": "logs/", "Tags": [{"Key": "team", "Value": "finance"},
                                                          {"Key": "tier", "Value": "gold"}]}}
MARKERS_ON = {"DeleteMarkerReplication": {"Status": "Enabled"}}


@pytest.mark.parametrize(
    ("rule_changes", "eligible"),
    [
        pytest.param({"Filter": LOGS}, {"logs kms", "logs sse-s3", "logs tagged"}, id="prefix"),
        pytest.param({"Filter": FINANCE}, {"data tagged", "logs tagged"}, id="tag"),
        pytest.param({"Filter": FINANCE_GOLD_DATA}, {"data tagged"}, id="and, all tags present"),
        pytest.param({"Filter": FINANCE_GOLD_LOGS}, set(), id="and, a tag missing"),
        pytest.param({"Filter": LOGS, **MARKERS_ON}, {"logs kms", "logs sse-s3", "logs tagged", "logs marker"},
                     id="delete markers enabled"),
        pytest.param({"Filter": FINANCE, **MARKERS_ON}, {"data tagged", "logs tagged"},
                     id="delete markers never match a tag filter"),
        pytest.param({"Filter": LOGS, "SourceSelectionCriteria": None}, {"logs sse-s3", "logs tagged"},
                     id="sse-kms objects only when opted in"),
        pytest.param({"Status": "Disabled"}, set(), id="disabled rule"),
    ],
)
def test_eligibility_follows_the_rule(
    eligibility: tuple[World, dict[str, Any]], rule_changes: dict[str, Any], eligible: set[str]
) -> None:
    world, versions = eligibility
    world.put_rules(world.rule(**rule_changes))

    found = {label for label, v in versions.items() if eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, v)}

    assert found == eligible


@pytest.mark.parametrize(("markers_priority", "marker_eligible"), [(9, True), (1, False)])
def test_the_highest_priority_matching_rule_decides_for_delete_markers(
    eligibility: tuple[World, dict[str, Any]], markers_priority: int, marker_eligible: bool
) -> None:
    world, versions = eligibility
    world.put_rules(
        world.rule(ID="logs-with-markers", Priority=markers_priority, Filter=LOGS, **MARKERS_ON),
        world.rule(ID="everything-without-markers", Priority=5),
    )

    assert eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, versions["logs marker"]) is marker_eligible
    assert eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, versions["logs kms"]) is True


def test_a_legacy_prefix_rule_replicates_delete_markers(eligibility: tuple[World, dict[str, Any]]) -> None:
    world, versions = eligibility
    legacy = {"ID": "legacy", "Prefix": "logs/", "Status": "Enabled",
              "Destination": {"Bucket": f"arn:aws:s3:::{world.recovery_bucket}"}}
    world.put_rules(legacy)

    assert eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, versions["logs marker"]) is True
    assert eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, versions["data tagged"]) is False


def test_nothing_is_eligible_without_a_configuration(eligibility: tuple[World, dict[str, Any]]) -> None:
    world, versions = eligibility
    world.accounts.vault_s3.delete_bucket_replication(Bucket=world.vault_bucket)

    assert not any(eligible_for_replication(VAULT_ACCOUNT, world.vault_bucket, v) for v in versions.values())
