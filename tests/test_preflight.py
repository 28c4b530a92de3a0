"""Phase 00 against the seeded vault: every precondition, each way it fails, and the estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
from runbook_fixtures import CtxFactory, Drill

from runbook_lib import preflight
from runbook_lib.context import RunContext, open_run
from runbook_lib.errors import AccountMismatchError, PreflightError
from runbook_lib.ledger import LEDGER_FILE

pytestmark = pytest.mark.xdist_group("runbook-preflight")

OTHER_KEY = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-4000-8000-00000000beef"


def all_checks(ctx: RunContext) -> list[preflight.Check]:
    return (preflight.identity_checks(ctx) + preflight.check_vault_bucket(ctx)
            + preflight.check_vault_key(ctx) + preflight.check_names_free(ctx))


def failed(checks: list[preflight.Check]) -> dict[str, str]:
    return {c.name: c.found for c in checks if not c.ok}


def test_every_check_holds_on_the_seeded_vault(aws_env: Drill, make_ctx: CtxFactory) -> None:
    checks = all_checks(make_ctx())

    assert failed(checks) == {}
    assert {c.name for c in checks} == {
        "vault profile identity", "recovery profile identity", "accounts differ",
        "vault bucket exists", "vault bucket region", "vault bucket versioning", "vault bucket Object Lock",
        "vault default encryption key", "vault KMS key enabled", "vault KMS key symmetric",
        "vault KMS key policy readable", "recovery bucket name", "report bucket name",
    }
    preflight.raise_on_failures(checks)


def test_vault_without_object_lock_fails_that_check_and_stops_the_phase(aws_env: Drill, make_ctx: CtxFactory) -> None:
    bucket = f"plain-versioned-{make_ctx.suffix}"
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": aws_env.truth.vault_key_arn}}]})
    checks = preflight.check_vault_bucket(make_ctx(vault={"bucket": bucket}))

    assert failed(checks) == {"vault bucket Object Lock": "no Object Lock configuration"}
    with pytest.raises(PreflightError) as stopped:
        preflight.raise_on_failures(checks)
    assert "1 precondition(s) do not hold; nothing was changed" in str(stopped.value)
    assert "vault bucket Object Lock: no Object Lock configuration" in str(stopped.value)


def test_missing_vault_bucket_fails_the_first_check_only(aws_env: Drill, make_ctx: CtxFactory) -> None:
    checks = preflight.check_vault_bucket(make_ctx(vault={"bucket": f"no-such-vault-{make_ctx.suffix}"}))

    assert [(c.name, c.ok) for c in checks] == [("vault bucket exists", False)]
    assert "vault.bucket" in checks[0].fix


def test_wrong_vault_key_in_the_parameters_fails_the_key_checks(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx(vault={"kms_key_arn": OTHER_KEY})

    problems = failed(preflight.check_vault_bucket(ctx) + preflight.check_vault_key(ctx))

    assert set(problems) == {"vault default encryption key", "vault KMS key"}
    assert aws_env.truth.vault_key_arn in problems["vault default encryption key"]
    assert OTHER_KEY in problems["vault KMS key"]


def test_recovery_bucket_name_taken_by_another_account_fails(aws_env: Drill, make_ctx: CtxFactory) -> None:
    aws_env.client("s3", "vault").create_bucket(Bucket=make_ctx.names["recovery"]["bucket"])

    checks = preflight.check_names_free(make_ctx())

    bucket = make_ctx.names["recovery"]["bucket"]
    assert failed(checks) == {"recovery bucket name": f"{bucket} is taken by another account"}
    assert "recovery.bucket" in next(c.fix for c in checks if not c.ok)


def test_estimate_counts_the_vault_exactly_and_the_eligible_share_from_a_sample(
    aws_env: Drill, make_ctx: CtxFactory
) -> None:
    truth = aws_env.truth.counts()
    objects = [v for v in aws_env.truth.versions if not v.is_delete_marker]
    ctx = make_ctx()

    everything = preflight.estimate_recovery(ctx)
    sampled = preflight.estimate_recovery(ctx, sample_size=40, seed=3)

    assert (everything.versions, everything.delete_markers) == (truth["objects"], truth["delete_markers"])
    assert everything.bytes == sum(v.size for v in objects)
    # Archived versions are outside the scope whatever their status: only the others are asked.
    assert everything.sampled == truth["objects"] - truth["skip_archived"]
    assert everything.eligible_versions == everything.sampled_eligible == truth["expected"]
    assert sampled.sampled == 40
    assert abs(sampled.eligible_versions - truth["expected"]) <= 0.15 * truth["objects"]
    assert everything.cost_usd > 0 and everything.duration_minutes > 0
    assert ctx.ledger.state.estimate is not None and ctx.ledger.state.estimate["sampled"] == 40


def test_profile_in_another_account_than_the_parameters_say_stops_before_any_change(
    aws_env: Drill, make_ctx: CtxFactory, tmp_path: Path
) -> None:
    def buckets() -> dict[str, list[str]]:
        return {side: sorted(b["Name"] for b in aws_env.client("s3", side).list_buckets()["Buckets"])
                for side in ("vault", "recovery")}

    before = buckets()
    params = make_ctx.params_file(vault={
        "account_id": "333333333333", "kms_key_arn": "arn:aws:kms:us-east-1:333333333333:key/" + OTHER_KEY[-36:]})

    with pytest.raises(AccountMismatchError) as mismatch:
        open_run(params, tmp_path / "mismatched")

    message = str(mismatch.value)
    assert "acts in account 111111111111" in message and "vault.account_id is 333333333333" in message
    assert buckets() == before
    assert not (tmp_path / "mismatched" / LEDGER_FILE).exists()
