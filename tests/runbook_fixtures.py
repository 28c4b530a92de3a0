"""Fixtures shared by the runbook library's tests: one embedded backend and seeded vault per module.

tests/conftest.py registers this module as a pytest plugin, so every test can ask for `drill`,
`aws_env` or `make_ctx` by argument name; a module imports from here only the helpers and types
it uses itself (`Drill`, `CtxFactory`, `watch_calls`, ...).

How the moto state is shared, and kept apart:

- moto keeps every account's resources in process-global backends, and bucket names are global
  across accounts, so seeding the vault twice in one process fails (the vault bucket, its key and
  the operator roles already exist). `drill` therefore resets moto (POST /moto-api/reset) before it
  seeds, and again when the module is done, so each test module starts from the same seeded vault
  and leaves nothing behind for the next one. `make test` runs pytest-xdist with
  `--dist loadfile`, so a module's tests run in one worker process, one after the other (the
  modules' `xdist_group` marks say the same for `--dist loadgroup`).
- Tests of one module share that backend, so each test gets its own resource names: `make_ctx`
  suffixes the run id and every name the run creates (recovery bucket, key alias, report bucket,
  role, policy, topic, rule) with a counter. Tests that change settings of the vault bucket or of
  the vault key (replication, notifications, key policy) ask `Drill.fresh_vault` for a vault of
  their own instead of changing the seeded one.
- botocore reads its JSON service models again for every new session, and the library opens two
  sessions per run context; for the module's duration every session shares one model loader
  (read-only data), which makes opening a run about four times faster.
- tests/conftest.py clears every AWS_* variable before each test. `aws_env` (function scope) sets
  the backend's variables again for each test; the module-scope fixtures set them for their own
  setup and teardown.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
import yaml

from runbook_lib import notifications, proof, provision
from runbook_lib.accounts import make_client, session_for
from runbook_lib.context import RunContext, open_run
from runbook_lib.embedded.request_ids import RequestLog, ServedRequest
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

__all__ = [
    "DRILL_PARAMS",
    "PROVISION_ORDER",
    "READ_PREFIXES",
    "SEEDED_VERSIONS",
    "AccountClients",
    "CtxFactory",
    "Drill",
    "aws_env",
    "backend_secrets",
    "clients_on_a_new_backend",
    "count_versions",
    "drill",
    "isolated_aws_environ",
    "make_ctx",
    "unique_names",
    "watch_calls",
    "write_calls",
    "write_requests",
]

DRILL_PARAMS = Path(__file__).resolve().parents[1] / "parameters" / "drill.yaml"
SEEDED_VERSIONS = 80
# Every provisioning step of phases 01-05, in the order the phase notebooks run them.
PROVISION_ORDER = (
    provision.ensure_recovery_key, provision.ensure_recovery_bucket, provision.ensure_report_bucket,
    provision.ensure_batch_policy, provision.ensure_batch_role, provision.ensure_vault_key_grants,
    provision.ensure_recovery_key_grants, provision.ensure_recovery_bucket_policy, provision.ensure_replication_rule,
    provision.ensure_vault_eventbridge, provision.ensure_notification_topic, notifications.ensure_audit_queue,
    provision.ensure_job_status_rule,
)
# An AWS operation whose name starts with one of these only reads.
READ_PREFIXES = ("Get", "List", "Describe", "Head")

_suffixes = itertools.count(1)


def _reset_moto(endpoint: str) -> None:
    """Drop every account's resources in the backend's process (moto's state is process-global)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


@dataclass
class Drill:
    """A running embedded backend with a seeded vault, and clients of both accounts."""

    backend: EmbeddedBackend
    truth: GroundTruth
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def environ(self) -> dict[str, str]:
        """Return the environment a test needs to reach the backend through the drill profiles."""
        return self.backend.environ()

    def client(self, service: str, side: str = "vault") -> Any:
        """Return a client acting in the vault or the recovery account, made once per module."""
        if (service, side) not in self._clients:
            profile = VAULT_PROFILE if side == "vault" else RECOVERY_PROFILE
            with pytest.MonkeyPatch.context() as patch:
                for name, value in self.environ().items():
                    patch.setenv(name, value)
                session = session_for(profile, REGION)
                self._clients[(service, side)] = make_client(session, service, region_name=REGION)
        return self._clients[(service, side)]

    def fresh_vault(self, name: str, key_policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create an empty vault (Object Lock bucket and its own KMS key); return parameter overrides."""
        kms = self.client("kms")
        arguments: dict[str, Any] = {"Description": f"test vault {name}"}
        if key_policy is not None:
            arguments["Policy"] = json.dumps(key_policy)
        key_arn = kms.create_key(**arguments)["KeyMetadata"]["Arn"]
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True,
        }]})
        return {"vault": {"bucket": name, "kms_key_arn": key_arn}}


def isolated_aws_environ(patch: pytest.MonkeyPatch) -> None:
    """Drop every AWS_* variable and point the config files nowhere, for a module-scope fixture."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            patch.delenv(name)
    patch.setenv("AWS_CONFIG_FILE", os.devnull)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@dataclass(frozen=True)
class AccountClients:
    """boto3 clients acting in the vault and the recovery account through assumed roles."""

    vault_s3: Any
    vault_iam: Any
    vault_kms: Any
    recovery_s3: Any
    recovery_kms: Any


@contextmanager
def clients_on_a_new_backend(role_name: str) -> Iterator[AccountClients]:
    """Start a backend of its own and return clients of both accounts, as role `role_name` of each."""
    with pytest.MonkeyPatch.context() as patch:
        isolated_aws_environ(patch)
        backend = start_backend()
        try:

            def client(service: str, account: str) -> Any:
                sts = boto3.client("sts", endpoint_url=backend.endpoint, region_name=REGION,
                                   aws_access_key_id="tester", aws_secret_access_key="tester")
                credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role_name}",
                                              RoleSessionName="tests")["Credentials"]
                return boto3.client(service, endpoint_url=backend.endpoint, region_name=REGION,
                                    aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"])

            yield AccountClients(
                client("s3", VAULT_ACCOUNT), client("iam", VAULT_ACCOUNT), client("kms", VAULT_ACCOUNT),
                client("s3", RECOVERY_ACCOUNT), client("kms", RECOVERY_ACCOUNT),
            )
        finally:
            backend.stop()


@pytest.fixture(scope="module")
def drill() -> Iterator[Drill]:
    """Start a backend for the module, reset moto, seed a vault of 80 versions; reset again at the end."""
    with pytest.MonkeyPatch.context() as patch:
        isolated_aws_environ(patch)
        shared_loader = botocore.loaders.create_loader()
        patch.setattr(botocore.session, "create_loader", lambda *_, **__: shared_loader)
        backend = start_backend()
        try:
            for name, value in backend.environ().items():
                patch.setenv(name, value)
            _reset_moto(backend.endpoint)
            truth = seed_vault(backend.endpoint, SEEDED_VERSIONS, random_seed=1)
            yield Drill(backend, truth)
        finally:
            try:
                _reset_moto(backend.endpoint)
            finally:
                backend.stop()


@pytest.fixture
def aws_env(drill: Drill, monkeypatch: pytest.MonkeyPatch) -> Drill:
    """Point this test's AWS config at the module's backend (conftest cleared it) and return it."""
    for name, value in drill.environ().items():
        monkeypatch.setenv(name, value)
    return drill


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def unique_names(suffix: str) -> dict[str, Any]:
    """Return parameter overrides naming every resource the run creates with `suffix`."""
    return {
        "run_id": f"drill-{suffix}",
        "recovery": {"bucket": f"recovery-golden-copies-{suffix}",
                     "kms_key_alias": f"alias/recovery-golden-copies-{suffix}"},
        "report_bucket": f"vault-batch-reports-{suffix}",
        "batch_role_name": f"s3-batch-replication-role-{suffix}",
        "batch_policy_name": f"s3-batch-replication-policy-{suffix}",
        "notification_topic_name": f"s3-batch-replication-status-{suffix}",
        "event_rule_name": f"s3-batch-replication-job-status-{suffix}",
    }


class CtxFactory:
    """Opens runs of drill.yaml with one test's unique resource names (see `make_ctx`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.suffix = f"t{next(_suffixes)}"
        self.names = unique_names(self.suffix)
        self._base = yaml.safe_load(DRILL_PARAMS.read_text())
        self._written: dict[str, Path] = {}

    def params_file(self, run: str = "run", *, params: dict[str, Any] | None = None, **overrides: Any) -> Path:
        """Return the parameter file of a run, written with the test's names and `overrides`.

        `params` holds overrides whose names cannot be keyword arguments here, such as the `run` section.
        """
        overrides = {**(params or {}), **overrides}
        if run not in self._written or overrides:
            params = _merged(_merged(self._base, self.names), overrides)
            path = self.folder / f"{run}.yaml"
            path.write_text(yaml.safe_dump(params, sort_keys=False))
            self._written[run] = path
        return self._written[run]

    def __call__(self, run: str = "run", *, params: dict[str, Any] | None = None, **overrides: Any) -> RunContext:
        """Return `open_run(params, folder/run)`; the same run name re-opens the same run."""
        return open_run(self.params_file(run, params=params, **overrides), self.folder / run, create=True)


@pytest.fixture
def served(aws_env: Drill) -> Iterator[RequestLog]:
    """Record every request the module's backend answers during the test."""
    log = RequestLog()
    aws_env.backend.app.request_log = log
    yield log
    aws_env.backend.app.request_log = None


def verify_in_process(ctx: RunContext, *, confirm_job: bool = True) -> dict[str, Any]:
    """Run phase 07 in-process as its notebook does; return the verdict with its counts."""
    proof.begin_verification(ctx)
    manifest = proof.load_job_manifest(ctx)
    report = proof.load_job_reports(ctx)
    vault = proof.snapshot_vault(ctx, subscribers=[])
    recovery = proof.snapshot_recovery(ctx, subscribers=[])
    comparison = proof.compare_buckets(ctx, vault, recovery, manifest, report)
    comparison, rounds = proof.retry_failures(ctx, comparison, vault, manifest, confirm_job)
    return proof.conclude(ctx, comparison, rounds, report)


@pytest.fixture
def make_ctx(aws_env: Drill, tmp_path: Path) -> CtxFactory:
    """Return a factory of run contexts: `make_ctx(run="run", **parameter_overrides)`.

    The first call for a run name writes its parameter file and run folder under tmp_path; later
    calls with the same run name re-open the same run, as a re-run of a phase in a new kernel does.
    """
    return CtxFactory(tmp_path)


def watch_calls(ctx: RunContext) -> list[str]:
    """Return a list that receives the name of every AWS operation the context's clients call.

    The hook goes on both sessions, which every client made later copies, and on the clients the
    context already holds.
    """
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    for session in (ctx.sessions.vault, ctx.sessions.recovery):
        session.events.register("before-call", record)
    for client in ctx._clients.values():
        client.meta.events.register("before-call", record)
    return calls


def backend_secrets(config_file: Path) -> set[str]:
    """Return every secret a client of the backend has held: the config file's keys and each STS credential issued."""
    from moto.sts.models import sts_backends

    found: set[str] = set()
    for line in config_file.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token") and value.strip():
            found.add(value.strip())
    for account in list(sts_backends.keys()):
        for partition in list(sts_backends[account].keys()):
            for role in sts_backends[account][partition].assumed_roles:
                found |= {role.access_key_id, role.secret_access_key, role.session_token}
    return found


def write_calls(calls: list[str]) -> list[str]:
    """Return the operations among `calls` that change something."""
    return [name for name in calls if not name.startswith(READ_PREFIXES)]


# What the runbook may send without changing anything besides reads: the SDK's AssumeRole for a
# profile's role (it changes no resource) and Access Analyzer's policy checks, which keep nothing.
NOT_WRITES = ("AssumeRole",)
ACCESS_ANALYZER_CHECKS = ("/policy/validation", "/policy/check-no-new-access", "/policy/check-access-not-granted")


def write_requests(served: list[ServedRequest]) -> list[str]:
    """Return the requests the backend served that could change something: method, service, operation or path.

    S3 and S3 Control name the operation by method and path, Access Analyzer by path; every other
    service names it, and a request that names none counts as a write, so nothing slips through.
    """
    found = []
    for request in served:
        if request.service in ("s3", "s3control"):
            changes = request.method not in ("GET", "HEAD")
        elif request.service == "access-analyzer":
            changes = request.path not in ACCESS_ANALYZER_CHECKS
        else:
            changes = not request.operation.startswith(READ_PREFIXES) and request.operation not in NOT_WRITES
        if changes:
            found.append(f"{request.method} {request.service} {request.operation or request.path}")
    return found


def count_versions(drill: Drill) -> dict[str, int]:
    """Return the number of object versions and delete markers in every bucket of both accounts."""
    counts: dict[str, int] = {}
    for side, account in (("vault", VAULT_ACCOUNT), ("recovery", RECOVERY_ACCOUNT)):
        s3 = drill.client("s3", side)
        for bucket in s3.list_buckets().get("Buckets", []):
            total = 0
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket["Name"]):
                total += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
            counts[f"{account}/{bucket['Name']}"] = total
    return counts


