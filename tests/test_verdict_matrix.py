"""Every vault state against every recovery state, through the real snapshot path.

One recovery runs on the embedded backend (a seeded vault of 150 versions, a Batch Replication
job whose backend fails a share of tasks, no retry), then the recovery bucket is damaged in every
way the proof must notice: a version removed, its content, lock mode, retain-until date or legal
hold changed, another version added beside it, or replaced by one with another version id. Some
damage is done through the recovery account's own API; what the API refuses (removing a COMPLIANCE
copy, weakening its mode) is done inside the backend, as someone with the storage's keys could.
Lock fields the vault refuses to show on one prefix (a bucket policy Deny) make the vault side
unreadable for those versions.

Both buckets are read with `snapshot_bucket` (real listings, real HEADs, real denials). Each case
then compares the clean recovery with only its own version damaged, and asserts the version's
category and the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from runbook_fixtures import PROVISION_ORDER, isolated_aws_environ

from runbook_lib import batch_job, proof, verify
from runbook_lib.accounts import make_client, session_for
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import seed_vault
from runbook_lib.embedded.server import (
    RECOVERY_ACCOUNT,
    RECOVERY_PROFILE,
    REGION,
    VAULT_ACCOUNT,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.snapshot import snapshot_bucket

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("verdict-matrix")]

VAULT = "vault-golden-copies"
RECOVERY = "recovery-golden-copies"
BLIND_PREFIX = "billing/"


@dataclass
class Matrix:
    """The recovery's inputs, read before and after the damage."""

    ctx: RunContext
    manifest: pd.DataFrame
    report: pd.DataFrame
    vault: pd.DataFrame
    blind_vault: pd.DataFrame
    recovery: pd.DataFrame
    damaged: pd.DataFrame
    cases: dict[str, tuple[str, str]]

    def compare(self, case: str, *, vault: pd.DataFrame | None = None) -> verify.Comparison:
        """Return the comparison of the clean recovery with only `case`'s key taken from the damaged one."""
        key = self.cases[case][0]
        recovery = pd.concat([self.recovery[self.recovery["key"] != key], self.damaged[self.damaged["key"] == key]],
                             ignore_index=True)
        return verify.compare(
            self.vault if vault is None else vault, recovery, scope=proof.job_scope(self.ctx),
            manifest=self.manifest, report=self.report.drop_duplicates(["key", "version_id"], keep="last"),
        )


def _client(service: str, profile: str) -> Any:
    return make_client(session_for(profile, REGION), service, region_name=REGION)


def _moto_recovery_version(key: str, version_id: str) -> Any:
    from moto.s3.models import s3_backends

    bucket = s3_backends[RECOVERY_ACCOUNT]["aws"].buckets[RECOVERY]
    return next(v for v in bucket.keys.getlist(key) if v.version_id == version_id)


def _remove_inside(key: str, version_id: str) -> None:
    from moto.s3.models import s3_backends

    bucket = s3_backends[RECOVERY_ACCOUNT]["aws"].buckets[RECOVERY]
    remaining = [v for v in bucket.keys.getlist(key) if v.version_id != version_id]
    if remaining:
        bucket.keys.setlist(key, remaining)
    else:
        bucket.keys.pop(key)  # moto expects a key it lists to have at least one version


def _pick(vault: pd.DataFrame, used: set[str], **wanted: Any) -> tuple[str, str]:
    """Return (key, version id) of a vault version in the given state whose key no other case uses."""
    rows = vault
    for column, value in wanted.items():
        rows = rows[rows[column].isna()] if value is None else rows[rows[column] == value]
    rows = rows[~rows["key"].isin(used) & ~rows["key"].str.startswith(BLIND_PREFIX)]
    assert len(rows), f"the seeded vault has no version in state {wanted} on a key of its own"
    key, version_id = str(rows["key"].iloc[0]), str(rows["version_id"].iloc[0])
    used.add(key)
    return key, version_id


