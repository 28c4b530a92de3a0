"""snapshot_bucket against a seeded embedded vault: every version as the seeder wrote it, "unknown" never "none"."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import pandas as pd
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runbook_lib import snapshot as snapshot_module
from runbook_lib import verify
from runbook_lib.accounts import make_client, session_for
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import (
    AWKWARD_KEYS,
    VAULT_BUCKET,
    GroundTruth,
    SeededVersion,
    seed_vault,
)
from runbook_lib.embedded.server import (
    REGION,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.errors import InvalidArguments, SnapshotError, ThrottlingError
from runbook_lib.snapshot import (
    COLUMNS,
    HEAD_ERROR,
    UNKNOWN,
    progress_printer,
    snapshot_bucket,
)

pytestmark = pytest.mark.xdist_group("snapshot")

SEEDED_VERSIONS = 150
LOCK_COLUMNS = ["object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status"]
RETENTION_FIELDS = ("ObjectLockMode", "ObjectLockRetainUntilDate")
HOLD_FIELDS = ("ObjectLockLegalHoldStatus",)


def _reset_moto(endpoint: str) -> None:
    """Drop every account's resources (moto's state is process-global, shared with other modules)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def _vault_client(backend: EmbeddedBackend) -> Any:
    """Return an S3 client of the vault account, made the way the runbook makes its clients."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in backend.environ().items():
            patch.setenv(name, value)
        return make_client(session_for(VAULT_PROFILE, REGION), "s3", region_name=REGION)


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[EmbeddedBackend, GroundTruth]]:
    """Start a backend, reset moto, seed a vault of 150 versions; reset again when the module is done."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        backend = start_backend()
        try:
            _reset_moto(backend.endpoint)
            yield backend, seed_vault(backend.endpoint, SEEDED_VERSIONS, random_seed=7)
        finally:
            try:
                _reset_moto(backend.endpoint)
            finally:
                backend.stop()


@pytest.fixture(scope="module")
def truth(seeded: tuple[EmbeddedBackend, GroundTruth]) -> GroundTruth:
    return seeded[1]


@pytest.fixture(scope="module")
def s3(seeded: tuple[EmbeddedBackend, GroundTruth]) -> Any:
    return _vault_client(seeded[0])


@pytest.fixture(scope="module")
def vault(s3: Any) -> pd.DataFrame:
    """The snapshot of the whole vault with default settings, taken once for the module."""
    return snapshot_bucket(s3, VAULT_BUCKET)


