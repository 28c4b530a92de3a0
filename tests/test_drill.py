"""End-to-end drills: the whole runbook on the embedded backend, as `runbook drill` runs it."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from runbook_fixtures import backend_secrets, replace_with_one_part_changed, write_requests

from runbook_lib import cli, history
from runbook_lib.accounts import APP_ID
from runbook_lib.call_log import read_calls
from runbook_lib.drill import DRILL_PARAMS, phase_names, run_phases
from runbook_lib.embedded import moto_state
from runbook_lib.embedded.seed import RECOVER, GroundTruth, seed_vault
from runbook_lib.embedded.server import EmbeddedBackend, start_backend
from runbook_lib.errors import PhaseError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drill")]

RECOVERY_BUCKET = "recovery-golden-copies"


@pytest.fixture(autouse=True)
def _restore_environ() -> Any:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def test_drill_passes_and_its_counts_equal_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A relative run folder, as `make drill` passes it: the kernels run elsewhere and must still find it.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "drill"

    status = cli.main(["drill", "--objects", "150", "--out", "runs/drill"])

    assert status == 0
    # The terminal shows the phases and the verdict, not the kernels' start-up warnings.
    assert "WARNING" not in capfd.readouterr().err
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = _summary(out)
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["source_versions"] == truth["counts"]["source_versions"]
    assert summary["counts"]["expected"] == truth["counts"]["expected"]
    assert summary["counts"]["recovered"] == truth["counts"]["expected"]
    assert summary["counts"]["missing"] == 0 and summary["counts"]["failed_tasks"] == 0
    assert [p["phase"] for p in summary["phases"]] == phase_names()
    assert all(p["status"] == "ok" and p["seconds"] > 0 for p in summary["phases"])
    assert summary["recovery_seconds"] > 0
    html = (out / "evidence.html").read_text()
    assert "Verdict: PASS" in html and "Phase 06" in html and "Phase 08" in html
    assert (out / "details" / "all_versions.csv").exists()
    # Golden copies uploaded in parts were recovered with their multipart ETags and checksum, and the
    # evidence says how content was compared.
    assert sorted(v["parts"] for v in truth["versions"] if v["parts"]) == [2, 3]
    assert summary["content_checks"]["multipart_etag"] == 2 and summary["content_checks"]["checksum_compared"] == 1
    assert "uploaded in parts" in html and "compared as it is" in html
    # Every phase's calls are in the run folder's call log, which the evidence links.
    assert {call["phase"] for call in read_calls(out)} == set(phase_names())
    assert 'href="calls.jsonl"' in html
    # The verdict is in the history next to the run folders, and reconciled for an auditor.
    records = history.read_history(tmp_path / "runs" / "history.jsonl").records
    assert [(r["verdict"], r["run_folder"], r["counts"]) for r in records] == [
        ("PASS", str(out.resolve()), summary["counts"])]
    assert records[0]["recovery_seconds"] == summary["recovery_seconds"]
    assert set(records[0]["phase_seconds"]) == {p for p in phase_names() if p < "07"}
    page = (out / "reconciliation.html").read_text()
    assert f"<td>recovered identical</td><td>{summary['counts']['recovered']:,}</td>" in page
    assert "Reconciliation: PASS" in html and "The trend over runs" in html


def test_drill_with_failed_tasks_passes_after_a_retry_round(tmp_path: Path) -> None:
    out = tmp_path / "faulty"

    status = cli.main(["drill", "--objects", "150", "--out", str(out), "--fail-tasks", "0.2", "--fault-seed", "5"])

    assert status == 0
    summary = _summary(out)
    truth = json.loads((out / "ground_truth.json").read_text())
    failed_first = summary["first_round_failed_tasks"]
    assert failed_first, "the faults should have failed some tasks of the first job"
    assert {f["error_code"] for f in failed_first} == {"InternalError"}
    rounds = summary["retry_rounds"]
    assert len(rounds) == 1 and rounds[0]["versions"] == len(failed_first) and rounds[0]["failed"] == 0
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["recovered"] == truth["counts"]["expected"]


def _client(service: str, profile: str) -> Any:
    return boto3.Session(profile_name=profile).client(service)


@dataclass(frozen=True)
class VerifiedDrill:
    """A drill verified by phases 00-07 on a backend that recorded every request it served."""

    backend: EmbeddedBackend
    truth: GroundTruth
    run_dir: Path


@pytest.fixture(scope="class")
def verified_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifiedDrill]:
    folder = tmp_path_factory.mktemp("verified-drill")
    with start_backend(config_file=folder / "aws-config", record_requests=True) as backend:
        backend.reset()
        truth = seed_vault(backend.endpoint, 120, 2)
        run_dir = folder / "run"
        phases = [p for p in phase_names() if p < "08"]
        run_phases(DRILL_PARAMS, run_dir, phases, confirm_job=True, extra_env=backend.environ())
        try:
            yield VerifiedDrill(backend, truth, run_dir)
        finally:
            backend.reset()


class TestAfterAVerifiedDrill:
    """What a drill leaves for auditors, and what a later check finds when the recovery is damaged."""

    def test_the_call_log_lists_every_request_of_every_phase_and_no_secret(self, verified_drill: VerifiedDrill) -> None:
        calls = read_calls(verified_drill.run_dir)
        served = [r for r in verified_drill.backend.served_requests() if f"app/{APP_ID}" in r.user_agent]

        # Every request the runbook's kernels sent is in the run folder's log, with the id the backend gave it.
        assert len(calls) == len(served) > 500
        assert Counter(c["request_id"] for c in calls) == Counter(r.request_id for r in served)
        assert {c["phase"] for c in calls} == {p for p in phase_names() if p < "08"}
        assert {c["service"] for c in calls} >= {"sts", "s3", "kms", "iam", "s3control", "sns", "sqs", "events"}
        assert sum(1 for c in calls if (c["service"], c["operation"]) == ("s3control", "CreateJob")) == 1
        text = (verified_drill.run_dir / "calls.jsonl").read_text(encoding="utf-8")
        secrets = backend_secrets(verified_drill.backend.config_file)
        assert len(secrets) > 10 and [secret for secret in secrets if secret in text] == []
        vault = moto_state.find_bucket(verified_drill.truth.vault_bucket)
        bodies = [v.value[:48] for name in list(vault.keys)[:40] for v in moto_state.versions_of(vault, name)
                  if not moto_state.is_delete_marker(v) and v.size >= 48]
        assert bodies and not any(base64.b64encode(b).decode() in text or b.hex() in text for b in bodies)
        assert '"Statement"' not in text and "Credential=" not in text

    def test_the_drill_checked_its_policies_and_a_plan_after_it_lists_nothing_to_change(
        self, verified_drill: VerifiedDrill, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run_dir = verified_drill.run_dir
        analyzer_calls = [c for c in read_calls(run_dir) if c["service"] == "accessanalyzer"]
        assert {(c["phase"], c["operation"]) for c in analyzer_calls} >= {
            ("00_preflight", "ValidatePolicy"), ("00_preflight", "CheckNoNewAccess"),
            ("00_preflight", "CheckAccessNotGranted")}
        assert all(c["error_code"] is None for c in analyzer_calls)
        assert "IAM Access Analyzer on the policies" in (run_dir / "notebooks" / "00_preflight.ipynb").read_text()
        for name, value in verified_drill.backend.environ().items():
            monkeypatch.setenv(name, value)
        served_before = len(verified_drill.backend.served_requests())

        status = cli.main(["plan", "--params", str(DRILL_PARAMS), "--out", str(run_dir), "--to", "07"])

        assert status == 0
        document = json.loads((run_dir / "plan.json").read_text())
        assert set(document["counts"]) == {"leave"}
        assert [w for p in document["phases"] for w in p["writes"]] == []
        job = next(s for p in document["phases"] if p["phase"].startswith("06") for s in p["steps"])
        assert (job["action"], job["identifier"]) == ("leave", json.loads(
            (run_dir / "ledger.json").read_text())["jobs"]["recovery-1"]["job_id"])
        served = verified_drill.backend.served_requests()[served_before:]
        planned = [r for r in served if f"app/{APP_ID}" in r.user_agent]
        assert planned and write_requests(planned) == []

    def test_damage_after_a_drill_fails_reverification_with_exactly_those_versions(
        self, verified_drill: VerifiedDrill, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        backend, truth, run_dir = verified_drill.backend, verified_drill.truth, verified_drill.run_dir
        for name, value in backend.environ().items():
            monkeypatch.setenv(name, value)
        assert _summary(run_dir)["verdict"] == "PASS"
        assert _summary(run_dir)["content_checks"]["multipart_etag"] == 2

        recovered = [v for v in truth.versions if v.expected_outcome == RECOVER]
        in_parts = next(v for v in recovered if v.parts == 3)
        whole = [v for v in recovered if not v.parts]
        removed = next(v for v in whole if v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON")
        extended = next(v for v in whole if v.object_lock_mode == "GOVERNANCE" and v is not removed)
        released = next(
            v for v in whole if v.object_lock_legal_hold_status == "ON" and v not in (removed, extended))
        s3 = _client("s3", "drill-recovery")
        s3.delete_object(Bucket=RECOVERY_BUCKET, Key=removed.key, VersionId=removed.version_id)
        later = datetime.now(timezone.utc) + timedelta(days=4000)
        s3.put_object_retention(Bucket=RECOVERY_BUCKET, Key=extended.key, VersionId=extended.version_id,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
        s3.put_object_legal_hold(Bucket=RECOVERY_BUCKET, Key=released.key, VersionId=released.version_id,
                                 LegalHold={"Status": "OFF"})
        replace_with_one_part_changed(s3, RECOVERY_BUCKET, in_parts)

        with pytest.raises(PhaseError) as stopped:
            run_phases(DRILL_PARAMS, run_dir, ["07_verify"], confirm_job=True, extra_env=backend.environ())
        assert (stopped.value.phase, stopped.value.error_name) == ("07_verify", "NotVerifiedError")
        assert "NOT verified" in stopped.value.error_value
        assert stopped.value.notebook_path == str(run_dir.resolve() / "notebooks" / "07_verify.ipynb")

        summary = _summary(run_dir)
        assert summary["verdict"] == "FAIL"
        # A second verification of the same run folder is a second record, marked as such in the trend.
        past = history.read_history(run_dir.parent / "history.jsonl")
        assert [(r["verdict"], r["run_folder"]) for r in past.records] == [
            ("PASS", str(run_dir.resolve())), ("FAIL", str(run_dir.resolve()))]
        assert past.records[1]["counts"] == summary["counts"]
        assert "re-verification of the run of line 1" in history.trend_lines(past)[2]
        details = pd.read_csv(run_dir / "details" / "all_versions.csv", keep_default_na=False)
        damaged = details[details["category"] != "recovered_identical"]
        damaged = damaged[~damaged["category"].isin(["not_expected", "archived_not_recovered"])]
        by_version = {(row.key, row.version_id): row for row in damaged.itertuples()}
        assert set(by_version) == {(v.key, v.version_id) for v in (removed, extended, released, in_parts)}
        # The removed version was retried; Batch Replication refuses versions deleted at the destination.
        gone = by_version[(removed.key, removed.version_id)]
        assert bool(gone.missing_in_recovery)
        assert gone.category in ("missing_in_recovery", "task_failed")
        if gone.category == "task_failed":
            assert gone.error_code == "DstObjectHardDeleted"
        assert by_version[(extended.key, extended.version_id)].category == "retain_until_differs"
        assert by_version[(released.key, released.version_id)].category == "legal_hold_differs"
        # One changed byte in one part of a golden copy in parts: another multipart ETag, another checksum.
        tampered = by_version[(in_parts.key, in_parts.version_id)]
        assert tampered.category == "content_differs"
        assert tampered.vault_etag != tampered.recovery_etag and tampered.recovery_etag.endswith("-3")
        assert tampered.vault_checksum != tampered.recovery_checksum
        assert summary["counts"]["retention_mismatches"] == 1
        assert summary["counts"]["legal_hold_mismatches"] == 1
        assert summary["counts"]["missing"] == 1
        assert summary["counts"]["content_mismatches"] == 1
        assert "uploaded in parts" in summary["content_basis"]


def test_a_sample_drill_recovers_exactly_its_sample_and_extrapolates_the_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sample"

    status = cli.main(["drill", "--objects", "150", "--sample", "50", "--out", str(out)])

    assert status == 0
    summary = _summary(out)
    truth = json.loads((out / "ground_truth.json").read_text())
    assert summary["verdict"] == "PASS"
    counts = summary["counts"]
    assert counts["expected"] == counts["recovered"] == 50
    assert counts["not_sampled"] == truth["counts"]["expected"] - 50
    # The recovery bucket holds exactly the drawn versions, each recovered identical.
    details = pd.read_csv(out / "details" / "all_versions.csv", keep_default_na=False, dtype=str)
    in_recovery = details[details["in_recovery"] == "True"]
    manifest = pd.read_csv(out / "sample" / "manifest.csv", header=None, names=["bucket", "key", "version_id"],
                           dtype=str, keep_default_na=False)
    assert len(manifest) == 50 == len(in_recovery)
    assert set(in_recovery["version_id"]) == set(manifest["version_id"])
    assert set(in_recovery["category"]) == {"recovered_identical"}
    assert set(details.loc[details["in_sample"] == "False", "category"]) <= {
        "not_sampled", "not_expected", "archived_not_recovered"}
    sample = summary["sample"]
    assert sample["drawn"] == 50 and all(row["drawn"] > 0 for row in sample["strata"])
    assert summary["run"]["scale"] == "sample" and summary["run"]["purpose"] == "drill"
    assert sample["throughput"]["whole_scope"]["versions"] == truth["counts"]["expected"]
    html = (out / "evidence.html").read_text()
    assert "This was a sample drill" in html and "Extrapolated to the whole scope" in html
    assert "job.sample set by runbook drill --sample" in (out / "parameters.yaml").read_text()
    assert summary["run"]["backend"] == "embedded"
    printed = capsys.readouterr().out
    assert "sample: 50 of" in printed and "every one drawn" in printed and "extrapolated to the whole scope" in printed


AS_OF = "2025-01-01T00:00:00Z"


def _current_view_from_truth(truth: dict[str, Any], as_of: datetime) -> dict[str, str]:
    """Return per key the reason a GET differs between the buckets ("" when it does not), from the seed alone."""
    created = {(v["key"], v["version_id"]): datetime.fromisoformat(v["last_modified"]) for v in truth["versions"]}
    by_key: dict[str, list[dict[str, Any]]] = {}
    for v in truth["versions"]:
        by_key.setdefault(v["key"], []).append(v)
    reasons = {}
    for key, versions in by_key.items():
        then = [v for v in versions if created[(key, v["version_id"])] < as_of]
        vault = max(then, key=lambda v: created[(key, v["version_id"])]) if then else None
        kept = [v for v in then if v["expected_outcome"] == RECOVER]
        recovered = max(kept, key=lambda v: created[(key, v["version_id"])]) if kept else None
        if vault is None or vault["is_delete_marker"]:
            reasons[key] = "" if recovered is None else "delete_marker_not_replicated"
        elif recovered is not None and recovered["version_id"] == vault["version_id"]:
            reasons[key] = ""
        else:
            reasons[key] = {"skip_archived": "archived", "skip_not_replica": "outside_scope"}[vault["expected_outcome"]]
    return reasons


def test_a_drill_as_of_a_time_recovers_nothing_later_and_explains_every_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "as-of"
    as_of = datetime.fromisoformat(AS_OF.replace("Z", "+00:00"))

    status = cli.main(["drill", "--objects", "60", "--as-of", AS_OF, "--out", str(out)])

    assert status == 0
    summary, truth = _summary(out), json.loads((out / "ground_truth.json").read_text())
    created = {(v["key"], v["version_id"]): datetime.fromisoformat(v["last_modified"]) for v in truth["versions"]}
    wanted = {pair for v in truth["versions"] if v["expected_outcome"] == RECOVER
              and created[pair := (v["key"], v["version_id"])] < as_of}
    later_objects = [v for v in truth["versions"] if created[(v["key"], v["version_id"])] >= as_of
                     and not v["is_delete_marker"] and v["storage_class"] not in ("GLACIER", "DEEP_ARCHIVE")]
    assert summary["verdict"] == "PASS" and summary["as_of"] == AS_OF
    assert summary["counts"]["expected"] == summary["counts"]["recovered"] == len(wanted)
    assert summary["counts"]["after_as_of"] == len(later_objects) > 0
    # The recovery bucket holds exactly the versions created before the point in time: none later.
    details = pd.read_csv(out / "details" / "all_versions.csv", keep_default_na=False, dtype=str)
    recovered = details[details["in_recovery"] == "True"]
    assert set(zip(recovered["key"], recovered["version_id"], strict=True)) == wanted
    assert all(created[pair] < as_of for pair in wanted)
    # What applications will read, key by key, as computed from the seed alone.
    view = pd.read_csv(out / "details" / "current_view.csv", keep_default_na=False, dtype=str)
    expected_view = _current_view_from_truth(truth, as_of)
    assert dict(zip(view["key"], view["reason"], strict=True)) == expected_view
    assert set(view.loc[view["reason"] == "", "same"]) == {"True"}
    by_reason = Counter(reason for reason in expected_view.values() if reason)
    assert {k: v for k, v in summary["current_view"]["by_reason"].items() if v} == dict(by_reason)
    assert by_reason["delete_marker_not_replicated"] > 0 and summary["current_view"]["fails_verdict"] is False
    html = (out / "evidence.html").read_text()
    assert f"Point in time: {AS_OF}" in html and "What applications will read" in html
    assert "recover_as_of set by runbook drill --as-of" in (out / "parameters.yaml").read_text()
    printed = capsys.readouterr().out
    assert "seeded history: 2024-01-01 to 2025-12-31" in printed and f"recovering as of {AS_OF}" in printed
def test_a_sample_drill_verified_from_inventory_on_athena_passes_with_the_head_method_s_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "inventory"

    status = cli.main(["drill", "--objects", "100", "--sample", "30", "--verify", "inventory", "--engine", "athena",
                       "--out", "runs/inventory"])

    assert status == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = _summary(out)
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
    # Cleanup removed the inventory configurations the run made; the reports stay as evidence.
    ledger = json.loads((out / "ledger.json").read_text())
    removed = [r for r in ledger["cleanup"] if r["resource"] == "inventory configuration"]
    assert len(removed) == 2 and {r["action"] for r in removed} == {"removed"}
