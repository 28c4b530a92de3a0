"""A recovery over many vault buckets: one job per bucket, one confirmation, one verdict that names a failing bucket.

One module backend seeds three vault buckets of 20 versions (each with its own KMS key) and
injects a fault that fails every replication task of the second bucket. The module plans the run
(nothing is written), then recovers all three in-process, step by step as the notebooks do, and
checks the verdict bucket by bucket against the seed's ground truth. The three-bucket run through
the notebooks themselves is in test_notebooks.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.session
import pandas as pd
import pytest
import yaml
from runbook_fixtures import isolated_aws_environ

from runbook_lib import bucket_checks, bucket_jobs, cleanup, guide, plan, policies, proof, provision, verify
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import DRILL_PARAMS, _drill_parameters, run_drill
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import GroundTruth, seed_vaults, vault_bucket_name
from runbook_lib.embedded.server import EmbeddedBackend, start_backend
from runbook_lib.errors import UsageError
from runbook_lib.params import load_params
from runbook_lib.run_state import recovery_purpose

BUCKETS = 3
VERSIONS = 20
FAILING = vault_bucket_name(1)


def reset_moto(endpoint: str) -> None:
    """Drop every account's resources: moto's state is process-global and other modules share it."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


@dataclass
class World:
    """The module's backend, the seed's ground truth per vault bucket, and the parameter file naming all three."""

    backend: EmbeddedBackend
    truths: list[GroundTruth]
    params_file: Path
    folder: Path

    def ctx(self, run: str) -> RunContext:
        """Return a context on the run folder `run` (phase 00 starts it)."""
        return open_run(self.params_file, self.folder / run, create=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Start a backend failing every task of the second bucket, seed three vault buckets, write their parameters."""
    folder = tmp_path_factory.mktemp("many-buckets")
    with pytest.MonkeyPatch.context() as patch:
        isolated_aws_environ(patch)
        shared_loader = botocore.loaders.create_loader()
        patch.setattr(botocore.session, "create_loader", lambda *_, **__: shared_loader)
        backend = start_backend(faults=Faults(fail_buckets=(FAILING,)), config_file=folder / "aws-config")
        try:
            for name, value in backend.environ().items():
                patch.setenv(name, value)
            reset_moto(backend.endpoint)
            truths = seed_vaults(backend.endpoint, BUCKETS, VERSIONS, random_seed=4)
            params_file = _drill_parameters(DRILL_PARAMS, None, 1, folder, BUCKETS)
            data = yaml.safe_load(params_file.read_text())
            data["verification"]["max_retry_rounds"] = 1  # one round shows the failing bucket stays failed
            params_file.write_text(yaml.safe_dump(data, sort_keys=False))
            yield World(backend, truths, params_file, folder)
        finally:
            try:
                reset_moto(backend.endpoint)
            finally:
                backend.stop()


@dataclass
class Recovery:
    """The in-process recovery of the module: its context, the plan of its jobs, and its verdict."""

    ctx: RunContext
    plan_rows: list[dict[str, Any]]
    verdict: dict[str, Any]


def recover_in_process(ctx: RunContext) -> Recovery:
    """Run phases 01-07 in-process as their notebooks do (confirming every job); return what they showed."""
    provision.ensure_recovery_key(ctx)
    provision.for_each_pair(ctx, provision.ensure_recovery_bucket)
    provision.ensure_report_bucket(ctx)
    provision.ensure_batch_policy(ctx)
    provision.ensure_batch_role(ctx)
    provision.for_each_pair(ctx, provision.ensure_vault_key_grants)
    provision.ensure_recovery_key_grants(ctx)
    provision.for_each_pair(ctx, provision.ensure_recovery_bucket_policy)
    provision.for_each_pair(ctx, provision.ensure_replication_rule)
    jobs = bucket_jobs.create_jobs(ctx)
    prepared = bucket_jobs.wait_until_prepared(jobs)
    plan_rows = bucket_jobs.plan_rows(jobs, prepared)
    guide.confirmation_gate(ctx, jobs, confirm_job=True)
    bucket_jobs.follow_jobs(jobs)
    proof.begin_verification(ctx)
    checks = bucket_checks.start(ctx)
    bucket_checks.load_manifests(checks)
    bucket_checks.load_reports(checks)
    bucket_checks.snapshot(checks)
    bucket_checks.compare(checks)
    bucket_checks.retry(checks, confirm_job=True)
    return Recovery(ctx, plan_rows, bucket_checks.conclude(ctx, checks))


@pytest.fixture(scope="module")
def recovered(world: World) -> Recovery:
    """Recover the three buckets once for the module."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in world.backend.environ().items():
            patch.setenv(name, value)
        return recover_in_process(world.ctx("recovery"))


@pytest.fixture
def reach(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """Point this test's AWS config at the module's backend (conftest cleared it) and return the world."""
    for name, value in world.backend.environ().items():
        monkeypatch.setenv(name, value)
    return world


def test_the_plan_lists_every_buckets_creations_and_writes_nothing(reach: World) -> None:
    world = reach
    ctx = plan.open_plan(world.params_file, world.folder / "planned")
    run_plan = plan.make_plan(ctx, [f"0{n}" for n in range(1, 7)])

    assert not run_plan.blocking(), run_plan.render()
    writes = {(w.service, w.operation, w.identifier) for w in run_plan.writes()}
    pairs = load_params(world.params_file).bucket_pairs
    for pair in pairs:
        assert ("s3", "CreateBucket", pair.recovery_bucket) in writes
        assert ("s3", "PutBucketReplication", pair.vault_bucket) in writes
        assert ("kms", "PutKeyPolicy", pair.vault_kms_key_arn) in writes
    assert sum(1 for w in run_plan.writes() if w.operation == "CreateJob") == BUCKETS
    names = {b["Name"] for b in ctx.recovery("s3").list_buckets()["Buckets"]}
    assert names.isdisjoint(pair.recovery_bucket for pair in pairs)  # the plan created nothing


def test_one_job_per_bucket_with_its_priority_all_confirmed_together(reach: World, recovered: Recovery) -> None:
    world = reach
    ctx = recovered.ctx
    state = ctx.ledger.state
    for pair in load_params(world.params_file).bucket_pairs:
        job = state.jobs[recovery_purpose(1, pair.vault_bucket)]
        assert job.bucket == pair.vault_bucket and job.confirmed and job.ended == "Complete"
        description = ctx.vault("s3control").describe_job(AccountId=ctx.params.vault.account_id, JobId=job.job_id)
        generator = description["Job"]["ManifestGenerator"]["S3JobManifestGenerator"]
        assert generator["SourceBucket"].endswith(f":::{pair.vault_bucket}")
        assert description["Job"]["Priority"] == pair.priority
    rows = recovered.plan_rows
    assert [row["vault bucket"] for row in rows] == [truth.vault_bucket for truth in world.truths]
    assert [row["versions"] for row in rows] == [truth.counts()["expected"] for truth in world.truths]


def test_a_bucket_whose_job_fails_fails_the_recovery_and_is_named(reach: World, recovered: Recovery) -> None:
    world = reach
    ctx, verdict = recovered.ctx, recovered.verdict
    summary = json.loads((ctx.ledger.run_dir / "summary.json").read_text())

    assert verdict["verdict"] == summary["verdict"] == "FAIL"
    by_bucket = {row["vault_bucket"]: row for row in summary["buckets"]}
    assert [row["vault_bucket"] for row in summary["buckets"]] == [t.vault_bucket for t in world.truths]
    for truth in world.truths:
        row, expected = by_bucket[truth.vault_bucket], truth.counts()["expected"]
        assert row["expected"] == expected
        if truth.vault_bucket == FAILING:
            assert row["verdict"] == "FAIL" and row["recovered"] == 0 and row["failed_tasks"] == expected
            assert row["retry_rounds"] == ctx.params.verification.max_retry_rounds
        else:
            assert (row["verdict"], row["recovered"], row["findings"]) == ("PASS", expected, [])
    assert summary["counts"]["expected"] == sum(t.counts()["expected"] for t in world.truths)
    assert summary["counts"]["recovered"] == sum(by_bucket[b]["recovered"] for b in by_bucket)
    assert summary["findings"] and all(finding.startswith(f"{FAILING}: ") for finding in summary["findings"])
    failed = pd.read_csv(ctx.ledger.run_dir / "details" / "task_failed.csv")
    assert set(failed["vault_bucket"]) == {FAILING}


def test_cleanup_restores_every_vault_bucket(reach: World, recovered: Recovery) -> None:
    world = reach
    ctx = recovered.ctx
    actions = cleanup.clean_up(ctx)
    replication = {a.identifier: a.action for a in actions if a.resource == "vault replication configuration"}
    assert replication == {truth.vault_bucket: "removed" for truth in world.truths}
    policies_removed = [a.identifier for a in actions if a.resource == "recovery bucket policy"]
    assert sorted(policies_removed) == sorted(p.recovery_bucket for p in ctx.params.bucket_pairs)
    s3 = ctx.vault("s3")
    for truth in world.truths:
        assert provision.current_replication(s3, truth.vault_bucket) is None


def test_combined_comparison_passes_only_when_every_bucket_passes() -> None:
    def comparison(verdict: str, recovered: int, findings: tuple[str, ...] = ()) -> verify.Comparison:
        details = pd.DataFrame({"key": ["k"], "version_id": ["v"], "category": ["recovered_identical"]})
        return verify.Comparison(verdict, {"expected": 2, "recovered": recovered}, details, findings)

    checks = [bucket_checks.BucketCheck(_view(name)) for name in ("alpha", "beta")]
    checks[0].comparison, checks[1].comparison = comparison("PASS", 2), comparison("FAIL", 1)
    combined = bucket_checks.combine(checks)
    assert (combined.verdict, combined.counts) == ("FAIL", {"expected": 4, "recovered": 3})
    assert combined.findings == ("beta: the bucket's verdict is FAIL",)
    assert list(combined.details["vault_bucket"]) == ["alpha", "beta"]
    checks[1].comparison = comparison("PASS", 2)
    assert bucket_checks.combine(checks).verdict == "PASS"


def _view(vault_bucket: str) -> Any:
    """Return a stand-in for a bucket pair's context: only its pair is read."""
    pair = argparse.Namespace(vault_bucket=vault_bucket, recovery_bucket=f"{vault_bucket}-recovered")
    return argparse.Namespace(params=argparse.Namespace(pair=pair))


def test_the_role_and_trust_policies_name_every_bucket_and_key() -> None:
    document = policies.batch_role_policy(
        vault_bucket=["vault-a", "vault-b"], recovery_bucket=["vault-a-recovered", "vault-b-recovered"],
        report_bucket="reports", region="us-east-1",
        vault_key_arn=["arn:aws:kms:us-east-1:111111111111:key/6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1",
                       "arn:aws:kms:us-east-1:111111111111:key/0b6d7c1e-2f0e-4e55-9d7e-3f1b1c2d3e4f"],
        recovery_key_arn="arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert statements["ReadVaultObjectVersions"]["Resource"] == ["arn:aws:s3:::vault-a/*", "arn:aws:s3:::vault-b/*"]
    assert statements["ReplicateIntoRecoveryBucket"]["Resource"] == [
        "arn:aws:s3:::vault-a-recovered/*", "arn:aws:s3:::vault-b-recovered/*"]
    assert len(statements["DecryptVaultObjects"]["Resource"]) == 2
    trust = policies.batch_role_trust_policy(vault_account_id="111111111111", vault_bucket=["vault-a", "vault-b"],
                                             region="us-east-1")
    condition = trust["Statement"][1]["Condition"]["StringEquals"]
    assert condition["aws:SourceArn"] == ["arn:aws:s3:::vault-a", "arn:aws:s3:::vault-b"]


def test_drill_parameters_name_every_seeded_bucket_with_its_own_key(tmp_path: Path) -> None:
    written = _drill_parameters(DRILL_PARAMS, None, 1, tmp_path, 3)
    pairs = load_params(written).bucket_pairs
    assert [p.vault_bucket for p in pairs] == [vault_bucket_name(i) for i in range(3)]
    assert [p.recovery_bucket for p in pairs] == [
        "recovery-golden-copies", "vault-golden-copies-2-recovered", "vault-golden-copies-3-recovered"]
    assert len({p.vault_kms_key_arn for p in pairs}) == 3
    assert yaml.safe_load(written.read_text())["recovery"]["bucket_name_pattern"] == "{vault_bucket}-recovered"


def test_a_sample_drill_over_many_buckets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    args = argparse.Namespace(params=None, out=tmp_path / "out", buckets=3, sample={"count": 10}, sample_seed=1,
                              objects=40, random_seed=1)
    with pytest.raises(UsageError, match="--sample draws from one vault bucket"):
        run_drill(args)
    assert not (tmp_path / "out").exists()
