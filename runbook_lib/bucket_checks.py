"""Phase 07 over every vault bucket of the run: each bucket pair verified as one bucket is, then one verdict.

Each `BucketCheck` carries one pair's manifest, reports, snapshots, comparison and retry rounds
through the steps of `proof`, which act on one pair. The recovery's verdict is PASS only when
every bucket's is: `combine` joins the comparisons (every detail row names its vault bucket, every
finding too), and `conclude` writes one summary.json whose `buckets` holds each bucket's counts
and verdict, and whose `counts` are the totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from runbook_lib import current_view, proof, verify
from runbook_lib.context import RunContext
from runbook_lib.run_state import RetryRoundRecord

__all__ = ["BucketCheck", "bucket_rows", "combine", "compare", "conclude", "load_manifests", "load_reports",
           "progress_history", "retry", "snapshot", "start"]


@dataclass
class BucketCheck:
    """One bucket pair's verification: what its jobs say, what its buckets hold, and how they compare."""

    ctx: RunContext
    manifest: pd.DataFrame | None = None
    first_report: pd.DataFrame | None = None
    vault: pd.DataFrame | None = None
    recovery: pd.DataFrame | None = None
    comparison: verify.Comparison | None = None
    rounds: list[RetryRoundRecord] = field(default_factory=list)

    @property
    def vault_bucket(self) -> str:
        """The vault bucket this check verifies."""
        return self.ctx.params.pair.vault_bucket

    @property
    def recovery_bucket(self) -> str:
        """The recovery bucket it was recovered into."""
        return self.ctx.params.pair.recovery_bucket

    def compared(self) -> verify.Comparison:
        """Return the bucket's comparison (an error before `compare` made it)."""
        if self.comparison is None:
            raise ValueError(f"{self.vault_bucket} has not been compared yet: run the comparison cell first")
        return self.comparison


def start(ctx: RunContext) -> list[BucketCheck]:
    """Return one check per bucket pair of the run (one for a one-bucket run)."""
    return [BucketCheck(view) for view in ctx.pair_contexts()]


def load_manifests(checks: Sequence[BucketCheck]) -> list[dict[str, Any]]:
    """Load each bucket's job manifest and return how many versions each lists."""
    for check in checks:
        check.manifest = proof.load_job_manifest(check.ctx)
    return [{"vault bucket": c.vault_bucket, "versions in the job's manifest": len(c.manifest)}
            for c in checks if c.manifest is not None]


