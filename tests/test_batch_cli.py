"""The AWS CLI against the embedded backend's config file.

A drill differs from a recovery only by AWS_CONFIG_FILE, so any AWS CLI (the one installed next to
the runbook, and one installed elsewhere that cannot import the runbook) must reach both accounts
and S3 Control through that file alone, with no plugin and no option.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.s3.models import s3_backends
from runbook_fixtures import Drill

from runbook_lib.embedded.replication import TaskResult
from runbook_lib.embedded.s3control.runner import TaskFunctions
from runbook_lib.embedded.server import VAULT_ACCOUNT

pytestmark = [pytest.mark.cli, pytest.mark.xdist_group("batch-cli")]

AWS = Path(sys.executable).parent / "aws"


def _system_aws() -> str | None:
    """Return an `aws` found on PATH outside the runbook's environment, if there is one."""
    outside = os.pathsep.join(part for part in os.environ.get("PATH", "").split(os.pathsep)
                              if Path(part).resolve() != AWS.parent.resolve())
    found = shutil.which("aws", path=outside)
    return found if found and Path(found).resolve() != AWS.resolve() else None


SYSTEM_AWS = _system_aws()
BATCH_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


@pytest.fixture(scope="module")
def cli(drill: Drill) -> Iterator[dict[str, str]]:
    """Return the environment the CLI runs in: the backend's config file and nothing else of AWS."""
    if not AWS.exists():
        pytest.fail(f"the AWS CLI is not installed at {AWS}; install the test extras (pip install -e .[test])")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(AWS_CONFIG_FILE=str(drill.backend.config_file), AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                       AWS_EC2_METADATA_DISABLED="true")
    store = drill.backend.app.jobs_app.store
    store.min_state_seconds = 0.02
    store.task_functions = TaskFunctions(lambda *task: TaskResult(True, 200, "", "success"),
                                         lambda *asked: lambda version: True)
    yield environment
    store.task_functions = None
    store.min_state_seconds = 0.3


def _aws(environment: dict[str, str], *arguments: str) -> Any:
    """Run `aws ... --profile drill-vault` and return its JSON output (or None for no output)."""
    done = subprocess.run([str(AWS), *arguments, "--profile", "drill-vault", "--output", "json"],
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def _world(drill: Drill) -> tuple[str, str, str]:
    """Return a source bucket with two versions, a report bucket and a job role."""
    suffix = uuid.uuid4().hex[:8]
    s3, iam = drill.client("s3"), drill.client("iam")
    source, report = f"cli-source-{suffix}", f"cli-report-{suffix}"
    for bucket in (source, report):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Enabled"})
    for key in ("a.txt", "b.txt"):
        s3_backends[VAULT_ACCOUNT]["aws"].put_object(source, key, b"data", disable_notification=True)
    role = iam.create_role(RoleName=f"cli-batch-{suffix}", AssumeRolePolicyDocument=json.dumps(BATCH_TRUST))
    iam.put_role_policy(RoleName=f"cli-batch-{suffix}", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    return source, report, role["Role"]["Arn"]


def test_the_cli_creates_confirms_follows_and_lists_a_job(drill: Drill, cli: dict[str, str]) -> None:
    source, report, role = _world(drill)
    account = ["--account-id", VAULT_ACCOUNT]

    created = _aws(cli, "s3control", "create-job", *account, "--confirmation-required",
                   "--operation", '{"S3ReplicateObject": {}}', "--priority", "7", "--role-arn", role,
                   "--report", json.dumps({"Bucket": f"arn:aws:s3:::{report}", "Format": "Report_CSV_20180820",
                                           "Enabled": True, "Prefix": "cli", "ReportScope": "AllTasks"}),
                   "--manifest-generator", json.dumps({"S3JobManifestGenerator": {
                       "SourceBucket": f"arn:aws:s3:::{source}", "EnableManifestOutput": False,
                       "Filter": {"ObjectReplicationStatuses": ["NONE"]}}}))
    job_id = created["JobId"]
    suspended = _until(cli, job_id, "Suspended")
    confirmed = _aws(cli, "s3control", "update-job-status", *account, "--job-id", job_id,
                     "--requested-job-status", "Ready", "--status-update-reason", "go")
    complete = _until(cli, job_id, "Complete")
    listed = _aws(cli, "s3control", "list-jobs", *account, "--job-statuses", "Complete")

    assert suspended["Job"]["Priority"] == 7
    assert confirmed == {"JobId": job_id, "Status": "Ready", "StatusUpdateReason": "go"}
    assert complete["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert job_id in {job["JobId"] for job in listed["Jobs"]}


def _until(environment: dict[str, str], job_id: str, status: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        described = _aws(environment, "s3control", "describe-job", "--account-id", VAULT_ACCOUNT, "--job-id", job_id)
        if described["Job"]["Status"] == status or time.monotonic() > deadline:
            assert described["Job"]["Status"] == status
            return described
        time.sleep(0.1)


def test_the_cli_puts_a_replication_configuration_with_a_token(
    drill: Drill, cli: dict[str, str], tmp_path: Path,
) -> None:
    bucket = f"cli-replicated-{uuid.uuid4().hex[:8]}"
    drill.client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    configuration = {
        "Role": f"arn:aws:iam::{VAULT_ACCOUNT}:role/replication",
        "Rules": [{
            "ID": "to-recovery", "Priority": 0, "Filter": {}, "Status": "Enabled",
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
            "Destination": {"Bucket": "arn:aws:s3:::recovery-elsewhere", "Account": "222222222222",
                            "AccessControlTranslation": {"Owner": "Destination"},
                            "EncryptionConfiguration": {"ReplicaKmsKeyID": "arn:aws:kms:us-east-1:222222222222:key/k"}},
            "DeleteMarkerReplication": {"Status": "Disabled"},
        }],
    }
    document = tmp_path / "replication.json"
    document.write_text(json.dumps(configuration))

    put = _aws(cli, "s3api", "put-bucket-replication", "--bucket", bucket,
               "--replication-configuration", f"file://{document}", "--token", "xyz")
    read = _aws(cli, "s3api", "get-bucket-replication", "--bucket", bucket)

    assert put is None
    assert read["ReplicationConfiguration"] == configuration


@pytest.mark.parametrize("which", ["project", "system"])
def test_every_installed_cli_reaches_every_service_through_the_file(
    cli: dict[str, str], which: str, tmp_path: Path,
) -> None:
    if which == "system" and SYSTEM_AWS is None:
        pytest.skip("no AWS CLI is installed outside the runbook's environment on this machine")
    program = str(AWS) if which == "project" else str(SYSTEM_AWS)
    # An AWS CLI installed elsewhere must not find the runbook's code: run it from an empty folder.
    environment = {k: v for k, v in cli.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def aws(profile: str, *arguments: str) -> Any:
        done = subprocess.run([program, *arguments, "--profile", profile, "--output", "json"],
                              env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{program} {' '.join(arguments)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    for profile, account in (("drill-vault", VAULT_ACCOUNT), ("drill-recovery", "222222222222")):
        assert aws(profile, "sts", "get-caller-identity")["Account"] == account
        assert "Jobs" in aws(profile, "s3control", "list-jobs", "--account-id", account)
        assert "Buckets" in aws(profile, "s3api", "list-buckets")
        assert "Roles" in aws(profile, "iam", "list-roles")
        assert "Keys" in aws(profile, "kms", "list-keys")
