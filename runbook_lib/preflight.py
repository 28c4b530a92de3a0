"""Phase 00: check everything the later phases assume, and estimate the recovery, without changing anything."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import vault_inventory
from runbook_lib.accounts import error_code
from runbook_lib.aws_facts import REPLICATION_STATUS_FILTERS
from runbook_lib.context import RunContext
from runbook_lib.errors import PreflightError
from runbook_lib.prices import (
    PRICE_PER_BATCH_JOB,
    PRICE_PER_MILLION_BATCH_OBJECTS,
    PRICE_PER_TEN_THOUSAND_KMS_REQUESTS,
    PRICE_PER_THOUSAND_PUTS,
)
from runbook_lib.scope import IN_SCOPE, JobScope, scope_from_params
from runbook_lib.verification_costs import VerificationCosts, verification_costs

__all__ = [
    "Check",
    "Estimate",
    "check_names_free",
    "check_vault_bucket",
    "check_vault_key",
    "estimate_recovery",
    "identity_checks",
    "raise_on_failures",
]

# A planning assumption, not an AWS figure: Batch Replication commonly sustains thousands of
# objects per second per job after preparing; we assume a conservative rate.
ASSUMED_TASKS_PER_SECOND = 500.0
ASSUMED_PREPARING_SECONDS = 600.0


@dataclass(frozen=True)
class Check:
    """One precondition: what was checked, whether it holds, and what was found."""

    name: str
    ok: bool
    found: str
    fix: str = ""

    def as_row(self) -> dict[str, Any]:
        """Return the check as a table row with a visible mark."""
        return {"check": self.name, "result": "✔" if self.ok else "✘", "found": self.found, "what to do": self.fix}


def raise_on_failures(checks: list[Check]) -> None:
    """Raise PreflightError listing every failed check and its fix."""
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = "\n".join(f"  - {c.name}: {c.found}. {c.fix}" for c in failed)
        raise PreflightError(f"{len(failed)} precondition(s) do not hold; nothing was changed:\n{lines}")



def identity_checks(ctx: RunContext) -> list[Check]:
    """Return the identity checks: each profile is in its account, and the accounts differ."""
    vault, recovery = ctx.sessions.vault_identity, ctx.sessions.recovery_identity
    return [
        Check("vault profile identity", True, f"{vault.arn} (account {vault.account})"),
        Check("recovery profile identity", True, f"{recovery.arn} (account {recovery.account})"),
        Check("accounts differ", vault.account != recovery.account, f"{vault.account} vs {recovery.account}",
              "the recovery account must be a separate, clean account"),
    ]


def check_vault_bucket(ctx: RunContext) -> list[Check]:
    """Return the checks of every vault bucket of the run: versioning, Object Lock, encryption."""
    return [check for view in ctx.pair_contexts() for check in _check_vault_bucket(view)]


def _check_vault_bucket(ctx: RunContext) -> list[Check]:
    """Return the vault bucket checks: exists, region, versioning, Object Lock, default encryption key."""
    s3 = ctx.vault("s3")
    params = ctx.params
    bucket = params.pair.vault_bucket
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        return [Check("vault bucket exists", False, f"{bucket}: {error_code(error) or error}",
                      f"check vault.bucket and that profile {params.vault.profile} may read it")]
    checks = [Check("vault bucket exists", True, bucket)]
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    checks.append(Check("vault bucket region", location == params.region, location,
                        f"set region to {location} (the vault bucket's region)"))
    versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
    checks.append(Check("vault bucket versioning", versioning == "Enabled", versioning,
                        "replication needs versioning on the vault bucket"))
    try:
        lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        lock_state = lock.get("ObjectLockEnabled", "Disabled")
        retention = lock.get("Rule", {}).get("DefaultRetention")
        found = lock_state + (f", default {retention}" if retention else ", no default retention")
    except ClientError as error:
        if error_code(error) != "ObjectLockConfigurationNotFoundError":
            raise
        lock_state, found = "Disabled", "no Object Lock configuration"
    checks.append(Check("vault bucket Object Lock", lock_state == "Enabled", found,
                        "this runbook recovers Object Lock golden copies; check vault.bucket names the vault"))
    try:
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        default = rule["ApplyServerSideEncryptionByDefault"]
        key = default.get("KMSMasterKeyID", "")
        matches = default["SSEAlgorithm"].startswith("aws:kms") and _same_key(ctx, key)
        checks.append(Check("vault default encryption key", matches,
                            f"{default['SSEAlgorithm']} {key}, bucket key {rule.get('BucketKeyEnabled', False)}",
                            f"vault.kms_key_arn should be the key that encrypts the vault ({key})"))
    except ClientError as error:
        if error_code(error) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        checks.append(Check("vault default encryption key", False, "no default encryption",
                            "expected SSE-KMS with vault.kms_key_arn"))
    named = params.verification.vault_inventory_id
    if named and vault_inventory.reads_inventory(ctx):
        checks.append(_named_inventory_check(s3, bucket, named))
    return checks


def _named_inventory_check(s3: Any, bucket: str, named: str) -> Check:
    """Return whether the vault inventory verification.vault_inventory_id names exists and lists what phase 07 reads."""
    found = {str(config.get("Id")): config for config in vault_inventory.configurations_of(s3, bucket)}
    what = "vault inventory (verification.vault_inventory_id)"
    others = ", ".join(sorted(found)) or "none"
    if named not in found:
        return Check(what, False, f"{bucket} has no inventory configuration {named!r} (it has: {others})",
                     "name one of the vault bucket's inventory configurations, or leave it null so phase 07 "
                     "makes the run's own")
    why = vault_inventory.usable_configuration(found[named])
    return Check(what, not why, f"{named}: {why}" if why else f"{named}: every version, every field verification reads",
                 "name a configuration that lists every version of the whole bucket as Parquet or ORC with the "
                 "Object Lock and replication fields, or leave it null so phase 07 makes the run's own")


def _same_key(ctx: RunContext, key: str) -> bool:
    wanted = ctx.params.pair.vault_kms_key_arn
    if not key:
        return False
    if key == wanted or wanted.endswith("/" + key):
        return True
    try:
        return bool(ctx.vault("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"] == wanted)
    except ClientError:
        return False


def check_vault_key(ctx: RunContext) -> list[Check]:
    """Return the checks of every vault bucket's KMS key."""
    return [check for view in ctx.pair_contexts() for check in _check_vault_key(view)]


