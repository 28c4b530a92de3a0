"""The locked-copy commitment phase 00 shows, and its stop on a real account whose parameters leave the purpose open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from runbook_fixtures import CtxFactory, Drill, watch_calls, write_calls

from runbook_lib import aws_facts, cli, commitment, prices
from runbook_lib.context import open_run
from runbook_lib.embedded.seed import RECOVER, SeededVersion
from runbook_lib.errors import ParameterError, PreflightError, PurposeRequired
from runbook_lib.params import parse_params
from runbook_lib.run_kind import check_backend_claim, run_kind

pytestmark = pytest.mark.xdist_group("runbook-commitment")

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
MONTH = 365.25 / 12
GB = 2**30
REAL_ACCOUNT = {"run": {"backend": "aws", "purpose": None}}


def row(size: int, mode: str | None = None, days: float | None = None, hold: str | None = None) -> dict[str, Any]:
    until = NOW + timedelta(days=days) if days is not None else None
    return {"size": size, "object_lock_mode": mode, "object_lock_retain_until_date": until,
            "object_lock_legal_hold_status": hold}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    typed = pd.DataFrame(rows, columns=list(row(0)))
    typed["size"] = typed["size"].astype("Int64")
    typed["object_lock_retain_until_date"] = pd.to_datetime(typed["object_lock_retain_until_date"], utc=True)
    return typed


# --------------------------------------------------------------------------- the figures


def test_each_copy_costs_its_size_times_the_months_to_its_own_date() -> None:
    versions = frame([
        row(2 * GB, "COMPLIANCE", days=MONTH * 12), row(GB, "COMPLIANCE", days=MONTH * 36),
        row(4 * GB, "GOVERNANCE", days=MONTH), row(GB, None, hold="ON"), row(3 * GB, "GOVERNANCE", days=-5),
        row(5 * GB),
    ])

    copies = commitment.commitment_of(versions, "STANDARD", NOW, "the whole scope")

    compliance, governance = copies.mode("COMPLIANCE"), copies.mode("GOVERNANCE")
    assert (compliance.versions, compliance.bytes) == (2, 3 * GB)
    assert compliance.cost_usd == pytest.approx(2 * 12 * 0.023 + 1 * 36 * 0.023)
    assert compliance.latest_retain_until == (NOW + timedelta(days=MONTH * 36)).isoformat()
    assert (governance.versions, governance.cost_usd) == (1, pytest.approx(4 * 0.023))
    # A retention whose date has passed protects nothing: that copy is not locked.
    assert (copies.not_locked, copies.not_locked_bytes) == (2, 8 * GB)
    assert (copies.legal_holds.versions, copies.legal_holds.usd_per_month) == (1, pytest.approx(0.023))
    assert copies.cost_usd == pytest.approx(compliance.cost_usd + governance.cost_usd)
    assert (copies.versions, copies.bytes, copies.unknown) == (6, 16 * GB, 0)


def test_legal_holds_are_counted_apart_also_under_a_retention() -> None:
    copies = commitment.commitment_of(frame([row(GB, "COMPLIANCE", days=MONTH, hold="ON"), row(GB, hold="ON")]),
                                      "STANDARD", NOW, "x")

    assert copies.mode("COMPLIANCE").versions == 1
    assert (copies.legal_holds.versions, copies.legal_holds.also_retained) == (2, 1)
    assert copies.not_locked == 0


def test_unreadable_locks_are_counted_as_unknown_never_as_unlocked() -> None:
    versions = frame([row(GB, "COMPLIANCE", days=30), row(GB, hold="ON")])
    versions["object_lock_mode"] = ["unknown", None]
    versions["object_lock_retain_until_date"] = pd.Series(["unknown", None], dtype="string")
    versions["object_lock_legal_hold_status"] = ["OFF", "unknown"]

    copies = commitment.commitment_of(versions, "STANDARD", NOW, "x")

    assert (copies.unknown, copies.not_locked, copies.mode("COMPLIANCE").versions) == (2, 0, 0)
    assert any("lower bound" in line for line in commitment.Commitment("now", "STANDARD", copies).lines())


def test_every_replica_storage_class_has_a_price_and_its_billing_rules() -> None:
    assert set(prices.STORAGE) == set(aws_facts.STORAGE_CLASSES)
    assert prices.monthly_storage_usd(GB, "STANDARD") == pytest.approx(0.023)
    # Infrequent-access classes bill at least 128 KiB an object.
    assert prices.monthly_storage_usd(1, "STANDARD_IA") == pytest.approx(128 * 1024 / GB * 0.0125)
    # Archive classes add 32 KiB at their rate and 8 KiB at STANDARD's to every object.
    assert prices.monthly_storage_usd(0, "DEEP_ARCHIVE") == pytest.approx(32 * 1024 / GB * 0.00099
                                                                          + 8 * 1024 / GB * 0.023)
    # Intelligent-Tiering monitors objects of 128 KiB or more.
    assert prices.monthly_storage_usd(128 * 1024, "INTELLIGENT_TIERING") == pytest.approx(
        128 * 1024 / GB * 0.023 + 0.0025 / 1000)
    assert prices.monthly_storage_usd(1000, "INTELLIGENT_TIERING") == pytest.approx(1000 / GB * 0.023)


# --------------------------------------------------------------------------- on the seeded vault


def _until(version: SeededVersion) -> datetime:
    assert version.object_lock_retain_until_date is not None
    return datetime.fromisoformat(version.object_lock_retain_until_date.replace("Z", "+00:00"))


def _monthly(size: int) -> float:
    """The replicas' class in drill.yaml is INTELLIGENT_TIERING: 0.023 a GB-month, monitoring from 128 KiB."""
    return size / GB * 0.023 + (0.0025 / 1000 if size >= 128 * 1024 else 0.0)


