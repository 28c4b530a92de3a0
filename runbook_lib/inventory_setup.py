"""The S3 Inventory configurations inventory verification reads, made idempotently.

Both buckets report into the report bucket (vault account) under `verification.inventory_prefix`:
the vault bucket with the run's configuration, or an existing one named by
`verification.vault_inventory_id`; the recovery bucket always with the run's. Each lists every
version (IncludedObjectVersions All) daily as Parquet, with every field verification compares.
S3 delivers a report only where the destination bucket's policy lets s3.amazonaws.com write it:
`ensure_inventory_destination` adds the run's statement to the report bucket policy, keeping the
statements of others.

On a planning context (`RunContext.plan`) every step reads and compares as in a run, and records
the write it would make (`Plan.intend`) instead of making it; a bucket the plan would create has
no configuration yet, and a report bucket policy the plan would write is read from the plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from botocore.exceptions import ClientError

from runbook_lib import aws_facts, policies
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext
from runbook_lib.errors import ProvisionError
from runbook_lib.provision import Outcome

__all__ = [
    "INVENTORY_FIELDS",
    "InventoryLocation",
    "ensure_inventory_configurations",
    "ensure_inventory_destination",
    "inventory_locations",
    "run_config_id",
]

# The optional fields verification compares (ObjectLock* and ReplicationStatus above all).
INVENTORY_FIELDS: tuple[str, ...] = (
    "Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "ReplicationStatus",
    "EncryptionStatus", "BucketKeyStatus", "ObjectLockRetainUntilDate", "ObjectLockMode",
    "ObjectLockLegalHoldStatus", "ChecksumAlgorithm",
)
_INVENTORY_KIND = "inventory_configuration"


@dataclass(frozen=True)
class InventoryLocation:
    """Where a bucket's inventory reports land: destination bucket, prefix and configuration id."""

    source_bucket: str
    config_id: str
    bucket: str
    prefix: str | None


def run_config_id(ctx: RunContext) -> str:
    """Return the id of the inventory configurations this run creates."""
    return f"{ctx.params.run_id}-verification"


def _wanted(ctx: RunContext, config_id: str) -> dict[str, Any]:
    params = ctx.params
    return {
        "Id": config_id,
        "IsEnabled": True,
        "IncludedObjectVersions": "All",
        "Destination": {"S3BucketDestination": {
            "AccountId": params.vault.account_id,
            "Bucket": aws_facts.bucket_arn(params.report_bucket, aws_facts.partition_of(params.region)),
            "Format": "Parquet",
            "Prefix": params.verification.inventory_prefix,
            "Encryption": {"SSES3": {}},
        }},
        "Schedule": {"Frequency": "Daily"},
        "OptionalFields": list(INVENTORY_FIELDS),
    }


def _current(s3: Any, bucket: str, config_id: str) -> dict[str, Any] | None:
    try:
        return dict(s3.get_bucket_inventory_configuration(Bucket=bucket, Id=config_id)["InventoryConfiguration"])
    except ClientError as error:
        if error_code(error) in ("NoSuchConfiguration", "NoSuchInventoryConfig", "404"):
            return None
        raise


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    destination = current.get("Destination", {}).get("S3BucketDestination", {})
    wanted_destination = wanted["Destination"]["S3BucketDestination"]
    return (
        bool(current.get("IsEnabled")) and current.get("IncludedObjectVersions") == "All"
        and destination.get("Bucket") == wanted_destination["Bucket"]
        and destination.get("Format") == "Parquet"
        and (destination.get("Prefix") or None) == wanted_destination["Prefix"]
        and set(current.get("OptionalFields") or []) >= set(INVENTORY_FIELDS)
        and not current.get("Filter")
    )


def _ensure_one(ctx: RunContext, side: str) -> Outcome:
    s3 = ctx.vault("s3") if side == "vault" else ctx.recovery("s3")
    bucket = ctx.params.pair.vault_bucket if side == "vault" else ctx.params.pair.recovery_bucket
    config_id = run_config_id(ctx)
    wanted = _wanted(ctx, config_id)
    fresh = ctx.plan is not None and ctx.plan.creates(bucket)
    current = None if fresh else _current(s3, bucket, config_id)
    what = f"{side} bucket inventory"
    if current is not None and _same(current, wanted):
        return Outcome(what, f"{bucket}/{config_id}", "unchanged")
    if current is not None and not ctx.ledger.was_created(_INVENTORY_KIND, f"{bucket}/{config_id}"):
        return Outcome(what, f"{bucket}/{config_id}", "drift", {"current": current, "wanted": wanted},
                       note="a configuration of this id exists and was not made by this run")
    if ctx.plan is not None:
        ctx.plan.intend(side, "s3", "PutBucketInventoryConfiguration", f"{bucket}/{config_id}", wanted,
                        found=current)
    else:
        s3.put_bucket_inventory_configuration(Bucket=bucket, Id=config_id, InventoryConfiguration=cast(Any, wanted))
    if current is None:
        ctx.ledger.record_created(_INVENTORY_KIND, f"{bucket}/{config_id}", side=side)
        return Outcome(what, f"{bucket}/{config_id}", "created",
                       note="S3 delivers the first report within 48 hours, then daily")
    return Outcome(what, f"{bucket}/{config_id}", "updated", {"current": current, "wanted": wanted})