def _check_vault_key(ctx: RunContext) -> list[Check]:
    """Return the vault KMS key checks: it exists, is enabled, symmetric, and its policy is readable."""
    kms = ctx.vault("kms")
    arn = ctx.params.pair.vault_kms_key_arn
    try:
        metadata = kms.describe_key(KeyId=arn)["KeyMetadata"]
    except ClientError as error:
        return [Check("vault KMS key", False, f"{arn}: {error_code(error)}", "check vault.kms_key_arn")]
    checks = [
        Check("vault KMS key enabled", metadata.get("KeyState") == "Enabled", str(metadata.get("KeyState")),
              "the key must be enabled to decrypt the golden copies"),
        Check("vault KMS key symmetric", metadata.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT",
              str(metadata.get("KeySpec")), "S3 encrypts with symmetric keys only"),
    ]
    try:
        kms.get_key_policy(KeyId=arn, PolicyName="default")
        checks.append(Check("vault KMS key policy readable", True, "yes"))
    except ClientError as error:
        checks.append(Check("vault KMS key policy readable", False, error_code(error),
                            "phase 03 adds statements to it; "
                            "the vault profile needs kms:GetKeyPolicy and kms:PutKeyPolicy"))
    return checks


def check_names_free(ctx: RunContext) -> list[Check]:
    """Return checks that the recovery and report bucket names are free or already this run's."""
    params = ctx.params
    checks = []
    names = [("recovery bucket name", ctx.recovery("s3"), pair.recovery_bucket, params.recovery.account_id)
             for pair in ctx.all_params.bucket_pairs]
    for label, client, bucket, owner in (
        *names,
        ("report bucket name", ctx.vault("s3"), params.report_bucket, params.vault.account_id),
    ):
        own = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket in own:
            mine = ctx.ledger.was_created("s3_bucket", bucket)
            found = f"{bucket} exists in account {owner}" + (" (created by this run)" if mine else "")
            checks.append(Check(label, True, found,
                                "" if mine else "phase 01/02 will check it matches what the run needs"))
            continue
        try:
            client.head_bucket(Bucket=bucket)
            taken = True
        except ClientError as error:
            taken = error_code(error) not in ("404", "NoSuchBucket", "NotFound")
        checks.append(Check(label, not taken, f"{bucket} " + ("is taken by another account" if taken else "is free"),
                            f"choose another name for {'recovery.bucket' if 'recovery' in label else 'report_bucket'}"))
    return checks


