"""The seeded vault: every case a recovery must handle is present, repeatable, and what the API shows."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runbook_lib import cli
from runbook_lib.accounts import make_client, session_for
from runbook_lib.embedded import seed as seed_module
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import (
    AWKWARD_KEYS,
    VAULT_BUCKET,
    GroundTruth,
    SeededVersion,
    content_digest,
    seed_vault,
)
from runbook_lib.embedded.server import VAULT_PROFILE, EmbeddedBackend, start_backend
from runbook_lib.errors import BackendError


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    with start_backend(config_file=tmp_path_factory.mktemp("seed") / "aws-config") as running:
        yield running


def fresh_seed(backend: EmbeddedBackend, versions: int, random_seed: int) -> GroundTruth:
    """Empty the backend, then seed it: moto's state is global to the process, and a vault exists once."""
    request = urllib.request.Request(f"{backend.endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    return seed_vault(backend.endpoint, versions, random_seed)


def future(date: str | None) -> bool:
    return date is not None and datetime.fromisoformat(date.replace("Z", "+00:00")) > datetime.now(timezone.utc)


@pytest.mark.parametrize(("versions", "random_seed"), [(20, 1), (20, 7), (100, 3), (100, 11), (300, 1), (1000, 2)])
def test_seeded_vault_holds_every_case(versions: int, random_seed: int, backend: EmbeddedBackend) -> None:
    truth = fresh_seed(backend, versions, random_seed)
    counts = truth.counts()
    objects = [v for v in truth.versions if not v.is_delete_marker]
    markers = [v for v in truth.versions if v.is_delete_marker]
    keys = {v.key for v in truth.versions}

    assert counts["source_versions"] == len(truth.versions) == versions
    assert counts["objects"] + counts["delete_markers"] == versions
    outcomes = ("expected", "skip_not_replica", "skip_delete_marker", "skip_archived")
    assert sum(counts[outcome] for outcome in outcomes) == versions
    assert counts["skip_delete_marker"] == counts["delete_markers"] == len(markers)
    assert counts["keys"] == len(keys)
    assert len({(v.key, v.version_id) for v in truth.versions}) == versions
    assert Counter(v.key for v in truth.versions if v.is_latest) == Counter(keys)

    if versions >= 300:
        assert keys >= set(AWKWARD_KEYS)
        assert any(len(key.encode()) == 1024 for key in keys)
    else:
        assert keys & set(AWKWARD_KEYS)
    assert any(v.size == 0 for v in objects)
    if versions >= 100:
        assert any(v.size >= 2_000_000 for v in objects)
        # Golden copies uploaded in parts, each to be recovered, with retention and a legal hold.
        in_parts = sorted((v for v in objects if v.parts), key=lambda v: v.parts or 0)
        shown = [(v.parts, v.checksum_algorithm, v.object_lock_mode, v.object_lock_legal_hold_status) for v in in_parts]
        assert shown == [(2, None, "GOVERNANCE", None), (3, "SHA256", "COMPLIANCE", "ON")]
        assert all(v.etag and v.etag.strip('"').endswith(f"-{v.parts}") for v in in_parts)
        assert all(v.expected_outcome == "recover" and future(v.object_lock_retain_until_date) for v in in_parts)
    else:
        assert not any(v.parts for v in objects)
    for mode in ("GOVERNANCE", "COMPLIANCE"):
        assert any(v.object_lock_mode == mode and future(v.object_lock_retain_until_date) for v in objects)
    assert all(future(v.object_lock_retain_until_date) for v in objects if v.object_lock_mode)
    assert any(v.object_lock_legal_hold_status == "ON" and v.object_lock_mode for v in objects)
    assert any(v.object_lock_legal_hold_status == "ON" and not v.object_lock_mode for v in objects)
    assert markers and all(m.is_latest for m in markers)
    assert any(v.expected_outcome == "skip_not_replica" and v.replication_status is None for v in objects)
    assert any(v.expected_outcome == "skip_archived" and v.storage_class == "GLACIER" for v in objects)
    assert all(v.replication_status == "REPLICA" for v in objects if v.expected_outcome != "skip_not_replica")
    assert {v.key for v in truth.expected_versions()} and all(
        v.expected_outcome == "recover" for v in truth.expected_versions()
    )


def test_the_same_seed_gives_the_same_vault(backend: EmbeddedBackend) -> None:
    first = content_digest(fresh_seed(backend, 200, 5))
    again = content_digest(fresh_seed(backend, 200, 5))
    other = content_digest(fresh_seed(backend, 200, 6))
    assert first == again
    assert other != first


def test_ground_truth_round_trips_through_json(backend: EmbeddedBackend, tmp_path: Path) -> None:
    truth = fresh_seed(backend, 150, 4)
    path = truth.write(tmp_path / "nested" / "ground-truth.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert [SeededVersion(**row) for row in document["versions"]] == truth.versions
    assert document["counts"] == truth.counts()
    assert (document["vault_bucket"], document["vault_account"], document["random_seed"]) == (
        truth.vault_bucket, truth.vault_account, 4
    )
    assert any(row["key"] in AWKWARD_KEYS and not row["key"].isascii() for row in document["versions"])


def test_the_api_shows_exactly_the_ground_truth(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = fresh_seed(backend, 300, 9)
    for name, value in backend.environ().items():
        monkeypatch.setenv(name, value)
    s3 = make_client(session_for(VAULT_PROFILE), "s3")

    listed = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=VAULT_BUCKET):
        listed |= {(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in page.get("Versions", [])}
        listed |= {(m["Key"], m["VersionId"], True, m["IsLatest"]) for m in page.get("DeleteMarkers", [])}
    assert listed == {(v.key, v.version_id, v.is_delete_marker, v.is_latest) for v in truth.versions}

    for version in truth.versions:
        if version.is_delete_marker:
            continue
        head = s3.head_object(Bucket=VAULT_BUCKET, Key=version.key, VersionId=version.version_id)
        until = version.object_lock_retain_until_date
        shown = (
            head["ContentLength"], head["ETag"], head.get("ObjectLockMode"),
            head.get("ObjectLockRetainUntilDate"), head.get("ObjectLockLegalHoldStatus"),
            head.get("ReplicationStatus"),
        )
        assert shown == (
            version.size, version.etag, version.object_lock_mode,
            datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None,
            version.object_lock_legal_hold_status, version.replication_status,
        ), version.key


def test_objects_in_parts_show_their_parts_checksum_and_lock_through_the_api(
    backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = fresh_seed(backend, 100, 11)
    for name, value in backend.environ().items():
        monkeypatch.setenv(name, value)
    s3 = make_client(session_for(VAULT_PROFILE), "s3")

    in_parts = [v for v in truth.versions if v.parts]
    assert len(in_parts) == len(seed_module.MULTIPART_OBJECTS)
    for version in in_parts:
        head = s3.head_object(Bucket=VAULT_BUCKET, Key=version.key, VersionId=version.version_id,
                              PartNumber=1, ChecksumMode="ENABLED")
        assert head["PartsCount"] == version.parts
        assert head["ContentLength"] == seed_module.PART_SIZE  # part 1 of an object in parts
        whole = s3.head_object(Bucket=VAULT_BUCKET, Key=version.key, VersionId=version.version_id,
                               ChecksumMode="ENABLED")
        assert (whole["ETag"], whole["ContentLength"]) == (version.etag, version.size)
        assert ("ChecksumSHA256" in whole) == (version.checksum_algorithm == "SHA256")
        assert whole["ReplicationStatus"] == "REPLICA" and whole["ServerSideEncryption"] == "aws:kms"
        assert (whole["ObjectLockMode"], whole.get("ObjectLockLegalHoldStatus")) == (
            version.object_lock_mode, version.object_lock_legal_hold_status)


@pytest.mark.parametrize("versions", [0, 5, 19])
def test_too_small_a_vault_is_refused(versions: int, backend: EmbeddedBackend) -> None:
    with pytest.raises(BackendError, match="at least 20 versions"):
        seed_vault(backend.endpoint, versions)


# ------------------------------------------------------------------------------ throttling


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the seeder's backoff waits instead of sleeping them, and return the record."""
    waits: list[float] = []
    monkeypatch.setattr(seed_module, "_sleep", waits.append)
    return waits


def _reset(backend: EmbeddedBackend) -> None:
    request = urllib.request.Request(f"{backend.endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def test_seeding_through_heavy_throttling_gives_the_same_vault(
    backend: EmbeddedBackend, tmp_path: Path, no_waiting: list[float]
) -> None:
    unthrottled = content_digest(fresh_seed(backend, 100, 3))
    _reset(backend)
    # A second server over the same (process-wide) moto state, answering SlowDown to 70% of S3 calls.
    with start_backend(config_file=tmp_path / "aws-config", faults=Faults(throttle_rate=0.7, seed=4)) as throttled:
        truth = seed_vault(throttled.endpoint, 100, 3)
    assert content_digest(truth) == unthrottled
    assert no_waiting, "the backend should have throttled some setup calls"
    assert max(no_waiting) <= seed_module.SEED_BACKOFF_CAP_SECONDS


def test_throttling_that_outlasts_every_attempt_is_a_backend_error_that_says_so(
    backend: EmbeddedBackend, tmp_path: Path, no_waiting: list[float]
) -> None:
    _reset(backend)
    with start_backend(config_file=tmp_path / "aws-config", faults=Faults(throttle_rate=1.0)) as throttled, \
            pytest.raises(BackendError) as failed:
        seed_vault(throttled.endpoint, 100, 3)
    message = str(failed.value)
    assert "SlowDown (throttling)" in message and "create_bucket" in message
    assert f"{seed_module.SEED_ATTEMPTS} times in a row" in message
    assert "lower --throttle" in message
    assert len(no_waiting) == seed_module.SEED_ATTEMPTS - 1  # no pause after the last attempt


def test_runbook_backend_reports_hopeless_throttling_as_bad_input_not_a_traceback(
    backend: EmbeddedBackend, tmp_path: Path, no_waiting: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    _reset(backend)
    status = cli.main(["backend", "--port", "0", "--objects", "100", "--throttle", "1.0",
                       "--config-file", str(tmp_path / "aws-config")])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("error: seeding the vault failed") and "Traceback" not in error
