"""Phase 00 read from the vault's own inventory: the same figures as by HEAD, no HEAD, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pytest
from runbook_fixtures import CtxFactory, Drill, watch_calls, write_calls

from runbook_lib import commitment, inventory_setup, preflight, restore_job, sampling, scope, vault_inventory
from runbook_lib.context import RunContext
from runbook_lib.embedded import inventory
from runbook_lib.embedded.owner_inventory import OWNER_CONFIG_ID, OWNER_PREFIX, owner_inventory_bucket
from runbook_lib.embedded.seed import VAULT_ACCOUNT, VAULT_BUCKET, seed_owner_inventories
from runbook_lib.errors import PreflightError

pytestmark = pytest.mark.xdist_group("runbook-vault-inventory")

BY_INVENTORY = {"verification": {"method": "inventory"}}
AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)
# Calls that read one version, or list them all: phase 00 by inventory makes none (its only HEADs
# check the report's data files).
PER_VERSION_CALLS = {"GetObjectRetention", "GetObjectLegalHold", "ListObjectVersions"}


@pytest.fixture(scope="module")
def owned(drill: Drill) -> Iterator[Drill]:
    """The module's vault with its owners' daily inventory configured and one report delivered."""
    seed_owner_inventories(drill.backend.endpoint, [drill.truth])
    yield drill


def _figures(ctx: RunContext) -> dict[str, Any]:
    """Return everything phase 00 shows of the vault's versions, as plain values."""
    shown = commitment.locked_copy_commitment(ctx, as_of=AS_OF)
    estimate = preflight.estimate_recovery(ctx)
    restores = restore_job.estimate_restores(ctx)
    return {"commitment": shown, "estimate": estimate, "restores": restores}


def test_phase_00_reads_the_same_figures_from_the_inventory_as_by_head_with_no_head(
    owned: Drill, make_ctx: CtxFactory
) -> None:
    by_head = _figures(make_ctx("head"))
    ctx = make_ctx("inventory", **BY_INVENTORY)
    calls = watch_calls(ctx)

    by_inventory = _figures(ctx)

    assert by_inventory["commitment"].scope == by_head["commitment"].scope
    assert by_inventory["restores"] == by_head["restores"]
    head, listed = by_head["estimate"], by_inventory["estimate"]
    assert (listed.versions, listed.delete_markers, listed.bytes) == (head.versions, head.delete_markers, head.bytes)
    # The inventory lists every replication status: the eligible versions are counted, not extrapolated.
    assert listed.eligible_versions == by_head["commitment"].scope.versions == listed.sampled_eligible
    assert listed.eligible_bytes == by_head["commitment"].scope.bytes
    [read] = ctx.ledger.state.commitment["read_from"]
    assert not PER_VERSION_CALLS & set(calls), sorted(PER_VERSION_CALLS & set(calls))
    assert calls.count("HeadObject") == read["files"]
    assert write_calls(calls) == []
    assert read["source"] == "inventory" and f"/{OWNER_CONFIG_ID}/" in read["manifest"]
    assert read["versions"] == len(owned.truth.versions)
    assert list(ctx.ledger.state.estimate["read_from"]) == [read]
    assert by_head["commitment"].read_from[0]["source"] == "head"
    assert any("read from the inventory report" in line for line in by_inventory["commitment"].lines())


def test_a_sample_drawn_from_the_inventory_is_the_sample_drawn_by_head(owned: Drill, make_ctx: CtxFactory) -> None:
    sample = {"job": {"sample": {"count": 25, "seed": 3}}}
    by_head = commitment.locked_copy_commitment(make_ctx("head", params=sample), as_of=AS_OF)
    ctx = make_ctx("inventory", params={**sample, **BY_INVENTORY})

    by_inventory = commitment.locked_copy_commitment(ctx, as_of=AS_OF)

    assert by_inventory.sample == by_head.sample
    drawn = pd.read_csv(ctx.ledger.run_dir / sampling.VERSIONS_FILE, dtype=str, keep_default_na=False)
    head_drawn = pd.read_csv(make_ctx.folder / "head" / sampling.VERSIONS_FILE, dtype=str, keep_default_na=False)
    assert (ctx.ledger.run_dir / sampling.MANIFEST_FILE).read_bytes() == (
        make_ctx.folder / "head" / sampling.MANIFEST_FILE).read_bytes()
    # The inventory says OFF where HEAD may show no legal hold at all: the same state, kept as read.
    hold = "object_lock_legal_hold_status"
    assert (drawn[hold].replace("OFF", "") == head_drawn[hold].replace("OFF", "")).all()
    assert set(drawn[hold]) == {"ON", "OFF"}
    pd.testing.assert_frame_equal(drawn.drop(columns=hold), head_drawn.drop(columns=hold))