@dataclass(frozen=True)
class Estimate:
    """What the recovery will move, and roughly what it will cost and take."""

    versions: int
    delete_markers: int
    bytes: int
    sampled: int
    sampled_eligible: int
    eligible_versions: int
    eligible_bytes: int
    cost_usd: float
    duration_minutes: float
    # What verifying costs by HEAD and by S3 Inventory, and the method advised (verification_costs).
    verification: dict[str, Any] | None = None
    # Where the figures were read, per vault bucket: an inventory report, or by listing (VaultRead.as_record).
    read_from: tuple[dict[str, Any], ...] = ()

    def as_rows(self) -> list[dict[str, Any]]:
        """Return the estimate as a two-column table."""
        return [
            {"quantity": "object versions in the vault", "value": f"{self.versions:,}"},
            {"quantity": "delete markers (not replicated)", "value": f"{self.delete_markers:,}"},
            {"quantity": "bytes in the vault", "value": f"{self.bytes:,}"},
            {"quantity": "versions sampled for replication status (of those in the window and key constraints)",
             "value": f"{self.sampled:,} ({self.sampled_eligible:,} match the filter)"},
            {"quantity": "estimated eligible versions", "value": f"{self.eligible_versions:,}"},
            {"quantity": "estimated eligible bytes", "value": f"{self.eligible_bytes:,}"},
            {"quantity": "estimated cost (USD, list prices)", "value": f"{self.cost_usd:,.2f}"},
            {"quantity": "estimated duration (minutes, planning assumption)", "value": f"{self.duration_minutes:,.1f}"},
            *({"quantity": f"{read['bucket']} read from", "value": _read_from(read)} for read in self.read_from),
            *(VerificationCosts(**self.verification).as_rows() if self.verification else []),
        ]


def estimate_recovery(ctx: RunContext, sample_size: int = 200, seed: int = 0) -> Estimate:
    """Return counts and bytes of the vault's versions, the share matching the job filter, cost and time.

    A run over many vault buckets sums its buckets' figures; each bucket's job is one more job to pay for.
    """
    views = ctx.pair_contexts()
    parts = [_bucket_figures(view, sample_size, seed) for view in views]
    read_from = tuple(_where_read(view) for view in views)
    versions, markers, total_bytes, sampled, eligible, eligible_versions, eligible_bytes = (
        sum(part[i] for part in parts) for i in range(7))
    cost = (len(parts) * PRICE_PER_BATCH_JOB + eligible_versions / 1e6 * PRICE_PER_MILLION_BATCH_OBJECTS
            + eligible_versions / 1e3 * PRICE_PER_THOUSAND_PUTS
            + 2 * eligible_versions / 1e4 * PRICE_PER_TEN_THOUSAND_KMS_REQUESTS)
    minutes = (ASSUMED_PREPARING_SECONDS + eligible_versions / ASSUMED_TASKS_PER_SECOND) / 60
    verifying = verification_costs(versions + markers, eligible_versions, ctx.params.verification.auto_inventory_from)
    estimate = Estimate(versions, markers, total_bytes, sampled, eligible, eligible_versions,
                        eligible_bytes, round(cost, 2), round(minutes, 1), asdict(verifying), read_from)
    ctx.ledger.state.estimate = asdict(estimate)
    ctx.ledger.save()
    return estimate