class RestrictedS3:
    """A real S3 client seen through a caller's missing permissions, or a throttling S3, as AWS shows them.

    Without s3:GetObjectRetention / s3:GetObjectLegalHold, AWS refuses those calls and HEAD
    silently leaves the matching fields out; without `checksums`, a HEAD asking for checksums is refused.
    HEADs of the versions in `forbidden_heads` fail with 403.
    The first calls of an operation fail with the codes listed for it in `errors`, one per call
    (keys: "head", "retention", "legal_hold", "list"); `asked` records which versions each lock
    call was asked about, and `failed` which versions got an error code.
    """

    def __init__(
        self, s3: Any, *, retention: bool = True, legal_hold: bool = True,
        forbidden_heads: frozenset[tuple[str, str]] = frozenset(), errors: dict[str, tuple[str, ...]] | None = None,
        checksums: bool = True,
    ) -> None:
        self._s3 = s3
        self._checksums = checksums
        self._retention = retention
        self._legal_hold = legal_hold
        self._forbidden_heads = forbidden_heads
        self._errors = {name: list(codes) for name, codes in (errors or {}).items()}
        self._lock = threading.Lock()
        self.asked: dict[str, list[tuple[str, str]]] = {"retention": [], "legal_hold": []}
        self.failed: dict[str, set[tuple[str, str]]] = {"head": set(), "retention": set(), "legal_hold": set()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def _scripted_error(self, call: str, operation: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            codes = self._errors.get(call)
            code = codes.pop(0) if codes else None
            if code and "Key" in kwargs:
                self.failed[call].add((kwargs["Key"], kwargs["VersionId"]))
        if code:
            # HEAD answers have no body, so botocore reports a bare status code there.
            status = int(code) if code.isdigit() else 503 if code in ("SlowDown", "RequestLimitExceeded") else 400
            raise ClientError({"Error": {"Code": code, "Message": code},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

    def list_object_versions(self, **kwargs: Any) -> Any:
        self._scripted_error("list", "ListObjectVersions", kwargs)
        return self._s3.list_object_versions(**kwargs)

    def get_object_retention(self, **kwargs: Any) -> Any:
        with self._lock:
            self.asked["retention"].append((kwargs["Key"], kwargs["VersionId"]))
        self._scripted_error("retention", "GetObjectRetention", kwargs)
        if not self._retention:
            raise _denied("GetObjectRetention")
        return self._s3.get_object_retention(**kwargs)

    def get_object_legal_hold(self, **kwargs: Any) -> Any:
        with self._lock:
            self.asked["legal_hold"].append((kwargs["Key"], kwargs["VersionId"]))
        self._scripted_error("legal_hold", "GetObjectLegalHold", kwargs)
        if not self._legal_hold:
            raise _denied("GetObjectLegalHold")
        return self._s3.get_object_legal_hold(**kwargs)

    def head_object(self, **kwargs: Any) -> Any:
        if (kwargs["Key"], kwargs["VersionId"]) in self._forbidden_heads:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
        self._scripted_error("head", "HeadObject", kwargs)
        if kwargs.get("ChecksumMode") and not self._checksums:
            # Without kms:Decrypt, AWS refuses a HEAD that asks for the checksum of an SSE-KMS object.
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
        answer = dict(self._s3.head_object(**kwargs))
        hidden = (() if self._retention else RETENTION_FIELDS) + (() if self._legal_hold else HOLD_FIELDS)
        for name in hidden:
            answer.pop(name, None)
        return answer


def _denied(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)


# ------------------------------------------------------------------------------ expected values


def _second(value: Any) -> str | None:
    """Return a date as UTC ISO-8601 to the second, or None."""
    if value is None or pd.isna(value):
        return None
    moment = pd.Timestamp(value)
    if moment.tzinfo is None:
        moment = moment.tz_localize(UTC)
    return str(moment.tz_convert(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _plain(value: Any) -> Any:
    """Return a frame value as a plain Python value, NA as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def expected_row(version: SeededVersion, truth: GroundTruth) -> dict[str, Any]:
    """Return what a snapshot must say about a seeded version."""
    marker = version.is_delete_marker
    return {
        "is_latest": version.is_latest,
        "is_delete_marker": marker,
        "size": version.size,
        "etag": None if marker else (version.etag or "").strip('"'),
        "storage_class": version.storage_class,
        # Listings do not carry a delete marker's replication status, and HEAD refuses markers.
        "replication_status": None if marker else version.replication_status,
        "encryption": version.encryption,
        "kms_key": truth.vault_key_arn if version.encryption == "aws:kms" else None,
        "object_lock_mode": version.object_lock_mode,
        "object_lock_retain_until_date": _second(version.object_lock_retain_until_date),
        "object_lock_legal_hold_status": version.object_lock_legal_hold_status,
    }


_EXPECTED_FIELDS = (
    "is_latest", "is_delete_marker", "size", "etag", "storage_class", "replication_status", "encryption",
    "kms_key", "object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status",
)


def observed_row(row: pd.Series) -> dict[str, Any]:
    """Return a snapshot row in the shape of `expected_row`."""
    fields = {name: _plain(row[name]) for name in _EXPECTED_FIELDS}
    retain = row["object_lock_retain_until_date"]
    fields["object_lock_retain_until_date"] = retain if retain == UNKNOWN else _second(retain)
    return fields


def by_version(frame: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """Return the frame's rows by (key, version id)."""
    return {(row["key"], row["version_id"]): row for _, row in frame.iterrows()}


# ------------------------------------------------------------------------------ the seeded vault


def test_every_seeded_version_appears_once_with_its_state(vault: pd.DataFrame, truth: GroundTruth) -> None:
    assert list(vault.columns) == [*COLUMNS, HEAD_ERROR]
    assert len(vault) == len(truth.versions) == SEEDED_VERSIONS
    assert not vault.duplicated(["key", "version_id"]).any()
    assert vault[HEAD_ERROR].isna().all()
    observed = by_version(vault)
    assert set(observed) == {(v.key, v.version_id) for v in truth.versions}
    for version in truth.versions:
        assert observed_row(observed[(version.key, version.version_id)]) == expected_row(version, truth), version.key


def test_the_vault_holds_every_kind_of_version_the_checks_need(vault: pd.DataFrame) -> None:
    # Without these, the comparison above would not exercise the lock, hold and encryption columns.
    objects = vault[~vault["is_delete_marker"]]
    assert set(objects["object_lock_mode"].dropna()) == {"GOVERNANCE", "COMPLIANCE"}
    assert objects["object_lock_mode"].isna().any()
    assert (objects["object_lock_legal_hold_status"] == "ON").any()
    assert set(objects["encryption"]) == {"aws:kms", "AES256"}
    assert vault["is_delete_marker"].any()
    assert isinstance(vault["object_lock_retain_until_date"].dtype, pd.DatetimeTZDtype)
    assert str(vault["object_lock_retain_until_date"].dt.tz) == "UTC"


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_come_back_intact(vault: pd.DataFrame, truth: GroundTruth, key: str) -> None:
    seeded = sorted(v.version_id for v in truth.versions if v.key == key)
    assert seeded, "the seeded vault should hold every awkward key"
    assert sorted(vault.loc[vault["key"] == key, "version_id"]) == seeded


def test_rows_are_in_listing_order(vault: pd.DataFrame) -> None:
    keys = list(vault["key"])
    assert keys == sorted(keys, key=lambda k: k.encode())
    for _, versions in vault.groupby("key", sort=False):
        assert versions["last_modified"].is_monotonic_decreasing
        assert versions["is_latest"].tolist() == [True] + [False] * (len(versions) - 1)


@pytest.mark.parametrize("page_size", [1, 7, 200])
def test_the_page_size_does_not_change_the_snapshot(s3: Any, vault: pd.DataFrame, page_size: int) -> None:
    pd.testing.assert_frame_equal(snapshot_bucket(s3, VAULT_BUCKET, page_size=page_size, workers=4), vault)


@pytest.mark.parametrize("prefix", ["reports/", "i18n/", "billing/", "no-such-prefix/"])
def test_a_prefix_limits_the_snapshot_to_its_keys(s3: Any, truth: GroundTruth, prefix: str) -> None:
    frame = snapshot_bucket(s3, VAULT_BUCKET, prefix=prefix, page_size=7)
    wanted = {(v.key, v.version_id) for v in truth.versions if v.key.startswith(prefix)}
    assert set(zip(frame["key"], frame["version_id"], strict=True)) == wanted
    assert len(frame) == len(wanted)
    assert list(frame.columns) == [*COLUMNS, HEAD_ERROR]


# ------------------------------------------------------------------------------ progress


class Recorder:
    """A subscriber that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, bool]] = []

    def on_progress(self, done: int, listed: int, listing_done: bool) -> None:
        self.calls.append((done, listed, listing_done))


@pytest.mark.parametrize("page_size", [10, 1000])
def test_subscribers_see_growing_counts_and_a_final_call(s3: Any, page_size: int) -> None:
    first, second = Recorder(), Recorder()
    frame = snapshot_bucket(s3, VAULT_BUCKET, page_size=page_size, subscribers=[first, second])
    calls = first.calls
    assert calls == second.calls
    assert calls[-1] == (len(frame), len(frame), True)
    assert all(done <= listed for done, listed, _ in calls)
    for before, after in itertools.pairwise(calls):
        assert after[0] >= before[0] and after[1] >= before[1]
        assert after[2] >= before[2], "listing_done never goes back to False"
    # One call per listed page while listing, each counting every version listed so far.
    pages = -(-len(frame) // page_size)
    listing = [listed for _, listed, listing_done in calls if not listing_done]
    assert listing == [min(page * page_size, len(frame)) for page in range(1, pages + 1)]
    assert {listed for _, listed, listing_done in calls if listing_done} == {len(frame)}


class PacedS3:
    """A real S3 client whose reads take a little longer, recording how far the listing ran ahead of them."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self._lock = threading.Lock()
        self.listed = 0
        self.heads = 0
        self.ahead: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def list_object_versions(self, **kwargs: Any) -> Any:
        with self._lock:
            self.ahead.append(self.listed - self.heads)
        page = self._s3.list_object_versions(**kwargs)
        with self._lock:
            self.listed += len(page.get("Versions", []))
        return page

    def head_object(self, **kwargs: Any) -> Any:
        time.sleep(0.005)
        answer = self._s3.head_object(**kwargs)
        with self._lock:
            self.heads += 1
        return answer


def test_the_listing_waits_for_the_reads_instead_of_queueing_the_whole_bucket(
    s3: Any, vault: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_module, "QUEUED_PER_WORKER", 3)
    paced = PacedS3(s3)
    frame = snapshot_bucket(paced, VAULT_BUCKET, workers=2, page_size=10)
    pd.testing.assert_frame_equal(comparable(frame), comparable(vault))
    # When a page is asked for, at most 2 x 3 listed versions wait for their HEAD, those in flight included.
    assert max(paced.ahead) <= 2 * 3
    assert paced.heads == int((~vault["is_delete_marker"]).sum())


def test_progress_printer_prints_a_last_line_once(s3: Any) -> None:
    lines: list[str] = []
    frame = snapshot_bucket(s3, VAULT_BUCKET, page_size=10, subscribers=[progress_printer("vault", 50, lines.append)])
    total = f"{len(frame):,}"
    assert lines[-1] == f"vault: {total} of {total} versions read (complete)"
    assert sum("complete" in line for line in lines) == 1
    assert 2 <= len(lines) <= len(frame) // 50 + 2


# ------------------------------------------------------------------------------ unknown, never none


@pytest.mark.parametrize(
    ("retention", "legal_hold"),
    [(False, False), (False, True), (True, False)],
    ids=["neither", "no-retention", "no-legal-hold"],
)
def test_lock_fields_a_caller_may_not_read_are_unknown_not_none(
    s3: Any, vault: pd.DataFrame, retention: bool, legal_hold: bool
) -> None:
    frame = snapshot_bucket(RestrictedS3(s3, retention=retention, legal_hold=legal_hold), VAULT_BUCKET)
    objects, markers = frame[~frame["is_delete_marker"]], frame[frame["is_delete_marker"]]
    unreadable = ([] if retention else LOCK_COLUMNS[:2]) + ([] if legal_hold else LOCK_COLUMNS[2:])
    readable = [name for name in LOCK_COLUMNS if name not in unreadable]
    for name in unreadable:
        assert (objects[name] == UNKNOWN).all(), name
        assert markers[name].isna().all(), f"a delete marker has no {name} to be unknown"
    # What the caller may read is still read, exactly as with full permissions.
    full = vault.set_index(["key", "version_id"])
    restricted = frame.set_index(["key", "version_id"]).loc[full.index]
    for name in readable:
        pd.testing.assert_series_equal(restricted[name], full[name])
    assert frame[HEAD_ERROR].isna().all()
    pd.testing.assert_frame_equal(frame.drop(columns=LOCK_COLUMNS), vault.drop(columns=LOCK_COLUMNS))


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the rows with retain-until dates as text to the second, whichever dtype the column has."""
    dates = [value if isinstance(value, str) and value == UNKNOWN else _second(value)
             for value in frame["object_lock_retain_until_date"]]
    return frame.assign(object_lock_retain_until_date=pd.array(dates, dtype="string")).reset_index(drop=True)


def _versions(frame: pd.DataFrame, mask: pd.Series) -> set[tuple[str, str]]:
    return set(zip(frame.loc[mask, "key"], frame.loc[mask, "version_id"], strict=True))


def test_only_versions_whose_head_lacks_a_lock_field_are_asked_about_it(s3: Any, vault: pd.DataFrame) -> None:
    client = RestrictedS3(s3)
    pd.testing.assert_frame_equal(snapshot_bucket(client, VAULT_BUCKET, page_size=10), vault)
    objects = ~vault["is_delete_marker"]
    without_retention = _versions(vault, objects & vault["object_lock_mode"].isna())
    without_hold = _versions(vault, objects & vault["object_lock_legal_hold_status"].isna())
    assert without_retention and without_hold, "the vault must hold versions without retention and without holds"
    assert sorted(client.asked["retention"]) == sorted(without_retention)
    assert sorted(client.asked["legal_hold"]) == sorted(without_hold)


def test_a_bucket_without_object_lock_needs_no_extra_call(s3: Any) -> None:
    bucket = "snapshot-no-object-lock"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        s3.put_object(Bucket=bucket, Key="plain.txt", Body=body)
    client = RestrictedS3(s3)
    frame = snapshot_bucket(client, bucket)
    assert len(frame) == 2
    assert frame[LOCK_COLUMNS].isna().all().all(), "no Object Lock: no retention and no hold, certainly"
    assert client.asked == {"retention": [], "legal_hold": []}


@pytest.mark.parametrize("code", ["AccessDenied", "InternalError", "NoSuchVersion", "InvalidObjectState"])
def test_an_unsettled_lock_answer_makes_that_field_unknown_for_that_version_only(
    s3: Any, vault: pd.DataFrame, code: str
) -> None:
    client = RestrictedS3(s3, errors={"retention": (code,) * 3, "legal_hold": (code,) * 2})
    frame = snapshot_bucket(client, VAULT_BUCKET)
    unsettled = {"retention": client.failed["retention"], "legal_hold": client.failed["legal_hold"]}
    assert len(unsettled["retention"]) == 3 and len(unsettled["legal_hold"]) == 2
    rows = frame.set_index(["key", "version_id"])
    for version in unsettled["retention"]:
        assert list(rows.loc[version, LOCK_COLUMNS[:2]]) == [UNKNOWN, UNKNOWN], version
    for version in unsettled["legal_hold"]:
        assert rows.loc[version, LOCK_COLUMNS[2]] == UNKNOWN, version
    # Every other version reads exactly as with full permissions.
    others = ~frame.set_index(["key", "version_id"]).index.isin(unsettled["retention"] | unsettled["legal_hold"])
    pd.testing.assert_frame_equal(comparable(frame[others]), comparable(vault[others]))


# ------------------------------------------------------------------------------ per-object denials on the backend


@contextmanager
def bucket_policy(s3: Any, bucket: str, policy: dict[str, Any]) -> Iterator[None]:
    """Put a bucket policy for the block, and remove it after."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        yield
    finally:
        s3.delete_bucket_policy(Bucket=bucket)


DENIED_PREFIX = "billing/"


@pytest.mark.parametrize(("action", "columns"), [
    ("s3:GetObjectRetention", LOCK_COLUMNS[:2]),
    ("s3:GetObjectLegalHold", LOCK_COLUMNS[2:]),
], ids=["retention", "legal-hold"])
def test_a_bucket_policy_denying_a_lock_field_on_one_prefix_makes_exactly_those_versions_unknown(
    s3: Any, vault: pd.DataFrame, action: str, columns: list[str]
) -> None:
    objects = ~vault["is_delete_marker"]
    under = objects & vault["key"].str.startswith(DENIED_PREFIX)
    column = columns[0]
    assert vault.loc[under, column].notna().any() and vault.loc[under, column].isna().any(), (
        "the denied prefix must hold versions with and without the field, or this test proves little")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "NoLockReadsOnBilling", "Effect": "Deny", "Principal": "*", "Action": action,
        "Resource": f"arn:aws:s3:::{VAULT_BUCKET}/{DENIED_PREFIX}*"}]}
    with bucket_policy(s3, VAULT_BUCKET, policy):
        frame = snapshot_bucket(s3, VAULT_BUCKET)

    assert (frame.loc[under, columns] == UNKNOWN).all().all()
    assert frame[HEAD_ERROR].isna().all()
    # Everything else, and the other lock field everywhere, keeps its value.
    pd.testing.assert_frame_equal(comparable(frame[~under]), comparable(vault[~under]))
    pd.testing.assert_frame_equal(comparable(frame[under]).drop(columns=columns),
                                  comparable(vault[under]).drop(columns=columns))
    recovery = _recovered_copy(vault)
    comparison = verify.compare(frame, recovery, expected_statuses={"REPLICA"})
    assert comparison.verdict == "FAIL", "a copy whose vault lock fields could not be read must not pass"


def _recovered_copy(vault: pd.DataFrame) -> pd.DataFrame:
    """Return what a complete recovery of the vault's replicas looks like in the recovery bucket."""
    eligible = (
        ~vault["is_delete_marker"]
        & vault["replication_status"].eq("REPLICA").fillna(False)
        & ~vault["storage_class"].isin(["GLACIER", "DEEP_ARCHIVE"])
    )
    return vault[eligible].reset_index(drop=True)


@pytest.mark.parametrize("unreadable_side", ["vault", "recovery"])
def test_verify_refuses_to_pass_versions_whose_locks_were_unreadable(
    s3: Any, vault: pd.DataFrame, unreadable_side: str
) -> None:
    recovery = _recovered_copy(vault)
    readable = verify.compare(vault, recovery, expected_statuses={"REPLICA"})
    assert readable.verdict == "PASS", "the control comparison must pass, or this test proves nothing"

    blind = snapshot_bucket(RestrictedS3(s3, retention=False, legal_hold=False), VAULT_BUCKET)
    if unreadable_side == "vault":
        comparison = verify.compare(blind, recovery, expected_statuses={"REPLICA"})
    else:
        comparison = verify.compare(vault, _recovered_copy(blind), expected_statuses={"REPLICA"})

    assert comparison.verdict == "FAIL"
    unknown = comparison.category(verify.UNKNOWN_UNREADABLE)
    unknown_versions = set(zip(unknown["key"], unknown["version_id"], strict=True))
    assert unknown_versions == set(zip(recovery["key"], recovery["version_id"], strict=True))
    assert comparison.counts["unknown"] == len(recovery)
    assert comparison.counts["recovered"] == 0


def test_a_failed_head_leaves_that_version_unknown_and_names_the_error(
    s3: Any, vault: pd.DataFrame, truth: GroundTruth
) -> None:
    target = next(
        v for v in truth.versions
        if not v.is_delete_marker and v.object_lock_mode and v.object_lock_legal_hold_status == "ON"
    )
    restricted = RestrictedS3(s3, forbidden_heads=frozenset({(target.key, target.version_id)}))
    frame = snapshot_bucket(restricted, VAULT_BUCKET)

    failed = frame[frame[HEAD_ERROR].notna()]
    assert list(zip(failed["key"], failed["version_id"], strict=True)) == [(target.key, target.version_id)]
    row = failed.iloc[0]
    assert row[HEAD_ERROR] == "403"
    assert [row[name] for name in LOCK_COLUMNS] == [UNKNOWN] * 3
    # Only HEAD knows the replication status: a failed HEAD must not read as "never replicated".
    assert row["replication_status"] == UNKNOWN
    assert (row["size"], row["etag"]) == (target.size, (target.etag or "").strip('"'))
    others = frame[frame[HEAD_ERROR].isna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        others.drop(columns=["object_lock_retain_until_date"]),
        vault[~((vault["key"] == target.key) & (vault["version_id"] == target.version_id))]
        .reset_index(drop=True).drop(columns=["object_lock_retain_until_date"]),
    )
    recovery = _recovered_copy(vault)
    comparison = verify.compare(frame, recovery, expected_statuses={"REPLICA"})
    assert comparison.verdict == "FAIL"


# ------------------------------------------------------------------------------ objects in parts, checksums


def test_objects_in_parts_show_their_multipart_etag_and_checksum(vault: pd.DataFrame, truth: GroundTruth) -> None:
    rows = by_version(vault)
    in_parts = [v for v in truth.versions if v.parts]
    assert in_parts, "a vault of 150 versions holds objects uploaded in parts"
    for version in in_parts:
        row = rows[(version.key, version.version_id)]
        assert row["etag"] == (version.etag or "").strip('"') and row["etag"].endswith(f"-{version.parts}")
        assert _plain(row["checksum_algorithm"]) == version.checksum_algorithm
        assert (_plain(row["checksum"]) is not None) == (version.checksum_algorithm is not None)
    others = vault[~vault.set_index(["key", "version_id"]).index.isin([(v.key, v.version_id) for v in in_parts])]
    assert others["checksum_algorithm"].isna().all() and others["checksum"].isna().all()


def test_a_head_refused_for_its_checksum_reads_everything_else(s3: Any, vault: pd.DataFrame) -> None:
    frame = snapshot_bucket(RestrictedS3(s3, checksums=False), VAULT_BUCKET)

    objects = ~frame["is_delete_marker"]
    assert (frame.loc[objects, ["checksum_algorithm", "checksum"]] == UNKNOWN).all().all()
    assert frame[HEAD_ERROR].isna().all()
    checksums = ["checksum_algorithm", "checksum"]
    pd.testing.assert_frame_equal(comparable(frame).drop(columns=checksums), comparable(vault).drop(columns=checksums))


# ------------------------------------------------------------------------------ throttling and errors


def test_a_throttled_backend_gives_the_same_snapshot(
    seeded: tuple[EmbeddedBackend, GroundTruth], vault: pd.DataFrame, tmp_path: Any
) -> None:
    # A second server over the same (process-wide) moto state: same vault, but 1 in 5 S3 calls answered SlowDown.
    # One prefix only: the runbook's adaptive retries slow the client down after each SlowDown, as they should.
    throttled = start_backend(config_file=tmp_path / "aws-config", faults=Faults(throttle_rate=0.2, seed=3))
    try:
        s3 = _vault_client(throttled)
        retries: list[int] = []
        s3.meta.events.register(
            "after-call.s3", lambda parsed, **_: retries.append(parsed["ResponseMetadata"].get("RetryAttempts", 0))
        )
        frame = snapshot_bucket(s3, VAULT_BUCKET, page_size=10, prefix=DENIED_PREFIX)
    finally:
        throttled.stop()
    assert sum(retries) > 0, "the backend should have throttled some requests"
    pd.testing.assert_frame_equal(frame, vault[vault["key"].str.startswith(DENIED_PREFIX)].reset_index(drop=True))


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the snapshot's pauses between throttled rounds instead of sleeping them."""
    pauses: list[float] = []
    monkeypatch.setattr(snapshot_module, "_sleep", pauses.append)
    return pauses


def test_throttled_calls_are_retried_and_never_read_as_denied(
    s3: Any, vault: pd.DataFrame, no_waiting: list[float]
) -> None:
    # Fewer throttled answers in a row than rounds: every call gets through in the end.
    rounds = snapshot_module.THROTTLE_ROUNDS - 1
    client = RestrictedS3(s3, errors={
        "head": ("503",) * rounds, "retention": ("SlowDown",) * rounds,
        "legal_hold": ("RequestLimitExceeded",) * rounds, "list": ("SlowDown",) * rounds,
    })
    pd.testing.assert_frame_equal(snapshot_bucket(client, VAULT_BUCKET, workers=1), vault)
    assert len(no_waiting) == 4 * rounds


@pytest.mark.parametrize(("call", "code", "operation"), [
    ("head", "503", "HeadObject"),
    ("retention", "SlowDown", "GetObjectRetention"),
    ("legal_hold", "RequestLimitExceeded", "GetObjectLegalHold"),
    ("list", "SlowDown", "ListObjectVersions"),
])
def test_throttling_that_outlasts_every_round_stops_the_snapshot_and_names_the_cause(
    s3: Any, no_waiting: list[float], call: str, code: str, operation: str
) -> None:
    client = RestrictedS3(s3, errors={call: (code,) * 1000})
    with pytest.raises(ThrottlingError) as stopped:
        snapshot_bucket(client, VAULT_BUCKET, workers=2)
    assert (stopped.value.operation, stopped.value.code) == (operation, code)
    message = str(stopped.value)
    assert f"S3 kept throttling {operation}" in message
    assert "Lower verification.head_workers" in message and "run the verification again later" in message


@pytest.mark.parametrize("throttle_rate", [0.05, 1.0])
def test_a_heavily_throttled_backend_gives_the_true_snapshot_or_a_throttling_error(
    seeded: tuple[EmbeddedBackend, GroundTruth], vault: pd.DataFrame, tmp_path: Any, no_waiting: list[float],
    throttle_rate: float,
) -> None:
    # botocore gives up at once here, so only the snapshot's own rounds of retries stand between a
    # throttled call and the answer: one call in twenty throttled must still give the true snapshot
    # (seeded faults and one worker, so every run throttles the same calls), all of them a clear error.
    throttled = start_backend(config_file=tmp_path / "aws-config", faults=Faults(throttle_rate=throttle_rate, seed=5))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in throttled.environ().items():
                patch.setenv(name, value)
            s3 = make_client(session_for(VAULT_PROFILE, REGION), "s3", region_name=REGION,
                             config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        if throttle_rate < 1.0:
            pd.testing.assert_frame_equal(snapshot_bucket(s3, VAULT_BUCKET, workers=1, page_size=50), vault)
            assert no_waiting, "the backend throttled nothing: the test did not test retries"
        else:
            with pytest.raises(ThrottlingError, match="throttling"):
                snapshot_bucket(s3, VAULT_BUCKET, page_size=50)
    finally:
        throttled.stop()


def test_a_bucket_that_cannot_be_listed_is_an_error_that_says_what_to_check(s3: Any) -> None:
    with pytest.raises(SnapshotError) as raised:
        snapshot_bucket(s3, "no-such-vault-bucket")
    assert (raised.value.bucket, raised.value.code) == ("no-such-vault-bucket", "NoSuchBucket")
    assert "ListBucketVersions" in str(raised.value)


@pytest.mark.parametrize(
    ("arguments", "fields"),
    [
        ({"workers": 0}, ["workers"]),
        ({"page_size": 0}, ["page_size"]),
        ({"page_size": 1001}, ["page_size"]),
        ({"workers": -1, "page_size": 5000}, ["workers", "page_size"]),
    ],
)
def test_out_of_range_settings_are_programmer_mistakes(s3: Any, arguments: dict[str, int], fields: list[str]) -> None:
    with pytest.raises(InvalidArguments) as raised:
        snapshot_bucket(s3, VAULT_BUCKET, **arguments)  # type: ignore[arg-type]
    assert [problem.field for problem in raised.value.problems] == fields
