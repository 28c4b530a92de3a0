"""Idempotent `ensure_*` steps: each compares what exists with what the run wants and says what it did.

Outcomes:
    created    the resource did not exist; the run created and tagged it
    unchanged  it exists as wanted; nothing was changed
    updated    it exists, this run owns it (or owns the statements in it), and it was brought back
               to what is wanted; `difference` says what changed
    drift      it exists, differs, and the run must not change it (someone else's resource);
               `difference` says how; the phase stops on it

Ownership: a resource belongs to the run when the ledger recorded its creation, or when it carries
the tag RunbookRunId=<run_id>. Configurations the run changes on resources it does not own (the
vault key policy, the vault bucket's replication and notification settings) are captured in the
ledger before the first change, so cleanup can put them back.

Planning: on a context that carries a Plan (`runbook_lib.planning`), each step reads and compares
exactly as in a run, and where it would create or change something it records the call and the
document in the plan instead (`if ctx.plan is not None: ctx.plan.intend(...) else: <the call>`).
Its outcome is the one the run would report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast

from botocore.exceptions import ClientError

from runbook_lib import aws_facts, policies
from runbook_lib.accounts import error_code, without_metadata
from runbook_lib.context import RunContext
from runbook_lib.errors import DriftError, ProvisionError
from runbook_lib.planning import known_after

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import TargetTypeDef
    from mypy_boto3_s3.type_defs import NotificationConfigurationTypeDef

__all__ = [
    "Outcome",
    "current_replication",
    "documents",
    "ensure_batch_policy",
    "ensure_batch_role",
    "ensure_job_status_rule",
    "ensure_notification_topic",
    "ensure_recovery_bucket",
    "ensure_recovery_bucket_policy",
    "ensure_recovery_key",
    "ensure_recovery_key_grants",
    "ensure_replication_rule",
    "ensure_report_bucket",
    "ensure_vault_eventbridge",
    "ensure_vault_key_grants",
    "put_naming_new_principal",
    "raise_on_drift",
    "replication_document",
    "replication_matches",
]

RUN_TAG = aws_facts.RUN_ID_TAG


@dataclass(frozen=True)
class Outcome:
    """What an ensure step found or did to one resource or setting."""

    resource: str
    identifier: str
    status: str
    difference: Any = None
    note: str = ""

    def as_row(self) -> dict[str, Any]:
        """Return the outcome as a table row (difference rendered as compact JSON)."""
        row = asdict(self)
        if self.difference is not None:
            row["difference"] = json.dumps(self.difference, default=str, sort_keys=True)
        return row


def raise_on_drift(outcomes: list[Outcome]) -> None:
    """Raise DriftError naming every drifted resource, so the phase stops before going on."""
    drifted = [o for o in outcomes if o.status == "drift"]
    if drifted:
        lines = "; ".join(f"{o.resource} {o.identifier}: {o.note or o.difference}" for o in drifted)
        raise DriftError(
            f"{len(drifted)} resource(s) exist but differ from what the run needs and are not the "
            f"run's to change: {lines}", difference=[o.difference for o in drifted]
        )



def _diff(current: Any, wanted: Any) -> dict[str, Any]:
    return {"found": current, "wanted": wanted}


def _parsed(document: Any) -> Any:
    return json.loads(document) if isinstance(document, str) else document


def _canonical(document: Any) -> Any:
    """Return a document in a comparable form (keys and lists sorted)."""
    if isinstance(document, dict):
        return {k: _canonical(v) for k, v in sorted(document.items())}
    if isinstance(document, list):
        items = [_canonical(v) for v in document]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return document


def _same_policy(a: Any, b: Any) -> bool:
    def widen(doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: widen(v if not isinstance(v, str) or k not in _LISTY else [v]) for k, v in doc.items()}
        if isinstance(doc, list):
            return [widen(v) for v in doc]
        return doc

    return bool(_canonical(widen(_parsed(a))) == _canonical(widen(_parsed(b))))


_LISTY = {"Action", "NotAction", "Resource", "NotResource", "AWS", "Service"}


class _Tag(TypedDict):
    """One tag as IAM, SNS, EventBridge and S3 take it."""

    Key: str
    Value: str


def _tags(tags: dict[str, str]) -> list[_Tag]:
    """Return tags as the list of Key/Value pairs AWS APIs take, in a stable order."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


# ------------------------------------------------------------------------------ recovery key


