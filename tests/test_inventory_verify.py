"""Both methods, both engines, one verdict: HEAD + pandas, inventory + DuckDB, inventory + Athena on one damaged drill.

The module runs one recovery (100 seeded versions, two of them uploaded in parts, a quarter of
first tasks failing, no retry), then damages the recovery bucket as an attacker or an accident
would: a recovered version deleted, a retention extended, a legal hold set, an object put that
the vault never held, one byte changed in one part of an object in parts. Every method and engine
must find the same versions in the same categories, with the same values, counts and verdict,
for the whole scope and for a sample drill's draw of it (versions not drawn are not_sampled, or
extra where the recovery bucket holds them). Then the inventory's own failure modes: a report older than the job, a
manifest or data file that does not match its checksum, no report at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from runbook_fixtures import PROVISION_ORDER, replace_with_one_part_changed

from runbook_lib import (
    batch_job,
    csv_writer,
    drill,
    evidence,
    inventory_proof,
    inventory_reports,
    proof,
    sampling,
    verify,
)
from runbook_lib.accounts import make_client, session_for
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.embedded import inventory, moto_state
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import seed_vault
from runbook_lib.embedded.server import RECOVERY_PROFILE, REGION, EmbeddedBackend, start_backend
from runbook_lib.errors import PhaseError, ReportError
from runbook_lib.inventory_reports import InventoryNotReady
from runbook_lib.ledger import open_ledger

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("inventory-verify")]

RECOVERY = "recovery-golden-copies"


def _canonical(details: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the detail rows as plain values in (key, version id) order: what a reader of the CSV sees."""
    rows = []
    frame = details.sort_values(["key", "version_id"], kind="stable").reset_index(drop=True)
    for record in frame.to_dict("records"):
        row = {}
        for name, value in record.items():
            if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
                row[name] = None
            elif isinstance(value, pd.Timestamp):
                row[name] = value.tz_convert("UTC").isoformat()
            elif hasattr(value, "item"):
                row[name] = value.item()
            else:
                row[name] = value if isinstance(value, (bool, int, float)) else str(value)
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def backend() -> Iterator[EmbeddedBackend]:
    with start_backend(faults=Faults(task_failure_rate=0.25, seed=12)) as running:
        yield running
        running.reset()


