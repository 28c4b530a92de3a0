"""End-to-end drills of real incidents: a sample of the scope, many vault buckets recovered as of a point
in time with their archived copies restored, and verification from S3 Inventory on Athena.

Kept apart from test_drill so that the test workers share the drills between them.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from runbook_fixtures import drill_summary

from runbook_lib import cli
from runbook_lib.embedded.seed import RECOVER, SKIP_ARCHIVED

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restored_environ")]

AS_OF = "2025-01-01T00:00:00Z"


def _created(truth: dict[str, Any]) -> dict[tuple[str, str], datetime]:
    return {(v["key"], v["version_id"]): datetime.fromisoformat(v["last_modified"]) for v in truth["versions"]}


def _current_view_from_truth(truth: dict[str, Any], as_of: datetime, recovered_outcomes: set[str]) -> dict[str, str]:
    """Return per key the reason a GET differs between the buckets ("" when it does not), from the seed alone."""
    created = _created(truth)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for v in truth["versions"]:
        by_key.setdefault(v["key"], []).append(v)
    reasons = {}
    for key, versions in by_key.items():
        then = [v for v in versions if created[(key, v["version_id"])] < as_of]
        vault = max(then, key=lambda v: created[(key, v["version_id"])]) if then else None
        kept = [v for v in then if v["expected_outcome"] in recovered_outcomes]
        recovered = max(kept, key=lambda v: created[(key, v["version_id"])]) if kept else None
        if vault is None or vault["is_delete_marker"]:
            reasons[key] = "" if recovered is None else "delete_marker_not_replicated"
        elif recovered is not None and recovered["version_id"] == vault["version_id"]:
            reasons[key] = ""
        else:
            reasons[key] = {"skip_archived": "archived", "skip_not_replica": "outside_scope"}[vault["expected_outcome"]]
    return reasons


def test_three_vault_buckets_as_of_a_time_with_archived_copies_restored_equal_the_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "incident"
    as_of = datetime.fromisoformat(AS_OF.replace("Z", "+00:00"))

    status = cli.main(["drill", "--buckets", "3", "--objects", "40", "--as-of", AS_OF, "--restore-archived",
                       "--out", str(out)])

    assert status == 0
    summary = drill_summary(out)
    truths = json.loads((out / "ground_truth.json").read_text())["buckets"]
    assert summary["verdict"] == "PASS" and summary["as_of"] == AS_OF and len(summary["buckets"]) == 3
    details = pd.read_csv(out / "details" / "all_versions.csv", keep_default_na=False, dtype=str)
    view = pd.read_csv(out / "details" / "current_view.csv", keep_default_na=False, dtype=str)
    per_bucket = {row["vault_bucket"]: row for row in summary["buckets"]}
    archived_before = 0
    all_reasons: Counter[str] = Counter()
    for truth in truths:
        bucket, created = truth["vault_bucket"], _created(truth)
        # What this bucket must give back: replicas and (restored) archived replicas created before the time.
        wanted = {pair for v in truth["versions"] if v["expected_outcome"] in (RECOVER, SKIP_ARCHIVED)
                  and created[pair := (v["key"], v["version_id"])] < as_of}
        later = [v for v in truth["versions"] if not v["is_delete_marker"]
                 and created[(v["key"], v["version_id"])] >= as_of]
        archived_before += sum(1 for v in truth["versions"] if v["expected_outcome"] == SKIP_ARCHIVED
                               and created[(v["key"], v["version_id"])] < as_of)
        row = per_bucket[bucket]
        assert row["verdict"] == "PASS", bucket
        assert row["expected"] == row["recovered"] == len(wanted) > 0, bucket
        assert row["after_as_of"] == len(later) > 0, bucket
        mine = details[details["vault_bucket"] == bucket]
        in_recovery = mine[mine["in_recovery"] == "True"]
        assert set(zip(in_recovery["key"], in_recovery["version_id"], strict=True)) == wanted, bucket
        # What applications will read in this bucket, key by key, from the seed alone.
        expected_view = _current_view_from_truth(truth, as_of, {RECOVER, SKIP_ARCHIVED})
        seen = view[view["vault_bucket"] == bucket]
        assert dict(zip(seen["key"], seen["reason"], strict=True)) == expected_view, bucket
        all_reasons.update(reason for reason in expected_view.values() if reason)
    assert {k: v for k, v in summary["current_view"]["by_reason"].items() if v} == dict(all_reasons)
    assert summary["current_view"]["fails_verdict"] is False
    archived = summary["archived"]
    assert archived["step"] is True and archived["in_scope"] == archived_before > 0
    assert archived["restored"] == archived["recovered"] == archived_before and archived["not_recovered"] == 0
    assert summary["counts"]["expected"] == sum(row["expected"] for row in summary["buckets"])
    html = (out / "evidence.html").read_text()
    assert f"Point in time: {AS_OF}" in html and "What applications will read" in html
    assert "Each vault bucket" in html and all(truth["vault_bucket"] in html for truth in truths)
    written = (out / "parameters.yaml").read_text()
    assert "recover_as_of set by runbook drill --as-of" in written and "restore.archived: true" in written
    printed = capsys.readouterr().out
    assert "seeded history: 2024-01-01 to 2025-12-31" in printed and f"recovering as of {AS_OF}" in printed


def test_a_sample_drill_verified_from_inventory_on_athena_recovers_exactly_its_sample_and_extrapolates_the_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One drill for both: a sample drill (the draw, its evidence, the extrapolated time) whose verification
    # reads S3 Inventory on Athena, so the sample's user-visible results are checked on that method too.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "inventory"

    status = cli.main(["drill", "--objects", "100", "--sample", "30", "--verify", "inventory", "--engine", "athena",
                       "--out", "runs/inventory"])

    assert status == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = drill_summary(out)
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["source_versions"] == truth["counts"]["source_versions"]
    # What the HEAD method's sample drill finds: exactly the draw recovered, the rest of the scope not sampled.
    assert summary["counts"]["recovered"] == summary["counts"]["expected"] == 30
    assert summary["counts"]["not_sampled"] == truth["counts"]["expected"] - 30
    assert summary["content_checks"]["content_compared"] == 30
    assert "checksum algorithm but not the checksum" in summary["content_basis"]
    verification = summary["verification"]
    assert verification["method"] == "inventory" and verification["engine"] == "athena"
    assert verification["head_check"]["disagreements"] == 0 and verification["head_check"]["sampled_identical"] > 0
    assert verification["reports"]["vault"]["manifest"].endswith("/manifest.json")
    # Phase 00 drew the sample from the vault owners' inventory, not by HEAD; cleanup removed the two
    # inventory configurations the run made and left the owners' alone; the reports stay as evidence.
    ledger = json.loads((out / "ledger.json").read_text())
    assert [read["source"] for read in ledger["commitment"]["read_from"]] == ["inventory"]
    assert "/vault-daily/" in ledger["commitment"]["read_from"][0]["manifest"]
    assert "from its inventory report s3://" in (out / "evidence.html").read_text()
    removed = [r for r in ledger["cleanup"] if r["resource"] == "inventory configuration"]
    assert len(removed) == 2 and {r["action"] for r in removed} == {"removed"}
    assert all("vault-daily" not in str(r) for r in removed)
    # The recovery bucket holds exactly the drawn versions, each recovered identical.
    details = pd.read_csv(out / "details" / "all_versions.csv", keep_default_na=False, dtype=str)
    in_recovery = details[details["in_recovery"] == "True"]
    manifest = pd.read_csv(out / "sample" / "manifest.csv", header=None, names=["bucket", "key", "version_id"],
                           dtype=str, keep_default_na=False)
    assert len(manifest) == 30 == len(in_recovery)
    assert set(in_recovery["version_id"]) == set(manifest["version_id"])
    assert set(in_recovery["category"]) == {"recovered_identical"}
    assert set(details.loc[details["in_sample"] == "False", "category"]) <= {
        "not_sampled", "not_expected", "archived_not_recovered"}
    sample = summary["sample"]
    assert sample["drawn"] == 30 and all(row["drawn"] > 0 for row in sample["strata"])
    assert summary["run"]["scale"] == "sample" and summary["run"]["purpose"] == "drill"
    assert sample["throughput"]["whole_scope"]["versions"] == truth["counts"]["expected"]
    html = (out / "evidence.html").read_text()
    assert "This was a sample drill" in html and "Extrapolated to the whole scope" in html
    assert "job.sample set by runbook drill --sample" in (out / "parameters.yaml").read_text()
    assert summary["run"]["backend"] == "embedded"
    printed = capsys.readouterr().out
    assert "sample: 30 of" in printed and "every one drawn" in printed and "extrapolated to the whole scope" in printed