def ensure_inventory_configurations(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of the inventory configurations verification reads (the vault's only if not given)."""
    sides = ["recovery"] if ctx.params.verification.vault_inventory_id else ["vault", "recovery"]
    return [_ensure_one(ctx, side) for side in sides]


def ensure_inventory_destination(ctx: RunContext) -> Outcome:
    """Return the outcome of the report bucket policy statement that lets S3 deliver the run's inventories."""
    params = ctx.params
    s3 = ctx.vault("s3")
    statement = policies.inventory_destination_statement(
        report_bucket=params.report_bucket, prefix=params.verification.inventory_prefix,
        source_buckets=[params.pair.vault_bucket, params.pair.recovery_bucket],
        source_accounts=[params.vault.account_id, params.recovery.account_id], run_id=params.run_id,
        partition=aws_facts.partition_of(params.region),
    )
    current: Any = _planned_policy(ctx) if ctx.plan is not None else None
    if current is None and not (ctx.plan is not None and ctx.plan.creates(params.report_bucket)):
        try:
            current = json.loads(s3.get_bucket_policy(Bucket=params.report_bucket)["Policy"])
        except ClientError as error:
            if error_code(error) != "NoSuchBucketPolicy":
                raise
    base = current or {"Version": policies.POLICY_VERSION, "Statement": []}
    merged = policies.merge_statements(base, [statement], run_id=params.run_id)
    if merged == current:
        return Outcome("report bucket policy", params.report_bucket, "unchanged")
    if not ctx.ledger.was_created("s3_bucket", params.report_bucket):
        raise ProvisionError(
            f"the report bucket {params.report_bucket} was not created by this run, so the run does not change its "
            f"policy; add this statement to it, or name an existing vault inventory: {policies.to_json(statement)}")
    if ctx.plan is not None:
        ctx.plan.intend("vault", "s3", "PutBucketPolicy", params.report_bucket, merged, found=current)
    else:
        s3.put_bucket_policy(Bucket=params.report_bucket, Policy=policies.to_json(merged))
    ctx.ledger.record_created("bucket_policy_statements", params.report_bucket, sids=[statement["Sid"]],
                              account=params.vault.account_id)
    return Outcome("report bucket policy", params.report_bucket, "created" if current is None else "updated")


def _planned_policy(ctx: RunContext) -> Any:
    """Return the report bucket policy an earlier step of this plan would write (None: none)."""
    assert ctx.plan is not None
    written = [w.document for w in ctx.plan.writes
               if w.operation == "PutBucketPolicy" and w.identifier == ctx.params.report_bucket]
    return written[-1] if written else None


def inventory_locations(ctx: RunContext) -> tuple[InventoryLocation, InventoryLocation]:
    """Return where the vault's and the recovery bucket's inventory reports are delivered."""
    params = ctx.params
    ours = run_config_id(ctx)
    prefix = params.verification.inventory_prefix
    recovery = InventoryLocation(params.pair.recovery_bucket, ours, params.report_bucket, prefix)
    given = params.verification.vault_inventory_id
    if not given:
        return InventoryLocation(params.pair.vault_bucket, ours, params.report_bucket,
                                 params.verification.inventory_prefix), recovery
    current = _current(ctx.vault("s3"), params.pair.vault_bucket, given)
    if current is None:
        raise ProvisionError(f"verification.vault_inventory_id names {given!r}, but the vault bucket "
                             f"{params.pair.vault_bucket} has no inventory configuration of that id")
    destination = current.get("Destination", {}).get("S3BucketDestination", {})
    vault = InventoryLocation(params.pair.vault_bucket, given,
                              aws_facts.bucket_name_of_arn(str(destination.get("Bucket"))),
                              destination.get("Prefix") or None)
    return vault, recovery