@pytest.fixture(scope="module")
def damaged(backend: EmbeddedBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One recovery with failed tasks, then a damaged recovery bucket; the inputs every method reads."""
    folder = tmp_path_factory.mktemp("inventory-verify")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in backend.environ().items():
            patch.setenv(name, value)
        backend.reset()
        truth = seed_vault(backend.endpoint, 100, random_seed=5)
        params = yaml.safe_load(DRILL_PARAMS.read_text())
        params["job"]["poll_seconds"] = 0.05
        params["verification"]["head_sample"] = 20
        params_file = folder / "params.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        ctx = open_run(params_file, folder / "run", create=True)
        for ensure in PROVISION_ORDER:
            ensure(ctx)
        job_id, _ = batch_job.create_replication_job(ctx)
        batch_job.wait_for_status(ctx, job_id, {"Suspended", "Ready", "Active"})
        batch_job.confirm_job(ctx, job_id, "confirmed by the test")
        batch_job.follow_job(ctx, job_id)
        damage = _damage(make_client(session_for(RECOVERY_PROFILE, REGION), "s3", region_name=REGION), truth.versions)
        manifest = proof.load_job_manifest(ctx)
        report = proof.load_job_reports(ctx)
        findings = proof.check_job_outputs(ctx, manifest, report)
        yield {"ctx": ctx, "manifest": manifest, "report": report, "findings": findings, "damage": damage,
               "backend": backend}


def _damage(s3: Any, seeded: list[Any]) -> dict[str, tuple[str, str]]:
    """Damage five recovered versions, each in one way, and return which."""
    versions = [v for page in s3.get_paginator("list_object_versions").paginate(Bucket=RECOVERY)
                for v in page.get("Versions", [])]
    recovered = {(v["Key"], v["VersionId"]) for v in versions}
    in_parts = next(v for v in sorted(seeded, key=lambda v: -(v.parts or 0))
                    if v.parts and (v.key, v.version_id) in recovered)
    heads = {(v["Key"], v["VersionId"]): s3.head_object(Bucket=RECOVERY, Key=v["Key"], VersionId=v["VersionId"])
             for v in versions}
    unlocked = [k for k, h in heads.items() if not h.get("ObjectLockMode")
                and h.get("ObjectLockLegalHoldStatus") != "ON"]
    governed = [k for k, h in heads.items() if h.get("ObjectLockMode") == "GOVERNANCE" and k not in unlocked]
    no_hold = [k for k, h in heads.items() if h.get("ObjectLockLegalHoldStatus") != "ON" and k not in unlocked[:1]
               and k not in governed[:1]]
    deleted, extended = unlocked[0], governed[0]
    held = next(k for k in no_hold if k != (in_parts.key, in_parts.version_id))
    s3.delete_object(Bucket=RECOVERY, Key=deleted[0], VersionId=deleted[1])
    until = heads[extended]["ObjectLockRetainUntilDate"] + timedelta(days=30)
    s3.put_object_retention(Bucket=RECOVERY, Key=extended[0], VersionId=extended[1],
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    s3.put_object_legal_hold(Bucket=RECOVERY, Key=held[0], VersionId=held[1], LegalHold={"Status": "ON"})
    extra = s3.put_object(Bucket=RECOVERY, Key="planted/not-from-the-vault.txt", Body=b"planted")
    replace_with_one_part_changed(s3, RECOVERY, in_parts)
    return {"deleted": deleted, "extended": extended, "held": held,
            "extra": ("planted/not-from-the-vault.txt", extra["VersionId"]),
            "content": (in_parts.key, in_parts.version_id)}


@pytest.fixture(scope="module")
def compared(damaged: dict[str, Any]) -> dict[str, verify.Comparison]:
    """The same damaged recovery, verified by HEAD + pandas, inventory + DuckDB and inventory + Athena."""
    ctx: RunContext = damaged["ctx"]
    head = proof.compare_buckets(ctx, proof.snapshot_vault(ctx, []), proof.snapshot_recovery(ctx, []),
                                 damaged["manifest"], damaged["report"])
    outcomes = inventory_proof.prepare(ctx)
    assert {o.status for o in outcomes} <= {"created", "updated"}
    assert {o.status for o in inventory_proof.prepare(ctx)} == {"unchanged"}
    config_id = f"{ctx.params.run_id}-verification"
    for bucket in (ctx.params.vault.bucket, ctx.params.recovery.bucket):
        delivered = damaged["backend"].deliver_inventory(bucket, config_id)
        assert not delivered.skipped, delivered.skipped
    pair = inventory_proof.locate_reports(ctx)
    args = (ctx, pair, damaged["manifest"], damaged["report"], damaged["findings"])
    def viewed(comparison: verify.Comparison, sampled: bool = False) -> verify.Comparison:
        """The comparison with what applications will read, from the inventory snapshots, as phase 07 adds it."""
        return proof.with_current_view(comparison, inventory_proof.snapshot(ctx, "vault"),
                                       inventory_proof.snapshot(ctx, "recovery"), proof.job_scope(ctx),
                                       ctx.params.verification.current_view, sampled=sampled)

    compared = {"head": head, "duckdb": viewed(inventory_proof.compare(*args, engine="duckdb")),
                "athena": viewed(inventory_proof.compare(*args, engine="athena"))}
    # A sample drill's verification of the same buckets: every third version in scope drawn, and the
    # damaged ones, so versions not drawn are found both absent (not_sampled) and present (extra).
    in_scope = head.details[head.details["expected"]]
    picked = set(range(0, len(in_scope), 3))
    sample = in_scope[[n in picked for n in range(len(in_scope))]
                      | in_scope.set_index(["key", "version_id"]).index.isin(list(damaged["damage"].values()))]
    sample = sample[["key", "version_id"]].reset_index(drop=True)
    with pytest.MonkeyPatch.context() as patch:
        job = ctx.params.job.model_copy(update={"sample": {"count": len(sample), "seed": 1}})
        patch.setattr(ctx, "params", ctx.params.model_copy(update={"job": job}))
        patch.setattr(sampling, "drawn_versions", lambda _ctx: sample)
        compared["sample_head"] = proof.compare_buckets(ctx, proof.snapshot_vault(ctx, []),
                                                        proof.snapshot_recovery(ctx, []),
                                                        damaged["manifest"], damaged["report"])
        compared["sample_duckdb"] = viewed(inventory_proof.compare(*args, engine="duckdb"), sampled=True)
        compared["sample_athena"] = viewed(inventory_proof.compare(*args, engine="athena"), sampled=True)
    return compared


def test_every_method_and_engine_gives_the_same_details_counts_and_verdict(
    compared: dict[str, verify.Comparison],
) -> None:
    for prefix in ("", "sample_"):
        _assert_same_comparisons(compared, prefix)
    sampled = compared["sample_head"]
    assert sampled.counts["not_sampled"] > 0 and sampled.counts["extra"] > compared["head"].counts["extra"]
    assert sampled.counts["expected"] < compared["head"].counts["expected"]


def _assert_same_comparisons(compared: dict[str, verify.Comparison], prefix: str) -> None:
    head = compared[prefix + "head"]
    assert head.verdict == "FAIL"
    for name in (prefix + "duckdb", prefix + "athena"):
        other = compared[name]
        assert other.verdict == head.verdict, name
        assert other.counts == head.counts, name
        assert other.findings == head.findings, name
        assert other.counts_by_category() == head.counts_by_category(), name
        assert list(other.details.columns) == list(head.details.columns), name
        _assert_same_details(name, other, head)
        assert other.current_view is not None and head.current_view is not None
        assert other.current_view.as_record() == head.current_view.as_record(), name


# An inventory lists the checksum algorithm, never the checksum: these columns follow their own rule.
_CHECKSUM_VALUES = ("vault_checksum", "recovery_checksum", "checksum_compared", "checksum_not_compared")


def _assert_same_details(name: str, other: verify.Comparison, head: verify.Comparison) -> None:
    """Assert identical detail rows, but for the checksum values an inventory cannot show."""
    theirs, ours = _canonical(other.details), _canonical(head.details)
    assert [(r["key"], r["version_id"]) for r in theirs] == [(r["key"], r["version_id"]) for r in ours], name
    for mine, seen in zip(theirs, ours, strict=True):
        diff = {k: (mine[k], seen[k]) for k in mine if k not in _CHECKSUM_VALUES and mine[k] != seen[k]}
        assert not diff, (name, mine["key"], diff)
        assert mine["vault_checksum"] is None and mine["recovery_checksum"] is None, name
        assert mine["checksum_compared"] is False, name
        assert mine["checksum_not_compared"] == (seen["checksum_compared"] or seen["checksum_not_compared"]), name
    for check in ("content_compared", "multipart_etag"):
        assert other.content_checks[check] == head.content_checks[check], (name, check)
    assert other.content_checks["checksum_not_compared"] == (
        head.content_checks["checksum_compared"] + head.content_checks["checksum_not_compared"]), name


def test_every_methods_detail_tables_are_written_column_by_column_as_pandas_writes_them(
    compared: dict[str, verify.Comparison], tmp_path: Path,
) -> None:
    for name, comparison in compared.items():
        tables = {"all_versions": comparison.details, **{category: comparison.category(category)
                                                         for category in comparison.counts_by_category()}}
        assert comparison.current_view is not None
        tables["current_view"] = comparison.current_view.rows
        for table, frame in tables.items():
            assert csv_writer._formattable(frame) is not None, (name, table)
            csv_writer.write_csv(frame, tmp_path / "fast.csv")
            frame.to_csv(tmp_path / "pandas.csv", index=False)
            assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes(), (name, table)


def test_the_damage_is_found_where_it_was_done(compared: dict[str, verify.Comparison],
                                               damaged: dict[str, Any]) -> None:
    for name, comparison in compared.items():
        details = comparison.details.set_index(["key", "version_id"])
        damage = damaged["damage"]
        assert details.loc[damage["deleted"], "category"] in (verify.MISSING_IN_RECOVERY, verify.TASK_FAILED), name
        assert details.loc[damage["extended"], verify.RETAIN_UNTIL_DIFFERS], name
        assert details.loc[damage["held"], verify.LEGAL_HOLD_DIFFERS], name
        assert details.loc[damage["extra"], "category"] == verify.EXTRA_IN_RECOVERY, name
        assert details.loc[damage["content"], "category"] == verify.CONTENT_DIFFERS, name
        assert details.loc[damage["content"], "multipart_etag"], name
        assert comparison.counts["failed_tasks"] > 0, name
        assert comparison.counts["content_mismatches"] == 1, name


def test_head_recheck_confirms_the_inventory_or_adds_findings(compared: dict[str, verify.Comparison],
                                                              damaged: dict[str, Any]) -> None:
    checked, record = inventory_proof.head_check(damaged["ctx"], compared["duckdb"])
    assert record["sampled_identical"] == 20 and record["mismatches_rechecked"] > 0
    assert record["disagreements"] == 0 and checked.findings == compared["duckdb"].findings
    # A change after the report was taken is caught by the re-check, never passed.
    s3 = damaged["ctx"].recovery("s3")
    identical = compared["duckdb"].category(verify.RECOVERED_IDENTICAL)
    unheld = identical[identical["recovery_object_lock_legal_hold_status"].fillna("OFF").str.upper() != "ON"]
    key, version_id = unheld.iloc[0]["key"], unheld.iloc[0]["version_id"]
    s3.put_object_legal_hold(Bucket=RECOVERY, Key=key, VersionId=version_id, LegalHold={"Status": "ON"})
    try:
        changed, record = inventory_proof.head_check(damaged["ctx"], compared["duckdb"], sample=10**6)
        assert record["disagreements"] == 1 and changed.verdict == "FAIL"
        assert any(key in finding and "object_lock_legal_hold_status" in finding for finding in changed.findings)
    finally:
        s3.put_object_legal_hold(Bucket=RECOVERY, Key=key, VersionId=version_id, LegalHold={"Status": "OFF"})


def test_head_recheck_compares_checksums_the_inventory_cannot_show(compared: dict[str, verify.Comparison],
                                                                   damaged: dict[str, Any]) -> None:
    comparison = compared["duckdb"]
    identical = comparison.category(verify.RECOVERED_IDENTICAL)
    key, version_id = identical.iloc[0]["key"], identical.iloc[0]["version_id"]
    ctx: RunContext = damaged["ctx"]
    stored = {side: next(v for v in moto_state.versions_of(moto_state.find_bucket(bucket), key)
                         if v.version_id == version_id)
              for side, bucket in (("vault", ctx.params.vault.bucket), ("recovery", RECOVERY))}
    kept = {side: (v.checksum_algorithm, v.checksum_value) for side, v in stored.items()}
    # Both copies get a SHA-256 checksum below the API, different ones; size and ETag stay as they were:
    # only a checksum shows the difference, and an inventory lists none.
    for side, value in (("vault", "AAAAAAAA"), ("recovery", "BBBBBBBB")):
        stored[side].checksum_algorithm, stored[side].checksum_value = "SHA256", value
    try:
        checked, record = inventory_proof.head_check(ctx, comparison, sample=10**6)
    finally:
        for side, (algorithm, value) in kept.items():
            stored[side].checksum_algorithm, stored[side].checksum_value = algorithm, value
    assert record["checksums_compared"] >= 1 and record["checksums_differing"] == 1
    assert checked.verdict == "FAIL"
    assert any(key in finding and "checksum differs" in finding for finding in checked.findings)
    # What the re-check compared is counted as compared; the inventory alone compared none.
    assert comparison.content_checks["checksum_compared"] == 0
    assert checked.content_checks["checksum_compared"] == min(
        record["checksums_compared"], comparison.content_checks["checksum_not_compared"])


def test_a_report_older_than_the_job_cannot_be_used(damaged: dict[str, Any]) -> None:
    ctx: RunContext = damaged["ctx"]
    ended = inventory_proof.jobs_ended(ctx)
    assert ended is not None
    s3 = damaged["ctx"].recovery("s3")
    config = s3.get_bucket_inventory_configuration(Bucket=RECOVERY, Id=f"{ctx.params.run_id}-verification")
    stale_config = dict(config["InventoryConfiguration"], Id="stale")
    s3.put_bucket_inventory_configuration(Bucket=RECOVERY, Id="stale", InventoryConfiguration=stale_config)
    inventory.deliver(RECOVERY, "stale", now=ended - timedelta(hours=2))
    report = inventory_reports.latest_report(ctx.vault("s3"), ctx.params.report_bucket,
                                             ctx.params.verification.inventory_prefix, RECOVERY, "stale")
    with pytest.raises(InventoryNotReady, match="before the run's last job ended"):
        inventory_reports.check_fresh(report, ended, "the run's last job")


def test_a_missing_report_cannot_be_used(damaged: dict[str, Any]) -> None:
    ctx: RunContext = damaged["ctx"]
    with pytest.raises(InventoryNotReady, match="up to 48 hours"):
        inventory_reports.latest_report(ctx.vault("s3"), ctx.params.report_bucket, "nothing-here", RECOVERY, "none")


def test_a_report_that_does_not_match_its_checksums_is_refused(damaged: dict[str, Any], tmp_path: Path) -> None:
    ctx: RunContext = damaged["ctx"]
    s3 = ctx.vault("s3")
    pair = inventory_proof.locate_reports(ctx)
    # A data file changed after S3 wrote it: its MD5 no longer matches the manifest.
    key = pair.recovery.files[0][0]
    original = s3.get_object(Bucket=ctx.params.report_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=ctx.params.report_bucket, Key=key, Body=original + b"tampered")
    try:
        with pytest.raises(ReportError, match="MD5"):
            inventory_reports.download_files(s3, pair.recovery, tmp_path)
        with pytest.raises(ReportError):
            inventory_reports.verify_files(s3, pair.recovery)
    finally:
        s3.put_object(Bucket=ctx.params.report_bucket, Key=key, Body=original)
    # The manifest itself changed: it no longer matches manifest.checksum.
    body = json.loads(s3.get_object(Bucket=ctx.params.report_bucket, Key=pair.recovery.manifest_key)["Body"].read())
    body["files"] = body["files"][:0]
    s3.put_object(Bucket=ctx.params.report_bucket, Key=pair.recovery.manifest_key, Body=json.dumps(body).encode())
    with pytest.raises(ReportError, match=r"manifest\.checksum"):
        inventory_proof.locate_reports(ctx)


def _by_inventory(ctx: RunContext) -> RunContext:
    """Return the run's context with verification.method inventory and no wait for reports."""
    verification = ctx.params.verification.model_copy(update={"method": "inventory", "inventory_wait_minutes": 0})
    return RunContext(ctx.params.model_copy(update={"verification": verification}), ctx.ledger, ctx.sessions)


def _remove_reports(ctx: RunContext, bucket: str) -> None:
    """Delete every report delivered for `bucket` by the run's configuration (as if S3 had not delivered yet)."""
    s3 = ctx.vault("s3")
    base = inventory_reports.report_base(ctx.params.verification.inventory_prefix, bucket,
                                         f"{ctx.params.run_id}-verification")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=ctx.params.report_bucket, Prefix=base + "/"):
        for version in page.get("Versions", []):
            s3.delete_object(Bucket=ctx.params.report_bucket, Key=version["Key"], VersionId=version["VersionId"])


