"""Headless runs of the phases: bad input stops before any change (test_drill runs a recovery twice).

Every test resets the embedded backend's moto state and seeds the same vault of 80 versions, then
runs phase notebooks with papermill through `runbook_lib.drill.run_phases` (or `runbook run`).
The Batch Operations emulator is not part of moto's reset, so job checks compare the jobs before and
after a run instead of counting them all.
"""

from __future__ import annotations

import copy
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_lib import cli
from runbook_lib.accounts import make_client, session_for
from runbook_lib.drill import DRILL_PARAMS, run_phases, select_phases
from runbook_lib.embedded.seed import GroundTruth, seed_vault
from runbook_lib.embedded.server import (
    RECOVERY_ACCOUNT,
    RECOVERY_PROFILE,
    REGION,
    VAULT_ACCOUNT,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.errors import PhaseError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("idempotent_run")]

SEEDED_VERSIONS = 80
THROUGH_VERIFY = select_phases(None, "07")
PREFLIGHT = "00_preflight"
DRILL = yaml.safe_load(DRILL_PARAMS.read_text())


def _reset_moto(endpoint: str) -> None:
    """Drop every account's resources (moto's state is process-global)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


@contextmanager
def restored_environ() -> Iterator[None]:
    """Put os.environ back as it was: run_phases exports the backend's variables and RUNBOOK_HEADLESS."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Vault:
    """A freshly seeded vault on the module's backend, clients of both accounts, and the test's AWS config."""

    backend: EmbeddedBackend
    truth: GroundTruth
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    environ: dict[str, str] = field(default_factory=dict)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.use_environ(self.environ or self.backend.environ())

    def use_environ(self, environ: dict[str, str]) -> None:
        """Point this test's process and the kernels it starts at the AWS config in `environ`."""
        self.environ = dict(environ)
        for name, value in self.environ.items():
            self.monkeypatch.setenv(name, value)

    def add_profile(self, name: str, like: str) -> None:
        """Use a copy of the backend's AWS config with one more profile, reaching the same account as `like`."""
        text = self.backend.config_file.read_text()
        section = text.split(f"[profile {like}]", 1)[1].split("[", 1)[0]
        config = self.folder / "aws-config"
        config.write_text(f"{text}\n[profile {name}]{section}")
        self.use_environ({**self.environ, "AWS_CONFIG_FILE": str(config)})

    def client(self, service: str, side: str = "vault") -> Any:
        """Return a client acting in the vault or the recovery account (the test's env reaches the backend)."""
        if (service, side) not in self._clients:
            profile = VAULT_PROFILE if side == "vault" else RECOVERY_PROFILE
            self._clients[(service, side)] = make_client(session_for(profile, REGION), service, region_name=REGION)
        return self._clients[(service, side)]

    def run(self, params_file: Path, run_dir: Path, phases: list[str], confirm_job: bool = True) -> None:
        """Run phases headlessly against this backend, leaving the test's environment as it was."""
        with restored_environ():
            run_phases(params_file, run_dir, phases, confirm_job=confirm_job, extra_env=self.environ)

    def job_ids(self) -> set[str]:
        """Return the ids of every Batch Operations job in the vault account."""
        jobs = self.client("s3control").list_jobs(AccountId=VAULT_ACCOUNT).get("Jobs", [])
        return {job["JobId"] for job in jobs}

    def state(self) -> dict[str, list[str]]:
        """Return what a run could create in either account: buckets, roles, policies, keys, topics, rules."""
        found: dict[str, list[str]] = {}
        for side, account in (("vault", VAULT_ACCOUNT), ("recovery", RECOVERY_ACCOUNT)):
            found[f"{account} buckets"] = sorted(b["Name"] for b in self.client("s3", side).list_buckets()["Buckets"])
            found[f"{account} roles"] = sorted(r["RoleName"] for r in self.client("iam", side).list_roles()["Roles"])
            found[f"{account} policies"] = sorted(
                p["PolicyName"] for p in self.client("iam", side).list_policies(Scope="Local")["Policies"])
            found[f"{account} keys"] = sorted(k["KeyId"] for k in self.client("kms", side).list_keys()["Keys"])
            found[f"{account} topics"] = sorted(t["TopicArn"] for t in self.client("sns", side).list_topics()["Topics"])
            found[f"{account} rules"] = sorted(r["Name"] for r in self.client("events", side).list_rules()["Rules"])
        return found