def replace_with_one_part_changed(s3: Any, bucket: str, version: Any) -> None:
    """Put in `bucket`, under the replica's id, a copy of a seeded version in parts with one byte of part 2 changed.

    The copy is uploaded in the same parts through the API (so S3 computes its ETag and any checksum), then
    takes the replica's place in the backend, as storage tampered with below the API would show it.
    """
    from runbook_lib.embedded import moto_state
    from runbook_lib.embedded.seed import PART_SIZE

    found = moto_state.find_bucket(bucket)
    replica = next(v for v in moto_state.versions_of(found, version.key) if v.version_id == version.version_id)
    content = bytearray(replica.value)
    content[PART_SIZE + 1234] ^= 0xFF
    sizes = [PART_SIZE] * (version.parts - 1) + [len(content) - (version.parts - 1) * PART_SIZE]
    algorithm = {"ChecksumAlgorithm": version.checksum_algorithm} if version.checksum_algorithm else {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=version.key, **algorithm)
    parts, start = [], 0
    for number, size in enumerate(sizes, start=1):
        answer = s3.upload_part(Bucket=bucket, Key=version.key, UploadId=upload["UploadId"], PartNumber=number,
                                Body=bytes(content[start:start + size]), **algorithm)
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if version.checksum_algorithm:
            name = f"Checksum{version.checksum_algorithm}"
            part[name] = answer[name]
        parts.append(part)
        start += size
    copy_id = s3.complete_multipart_upload(Bucket=bucket, Key=version.key, UploadId=upload["UploadId"],
                                           MultipartUpload={"Parts": parts})["VersionId"]
    versions = moto_state.versions_of(found, version.key)
    tampered = next(v for v in versions if v.version_id == copy_id)
    tampered._version_id, tampered.last_modified = replica.version_id, replica.last_modified
    tampered.lock_mode, tampered.lock_until = replica.lock_mode, replica.lock_until
    tampered.lock_legal_status = replica.lock_legal_status
    tampered.replication_status = replica.replication_status
    found.keys.setlist(version.key, [tampered if v is replica else v for v in versions if v is not tampered])


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """Put os.environ back as it was after a test that runs `runbook drill` in-process (it exports AWS_*)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def drill_summary(run_dir: Path) -> dict[str, Any]:
    """Return a drill's summary.json."""
    return json.loads((run_dir / "summary.json").read_text())