def ensure_recovery_key(ctx: RunContext) -> Outcome:
    """Return the recovery KMS key's outcome: a symmetric customer-managed key the vault account may use."""
    kms = ctx.recovery("kms")
    params = ctx.params
    alias = params.recovery.kms_key_alias
    base = policies.recovery_key_policy(
        recovery_account_id=params.recovery.account_id, partition=aws_facts.partition_of(params.recovery_region)
    )
    wanted = base
    key_id = _alias_target(kms, alias)
    if key_id is None:
        arn = _create_recovery_key(ctx, kms, wanted)
        ctx.ledger.record_created("kms_key", arn, alias=alias, account=params.recovery.account_id)
        ctx.ledger.set_resource("recovery_key_arn", arn)
        return Outcome("recovery KMS key", arn, "created", note=f"alias {alias}")
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    arn = metadata["Arn"]
    ctx.ledger.set_resource("recovery_key_arn", arn)
    owned = ctx.ledger.was_created("kms_key", arn) or _kms_tagged(kms, key_id, params.run_id)
    problems = {}
    symmetric = metadata.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
    if not symmetric or metadata.get("KeyUsage") != "ENCRYPT_DECRYPT":
        problems["key"] = _diff({"KeySpec": metadata.get("KeySpec"), "KeyUsage": metadata.get("KeyUsage")},
                                {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"})
    if metadata.get("KeyState") != "Enabled":
        problems["state"] = _diff(metadata.get("KeyState"), "Enabled")
    current = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    # Statements runs added in phase 03 (this one's and others') belong on the key; everything
    # else must be what the run created it with.
    added_by_runs = [s for s in policies.statements_of(current) if policies.sid_run_id(s.get("Sid"))]
    wanted = _merge_run_statements(base, added_by_runs)
    policy_differs = not _same_policy(current, wanted)
    if not owned:
        if problems or policy_differs:
            if policy_differs:
                problems["policy"] = _diff(current, wanted)
            return Outcome("recovery KMS key", arn, "drift", problems,
                           note=f"alias {alias} points at a key this run did not create; "
                                "choose another recovery.kms_key_alias")
        return Outcome("recovery KMS key", arn, "unchanged", note="existing key, not created by this run")
    if problems:
        return Outcome("recovery KMS key", arn, "drift", problems,
                       note="the key is not usable; enable it or choose another alias")
    if policy_differs:
        if ctx.plan is not None:
            ctx.plan.intend("recovery", "kms", "PutKeyPolicy", arn, wanted, found=current)
        else:
            kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policies.to_json(wanted))
        return Outcome("recovery KMS key", arn, "updated", {"policy": _diff(current, wanted)})
    return Outcome("recovery KMS key", arn, "unchanged")


def _create_recovery_key(ctx: RunContext, kms: Any, policy: dict[str, Any]) -> str:
    """Return the ARN of the recovery key created with its alias (planning: the ARN it will have, id unknown)."""
    params = ctx.params
    alias = params.recovery.kms_key_alias
    if ctx.plan is not None:
        # KMS chooses the key id; the plan names the key by its alias until phase 01 creates it.
        arn = aws_facts.kms_key_arn(params.recovery_region, params.recovery.account_id, known_after("01"))
        ctx.plan.intend("recovery", "kms", "CreateKey", arn, policy, creates=True)
        ctx.plan.intend("recovery", "kms", "CreateAlias", alias, {"AliasName": alias, "TargetKeyId": arn})
        return arn
    created = kms.create_key(
        Description=f"Recovery of {params.vault.bucket} into {params.recovery.bucket} (run {params.run_id})",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
        Policy=policies.to_json(policy),
        Tags=[{"TagKey": k, "TagValue": v} for k, v in sorted(ctx.tags.items())],
    )["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=created["KeyId"])
    return str(created["Arn"])


def _merge_run_statements(base: dict[str, Any], statements: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the base policy with run-scoped statements appended, each under its own run."""
    merged = base
    for statement in statements:
        run_id = policies.sid_run_id(statement.get("Sid"))
        if run_id is not None:
            merged = policies.merge_statements(merged, [statement], run_id=run_id)
    return merged


def _alias_target(kms: Any, alias: str) -> str | None:
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"])
    except ClientError as error:
        if error_code(error) == "NotFoundException":
            return None
        raise


def _kms_tagged(kms: Any, key_id: str, run_id: str) -> bool:
    tags = kms.list_resource_tags(KeyId=key_id).get("Tags", [])
    return any(t["TagKey"] == RUN_TAG and t["TagValue"] == run_id for t in tags)


# ----------------------------------------------------------------------------------- buckets


def _bucket_owned(ctx: RunContext, s3: Any, bucket: str) -> bool:
    if ctx.ledger.was_created("s3_bucket", bucket):
        return True
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
    except ClientError:
        return False
    return any(t["Key"] == RUN_TAG and t["Value"] == ctx.params.run_id for t in tags)


def _bucket_exists(s3: Any, bucket: str) -> bool:
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    return bucket in names


def _create_bucket(
    ctx: RunContext, s3: Any, side: str, bucket: str, region: str, account: str, object_lock: bool,
) -> None:
    arguments: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if object_lock:
        arguments["ObjectLockEnabledForBucket"] = True
    if ctx.plan is not None:
        ctx.plan.intend(side, "s3", "CreateBucket", bucket, {k: v for k, v in arguments.items() if k != "Bucket"},
                        creates=True)
        ctx.plan.intend(side, "s3", "PutBucketTagging", bucket, {"TagSet": _tags(ctx.tags)})
        ctx.ledger.record_created("s3_bucket", bucket, account=account, region=region)
        return
    try:
        s3.create_bucket(**arguments)
    except ClientError as error:
        if error_code(error) in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise ProvisionError(
                f"bucket name {bucket!r} is taken by another account; choose another name in the parameters"
            ) from error
        raise
    ctx.ledger.record_created("s3_bucket", bucket, account=account, region=region)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tags(ctx.tags)})


def _setting(s3: Any, getter: str, bucket: str, missing_codes: tuple[str, ...], pick: Any) -> Any:
    try:
        return pick(getattr(s3, getter)(Bucket=bucket))
    except ClientError as error:
        if error_code(error) in missing_codes:
            return None
        raise


def _bucket_settings(s3: Any, bucket: str) -> dict[str, Any]:
    """Return the settings of a bucket the runbook cares about, in a comparable form."""
    encryption = _setting(
        s3, "get_bucket_encryption", bucket, ("ServerSideEncryptionConfigurationNotFoundError",),
        lambda r: r["ServerSideEncryptionConfiguration"]["Rules"][0],
    )
    return {
        "ownership": _setting(s3, "get_bucket_ownership_controls", bucket, ("OwnershipControlsNotFoundError",),
                              lambda r: r["OwnershipControls"]["Rules"][0]["ObjectOwnership"]),
        "public_access_block": _setting(s3, "get_public_access_block", bucket,
                                       ("NoSuchPublicAccessBlockConfiguration",),
                                       lambda r: r["PublicAccessBlockConfiguration"]),
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled"),
        "encryption": None if encryption is None else {
            "algorithm": encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "key": encryption["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID"),
            "bucket_key": bool(encryption.get("BucketKeyEnabled", False)),
        },
        "object_lock": _setting(s3, "get_object_lock_configuration", bucket,
                                ("ObjectLockConfigurationNotFoundError",),
                                lambda r: r["ObjectLockConfiguration"].get("ObjectLockEnabled")),
    }


_BLOCK_ALL = {
    "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
}


def _new_bucket_settings(wanted: dict[str, Any]) -> dict[str, Any]:
    """Return the settings a bucket has once `_create_bucket` made it: those given at creation, versioning off.

    What else a new bucket starts with differs between AWS and the embedded backend (default
    encryption, public access blocks), so a plan counts those settings as still to be put.
    """
    return {"ownership": "BucketOwnerEnforced", "public_access_block": None, "versioning": "Disabled",
            "encryption": None, "object_lock": wanted.get("object_lock")}


def _setting_request(name: str, wanted: Any) -> tuple[str, dict[str, Any]]:
    """Return the S3 operation that puts one bucket setting, and its arguments besides Bucket."""
    if name == "ownership":
        return "PutBucketOwnershipControls", {"OwnershipControls": {"Rules": [{"ObjectOwnership": wanted}]}}
    if name == "public_access_block":
        return "PutPublicAccessBlock", {"PublicAccessBlockConfiguration": wanted}
    if name == "versioning":
        # Versioning, once on, can only be suspended: that is what "off" means from then on.
        status = "Enabled" if wanted == "Enabled" else "Suspended"
        return "PutBucketVersioning", {"VersioningConfiguration": {"Status": status}}
    if name == "encryption":
        default: dict[str, Any] = {"SSEAlgorithm": wanted["algorithm"]}
        if wanted["key"]:
            default["KMSMasterKeyID"] = wanted["key"]
        return "PutBucketEncryption", {"ServerSideEncryptionConfiguration": {"Rules": [
            {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": wanted["bucket_key"]}]}}
    raise ValueError(f"no bucket setting named {name!r}")


def _apply_setting(ctx: RunContext, s3: Any, bucket: str, side: str, name: str, wanted: Any) -> None:
    if name == "object_lock":
        raise ProvisionError(
            f"bucket {bucket} exists without Object Lock; replicas of locked versions need it. "
            "Object Lock can only be set at creation here: remove the bucket or choose another recovery.bucket"
        )
    operation, arguments = _setting_request(name, wanted)
    if ctx.plan is not None:
        ctx.plan.intend(side, "s3", operation, bucket, arguments)
        return
    put = {"PutBucketOwnershipControls": s3.put_bucket_ownership_controls,
           "PutPublicAccessBlock": s3.put_public_access_block, "PutBucketVersioning": s3.put_bucket_versioning,
           "PutBucketEncryption": s3.put_bucket_encryption}[operation]
    put(Bucket=bucket, **arguments)


def _matches(name: str, found: Any, wanted: Any) -> bool:
    """Return whether a bucket setting is as wanted; suspended versioning counts as versioning off."""
    if name == "versioning" and wanted == "Disabled":
        return found in ("Disabled", "Suspended")
    return bool(found == wanted)


def _ensure_bucket(
    ctx: RunContext, s3: Any, side: str, label: str, bucket: str, region: str, account: str, wanted: dict[str, Any],
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    if not _bucket_exists(s3, bucket):
        _create_bucket(ctx, s3, side, bucket, region, account, object_lock=wanted.get("object_lock") == "Enabled")
        outcomes.append(Outcome(label, bucket, "created", note=f"account {account}, {region}"))
        fresh = True
    else:
        fresh = False
    owned = _bucket_owned(ctx, s3, bucket)
    if owned and not fresh:
        outcomes.append(Outcome(label, bucket, "unchanged", note="exists, created by this run"))
    if not owned:
        found = _bucket_settings(s3, bucket)
        differs = {k: _diff(found[k], v) for k, v in wanted.items() if not _matches(k, found.get(k), v)}
        status = "drift" if differs else "unchanged"
        return [Outcome(label, bucket, status, differs or None,
                        note="exists and was not created by this run; choose another name" if differs else
                        "exists, not created by this run, and matches")]
    # A bucket this plan would create cannot be read yet: it has what its creation gives it.
    found = _new_bucket_settings(wanted) if fresh and ctx.plan is not None else _bucket_settings(s3, bucket)
    for name, value in wanted.items():
        if _matches(name, found.get(name), value):
            if not fresh:
                outcomes.append(Outcome(f"{label} {name}", bucket, "unchanged"))
            continue
        _apply_setting(ctx, s3, bucket, side, name, value)
        status = "created" if fresh else "updated"
        outcomes.append(Outcome(f"{label} {name}", bucket, status, None if fresh else _diff(found.get(name), value)))
    return outcomes


def ensure_recovery_bucket(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of the recovery bucket and each of its settings (seed step 1a)."""
    params = ctx.params
    key_arn = ctx.ledger.resource("recovery_key_arn", "01_recovery_bucket (recovery KMS key)")
    wanted = {
        "ownership": "BucketOwnerEnforced",
        "public_access_block": _BLOCK_ALL,
        "versioning": "Enabled",
        "encryption": {"algorithm": "aws:kms", "key": key_arn, "bucket_key": True},
        "object_lock": "Enabled",
    }
    return _ensure_bucket(ctx, ctx.recovery("s3"), "recovery", "recovery bucket", params.recovery.bucket,
                          params.recovery_region, params.recovery.account_id, wanted)


def ensure_report_bucket(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of the report bucket (manifests and completion reports, seed step 1b)."""
    params = ctx.params
    wanted = {
        "ownership": "BucketOwnerEnforced",
        "public_access_block": _BLOCK_ALL,
        "versioning": "Disabled",
        "encryption": {"algorithm": "AES256", "key": None, "bucket_key": False},
        "object_lock": None,
    }
    return _ensure_bucket(ctx, ctx.vault("s3"), "vault", "report bucket", params.report_bucket,
                          params.region, params.vault.account_id, wanted)


# --------------------------------------------------------------------------------- IAM


def _role_policy_document(ctx: RunContext) -> dict[str, Any]:
    params = ctx.params
    return policies.batch_role_policy(
        vault_bucket=params.vault.bucket, recovery_bucket=params.recovery.bucket,
        report_bucket=params.report_bucket, vault_key_arn=params.vault.kms_key_arn,
        recovery_key_arn=ctx.ledger.resource("recovery_key_arn", "01_recovery_bucket"),
        region=params.region, recovery_region=params.recovery_region,
    )


def ensure_batch_policy(ctx: RunContext) -> Outcome:
    """Return the outcome of the Batch Replication role's managed policy (seed step 2)."""
    iam = ctx.vault("iam")
    params = ctx.params
    arn = params.batch_policy_arn
    wanted = _role_policy_document(ctx)
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise
        if ctx.plan is not None:
            ctx.plan.intend("vault", "iam", "CreatePolicy", arn, wanted, creates=True)
        else:
            iam.create_policy(
                PolicyName=params.batch_policy_name, PolicyDocument=policies.to_json(wanted),
                Description="S3 Batch Replication of the vault into the recovery account",
                Tags=_tags(ctx.tags),
            )
        ctx.ledger.record_created("iam_policy", arn, account=params.vault.account_id)
        return Outcome("IAM policy", arn, "created")
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    current = version["Document"]
    if isinstance(current, str):
        from urllib.parse import unquote

        current = json.loads(unquote(current))
    if _same_policy(current, wanted):
        return Outcome("IAM policy", arn, "unchanged")
    owned = ctx.ledger.was_created("iam_policy", arn) or any(
        t["Key"] == RUN_TAG and t["Value"] == params.run_id for t in policy.get("Tags", [])
    )
    if not owned:
        return Outcome("IAM policy", arn, "drift", _diff(current, wanted),
                       note="a policy of that name exists and was not created by this run; set batch_policy_name")
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= 5:
        oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        if ctx.plan is not None:
            ctx.plan.intend("vault", "iam", "DeletePolicyVersion", arn, {"VersionId": oldest["VersionId"]})
        else:
            iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
    if ctx.plan is not None:
        ctx.plan.intend("vault", "iam", "CreatePolicyVersion", arn, wanted, found=current)
    else:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=policies.to_json(wanted), SetAsDefault=True)
    return Outcome("IAM policy", arn, "updated", _diff(current, wanted))


def ensure_batch_role(ctx: RunContext) -> Outcome:
    """Return the outcome of the Batch Replication role: trust policy and the attached policy (seed step 3)."""
    iam = ctx.vault("iam")
    params = ctx.params
    trust = _trust_policy_document(ctx)
    try:
        role = iam.get_role(RoleName=params.batch_role_name)["Role"]
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise
        if ctx.plan is not None:
            created_arn = params.batch_role_arn
            ctx.plan.intend("vault", "iam", "CreateRole", created_arn, trust, creates=True)
            ctx.plan.intend("vault", "iam", "AttachRolePolicy", created_arn, {"PolicyArn": params.batch_policy_arn})
        else:
            created_arn = iam.create_role(
                RoleName=params.batch_role_name, AssumeRolePolicyDocument=policies.to_json(trust),
                Description="Runs the S3 Batch Replication job that recovers the vault", Tags=_tags(ctx.tags),
            )["Role"]["Arn"]
            iam.attach_role_policy(RoleName=params.batch_role_name, PolicyArn=params.batch_policy_arn)
        ctx.ledger.record_created("iam_role", created_arn, name=params.batch_role_name,
                                  account=params.vault.account_id)
        return Outcome("IAM role", created_arn, "created", note=f"policy {params.batch_policy_name} attached")
    arn = role["Arn"]
    current_trust = role["AssumeRolePolicyDocument"]
    if isinstance(current_trust, str):
        from urllib.parse import unquote

        current_trust = json.loads(unquote(current_trust))
    attached_policies = iam.list_attached_role_policies(RoleName=params.batch_role_name)["AttachedPolicies"]
    attached = {p["PolicyArn"] for p in attached_policies}
    tags = iam.list_role_tags(RoleName=params.batch_role_name).get("Tags", [])
    tagged = any(t["Key"] == RUN_TAG and t["Value"] == params.run_id for t in tags)
    owned = ctx.ledger.was_created("iam_role", arn) or tagged
    differences: dict[str, Any] = {}
    if not _same_policy(current_trust, trust):
        differences["trust_policy"] = _diff(current_trust, trust)
    if params.batch_policy_arn not in attached:
        differences["attached_policies"] = _diff(sorted(attached), [params.batch_policy_arn])
    if not differences:
        return Outcome("IAM role", arn, "unchanged")
    if not owned:
        return Outcome("IAM role", arn, "drift", differences,
                       note="a role of that name exists and was not created by this run; set batch_role_name")
    if ctx.plan is not None:
        if "trust_policy" in differences:
            ctx.plan.intend("vault", "iam", "UpdateAssumeRolePolicy", arn, trust, found=current_trust)
        if "attached_policies" in differences:
            ctx.plan.intend("vault", "iam", "AttachRolePolicy", arn, {"PolicyArn": params.batch_policy_arn})
        return Outcome("IAM role", arn, "updated", differences)
    if "trust_policy" in differences:
        iam.update_assume_role_policy(RoleName=params.batch_role_name, PolicyDocument=policies.to_json(trust))
    if "attached_policies" in differences:
        iam.attach_role_policy(RoleName=params.batch_role_name, PolicyArn=params.batch_policy_arn)
    return Outcome("IAM role", arn, "updated", differences)


def _trust_policy_document(ctx: RunContext) -> dict[str, Any]:
    """Return the role's trust policy for this run's vault account and bucket."""
    params = ctx.params
    return policies.batch_role_trust_policy(
        vault_account_id=params.vault.account_id, vault_bucket=params.vault.bucket, region=params.region)


# ---------------------------------------------------------------------------------- grants

# Errors KMS and S3 answer while a just-created IAM role is not yet visible to them.
_NEW_PRINCIPAL_ERRORS = ("MalformedPolicyDocumentException", "MalformedPolicy")


def put_naming_new_principal(
    put: Callable[..., Any], *, attempts: int = 7, first_wait: float = 1.0,
    sleep: Callable[[float], None] = time.sleep, **arguments: Any,
) -> Any:
    """Return the answer of a policy put that names the new role, retried while IAM propagates it.

    KMS and S3 reject a policy naming a principal they cannot see yet; a role created seconds
    earlier (phase 02) can take up to about a minute to become visible. Waits double each time.
    """
    wait = first_wait
    for attempt in range(attempts):
        try:
            return put(**arguments)
        except ClientError as error:
            if error_code(error) not in _NEW_PRINCIPAL_ERRORS or attempt == attempts - 1:
                raise
            sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _recorded_sids(ctx: RunContext, kind: str, identifier: str) -> list[str]:
    """Return the Sids the ledger recorded for this run on one key or bucket policy."""
    return [sid for record in ctx.ledger.created(kind) if record["id"] == identifier
            for sid in record.get("sids", [])]


def _merge_grants(
    ctx: RunContext, current: dict[str, Any], added: list[dict[str, Any]], legacy: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the policy with the run's statements merged in, and what that changes (empty: nothing)."""
    present = set(policies.own_statement_sids(current, ctx.params.run_id, legacy))
    replaced = [sid for sid in legacy if sid in present]
    merged = policies.merge_statements(current, added, run_id=ctx.params.run_id, replaced=replaced)
    if merged == current:
        return merged, {}
    change: dict[str, Any] = {"added_or_replaced": [s["Sid"] for s in added]}
    if replaced:
        change["removed_earlier_sids"] = replaced
    return merged, change


def ensure_vault_key_grants(ctx: RunContext) -> Outcome:
    """Return the outcome of adding the run's statement to the vault key policy, keeping all others (seed step 4)."""
    kms = ctx.vault("kms")
    params = ctx.params
    key = params.vault.kms_key_arn
    current = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    ctx.ledger.capture_original("vault_key_policy", current)
    added = policies.vault_key_policy_statements(
        batch_role_arn=params.batch_role_arn, vault_bucket=params.vault.bucket, region=params.region,
        run_id=params.run_id,
    )
    # Statements an earlier version of the runbook added for this run under fixed Sids give way.
    legacy = [sid for sid in _recorded_sids(ctx, "kms_key_statements", key) if sid in policies.LEGACY_VAULT_KEY_SIDS]
    merged, change = _merge_grants(ctx, current, added, legacy)
    if not change:
        return Outcome("vault KMS key policy", key, "unchanged", note="the run's statement is present")
    if ctx.plan is not None:
        ctx.plan.intend("vault", "kms", "PutKeyPolicy", key, merged, found=current)
    else:
        put_naming_new_principal(kms.put_key_policy, KeyId=key, PolicyName="default",
                                 Policy=policies.to_json(merged))
    ctx.ledger.record_created("kms_key_statements", key, sids=[s["Sid"] for s in added])
    return Outcome("vault KMS key policy", key, "updated", change,
                   note="other statements (other runs' included) kept unchanged; original captured in the ledger")


def ensure_recovery_key_grants(ctx: RunContext) -> Outcome:
    """Return the outcome of letting the role encrypt replicas with the recovery key, keeping other statements.

    The key is created in phase 01, before the role exists; this adds the role's statement once it does.
    """
    kms = ctx.recovery("kms")
    params = ctx.params
    key = ctx.ledger.resource("recovery_key_arn", "01_recovery_bucket (recovery KMS key)")
    if ctx.plan is not None and ctx.plan.creates(key):
        current = ctx.plan.document_of(key)  # phase 01 of this plan creates the key with this policy
    else:
        current = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    added = policies.recovery_key_statements(
        batch_role_arn=params.batch_role_arn, recovery_bucket=params.recovery.bucket,
        recovery_region=params.recovery_region, run_id=params.run_id,
    )
    # A key this run created may still carry the whole-vault-account grant earlier versions gave it.
    legacy = list(policies.LEGACY_RECOVERY_KEY_SIDS) if ctx.ledger.was_created("kms_key", key) else []
    merged, change = _merge_grants(ctx, current, added, legacy)
    if not change:
        return Outcome("recovery KMS key policy", key, "unchanged", note="the run's statement is present")
    if ctx.plan is not None:
        ctx.plan.intend("recovery", "kms", "PutKeyPolicy", key, merged, found=current)
    else:
        put_naming_new_principal(kms.put_key_policy, KeyId=key, PolicyName="default",
                                 Policy=policies.to_json(merged))
    ctx.ledger.record_created("kms_key_statements", key, sids=[s["Sid"] for s in added], side="recovery",
                              account=params.recovery.account_id)
    return Outcome("recovery KMS key policy", key, "updated", change, note="other statements kept unchanged")


def ensure_recovery_bucket_policy(ctx: RunContext) -> Outcome:
    """Return the outcome of the run's statements in the recovery bucket policy (seed step 5).

    A policy the bucket already has (an administrator's Deny, another run's grant) is kept; the
    run's statements are added to it.
    """
    s3 = ctx.recovery("s3")
    params = ctx.params
    bucket = params.recovery.bucket
    whole = _recovery_bucket_policy_document(ctx)
    current = None if ctx.plan is not None and ctx.plan.creates(bucket) else _bucket_policy(s3, bucket)
    created_bucket = ctx.ledger.was_created("s3_bucket", bucket)
    legacy = list(policies.LEGACY_RECOVERY_BUCKET_SIDS) if created_bucket else []
    if current is None:
        wanted, change = whole, {"added_or_replaced": [s["Sid"] for s in whole["Statement"]]}
    else:
        wanted, change = _merge_grants(ctx, current, whole["Statement"], legacy)
    if not change:
        return Outcome("recovery bucket policy", bucket, "unchanged")
    if not _bucket_owned(ctx, s3, bucket):
        return Outcome("recovery bucket policy", bucket, "drift", _diff(current, wanted),
                       note="the recovery bucket was not created by this run")
    if ctx.plan is not None:
        ctx.plan.intend("recovery", "s3", "PutBucketPolicy", bucket, wanted, found=current)
    else:
        put_naming_new_principal(s3.put_bucket_policy, Bucket=bucket, Policy=policies.to_json(wanted))
    ctx.ledger.record_created("bucket_policy_statements", bucket, sids=[s["Sid"] for s in whole["Statement"]],
                              account=params.recovery.account_id)
    if current is None:
        return Outcome("recovery bucket policy", bucket, "created")
    return Outcome("recovery bucket policy", bucket, "updated", {**change, **_diff(current, wanted)},
                   note="statements of others kept unchanged")


def _bucket_policy(s3: Any, bucket: str) -> Any:
    """Return a bucket's policy as a document, or None when it has none."""
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        if error_code(error) != "NoSuchBucketPolicy":
            raise
        return None


def _recovery_bucket_policy_document(ctx: RunContext) -> dict[str, Any]:
    params = ctx.params
    return policies.recovery_bucket_policy(
        recovery_bucket=params.recovery.bucket, batch_role_arn=params.batch_role_arn, run_id=params.run_id,
        partition=aws_facts.partition_of(params.recovery_region),
    )


# ----------------------------------------------------------------------- replication rule


def current_replication(s3: Any, bucket: str) -> dict[str, Any] | None:
    """Return a bucket's replication configuration, or None when it has none."""
    try:
        config: dict[str, Any] = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
        return config
    except ClientError as error:
        if error_code(error) == "ReplicationConfigurationNotFoundError":
            return None
        raise


def replication_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Return whether a replication configuration read back from S3 is the one wanted."""
    def normalise(config: dict[str, Any]) -> Any:
        rules = []
        for rule in config.get("Rules", []):
            rule = dict(rule)
            rule["Priority"] = int(rule.get("Priority", 0))
            rules.append(rule)
        return _canonical({"Role": config.get("Role"), "Rules": rules})

    return bool(normalise(current) == normalise(wanted))


def replication_document(ctx: RunContext) -> dict[str, Any]:
    """Return the replication configuration the run puts on the vault bucket (cleanup compares with it)."""
    params = ctx.params
    return policies.replication_configuration(
        batch_role_arn=params.batch_role_arn, recovery_bucket=params.recovery.bucket,
        recovery_account_id=params.recovery.account_id,
        recovery_key_arn=ctx.ledger.resource("recovery_key_arn", "01_recovery_bucket"),
        partition=aws_facts.partition_of(params.recovery_region),
        storage_class=params.job.replica_storage_class,
    )


def ensure_replication_rule(ctx: RunContext) -> Outcome:
    """Return the outcome of the vault bucket's replication configuration (seed step 6)."""
    s3 = ctx.vault("s3")
    params = ctx.params
    bucket = params.vault.bucket
    wanted = replication_document(ctx)
    current = current_replication(s3, bucket)
    ctx.ledger.capture_original("vault_replication_configuration", current)
    if current is not None and replication_matches(current, wanted):
        return Outcome("vault replication configuration", bucket, "unchanged")
    original = ctx.ledger.original("vault_replication_configuration")
    ours = ctx.ledger.was_created("replication_configuration", bucket)
    if current is not None and not ours:
        return Outcome(
            "vault replication configuration", bucket, "drift", _diff(current, wanted),
            note="the vault bucket already has a replication configuration (captured in the ledger); "
                 "it is not replaced silently: review it, remove it if it is safe, and re-run this phase",
        )
    if ctx.plan is not None:
        # The plan shows the configuration, never the Object Lock token sent with it.
        ctx.plan.intend("vault", "s3", "PutBucketReplication", bucket, wanted, found=current)
    else:
        arguments: dict[str, Any] = {"Bucket": bucket, "ReplicationConfiguration": wanted}
        if params.object_lock_token:
            arguments["Token"] = params.object_lock_token.get_secret_value()
        s3.put_bucket_replication(**arguments)
    ctx.ledger.record_created("replication_configuration", bucket, original_existed=original is not None)
    status = "created" if current is None else "updated"
    return Outcome("vault replication configuration", bucket, status,
                   None if current is None else _diff(current, wanted),
                   note="with the Object Lock token" if params.object_lock_token else "")


def ensure_vault_eventbridge(ctx: RunContext) -> Outcome:
    """Return the outcome of turning on EventBridge delivery for the vault bucket, keeping other notifications."""
    s3 = ctx.vault("s3")
    bucket = ctx.params.vault.bucket
    current = without_metadata(s3.get_bucket_notification_configuration(Bucket=bucket))
    ctx.ledger.capture_original("vault_notification_configuration", current)
    if "EventBridgeConfiguration" in current:
        return Outcome("vault bucket EventBridge notifications", bucket, "unchanged")
    wanted = {**current, "EventBridgeConfiguration": {}}
    if ctx.plan is not None:
        ctx.plan.intend("vault", "s3", "PutBucketNotificationConfiguration", bucket, wanted, found=current)
    else:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=cast("NotificationConfigurationTypeDef", wanted))
    ctx.ledger.record_created("eventbridge_notifications", bucket)
    return Outcome("vault bucket EventBridge notifications", bucket, "updated",
                   _diff(sorted(current), sorted(wanted)), note="other notification targets kept")


# ---------------------------------------------------------------------------- notifications


def ensure_notification_topic(ctx: RunContext) -> Outcome:
    """Return the outcome of the SNS topic and its e-mail subscription for job status events."""
    sns = ctx.vault("sns")
    params = ctx.params
    arn = aws_facts.sns_topic_arn(params.region, params.vault.account_id, params.notification_topic_name)
    existing = _topic_exists(sns, arn)
    if not existing:
        if ctx.plan is not None:
            ctx.plan.intend("vault", "sns", "CreateTopic", arn, {"Name": params.notification_topic_name},
                            creates=True)
        else:
            arn = sns.create_topic(Name=params.notification_topic_name, Tags=_tags(ctx.tags))["TopicArn"]
        ctx.ledger.record_created("sns_topic", arn, account=params.vault.account_id)
    subscriptions = [] if ctx.plan is not None and ctx.plan.creates(arn) else (
        sns.list_subscriptions_by_topic(TopicArn=arn).get("Subscriptions", []))
    subscribed = any(s["Protocol"] == "email" and s["Endpoint"] == params.notification_email for s in subscriptions)
    if existing and not subscribed and not _topic_owned(ctx, sns, arn):
        return Outcome("SNS topic", arn, "drift", {"subscription": _diff(None, params.notification_email)},
                       note="a topic of that name exists and was not created by this run; set notification_topic_name")
    ctx.ledger.set_resource("topic_arn", arn)
    if not subscribed and ctx.plan is not None:
        ctx.plan.intend("vault", "sns", "Subscribe", arn, {"Protocol": "email", "Endpoint": params.notification_email})
    elif not subscribed:
        sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=params.notification_email)
    if not existing:
        return Outcome("SNS topic", arn, "created",
                       note=f"e-mail subscription for {params.notification_email} (confirm it from the inbox)")
    if not subscribed:
        return Outcome("SNS topic", arn, "updated", {"subscription_added": params.notification_email})
    return Outcome("SNS topic", arn, "unchanged")


def _topic_owned(ctx: RunContext, sns: Any, arn: str) -> bool:
    if ctx.ledger.was_created("sns_topic", arn):
        return True
    tags = sns.list_tags_for_resource(ResourceArn=arn).get("Tags", [])
    return any(t["Key"] == RUN_TAG and t["Value"] == ctx.params.run_id for t in tags)


def _topic_exists(sns: Any, arn: str) -> bool:
    try:
        sns.get_topic_attributes(TopicArn=arn)
    except ClientError as error:
        if error_code(error) in ("NotFound", "NotFoundException"):
            return False
        raise
    return True


def ensure_job_status_rule(ctx: RunContext) -> Outcome:
    """Return the outcome of the EventBridge rule that sends Batch Operations job status to the topic."""
    events = ctx.vault("events")
    sns = ctx.vault("sns")
    params = ctx.params
    topic_arn = ctx.ledger.resource("topic_arn", "05_notifications (SNS topic)")
    pattern = policies.job_status_event_pattern(vault_account_id=params.vault.account_id)
    try:
        rule: Any = events.describe_rule(Name=params.event_rule_name)
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
        rule = None
    differences: dict[str, Any] = {}
    if rule is None:
        status = "created"
    else:
        current_pattern = json.loads(rule.get("EventPattern") or "{}")
        if _canonical(current_pattern) != _canonical(pattern):
            differences["event_pattern"] = _diff(current_pattern, pattern)
        status = "updated" if differences else "unchanged"
        if differences and not ctx.ledger.was_created("event_rule", rule["Arn"]):
            return Outcome("EventBridge rule", rule["Arn"], "drift", differences,
                           note="a rule of that name exists and was not created by this run; set event_rule_name")
    if rule is not None and status == "unchanged":
        rule_arn = rule["Arn"]
    elif ctx.plan is not None:
        rule_arn = rule["Arn"] if rule is not None else aws_facts.event_rule_arn(
            params.region, params.vault.account_id, params.event_rule_name)
        ctx.plan.intend("vault", "events", "PutRule", rule_arn, {"EventPattern": pattern, "State": "ENABLED"},
                        found=None if rule is None else json.loads(rule.get("EventPattern") or "{}"),
                        creates=rule is None)
        if rule is None:
            ctx.ledger.record_created("event_rule", rule_arn, name=params.event_rule_name)
    else:
        # EventBridge applies Tags only when PutRule creates the rule, and ignores them on an update.
        rule_arn = events.put_rule(
            Name=params.event_rule_name, EventPattern=json.dumps(pattern), State="ENABLED",
            Description="S3 Batch Replication job status of the vault recovery", Tags=_tags(ctx.tags),
        )["RuleArn"]
        if rule is None:
            ctx.ledger.record_created("event_rule", rule_arn, name=params.event_rule_name)
    targets = [] if ctx.plan is not None and ctx.plan.creates(rule_arn) else (
        events.list_targets_by_rule(Rule=params.event_rule_name).get("Targets", []))
    if not any(t["Arn"] == topic_arn for t in targets):
        target: TargetTypeDef = {"Id": "runbook-sns", "Arn": topic_arn}
        if ctx.plan is not None:
            ctx.plan.intend("vault", "events", "PutTargets", rule_arn, {"Targets": [target]})
        else:
            events.put_targets(Rule=params.event_rule_name, Targets=[target])
        if status == "unchanged":
            status, differences = "updated", {"target_added": topic_arn}
    topic_policy = policies.sns_topic_policy(topic_arn=topic_arn, event_rule_arn=rule_arn,
                                             account_id=params.vault.account_id)
    current_policy = None if ctx.plan is not None and ctx.plan.creates(topic_arn) else (
        sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"].get("Policy"))
    if current_policy is None or not _same_policy(current_policy, topic_policy):
        if ctx.plan is not None:
            ctx.plan.intend("vault", "sns", "SetTopicAttributes", topic_arn, topic_policy,
                            found=None if current_policy is None else json.loads(current_policy))
        else:
            sns.set_topic_attributes(
                TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policies.to_json(topic_policy))
        if status == "unchanged":
            status, differences = "updated", {"topic_policy": "EventBridge allowed to publish"}
    ctx.ledger.set_resource("event_rule_arn", rule_arn)
    return Outcome("EventBridge rule", rule_arn, status, differences or None, note=f"target {topic_arn}")


def documents(ctx: RunContext) -> dict[str, Any]:
    """Return every JSON document the run applies, built from the parameters (for display and review)."""
    params = ctx.params
    recovery_key_arn = ctx.ledger.state.resources.recovery_key_arn
    built: dict[str, Any] = {
        "recovery_key_policy": policies.recovery_key_policy(
            recovery_account_id=params.recovery.account_id, partition=aws_facts.partition_of(params.recovery_region)),
        "recovery_key_statements": policies.recovery_key_statements(
            batch_role_arn=params.batch_role_arn, recovery_bucket=params.recovery.bucket,
            recovery_region=params.recovery_region, run_id=params.run_id),
        "batch_role_trust_policy": _trust_policy_document(ctx),
        "vault_key_policy_statements": policies.vault_key_policy_statements(
            batch_role_arn=params.batch_role_arn, vault_bucket=params.vault.bucket, region=params.region,
            run_id=params.run_id),
        "recovery_bucket_policy": _recovery_bucket_policy_document(ctx),
        "job_status_event_pattern": policies.job_status_event_pattern(vault_account_id=params.vault.account_id),
    }
    if recovery_key_arn:
        built["batch_role_policy"] = _role_policy_document(ctx)
        built["replication_configuration"] = replication_document(ctx)
    return built
