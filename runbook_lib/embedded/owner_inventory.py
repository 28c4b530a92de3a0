"""The vault owners' own daily S3 Inventory, as a well-run vault has one before any incident.

A drill verified by inventory seeds it (`runbook drill --verify inventory`, `runbook backend
--vault-inventory`): every vault bucket gets the configuration `OWNER_CONFIG_ID`, listing every
version as Parquet with the fields verification reads, into a bucket of the vault account whose
policy lets S3 deliver there, and its first report is delivered at once. Phase 00 then reads its
figures from that report instead of a HEAD per version (`runbook_lib.vault_inventory`); phase 07
still makes the run's own configurations and reads reports newer than the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runbook_lib import aws_facts, inventory_setup, policies
from runbook_lib.embedded import inventory
from runbook_lib.embedded.inventory import Delivery
from runbook_lib.errors import BackendError

__all__ = ["OWNER_CONFIG_ID", "OWNER_PREFIX", "owner_inventory_bucket", "seed_owner_inventory"]

OWNER_CONFIG_ID = "vault-daily"
OWNER_PREFIX = "inventory"


def owner_inventory_bucket(vault_account: str) -> str:
    """Return the name of the vault account's bucket that receives the owners' inventory reports."""
    return f"vault-inventory-{vault_account}"


def seed_owner_inventory(
    s3: Any, vault_account: str, vault_buckets: Sequence[str], partition: str = "aws",
) -> list[Delivery]:
    """Configure the owners' daily inventory of each vault bucket through `s3` (the vault's owners) and deliver it once.

    `s3` is a client of the vault account; the destination bucket and its policy are made if missing.
    """
    destination = owner_inventory_bucket(vault_account)
    if destination not in {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=destination)
        s3.put_public_access_block(Bucket=destination, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
    statement = policies.inventory_destination_statement(
        report_bucket=destination, prefix=OWNER_PREFIX, source_buckets=list(vault_buckets),
        source_accounts=[vault_account], run_id="vault-owners", partition=partition)
    s3.put_bucket_policy(Bucket=destination, Policy=policies.to_json(
        {"Version": policies.POLICY_VERSION, "Statement": [statement]}))
    deliveries = []
    for bucket in vault_buckets:
        s3.put_bucket_inventory_configuration(Bucket=bucket, Id=OWNER_CONFIG_ID, InventoryConfiguration={
            "Id": OWNER_CONFIG_ID,
            "IsEnabled": True,
            "IncludedObjectVersions": "All",
            "Destination": {"S3BucketDestination": {
                "AccountId": vault_account, "Bucket": aws_facts.bucket_arn(destination, partition),
                "Format": "Parquet", "Prefix": OWNER_PREFIX, "Encryption": {"SSES3": {}}}},
            "Schedule": {"Frequency": "Daily"},
            "OptionalFields": list(inventory_setup.INVENTORY_FIELDS),
        })
        delivery = inventory.deliver(bucket, OWNER_CONFIG_ID)
        if delivery.skipped:
            raise BackendError(f"the owners' inventory of {bucket} was not delivered: {delivery.skipped}")
        deliveries.append(delivery)
    return deliveries