def test_phase_00_shows_the_commitment_the_seeds_ground_truth_gives(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    as_of = datetime.now(timezone.utc).replace(microsecond=0)
    recovered = [v for v in aws_env.truth.versions if v.expected_outcome == RECOVER]

    shown = commitment.locked_copy_commitment(ctx, as_of=as_of)

    assert shown.sample is None and shown.copies is shown.scope
    assert (shown.scope.versions, shown.scope.bytes) == (len(recovered), sum(v.size for v in recovered))
    for mode in ("COMPLIANCE", "GOVERNANCE"):
        locked = [v for v in recovered if v.object_lock_mode == mode and _until(v) > as_of]
        assert locked, f"the seeded vault should hold {mode} copies"
        figures = shown.scope.mode(mode)
        assert (figures.versions, figures.bytes) == (len(locked), sum(v.size for v in locked))
        assert figures.latest_retain_until == max(_until(v) for v in locked).isoformat()
        months = [(_until(v) - as_of).total_seconds() / 86400 / MONTH for v in locked]
        cost = sum(_monthly(v.size) * m for v, m in zip(locked, months, strict=True))
        assert figures.cost_usd == pytest.approx(cost, abs=1e-6)
    held = [v for v in recovered if v.object_lock_legal_hold_status == "ON"]
    assert (shown.scope.legal_holds.versions, shown.scope.legal_holds.bytes) == (len(held), sum(v.size for v in held))
    free = [v for v in recovered if v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON"]
    assert (shown.scope.not_locked, shown.scope.unknown) == (len(free), 0)
    assert ctx.ledger.state.commitment == shown.as_record()
    assert {row["copies of"] for row in shown.as_rows()} == {"the whole scope"}


def test_a_sample_drill_shows_the_commitment_of_its_sample_next_to_the_scopes(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    ctx = make_ctx(job={"sample": {"count": 25, "seed": 3}})

    shown = commitment.locked_copy_commitment(ctx)

    assert shown.sample is not None and shown.copies is shown.sample
    drawn = pd.read_csv(ctx.ledger.run_dir / "sample" / "versions.csv", keep_default_na=False, dtype=str)
    by_version = {(v.key, v.version_id): v for v in aws_env.truth.versions}
    chosen = [by_version[(k, v)] for k, v in zip(drawn["key"], drawn["version_id"], strict=True)]
    assert shown.sample.versions == 25 == len(chosen)
    assert all(v.expected_outcome == RECOVER for v in chosen)
    assert shown.sample.mode("COMPLIANCE").versions == sum(v.object_lock_mode == "COMPLIANCE" for v in chosen)
    assert shown.sample.legal_holds.versions == sum(v.object_lock_legal_hold_status == "ON" for v in chosen)
    assert next(row["copies of"] for row in shown.as_rows()) == "the sample of 25"
    assert ctx.ledger.state.sample is not None and ctx.ledger.state.sample.drawn == 25


def test_the_embedded_backend_needs_no_purpose_and_is_recorded_as_a_drill(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx(params={"run": {"purpose": None}})

    commitment.require_purpose(ctx, commitment.locked_copy_commitment(ctx))

    kind = ctx.ledger.state.kind
    assert kind is not None
    assert (kind.purpose, kind.account, kind.scale) == ("drill", "embedded", "full")
    assert kind.description == "a full drill on the embedded backend"


def test_a_real_account_without_a_purpose_stops_phase_00_with_the_figures_and_changes_nothing(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    # The embedded backend's own profiles, without the embedded mark: a real account, as far as phase 00 knows.
    ctx = make_ctx(params=REAL_ACCOUNT)
    calls = watch_calls(ctx)
    shown = commitment.locked_copy_commitment(ctx)

    with pytest.raises(PurposeRequired) as stopped:
        commitment.require_purpose(ctx, shown)

    [problem] = stopped.value.problems
    assert problem.field == "run.purpose" and "drill or recovery" in problem.expected
    message = str(stopped.value)
    compliance = shown.scope.mode("COMPLIANCE")
    assert f"COMPLIANCE (nobody can delete them before the date, root included): {compliance.versions:,} copies" \
        in message
    assert compliance.latest_retain_until is not None and compliance.latest_retain_until[:10] in message
    assert "legal hold ON" in message and "Set run.purpose" in message
    assert stopped.value.commitment == shown.lines()
    assert write_calls(calls) == []
    kind = ctx.ledger.state.kind
    assert kind is not None and (kind.purpose, kind.account, kind.settled) == (None, "real", None)


def test_later_phases_refuse_a_real_account_without_a_purpose(aws_env: Drill, make_ctx: CtxFactory) -> None:
    params = make_ctx.params_file(params=REAL_ACCOUNT)
    make_ctx()  # the run exists: phase 00 started it

    for phase in ("01_recovery_bucket", "06_batch_replication", "07_verify"):
        with pytest.raises(ParameterError) as refused:
            open_run(params, make_ctx.folder / "run", phase=phase)
        assert refused.value.problems[0].field == "run.purpose"
    # Cleanup removes what the run created, whatever the parameters say now.
    assert open_run(params, make_ctx.folder / "run", phase="08_cleanup").params.run.purpose is None


def test_a_real_account_may_run_once_it_says_drill_or_recovery(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx(params={"run": {"backend": "aws", "purpose": "recovery"}})

    commitment.require_purpose(ctx, commitment.locked_copy_commitment(ctx))

    kind = ctx.ledger.state.kind
    assert kind is not None and (kind.purpose, kind.account, kind.scale) == ("recovery", "real", "full")
    assert kind.settled is not None


def _client(endpoint: str) -> Any:
    return SimpleNamespace(meta=SimpleNamespace(endpoint_url=endpoint))


def test_the_embedded_mark_is_refused_for_a_profile_that_reaches_aws() -> None:
    params = parse_params({
        "run_id": "drill", "region": "us-east-1", "run": {"purpose": "drill", "backend": "embedded"},
        "vault": {"profile": "v", "account_id": "111111111111", "bucket": "vault-bucket",
                  "kms_key_arn": "arn:aws:kms:us-east-1:111111111111:key/6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1"},
        "recovery": {"profile": "r", "account_id": "222222222222", "bucket": "recovery-bucket",
                     "kms_key_alias": "alias/recovery"},
        "report_bucket": "report-bucket", "notification_email": "team@example.com",
    })

    check_backend_claim(params, _client("http://127.0.0.1:5055"), _client("http://localhost:5055"))
    with pytest.raises(PreflightError) as refused:
        check_backend_claim(params, _client("http://127.0.0.1:5055"), _client("https://s3.us-east-1.amazonaws.com"))

    assert "recovery profile reaches s3.us-east-1.amazonaws.com" in str(refused.value)
    assert "run.backend: aws" in str(refused.value)
    assert run_kind(params).describe() == "a full drill on the embedded backend"


@pytest.fixture
def _restored_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.slow
@pytest.mark.usefixtures("_restored_environ")
def test_runbook_run_stops_in_phase_00_with_exit_code_2_and_says_what_to_set(
    aws_env: Drill, make_ctx: CtxFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    params = make_ctx.params_file("real", params=REAL_ACCOUNT)

    status = cli.main(["run", "--params", str(params), "--out", str(tmp_path / "real-run"), "--to", "01"])

    error = capsys.readouterr().err
    assert status == 2
    assert "phase 00_preflight failed: PurposeRequired" in error
    assert "run.purpose" in error and "COMPLIANCE" in error and "legal hold ON" in error
    assert not (tmp_path / "real-run" / "notebooks" / "01_recovery_bucket.ipynb").exists()