def _set_vault_lock(key: str, version_id: str, mode: str | None, hold: str | None) -> None:
    """Give one vault version the lock state a case needs, before the job copies it."""
    from moto.s3.models import s3_backends

    bucket = s3_backends[VAULT_ACCOUNT]["aws"].buckets[VAULT]
    version = next(v for v in bucket.keys.getlist(key) if v.version_id == version_id)
    version.lock_mode = mode
    version.lock_until = (datetime.now(timezone.utc) + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ") \
        if mode else None
    version.lock_legal_status = hold


# Each lock mode (or none) with a legal hold on, off, or never set.
LOCKS: dict[str, tuple[str | None, str | None]] = {
    f"{(mode or 'unlocked').lower()}_hold_{(hold or 'absent').lower()}": (mode, hold)
    for mode in ("GOVERNANCE", "COMPLIANCE", None) for hold in ("ON", "OFF", None)
}
# How each recovery outcome damages the copy, and the category it must give.
OUTCOMES: dict[str, str] = {
    "identical": verify.RECOVERED_IDENTICAL,
    "missing": verify.MISSING_IN_RECOVERY,
    "content": verify.CONTENT_DIFFERS,
    "mode": verify.LOCK_MODE_DIFFERS,
    "retain_until": verify.RETAIN_UNTIL_DIFFERS,
    "hold": verify.LEGAL_HOLD_DIFFERS,
    "extra_version": verify.RECOVERED_IDENTICAL,  # the copy itself is fine; the added version is extra
    "other_version_id": verify.MISSING_IN_RECOVERY,  # the copy is gone; a version of another id stands there
}
REPLICA_CASES = [(lock, outcome) for lock in LOCKS for outcome in OUTCOMES]


def _damage(outcome: str, key: str, version_id: str, s3: Any) -> None:
    """Change the recovery bucket's copy of one version as `outcome` says."""
    copy = _moto_recovery_version(key, version_id)
    if outcome == "missing":
        _remove_inside(key, version_id)
    elif outcome == "content":
        copy.value = b"not the golden copy"
    elif outcome == "mode":
        copy.lock_mode = "COMPLIANCE" if copy.lock_mode == "GOVERNANCE" else "GOVERNANCE"
        copy.lock_until = copy.lock_until or (datetime.now(timezone.utc) + timedelta(days=30)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    elif outcome == "retain_until":
        later = datetime.now(timezone.utc) + timedelta(days=4000)
        if copy.lock_mode == "GOVERNANCE":
            s3.put_object_retention(Bucket=RECOVERY, Key=key, VersionId=version_id,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
        else:
            copy.lock_until = later.strftime("%Y-%m-%dT%H:%M:%SZ")
            copy.lock_mode = copy.lock_mode or "GOVERNANCE"
    elif outcome == "hold":
        status = "OFF" if copy.lock_legal_status == "ON" else "ON"
        s3.put_object_legal_hold(Bucket=RECOVERY, Key=key, VersionId=version_id, LegalHold={"Status": status})
    elif outcome == "extra_version":
        s3.put_object(Bucket=RECOVERY, Key=key, Body=b"added later")
    elif outcome == "other_version_id":
        _remove_inside(key, version_id)
        s3.put_object(Bucket=RECOVERY, Key=key, Body=b"a stranger under the same key")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    folder = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as patch, start_backend(faults=Faults(task_failure_rate=0.1, seed=11)) as backend:
        isolated_aws_environ(patch)
        for name, value in backend.environ().items():
            patch.setenv(name, value)
        yield _build(backend, folder)
        backend.reset()


def _build(backend: EmbeddedBackend, folder: Path) -> Matrix:
    backend.reset()
    seed_vault(backend.endpoint, 400, random_seed=1)
    vault_s3, recovery_s3 = _client("s3", VAULT_PROFILE), _client("s3", RECOVERY_PROFILE)
    # Every replica on a key of its own gets one of the lock states in turn, before the job copies it.
    listed = snapshot_bucket(vault_s3, VAULT)
    replicas = listed[(listed["replication_status"] == "REPLICA") & (listed["storage_class"] == "STANDARD")
                      & ~listed["is_delete_marker"] & ~listed["key"].str.startswith(BLIND_PREFIX)]
    replicas = replicas.drop_duplicates("key")
    states = list(LOCKS.values())
    for number, (key, version_id) in enumerate(zip(replicas["key"], replicas["version_id"], strict=True)):
        _set_vault_lock(key, version_id, *states[number % len(states)])
    params = yaml.safe_load(DRILL_PARAMS.read_text())
    params["job"]["poll_seconds"] = 0.05
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    ctx = open_run(folder / "params.yaml", folder / "run", create=True)
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    job_id, _ = batch_job.create_replication_job(ctx)
    batch_job.wait_for_status(ctx, job_id, {"Suspended"})
    batch_job.confirm_job(ctx, job_id)
    batch_job.follow_job(ctx, job_id)
    manifest, report = proof.load_job_manifest(ctx), proof.load_job_reports(ctx)
    vault = snapshot_bucket(vault_s3, VAULT)
    recovery = snapshot_bucket(recovery_s3, RECOVERY)
    copied = vault[vault["version_id"].isin(recovery["version_id"])]
    used: set[str] = set()
    cases: dict[str, tuple[str, str]] = {}
    for lock, outcome in REPLICA_CASES:
        mode, hold = LOCKS[lock]
        version = _pick(copied, used, replication_status="REPLICA", storage_class="STANDARD", is_delete_marker=False,
                        object_lock_mode=mode, object_lock_legal_hold_status=hold)
        cases[f"{lock}-{outcome}"] = version
        _damage(outcome, *version, recovery_s3)
    cases["failed_replica-missing"] = _pick(vault, used, replication_status="FAILED")
    cases["not_replica-absent"] = _pick(vault, used, replication_status=None, is_delete_marker=False,
                                        storage_class="STANDARD")
    cases["not_replica-present"] = _pick(vault, used, replication_status=None, is_delete_marker=False,
                                         storage_class="STANDARD")
    recovery_s3.put_object(Bucket=RECOVERY, Key=cases["not_replica-present"][0], Body=b"planted")
    cases["delete_marker-absent"] = _pick(vault, used, is_delete_marker=True)
    cases["archived-absent"] = _pick(vault, used, storage_class="GLACIER")
    damaged = snapshot_bucket(recovery_s3, RECOVERY)

    deny = {"Version": "2012-10-17", "Statement": [{
        "Sid": "NoLockReadsOnOnePrefix", "Effect": "Deny", "Principal": "*",
        "Action": ["s3:GetObjectRetention", "s3:GetObjectLegalHold"],
        "Resource": f"arn:aws:s3:::{VAULT}/{BLIND_PREFIX}*"}]}
    vault_s3.put_bucket_policy(Bucket=VAULT, Policy=json.dumps(deny))
    try:
        blind_vault = snapshot_bucket(vault_s3, VAULT)
    finally:
        vault_s3.delete_bucket_policy(Bucket=VAULT)
    return Matrix(ctx, manifest, report, vault, blind_vault, recovery, damaged, cases)


def _category(lock: str, outcome: str) -> str:
    """Return the category a case must get: an unlocked copy that gained a date gained a mode too."""
    if outcome == "retain_until" and LOCKS[lock][0] is None:
        return verify.LOCK_MODE_DIFFERS
    return OUTCOMES[outcome]


def _fails_elsewhere(comparison: verify.Comparison, key: str) -> bool:
    """Return whether a version under another key fails the verdict (the job's unretried failed tasks)."""
    details = comparison.details[comparison.details["key"] != key]
    return bool((~details["category"].isin([verify.RECOVERED_IDENTICAL, verify.NOT_EXPECTED])).any())


@pytest.mark.parametrize(("lock", "outcome"), REPLICA_CASES, ids=[f"{lock}-{o}" for lock, o in REPLICA_CASES])
def test_a_replica_against_each_recovery_state(matrix: Matrix, lock: str, outcome: str) -> None:
    key, version_id = matrix.cases[f"{lock}-{outcome}"]

    comparison = matrix.compare(f"{lock}-{outcome}")

    rows = comparison.details[comparison.details["key"] == key]
    row = rows.set_index("version_id").loc[version_id]
    assert row["category"] == _category(lock, outcome)
    if outcome in ("mode", "retain_until", "hold", "content"):
        assert row[{"mode": verify.LOCK_MODE_DIFFERS, "retain_until": verify.RETAIN_UNTIL_DIFFERS,
                    "hold": verify.LEGAL_HOLD_DIFFERS, "content": verify.CONTENT_DIFFERS}[outcome]]
    strangers = rows[~rows["in_vault"]]
    if outcome in ("extra_version", "other_version_id"):
        assert list(strangers["category"]) == [verify.EXTRA_IN_RECOVERY]
    else:
        assert strangers.empty
    # The job's own failed tasks (not retried here) fail every verdict; judge the case by its own rows.
    assert not _fails_elsewhere(comparison, key) or comparison.verdict == "FAIL"
    assert comparison.verdict == ("PASS" if outcome == "identical" and not _fails_elsewhere(comparison, key)
                                  else "FAIL")


@pytest.mark.parametrize(("case", "category", "verdict"), [
    ("failed_replica-missing", verify.TASK_FAILED, "FAIL"),
    ("not_replica-absent", verify.NOT_EXPECTED, "PASS"),
    ("not_replica-present", verify.EXTRA_IN_RECOVERY, "FAIL"),
    ("delete_marker-absent", verify.NOT_EXPECTED, "PASS"),
    ("archived-absent", verify.NOT_EXPECTED, "PASS"),
])
def test_versions_the_job_leaves_out_or_failed(matrix: Matrix, case: str, category: str, verdict: str) -> None:
    key, version_id = matrix.cases[case]

    comparison = matrix.compare(case)

    rows = comparison.details[comparison.details["key"] == key]
    if case == "not_replica-present":
        # The planted object is a new version under the non-replica's key: extra, whatever its id; the
        # non-replica stays not expected, and the key's other versions are judged on their own.
        planted = rows[~rows["in_vault"]]
        assert list(planted["category"]) == [category]
        assert rows.set_index("version_id").loc[version_id, "category"] == verify.NOT_EXPECTED
        assert set(rows.loc[rows["in_vault"], "category"]) <= {verify.NOT_EXPECTED, verify.RECOVERED_IDENTICAL}
    else:
        assert rows.set_index("version_id").loc[version_id, "category"] == category
    if case == "failed_replica-missing":
        # Its report row is what keeps it expected: take the report away and it cannot be placed.
        assert rows.set_index("version_id").loc[version_id, "error_code"] == "InternalError"
    assert comparison.verdict == ("FAIL" if _fails_elsewhere(comparison, key) else verdict)


def test_lock_fields_the_vault_hides_on_one_prefix_are_unknown_and_fail(matrix: Matrix) -> None:
    blind = matrix.blind_vault
    hidden = blind["key"].str.startswith(BLIND_PREFIX) & ~blind["is_delete_marker"]
    assert hidden.any()

    comparison = matrix.compare("governance_hold_on-identical", vault=blind)

    details = comparison.details.set_index(["key", "version_id"])
    recovered = set(zip(matrix.recovery["key"], matrix.recovery["version_id"], strict=True))
    for key, version_id in zip(blind.loc[hidden, "key"], blind.loc[hidden, "version_id"], strict=True):
        if (key, version_id) in recovered:
            assert details.loc[(key, version_id), "category"] == verify.UNKNOWN_UNREADABLE
    assert comparison.counts["unknown"] > 0 and comparison.verdict == "FAIL"


def test_the_whole_damaged_recovery_fails_with_every_case_counted(matrix: Matrix) -> None:
    comparison = verify.compare(
        matrix.vault, matrix.damaged, scope=proof.job_scope(matrix.ctx), manifest=matrix.manifest,
        report=matrix.report.drop_duplicates(["key", "version_id"], keep="last"))

    categories = comparison.details.set_index(["key", "version_id"])["category"]
    for name, (key, version_id) in matrix.cases.items():
        lock, outcome = name.split("-", 1)
        if lock in LOCKS:
            assert categories.loc[(key, version_id)] == _category(lock, outcome), name
    assert comparison.verdict == "FAIL"