def _where_read(ctx: RunContext) -> dict[str, Any]:
    """Return where the estimate read one vault bucket: its inventory report, or a listing and sampled HEADs."""
    read = vault_inventory.from_inventory(ctx)
    if read is not None:
        return read.as_record()
    return {"bucket": ctx.params.pair.vault_bucket, "source": "listing",
            "note": "listed, with the replication status of a sample read by HEAD"}


def _read_from(read: dict[str, Any]) -> str:
    """Return one `read_from` record in words."""
    if read["source"] == "inventory":
        return f"{vault_inventory.report_words(read)} ({read['versions']:,} rows)"
    return str(read.get("note", read["source"]))


def _bucket_figures(ctx: RunContext, sample_size: int, seed: int) -> tuple[int, int, int, int, int, int, int]:
    """Return one vault bucket's versions, markers, bytes, sampled, sampled eligible, eligible versions and bytes."""
    read = vault_inventory.from_inventory(ctx)
    if read is not None:
        return _inventory_figures(read.versions, scope_from_params(ctx.params))
    s3 = ctx.vault("s3")
    bucket = ctx.params.pair.vault_bucket
    scope = scope_from_params(ctx.params)
    versions: list[tuple[str, str, int]] = []
    candidates: list[tuple[str, str, int]] = []
    markers = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for listed in page.get("Versions", []):
            version = (listed["Key"], listed["VersionId"], int(listed.get("Size", 0)))
            versions.append(version)
            # What the listing can tell (creation time, key, storage class) is applied to every version;
            # the replication status needs a HEAD, so only a sample of the rest is asked.
            if scope.listed_in_scope(listed["Key"], listed.get("LastModified"), listed.get("StorageClass")):
                candidates.append(version)
        markers += len(page.get("DeleteMarkers", []))
    total_bytes = sum(size for _, _, size in versions)
    sample = random.Random(seed).sample(candidates, min(sample_size, len(candidates)))
    eligible = 0
    for key, version_id, _ in sample:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        if (head.get("ReplicationStatus") or "NONE") in scope.replication_statuses:
            eligible += 1
    share = eligible / len(sample) if sample else 0.0
    eligible_versions = round(len(candidates) * share)
    eligible_bytes = round(sum(size for _, _, size in candidates) * share)
    return len(versions), markers, total_bytes, len(sample), eligible, eligible_versions, eligible_bytes


def _inventory_figures(versions: pd.DataFrame, scope: JobScope) -> tuple[int, int, int, int, int, int, int]:
    """Return `_bucket_figures` from an inventory's rows: it lists every version's replication status, so all are read.

    "Sampled" is then every candidate (in the window and key constraints, not archived), and the
    eligible figures are counted, not extrapolated.
    """
    markers = versions["is_delete_marker"].astype(bool).to_numpy()
    sizes = versions["size"].astype("Int64").fillna(0).astype("int64").to_numpy()
    any_status = replace(scope, replication_statuses=REPLICATION_STATUS_FILTERS)
    candidates = (any_status.reasons(versions) == IN_SCOPE).to_numpy(bool)
    eligible = (scope.reasons(versions) == IN_SCOPE).to_numpy(bool)
    return (int((~markers).sum()), int(markers.sum()), int(sizes[~markers].sum()), int(candidates.sum()),
            int(eligible.sum()), int(eligible.sum()), int(sizes[eligible].sum()))