def test_a_point_in_time_selects_the_same_versions_in_the_inventory_as_in_the_listing(
    owned: Drill, make_ctx: CtxFactory
) -> None:
    from runbook_lib import point_in_time

    ctx = make_ctx("inventory", recover_as_of="2025-01-01T00:00:00Z", **BY_INVENTORY)
    chosen = scope.scope_from_params(ctx.params)

    listed = point_in_time.select_as_of(point_in_time.list_versions(ctx.vault("s3"), VAULT_BUCKET), chosen)
    read = vault_inventory.from_inventory(ctx)

    assert read is not None and listed is not None
    assert point_in_time.select_as_of(read.versions, chosen) == listed
    assert 0 < listed.versions_before < len(owned.truth.versions)


def test_without_a_usable_report_phase_00_reads_by_head_and_says_why(
    owned: Drill, make_ctx: CtxFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = owned.client("s3")
    wanted = s3.get_bucket_inventory_configuration(Bucket=VAULT_BUCKET, Id=OWNER_CONFIG_ID)["InventoryConfiguration"]
    s3.put_bucket_inventory_configuration(Bucket=VAULT_BUCKET, Id="tampered",
                                          InventoryConfiguration={**wanted, "Id": "tampered"})
    delivered = inventory.deliver(VAULT_BUCKET, "tampered")
    checksum = delivered.manifest_key.rsplit("/", 1)[0] + "/manifest.checksum"
    s3.put_object(Bucket=owner_inventory_bucket(VAULT_ACCOUNT), Key=checksum, Body=b"0" * 32)
    ctx = make_ctx("tampered", verification={"method": "inventory", "vault_inventory_id": "tampered"})

    shown = commitment.locked_copy_commitment(ctx, as_of=AS_OF)

    [read] = shown.read_from
    assert read["source"] == "head" and "does not match its manifest.checksum" in read["note"]
    assert "read with HEAD instead" in capsys.readouterr().out
    assert shown.scope == commitment.locked_copy_commitment(make_ctx("head"), as_of=AS_OF).scope
    missing = make_ctx("missing", verification={"method": "inventory", "vault_inventory_id": "nowhere"})
    assert "which the bucket does not have" in vault_inventory.find_report(missing)[1]


def test_phase_00_looks_for_an_inventory_only_when_verification_reads_one(owned: Drill, make_ctx: CtxFactory) -> None:
    assert vault_inventory.from_inventory(make_ctx("head")) is None
    assert vault_inventory.from_inventory(make_ctx("auto", verification={"method": "auto"})) is not None


@pytest.mark.parametrize(("change", "why"), [
    ({"IsEnabled": False}, "disabled"),
    ({"IncludedObjectVersions": "Current"}, "current versions only"),
    ({"Filter": {"Prefix": "logs/"}}, "only part of the bucket"),
    ({"OptionalFields": ["Size", "ETag"]}, "lacks the fields"),
])
def test_an_inventory_that_cannot_stand_for_the_whole_bucket_is_not_used(change: dict[str, Any], why: str) -> None:
    usable = {"Id": "x", "IsEnabled": True, "IncludedObjectVersions": "All",
              "Destination": {"S3BucketDestination": {"Bucket": "arn:aws:s3:::b", "Format": "Parquet",
                                                      "Prefix": OWNER_PREFIX}},
              "OptionalFields": list(inventory_setup.INVENTORY_FIELDS)}
    assert vault_inventory.usable_configuration(usable) == ""
    assert why in vault_inventory.usable_configuration({**usable, **change})


def test_phase_00_stops_on_a_named_vault_inventory_that_is_missing_or_partial_before_anything_is_made(
    owned: Drill, make_ctx: CtxFactory
) -> None:
    s3 = owned.client("s3")
    wanted = s3.get_bucket_inventory_configuration(Bucket=VAULT_BUCKET, Id=OWNER_CONFIG_ID)["InventoryConfiguration"]
    s3.put_bucket_inventory_configuration(Bucket=VAULT_BUCKET, Id="current-only", InventoryConfiguration={
        **wanted, "Id": "current-only", "IncludedObjectVersions": "Current"})

    def check(named: str) -> preflight.Check:
        ctx = make_ctx(f"named-{named}", verification={"method": "inventory", "vault_inventory_id": named})
        return next(c for c in preflight.check_vault_bucket(ctx) if "vault_inventory_id" in c.name)

    assert check(OWNER_CONFIG_ID).ok
    missing, partial = check("nowhere"), check("current-only")
    assert not missing.ok and "no inventory configuration 'nowhere'" in missing.found
    assert OWNER_CONFIG_ID in missing.found and "leave it null" in missing.fix
    assert not partial.ok and "current versions only" in partial.found
    with pytest.raises(PreflightError, match="vault_inventory_id"):
        preflight.raise_on_failures([missing])