def load_reports(checks: Sequence[BucketCheck]) -> pd.DataFrame:
    """Load each bucket's completion reports and return their overview, by vault bucket."""
    frames = []
    for check in checks:
        check.first_report = proof.load_job_reports(check.ctx)
        frames.append(proof.report_overview(check.first_report).assign(vault_bucket=check.vault_bucket))
    return _bucket_first(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


def snapshot(checks: Sequence[BucketCheck]) -> pd.DataFrame:
    """Read every version of each vault bucket and its recovery bucket; return their overview."""
    frames = []
    for check in checks:
        check.vault = proof.snapshot_vault(check.ctx)
        check.recovery = proof.snapshot_recovery(check.ctx)
        frames.append(proof.snapshot_overview(check.vault, check.recovery).assign(vault_bucket=check.vault_bucket))
    return _bucket_first(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


def compare(checks: Sequence[BucketCheck]) -> verify.Comparison:
    """Compare each bucket pair, version by version, and return the comparison of them all."""
    for check in checks:
        assert check.vault is not None and check.recovery is not None, "snapshot the buckets first"
        check.comparison = proof.compare_buckets(check.ctx, check.vault, check.recovery, check.manifest,
                                                 check.first_report)
    return combine(checks)


def retry(checks: Sequence[BucketCheck], confirm_job: bool) -> tuple[verify.Comparison, list[dict[str, Any]]]:
    """Retry each bucket's failed or missing versions in its own follow-up jobs; return the comparison and rounds."""
    for check in checks:
        assert check.vault is not None, "snapshot the buckets first"
        check.comparison, check.rounds = proof.retry_failures(
            check.ctx, check.compared(), check.vault, check.manifest, confirm_job)
    rounds = [{"vault bucket": c.vault_bucket, **r.model_dump()} for c in checks for r in c.rounds]
    return combine(checks), rounds


def _bucket_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the frame with its vault_bucket column first."""
    return frame[["vault_bucket", *[c for c in frame.columns if c != "vault_bucket"]]]


def combine(checks: Sequence[BucketCheck]) -> verify.Comparison:
    """Return one comparison of every bucket: PASS only when each is, counts summed, rows and findings by bucket.

    A one-bucket run's comparison is returned as it is.
    """
    if len(checks) == 1:
        return checks[0].compared()
    comparisons = [(c.vault_bucket, c.compared()) for c in checks]
    counts: dict[str, int] = {}
    content: dict[str, int] = {}
    for _, comparison in comparisons:
        for name, value in comparison.counts.items():
            counts[name] = counts.get(name, 0) + int(value)
        for name, value in comparison.content_checks.items():
            content[name] = content.get(name, 0) + int(value)
    details = pd.concat([c.details.assign(vault_bucket=bucket) for bucket, c in comparisons], ignore_index=True)
    findings = tuple(f"{bucket}: {finding}" for bucket, c in comparisons for finding in c.findings)
    failing = [bucket for bucket, c in comparisons if c.verdict != "PASS"]
    findings += tuple(f"{bucket}: the bucket's verdict is {dict(comparisons)[bucket].verdict}" for bucket in failing
                      if not dict(comparisons)[bucket].findings)
    verdict = "PASS" if not failing else "FAIL"
    view = current_view.combine_views([(bucket, c.current_view) for bucket, c in comparisons
                                       if c.current_view is not None])
    evidence = {}
    if any(c.evidence for _, c in comparisons):
        first = next(c.evidence for _, c in comparisons if c.evidence)
        evidence = {"method": first.get("method"), "engine": first.get("engine"),
                    "buckets": {bucket: c.evidence for bucket, c in comparisons}}
    return verify.Comparison(verdict, counts, _bucket_first(details), findings, content, current_view=view,
                             evidence=evidence)


def bucket_rows(checks: Sequence[BucketCheck]) -> list[dict[str, Any]]:
    """Return each bucket's verdict and counts: the per-bucket table of the evidence and of summary.json."""
    rows = []
    for check in checks:
        comparison = check.compared()
        job = check.ctx.ledger.state.current_recovery_job(check.ctx.bucket)
        rows.append({"vault_bucket": check.vault_bucket, "recovery_bucket": check.recovery_bucket,
                     "verdict": comparison.verdict, "job_id": job.job_id if job else None,
                     "scope": proof.job_scope(check.ctx).describe(),
                     "retry_rounds": len(check.rounds), **comparison.counts,
                     "categories": {k: v for k, v in comparison.counts_by_category().items() if v},
                     "findings": list(comparison.findings)})
    return rows


def conclude(ctx: RunContext, checks: Sequence[BucketCheck]) -> dict[str, Any]:
    """Write summary.json (totals, and `buckets` with each bucket's verdict) and the detail CSVs; return the verdict.

    The recovery passes only when every bucket passes; the findings name the buckets that do not.
    """
    comparison = combine(checks)
    buckets = bucket_rows(checks)
    if len(checks) == 1:
        check = checks[0]
        return proof.conclude(check.ctx, comparison, check.rounds, check.first_report, buckets=buckets)
    rounds = [r for c in checks for r in c.rounds]
    return proof.conclude(ctx, comparison, rounds, None, buckets=buckets)


def progress_history(ctx: RunContext, checks: Sequence[BucketCheck]) -> list[dict[str, Any]]:
    """Return the recovery jobs' progress over time: one job's observations, or every job's counters summed.

    Summed at each observation of any job, with each other job's latest counters; the status is
    the observed job's until every job has completed.
    """
    if len(checks) == 1:
        return proof.progress_history(checks[0].ctx)
    histories = {c.vault_bucket: proof.progress_history(c.ctx) for c in checks}
    moments = sorted(((datetime.fromisoformat(p["at"]), bucket, p) for bucket, points in histories.items()
                      for p in points), key=lambda item: item[0])
    latest: dict[str, dict[str, Any]] = {}
    summed = []
    for _, bucket, point in moments:
        latest[bucket] = point
        done = len(latest) == len(histories) and all(p["status"] == "Complete" for p in latest.values())
        summed.append({"at": point["at"], "status": "Complete" if done else point["status"],
                       **{name: sum(int(p[name]) for p in latest.values())
                          for name in ("total", "succeeded", "failed")},
                       "active_seconds": max(int(p["active_seconds"]) for p in latest.values())})
    return summed
