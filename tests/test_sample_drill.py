"""Sample drills end to end on the embedded backend, in-process with the library calls the phase notebooks make.

Each test seeds a fresh vault (80 versions), draws a sample in phase 00, provisions the run, runs
the Batch Replication job on the sample's CSV manifest and verifies it, as phases 00-07 do. The
backend fails a share of first tasks (retries succeed), so every sample has retry rounds to run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from runbook_fixtures import PROVISION_ORDER, verify_in_process

from runbook_lib import batch_job, commitment, evidence
from runbook_lib.accounts import make_client, session_for
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import RECOVER, GroundTruth, seed_vault
from runbook_lib.embedded.server import RECOVERY_PROFILE, REGION, VAULT_PROFILE, EmbeddedBackend, start_backend
from runbook_lib.errors import ScopeError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sample-drill")]

RECOVERY = "recovery-golden-copies"
REPORTS = "vault-batch-reports"
SAMPLE = {"count": 30, "seed": 4}


@pytest.fixture(scope="module")
def backend() -> Iterator[EmbeddedBackend]:
    """A backend for the module that fails a quarter of first tasks (a version's retry succeeds)."""
    with start_backend(faults=Faults(task_failure_rate=0.25, seed=5)) as running:
        yield running
        running.reset()


class World:
    """One test's seeded vault and run folder, with clients of both accounts."""

    def __init__(self, truth: GroundTruth, folder: Path) -> None:
        self.truth = truth
        self.folder = folder
        self._clients: dict[tuple[str, str], Any] = {}

    def ctx(self, run: str = "run", **job: Any) -> RunContext:
        params = yaml.safe_load(DRILL_PARAMS.read_text())
        params["job"].update(poll_seconds=0.05, **job)
        path = self.folder / f"{run}.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return open_run(path, self.folder / run, create=True)

    def client(self, service: str, side: str = "vault") -> Any:
        if (service, side) not in self._clients:
            profile = VAULT_PROFILE if side == "vault" else RECOVERY_PROFILE
            self._clients[(service, side)] = make_client(session_for(profile, REGION), service, region_name=REGION)
        return self._clients[(service, side)]

    def recovered(self) -> set[tuple[str, str]]:
        pages = self.client("s3", "recovery").get_paginator("list_object_versions").paginate(Bucket=RECOVERY)
        return {(v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", [])}

    def in_scope(self) -> set[tuple[str, str]]:
        return {(v.key, v.version_id) for v in self.truth.versions if v.expected_outcome == RECOVER}


@pytest.fixture
def world(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    for name, value in backend.environ().items():
        monkeypatch.setenv(name, value)
    backend.reset()
    return World(seed_vault(backend.endpoint, 80, random_seed=6), tmp_path)


def preflight(ctx: RunContext) -> commitment.Commitment:
    """Phase 00's commitment cell: the figures, the draw, and the purpose."""
    shown = commitment.locked_copy_commitment(ctx)
    commitment.require_purpose(ctx, shown)
    return shown


def provision_and_replicate(ctx: RunContext) -> dict[str, Any]:
    """Run phases 01-06 in-process as their notebooks do; return the job's final description."""
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    job_id, _ = batch_job.create_replication_job(ctx)
    batch_job.wait_for_status(ctx, job_id, {"Suspended", "Ready", "Active"})
    batch_job.confirm_job(ctx, job_id, "confirmed by the test")
    return batch_job.follow_job(ctx, job_id)


def drawn(ctx: RunContext) -> set[tuple[str, str]]:
    versions = pd.read_csv(ctx.ledger.run_dir / "sample" / "versions.csv", keep_default_na=False, dtype=str)
    return set(zip(versions["key"], versions["version_id"], strict=True))


def summary(ctx: RunContext) -> dict[str, Any]:
    return dict(json.loads((ctx.ledger.run_dir / "summary.json").read_text()))


def test_a_sample_drill_recovers_exactly_its_sample_retries_and_passes(world: World) -> None:
    ctx = world.ctx(sample=SAMPLE)
    shown = preflight(ctx)
    sample = drawn(ctx)
    manifest_bytes = (ctx.ledger.run_dir / "sample" / "manifest.csv").read_bytes()

    request = batch_job.replication_job_request(ctx)
    final = provision_and_replicate(ctx)
    verdict = verify_in_process(ctx)

    # The job was given the sample as a CSV manifest, exactly as a user-supplied one is given to S3.
    assert "ManifestGenerator" not in request
    assert request["Manifest"]["Spec"] == {"Format": "S3BatchOperations_CSV_20180820",
                                           "Fields": ["Bucket", "Key", "VersionId"]}
    assert request["Manifest"]["Location"]["ETag"] == hashlib.md5(manifest_bytes).hexdigest()
    assert final["Manifest"] == request["Manifest"] and final["ProgressSummary"]["TotalNumberOfTasks"] == 30
    uploaded = ctx.ledger.state.sample.uploaded  # type: ignore[union-attr]
    assert uploaded is not None
    stored = world.client("s3").get_object(Bucket=REPORTS, Key=uploaded["key"])
    assert stored["Body"].read() == manifest_bytes and stored["ServerSideEncryption"] == "AES256"
    # Exactly the drawn versions are in the recovery bucket, all of them in scope, and it passes.
    assert len(sample) == 30 and sample <= world.in_scope()
    assert world.recovered() == sample
    assert verdict["verdict"] == "PASS"
    written = summary(ctx)
    assert written["counts"]["expected"] == written["counts"]["recovered"] == 30
    assert written["counts"]["not_sampled"] == len(world.in_scope()) - 30
    assert written["retry_rounds"], "the backend's faults should have failed some first tasks"
    assert written["run"]["description"] == "a sample drill on the embedded backend"
    strata = written["sample"]["strata"]
    assert sum(row["in_scope"] for row in strata) == len(world.in_scope())
    assert all(row["drawn"] >= 1 for row in strata) and all(row["drawn"] >= 1 for row in written["sample"]["coverage"])
    speed = written["sample"]["throughput"]
    assert speed["tasks"] == 30 and speed["whole_scope"]["versions"] == len(world.in_scope())
    assert speed["whole_scope"]["seconds"]["high"] >= speed["whole_scope"]["seconds"]["estimate"]
    assert written["commitment"]["sample"]["versions"] == 30 == shown.copies.versions
    html = evidence.export_html(ctx.ledger.run_dir).read_text()
    assert "This was a sample drill" in html and "Extrapolated to the whole scope" in html
    assert "a sample drill on the embedded backend" in html

    # One run, one sample: phase 00 keeps the sample the job was given, and refuses another, or none.
    again = world.ctx(sample=SAMPLE)
    preflight(again)
    assert drawn(again) == sample
    assert batch_job.create_replication_job(again) == (batch_job.current_job_id(ctx), False)
    with pytest.raises(ScopeError, match="A run has one sample"):
        preflight(world.ctx(sample={"count": 30, "seed": 5}))
    with pytest.raises(ScopeError, match=r"job\.sample is now null"):
        batch_job.create_replication_job(world.ctx(sample=None))


def test_a_damaged_sample_copy_or_an_edited_manifest_fails_reverification(world: World) -> None:
    ctx = world.ctx(sample=SAMPLE)
    preflight(ctx)
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    truth = {(v.key, v.version_id): v for v in world.truth.versions}
    held = next(truth[pair] for pair in sorted(drawn(ctx)) if truth[pair].object_lock_legal_hold_status == "ON")
    world.client("s3", "recovery").put_object_legal_hold(
        Bucket=RECOVERY, Key=held.key, VersionId=held.version_id, LegalHold={"Status": "OFF"})

    damaged = verify_in_process(ctx)

    assert damaged["verdict"] == "FAIL" and damaged["legal_hold_mismatches"] == 1
    details = pd.read_csv(ctx.ledger.run_dir / "details" / "all_versions.csv", keep_default_na=False, dtype=str)
    row = details[(details["key"] == held.key) & (details["version_id"] == held.version_id)].iloc[0]
    assert row["category"] == "legal_hold_differs"

    # Put the hold back: it passes again; then edit the manifest the job read: it fails on that alone.
    world.client("s3", "recovery").put_object_legal_hold(
        Bucket=RECOVERY, Key=held.key, VersionId=held.version_id, LegalHold={"Status": "ON"})
    assert verify_in_process(ctx)["verdict"] == "PASS"
    uploaded = ctx.ledger.state.sample.uploaded  # type: ignore[union-attr]
    assert uploaded is not None
    world.client("s3").put_object(Bucket=REPORTS, Key=uploaded["key"], Body=b"vault-golden-copies,x,y\n")

    edited = verify_in_process(ctx)

    assert edited["verdict"] == "FAIL"
    assert any("but the job was created with ETag" in finding for finding in edited["findings"])
