"""`runbook backend` in the foreground, reached by the AWS CLI exactly as a user would reach it."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runbook_lib.embedded.seed import VAULT_BUCKET
from runbook_lib.embedded.server import RECOVERY_ACCOUNT, RECOVERY_PROFILE, VAULT_PROFILE

pytestmark = pytest.mark.cli

BIN = Path(sys.executable).parent
SEEDED_VERSIONS = 200
READY_LINE = "press Ctrl-C to stop"
STARTUP_SECONDS = 90


@dataclass
class RunningCommand:
    """The `runbook backend` process, what it printed until it was ready, and the files it wrote."""

    process: subprocess.Popen[str]
    output: list[str]
    port: int
    config_file: Path
    truth: dict[str, Any] | None


def read_lines(stream: Any, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


@contextmanager
def runbook_backend(folder: Path, seed: int | None = None) -> Iterator[RunningCommand]:
    """Run `runbook backend --port 0` until the block ends; yield it once it says it is ready."""
    config_file, truth_file = folder / "aws-config", folder / "truth.json"
    command = [str(BIN / "runbook"), "backend", "--port", "0", "--config-file", str(config_file)]
    if seed:
        command += ["--objects", str(seed), "--truth-file", str(truth_file)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while not output or READY_LINE not in output[-1]:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "runbook backend exited early:\n" + "\n".join(output)
            output.append(line)
        listening = [re.search(r"listening on http://127\.0\.0\.1:(\d+)$", line) for line in output]
        port = next(int(found[1]) for found in listening if found)
        truth = json.loads(truth_file.read_text(encoding="utf-8")) if seed else None
        yield RunningCommand(process, output, port, config_file, truth)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def running_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCommand]:
    with runbook_backend(tmp_path_factory.mktemp("cli-backend"), seed=SEEDED_VERSIONS) as running:
        yield running


def seeded_versions(running: RunningCommand) -> list[dict[str, Any]]:
    assert running.truth is not None
    return list(running.truth["versions"])


def aws_cli(config_file: Path, home: Path, profile: str, *arguments: str) -> Any:
    """Run the AWS CLI with a config file and a home folder of its own; return its JSON output."""
    environment = {
        **os.environ,
        "AWS_CONFIG_FILE": str(config_file),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        # The CLI caches assumed-role credentials under ~/.aws/cli/cache.
        "HOME": str(home),
    }
    result = subprocess.run(
        [str(BIN / "aws"), "--profile", profile, "--output", "json", *arguments],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def aws(running: RunningCommand, profile: str, *arguments: str) -> Any:
    """Run the AWS CLI against the `runbook backend` process."""
    return aws_cli(running.config_file, running.config_file.parent, profile, *arguments)


def test_port_zero_prints_the_chosen_port(running_backend: RunningCommand) -> None:
    assert running_backend.port != 0
    config = running_backend.config_file.read_text()
    assert f"endpoint_url = http://127.0.0.1:{running_backend.port}" in config
    assert any(f"{SEEDED_VERSIONS} versions" in line for line in running_backend.output)


def test_aws_cli_lists_every_seeded_version(running_backend: RunningCommand) -> None:
    listing = aws(running_backend, VAULT_PROFILE, "s3api", "list-object-versions", "--bucket", VAULT_BUCKET)
    listed = {(v["Key"], v["VersionId"]) for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])}
    seeded = {(v["key"], v["version_id"]) for v in seeded_versions(running_backend)}
    assert len(seeded) == SEEDED_VERSIONS
    assert listed == seeded


def test_aws_cli_head_object_shows_lock_hold_and_replication(running_backend: RunningCommand) -> None:
    version = next(
        v for v in seeded_versions(running_backend)
        if v["expected_outcome"] == "recover" and v["object_lock_mode"] and v["object_lock_legal_hold_status"]
    )
    head = aws(
        running_backend, VAULT_PROFILE, "s3api", "head-object",
        "--bucket", VAULT_BUCKET, "--key", version["key"], "--version-id", version["version_id"],
    )
    assert head["VersionId"] == version["version_id"]
    assert head["ObjectLockMode"] == version["object_lock_mode"]
    assert datetime.fromisoformat(head["ObjectLockRetainUntilDate"]) == datetime.fromisoformat(
        version["object_lock_retain_until_date"].replace("Z", "+00:00")
    )
    assert head["ObjectLockLegalHoldStatus"] == version["object_lock_legal_hold_status"]
    assert head["ReplicationStatus"] == "REPLICA"


def test_aws_cli_recovery_profile_is_the_recovery_account(running_backend: RunningCommand) -> None:
    identity = aws(running_backend, RECOVERY_PROFILE, "sts", "get-caller-identity")
    assert identity["Account"] == RECOVERY_ACCOUNT


def test_aws_cli_identity_survives_a_backend_restart(tmp_path: Path) -> None:
    # A new backend process knows nothing of the credentials the CLI cached from the last one.
    for start in range(2):
        folder = tmp_path / f"start-{start}"
        folder.mkdir()
        with runbook_backend(folder) as running:
            identity = aws_cli(running.config_file, tmp_path, RECOVERY_PROFILE, "sts", "get-caller-identity")
        assert identity["Account"] == RECOVERY_ACCOUNT


def test_sigterm_stops_it_cleanly(running_backend: RunningCommand) -> None:
    running_backend.process.send_signal(signal.SIGTERM)
    assert running_backend.process.wait(timeout=30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", running_backend.port), timeout=2).close()