def clear_aws_environ(patch: pytest.MonkeyPatch) -> None:
    """Clear every AWS_* variable (module fixtures run before tests/conftest.py clears them)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            patch.delenv(name)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """Start one embedded backend for the module; reset moto when done so the next module starts clean."""
    started = start_backend(config_file=tmp_path_factory.mktemp("backend") / "aws-config")
    try:
        yield started
    finally:
        try:
            _reset_moto(started.endpoint)
        finally:
            started.stop()


def fresh_vault(backend: EmbeddedBackend, folder: Path, patch: pytest.MonkeyPatch) -> Vault:
    """Reset moto, seed the drill's vault, and point the environment at the backend."""
    _reset_moto(backend.endpoint)
    truth = seed_vault(backend.endpoint, SEEDED_VERSIONS, random_seed=1)
    clear_aws_environ(patch)
    return Vault(backend, truth, folder, patch)


@pytest.fixture
def vault(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Vault:
    """A freshly seeded vault for one test, reached through this test's environment."""
    return fresh_vault(backend, tmp_path, monkeypatch)


def write_params(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """Return a parameter file: drill.yaml with dotted-path changes ({"vault.bucket": "x"})."""
    params = copy.deepcopy(DRILL)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _missing_vault(vault: Vault) -> dict[str, Any]:
    return {"vault.bucket": "vault-that-does-not-exist"}


def _vault_without_object_lock(vault: Vault) -> dict[str, Any]:
    s3 = vault.client("s3")
    s3.create_bucket(Bucket="plain-versioned-bucket")
    s3.put_bucket_versioning(Bucket="plain-versioned-bucket", VersioningConfiguration={"Status": "Enabled"})
    return {"vault.bucket": "plain-versioned-bucket"}


def _recovery_bucket_name_taken(vault: Vault) -> dict[str, Any]:
    vault.client("s3").create_bucket(Bucket=DRILL["recovery"]["bucket"])
    return {}


def _recovery_profile_reaches_the_vault(vault: Vault) -> dict[str, Any]:
    # Two profile names for one account: parameter validation cannot see it, the identity check must.
    vault.add_profile("second-vault-profile", like=VAULT_PROFILE)
    return {"recovery.profile": "second-vault-profile"}


@pytest.mark.parametrize(("make_bad_input", "expected"), [
    (_missing_vault, ["PreflightError", "vault bucket exists", "vault-that-does-not-exist"]),
    (_vault_without_object_lock, ["PreflightError", "vault bucket Object Lock: no Object Lock configuration"]),
    (_recovery_bucket_name_taken,
     ["PreflightError", "recovery bucket name", "choose another name for recovery.bucket"]),
    (_recovery_profile_reaches_the_vault, ["AccountMismatchError", "second-vault-profile", "account 111111111111",
                                           "recovery.account_id is 222222222222"]),
], ids=["vault-bucket-missing", "vault-without-object-lock", "recovery-bucket-name-taken", "same-account-twice"])
def test_bad_input_stops_in_preflight_before_changing_anything(
    make_bad_input: Any, expected: list[str], vault: Vault, tmp_path: Path,
) -> None:
    params_file = write_params(tmp_path, "bad", make_bad_input(vault))
    before, jobs_before = vault.state(), vault.job_ids()
    with pytest.raises(PhaseError) as stopped:
        vault.run(params_file, tmp_path / "run", THROUGH_VERIFY)
    error_name, *texts = expected
    assert (stopped.value.phase, stopped.value.error_name) == (PREFLIGHT, error_name)
    for text in texts:
        assert text in stopped.value.error_value
    assert stopped.value.notebook_path and Path(stopped.value.notebook_path).is_file()
    assert stopped.value.cell_index is not None and stopped.value.exec_count is not None
    assert vault.state() == before
    assert vault.job_ids() == jobs_before


@pytest.mark.parametrize(("changes", "fields"), [
    ({"recovery.profile": VAULT_PROFILE, "recovery.account_id": VAULT_ACCOUNT},
     ["recovery.profile", "recovery.account_id"]),
    ({"recovery.profile": VAULT_PROFILE}, ["recovery.profile"]),
], ids=["vault-profile-and-account", "vault-profile-only"])
def test_runbook_run_refuses_one_account_for_both_sides(
    changes: dict[str, Any], fields: list[str], vault: Vault, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = write_params(tmp_path, "same-account", changes)
    before = vault.state()
    with restored_environ():
        status = cli.main(["run", "--params", str(params_file), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("error: ")
    for name in fields:
        assert f"{name}: got" in error
    assert not (tmp_path / "run" / "ledger.json").exists()
    assert vault.state() == before


def test_runbook_run_exits_non_zero_when_a_profile_reaches_the_wrong_account(
    vault: Vault, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = write_params(tmp_path, "wrong-account", _recovery_profile_reaches_the_vault(vault))
    with restored_environ():
        status = cli.main(["run", "--params", str(params_file), "--out", str(tmp_path / "run"), "--to", "07"])
    error = capsys.readouterr().err
    assert status == 1
    assert f"phase {PREFLIGHT} failed: AccountMismatchError" in error