@pytest.mark.parametrize("report", ["missing", "older than the job"])
def test_a_report_not_delivered_since_the_job_leaves_the_verdict_incomplete_waiting_never_pass(
    damaged: dict[str, Any], report: str
) -> None:
    ctx = _by_inventory(damaged["ctx"])
    config_id = f"{ctx.params.run_id}-verification"
    _remove_reports(ctx, RECOVERY)
    if report == "older than the job":
        ended = inventory_proof.jobs_ended(ctx)
        assert ended is not None
        inventory.deliver(RECOVERY, config_id, now=ended - timedelta(hours=2))
    try:
        with pytest.raises(InventoryNotReady) as stopped:
            proof.compare_buckets(ctx, pd.DataFrame(), pd.DataFrame(), damaged["manifest"], damaged["report"])
        summary = json.loads((ctx.ledger.run_dir / "summary.json").read_text())
        assert summary["verdict"] == "INCOMPLETE"
        assert summary["reason"] == (f"the inventory report for bucket {RECOVERY} has not been delivered since the "
                                     "job ended; re-run phase 07 after it is")
        assert summary["waiting"]["what"] == f"the inventory report of bucket {RECOVERY}"
        assert open_ledger(ctx.ledger.run_dir).state.verdict.verdict == "INCOMPLETE"  # type: ignore[union-attr]
        # A phase 07 that stopped so keeps INCOMPLETE (not FAIL, never PASS); the command exits 1, not 3:
        # exit 3 is a wait for a confirmation only.
        error = PhaseError("07_verify", "InventoryNotReady", str(stopped.value))
        assert evidence.settle_unfinished_verification(ctx.ledger.run_dir, str(error)) == "INCOMPLETE"
        assert drill._exit_code_for(error) == 1
    finally:
        damaged["backend"].deliver_inventory(RECOVERY, config_id)


def test_a_report_whose_checksum_does_not_match_fails_the_verification(damaged: dict[str, Any]) -> None:
    ctx = _by_inventory(damaged["ctx"])
    s3 = ctx.vault("s3")
    pair = inventory_proof.locate_reports(ctx)
    key = pair.vault.files[0][0]
    original = s3.get_object(Bucket=ctx.params.report_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=ctx.params.report_bucket, Key=key, Body=original + b"tampered")
    try:
        proof.begin_verification(ctx)
        with pytest.raises(ReportError, match="MD5") as stopped:
            proof.compare_buckets(ctx, pd.DataFrame(), pd.DataFrame(), damaged["manifest"], damaged["report"])
        error = PhaseError("07_verify", "ReportError", str(stopped.value))
        assert evidence.settle_unfinished_verification(ctx.ledger.run_dir, str(error)) == "FAIL"
        summary = json.loads((ctx.ledger.run_dir / "summary.json").read_text())
        assert summary["verdict"] == "FAIL" and "MD5" in summary["reason"]
        assert drill._exit_code_for(error) == 1
    finally:
        s3.put_object(Bucket=ctx.params.report_bucket, Key=key, Body=original)
